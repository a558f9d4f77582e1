//! Command-line and environment settings of `hookline-consumer`.

use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser};
pub use hookline_core::config::ListenAddr;
use hookline_core::config::{KafkaArgs, LogArgs, RuntimeArgs, SchemaRegistryArgs, TopicArgs, parse_duration};
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::MasterKeyArgs;

/// Delivers webhooks from the delivery topic as a member of a Kafka consumer group.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookline-consumer", version, about)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    /// Where to fetch the writer schemas of records in the Confluent wire format (records in
    /// single-object encoding or JSON need no registry).
    #[command(flatten)]
    pub schema_registry: SchemaRegistryArgs,

    /// Consumer group id; run several consumers with the same group to share the partitions.
    #[arg(long, env = "HOOKLINE_GROUP", default_value = "hookline")]
    pub group: String,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub ordering: OrderingArgs,

    #[command(flatten)]
    pub parking: ParkingArgs,

    /// Address for `GET /metrics` (Prometheus), or `off`.
    #[arg(long, env = "HOOKLINE_METRICS_LISTEN", default_value = "0.0.0.0:9464")]
    pub metrics_listen: ListenAddr,

    /// On shutdown, how long an HTTP attempt or DLQ write already in flight may take to finish
    /// before it is abandoned (its record is then redelivered by the next owner).
    #[arg(long, env = "HOOKLINE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// On a rebalance, how long the revocation waits for the revoked partitions' workers to
    /// finish the HTTP attempts in flight, have their ledger writes acknowledged and commit:
    /// the longest a rebalance waits for this member. Must be below `session.timeout.ms`;
    /// default: the smaller of 15s and half the session timeout. An attempt still running when it
    /// ends is abandoned, and its record may be sent again by the next owner.
    #[arg(long, env = "HOOKLINE_REVOKE_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub revoke_drain_timeout: Option<Duration>,

    /// How long a delivery is remembered in the delivery ledger, so that a record seen again
    /// (a crash's uncommitted tail, a duplicate, a replay) is not sent again; `off` disables
    /// de-duplication (and the ledger topic is not needed). At most the ledger topic's retention.
    #[arg(long, env = "HOOKLINE_DEDUP_WINDOW", default_value = "24h")]
    pub dedup_window: Window,

    #[command(flatten)]
    pub dedup: DedupArgs,

    /// The delivery log on the attempts topic (`--attempts-topic`): `on` records every attempt and
    /// every parking, dead-letter and skip decision, what the publisher's deliveries API shows;
    /// `off` records nothing (and the topic is not needed).
    #[arg(long, env = "HOOKLINE_DELIVERY_LOG", default_value = "on")]
    pub delivery_log: Switch,

    /// How long to wait for the customer directory to load at start-up.
    #[arg(long, env = "HOOKLINE_DIRECTORY_LOAD_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub directory_load_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Opens customers' signing secrets (required: every delivery is signed).
    #[command(flatten)]
    pub master_key: MasterKeyArgs,

    /// The SSRF guard, applied to every attempt.
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// How each record is delivered and retried.
#[derive(Debug, Clone, Args)]
pub struct DeliveryArgs {
    /// Attempts per record (the first try included) before it goes to the DLQ.
    #[arg(long, env = "HOOKLINE_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,

    /// Delay before the first retry; doubles (with jitter) on each further retry.
    #[arg(long, env = "HOOKLINE_INITIAL_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub initial_backoff: Duration,

    /// Longest delay between two attempts, also the cap applied to `Retry-After`.
    #[arg(long, env = "HOOKLINE_MAX_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub max_backoff: Duration,

    /// Timeout of one HTTP attempt (connect, send, response headers).
    #[arg(long, env = "HOOKLINE_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

/// In which order records are delivered, and the bounds of key mode's concurrency.
#[derive(Debug, Clone, Args)]
pub struct OrderingArgs {
    /// `partition`: one record at a time per partition, in offset order (a failing endpoint holds
    /// back every customer of its partition). `key`: one lane per record key (customer or inbound
    /// source) in each partition; a key's records one at a time in offset order, different keys
    /// concurrently (a failing endpoint holds back only its own customer). Key mode needs the
    /// delivery ledger (not with `--dedup-window off`).
    #[arg(long, env = "HOOKLINE_ORDERING", value_enum, default_value_t = Ordering::Partition)]
    pub ordering: Ordering,

    /// Key mode: records a partition may have taken off its queue and not finished (waiting in
    /// their lane, being delivered, or delivered and awaiting their ledger entry's
    /// acknowledgement). At this many the partition takes no further record until one finishes;
    /// the consumer keeps polling and stays in its group.
    #[arg(
        long,
        env = "HOOKLINE_MAX_IN_FLIGHT",
        default_value_t = DEFAULT_MAX_IN_FLIGHT,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_in_flight: u64,

    /// Key mode: bytes of record values a partition may hold taken off its queue and not
    /// finished (a record larger than this is still taken when the partition holds nothing else).
    #[arg(
        long,
        env = "HOOKLINE_MAX_IN_FLIGHT_BYTES",
        default_value_t = DEFAULT_MAX_IN_FLIGHT_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_in_flight_bytes: u64,

    /// HTTP attempts in flight at once in this consumer process, over all its partitions (both
    /// modes; in partition mode a partition has at most one).
    #[arg(
        long,
        env = "HOOKLINE_MAX_CONCURRENCY",
        default_value_t = DEFAULT_MAX_CONCURRENCY,
        value_parser = clap::value_parser!(u64).range(1..=100_000)
    )]
    pub max_concurrency: u64,
}

/// A feature turned `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `--ordering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ordering {
    /// One record at a time per partition.
    Partition,
    /// One lane per record key, concurrent across keys.
    Key,
}

/// Default `--max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1000;
/// Default `--max-in-flight-bytes`: 16 MiB per partition.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 16 << 20;
/// Default `--max-concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: u64 = 256;

impl Default for OrderingArgs {
    fn default() -> Self {
        Self {
            ordering: Ordering::Partition,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// When a failing customer is parked on the retry topic, and how long its records are retried.
#[derive(Debug, Clone, Args)]
pub struct ParkingArgs {
    /// After this many failed attempts in place on one record, its customer is parked: that
    /// record and every later record of the customer from its partition go, in order, to the
    /// retry topic (`--retry-topic`), and the partition moves on. A number (1 to 1000, at most
    /// `--max-attempts`) or `off` (failing records retry in place until `--max-attempts`, then go
    /// to the DLQ). Default: `off` in partition ordering (its documented shape: blocking
    /// retries), 3 in key ordering (a dead customer would otherwise fill its partition's
    /// `--max-in-flight` and hold every customer of it back).
    #[arg(long, env = "HOOKLINE_PARK_AFTER")]
    pub park_after: Option<ParkAfter>,

    /// When a parked customer is tried again, with its oldest parked record only: each delay
    /// counts from the previous try (the first from the parking), e.g. the default's 7 tries over
    /// about 27 hours. When they all failed the record goes to the DLQ (`retries_exhausted`), and
    /// so does each later parked record whose own schedule has run out meanwhile. The retry
    /// topic's retention must be well above the schedule's total.
    #[arg(long, env = "HOOKLINE_RETRY_SCHEDULE", default_value = DEFAULT_RETRY_SCHEDULE)]
    pub retry_schedule: RetrySchedule,

    /// With parking on: a customer whose endpoint has failed continuously this long (every try
    /// since its last success) is disabled in the customer directory, and its records go to the
    /// DLQ (`endpoint_disabled`) without a request until it is enabled again (the customer's
    /// `POST /v1/customer/webhook/enable`, an admin's, `hookline-setup customers enable`, or a
    /// new webhook URL). A duration, or `off`.
    #[arg(long, env = "HOOKLINE_DISABLE_AFTER", default_value = "5d")]
    pub disable_after: Window,
}

/// Default `--disable-after`: 5 days.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// Default `--retry-schedule`: about 27 hours, like the hosted webhook services'.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

impl Default for ParkingArgs {
    fn default() -> Self {
        Self {
            park_after: None,
            retry_schedule: DEFAULT_RETRY_SCHEDULE.parse().expect("the default schedule parses"),
            disable_after: Window(Some(DEFAULT_DISABLE_AFTER)),
        }
    }
}

/// `--park-after` in key ordering when not given.
pub const KEY_MODE_PARK_AFTER: u32 = 3;

/// `--park-after`: a number of attempts, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkAfter(pub Option<u32>);

impl FromStr for ParkAfter {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        match raw.trim().parse::<u32>() {
            Ok(attempts @ 1..=1000) => Ok(Self(Some(attempts))),
            _ => Err(format!("`{raw}` is neither `off` nor a number of attempts from 1 to 1000")),
        }
    }
}

/// Most steps a `--retry-schedule` may have.
pub const MAX_RETRY_STEPS: usize = 100;

/// `--retry-schedule`: comma-separated durations, each above 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// The time from parking to the last try.
    pub fn total(&self) -> Duration {
        self.0.iter().sum()
    }
}

impl FromStr for RetrySchedule {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let steps = raw
            .split(',')
            .map(|step| match parse_duration(step.trim()) {
                Ok(Duration::ZERO) => Err(format!("`{}`: every step must be above 0", step.trim())),
                Ok(delay) => Ok(delay),
                Err(error) => Err(format!("`{}`: {error}", step.trim())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if steps.len() > MAX_RETRY_STEPS {
            return Err(format!("{} steps; at most {MAX_RETRY_STEPS}", steps.len()));
        }
        Ok(Self(steps))
    }
}

/// Bounds of the delivery ledger's memory, restore and writes.
#[derive(Debug, Clone, Args)]
pub struct DedupArgs {
    /// Deliveries remembered per partition: the newest this many within `--dedup-window` (older
    /// ones are forgotten, so a duplicate of them would be sent again). Memory per assigned
    /// partition is 24 to 32 bytes each (23.3 MiB at the default), and a restore reads at most
    /// this many ledger records.
    #[arg(
        long = "dedup-capacity",
        env = "HOOKLINE_DEDUP_CAPACITY",
        default_value_t = DEFAULT_DEDUP_CAPACITY,
        value_parser = clap::value_parser!(u64).range(1..=100_000_000)
    )]
    pub capacity: u64,

    /// Revoked partitions whose delivered sets are kept, so that a partition revoked and assigned
    /// back to this consumer (every partition, in an eager rebalance) reads only the ledger written
    /// since; the one revoked longest ago is dropped first. 0 keeps none.
    #[arg(
        long = "dedup-kept-partitions",
        env = "HOOKLINE_DEDUP_KEPT_PARTITIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(0..=4096)
    )]
    pub kept_partitions: u64,

    /// Ledger writes a partition may await at once; at this many the partition takes no further
    /// record until the ledger acknowledges some (its offsets cannot be committed before anyway).
    #[arg(
        id = "ledger_max_in_flight",
        long = "ledger-max-in-flight",
        env = "HOOKLINE_LEDGER_MAX_IN_FLIGHT",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=100_000)
    )]
    pub max_in_flight: u64,
}

/// Default `--dedup-capacity`.
pub const DEFAULT_DEDUP_CAPACITY: u64 = 1_000_000;

impl Default for DedupArgs {
    fn default() -> Self {
        Self { capacity: DEFAULT_DEDUP_CAPACITY, kept_partitions: 16, max_in_flight: 1000 }
    }
}

impl Default for DeliveryArgs {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Settings for `brokers` with every other value at its default (tests, the demo).
    pub fn new(kafka: KafkaArgs, topics: TopicArgs, group: &str) -> Self {
        Self {
            kafka,
            topics,
            schema_registry: SchemaRegistryArgs::default(),
            group: group.to_owned(),
            delivery: DeliveryArgs::default(),
            ordering: OrderingArgs::default(),
            parking: ParkingArgs::default(),
            metrics_listen: ListenAddr(None),
            shutdown_grace: Duration::from_secs(10),
            revoke_drain_timeout: None,
            dedup_window: Window(Some(DEFAULT_DEDUP_WINDOW)),
            dedup: DedupArgs::default(),
            delivery_log: Switch::On,
            directory_load_timeout: Duration::from_secs(30),
            log: LogArgs::default(),
            runtime: RuntimeArgs::default(),
            master_key: MasterKeyArgs::default(),
            network: NetworkArgs::default(),
        }
    }
}

impl Config {
    /// The group's session timeout as librdkafka will use it: `session.timeout.ms` of the final
    /// member configuration (Hookline's defaults and `--kafka-property`), else librdkafka's
    /// default.
    pub fn session_timeout(&self) -> Duration {
        let member = hookline_core::kafka::group_consumer_config(&self.kafka, "hookline-consumer", &self.group);
        session_timeout(member.get("session.timeout.ms"))
    }

    /// The drain timeout of a revocation (`--revoke-drain-timeout` checked against the session
    /// timeout, or its default), or why the settings cannot work (a usage error).
    pub fn revoke_drain(&self) -> Result<Duration, String> {
        revoke_drain(self.revoke_drain_timeout, self.session_timeout())
    }

    /// `--park-after` as it applies: given, or the default of the ordering mode (`None`: off).
    pub fn park_after(&self) -> Option<u32> {
        match self.parking.park_after {
            Some(ParkAfter(given)) => given,
            None if self.ordering.ordering == Ordering::Key => {
                Some(KEY_MODE_PARK_AFTER.min(self.delivery.max_attempts))
            }
            None => None,
        }
    }

    /// Settings that parse one by one but cannot work together (a usage error, exit code 2).
    pub fn validate(&self) -> Result<(), String> {
        self.revoke_drain()?;
        if let Some(park_after) = self.park_after()
            && park_after > self.delivery.max_attempts
        {
            return Err(format!(
                "--park-after ({park_after}) must not be above --max-attempts ({}): the record would be \
                 dead-lettered before it could be parked",
                self.delivery.max_attempts
            ));
        }
        if self.ordering.ordering == Ordering::Key && self.dedup_window.0.is_none() {
            // Records of different keys finish out of offset order: a restart re-reads everything
            // past the oldest unfinished one, and only the ledger keeps the ones already
            // delivered from being sent again.
            return Err("--ordering key needs the delivery ledger: it cannot run with --dedup-window off \
                        (records delivered past the commit position would be sent again after a restart)"
                .to_owned());
        }
        Ok(())
    }
}

/// librdkafka's default `session.timeout.ms`.
const LIBRDKAFKA_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest default drain timeout.
const MAX_DEFAULT_REVOKE_DRAIN: Duration = Duration::from_secs(15);

/// `session.timeout.ms` as configured; unset or unreadable: librdkafka's default (librdkafka
/// itself refuses an unreadable value when the consumer is created).
fn session_timeout(configured: Option<&str>) -> Duration {
    configured.and_then(|ms| ms.trim().parse().ok()).map_or(LIBRDKAFKA_SESSION_TIMEOUT, Duration::from_millis)
}

/// The drain timeout for a `session` timeout: `explicit` if below it, else an error naming both;
/// by default the smaller of 15s and half the session, so that the member, blocked in the
/// revocation, still rejoins before the group coordinator gives up on it.
fn revoke_drain(explicit: Option<Duration>, session: Duration) -> Result<Duration, String> {
    match explicit {
        Some(drain) if drain >= session => Err(format!(
            "--revoke-drain-timeout ({}) must be below the group's session.timeout.ms ({} ms): a member blocked \
             that long in a rebalance is evicted from its group",
            humantime::format_duration(drain),
            session.as_millis()
        )),
        Some(Duration::ZERO) => Err("--revoke-drain-timeout must be above 0".to_owned()),
        Some(drain) => Ok(drain),
        None => Ok(MAX_DEFAULT_REVOKE_DRAIN.min(session / 2)),
    }
}

/// Default `--dedup-window`.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A duration such as `24h`, or `off` (`--dedup-window`, `--disable-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Option<Duration>);

impl FromStr for Window {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        match parse_duration(raw)? {
            Duration::ZERO => Err("0 is not a duration here; use `off` to turn it off".to_owned()),
            window => Ok(Self(Some(window))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_on_loopback_and_flags_parse() {
        let config = Config::try_parse_from(["hookline-consumer"]).unwrap();
        assert_eq!(config.group, "hookline");
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.delivery.max_attempts, 8);
        assert_eq!(config.metrics_listen, ListenAddr(Some("0.0.0.0:9464".parse().unwrap())));
        assert_eq!(config.dedup_window, Window(Some(DEFAULT_DEDUP_WINDOW)));
        assert_eq!(config.topics.delivered, "webhooks.delivered");
        assert_eq!(config.dedup.capacity, DEFAULT_DEDUP_CAPACITY);
        assert_eq!(config.dedup.max_in_flight, DedupArgs::default().max_in_flight);

        let config = Config::try_parse_from([
            "hookline-consumer",
            "--max-attempts",
            "3",
            "--initial-backoff",
            "250ms",
            "--max-backoff",
            "30s",
            "--metrics-listen",
            "off",
            "--dedup-window",
            "off",
            "--dedup-capacity",
            "5000",
            "--dedup-kept-partitions",
            "0",
            "--ledger-max-in-flight",
            "10",
        ])
        .unwrap();
        assert_eq!(config.dedup_window, Window(None));
        assert_eq!((config.dedup.capacity, config.dedup.kept_partitions, config.dedup.max_in_flight), (5000, 0, 10));
        assert_eq!(config.delivery.max_attempts, 3);
        assert_eq!(config.delivery.initial_backoff, Duration::from_millis(250));
        assert_eq!(config.delivery.max_backoff, Duration::from_secs(30));
        assert_eq!(config.metrics_listen, ListenAddr(None));
    }

    #[test]
    fn the_revoke_drain_defaults_below_the_session_timeout_and_refuses_one_that_is_not() {
        assert_eq!(session_timeout(None), Duration::from_secs(45));
        assert_eq!(session_timeout(Some("6000")), Duration::from_secs(6));
        let six = Duration::from_secs(6);
        assert_eq!(revoke_drain(None, Duration::from_secs(45)), Ok(Duration::from_secs(15)));
        assert_eq!(revoke_drain(None, six), Ok(Duration::from_secs(3)));
        assert_eq!(revoke_drain(Some(Duration::from_secs(5)), six), Ok(Duration::from_secs(5)));
        let refused = revoke_drain(Some(six), six).unwrap_err();
        assert!(refused.contains("--revoke-drain-timeout (6s)") && refused.contains("(6000 ms)"), "{refused}");
        assert!(revoke_drain(Some(Duration::ZERO), six).is_err());

        let config = Config::try_parse_from(["c", "--kafka-property", "session.timeout.ms=6000"]).unwrap();
        assert_eq!(config.session_timeout(), six);
        assert_eq!(config.revoke_drain(), Ok(Duration::from_secs(3)));
        let config = Config::try_parse_from(["c", "--revoke-drain-timeout", "20s"]).unwrap();
        assert_eq!(config.revoke_drain(), Ok(Duration::from_secs(20)));
        let config = Config::try_parse_from(["c", "--revoke-drain-timeout", "45s"]).unwrap();
        assert!(config.revoke_drain().is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::try_parse_from(["c", "--max-attempts", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--initial-backoff", "soon"]).is_err());
        assert!(Config::try_parse_from(["c", "--metrics-listen", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["c", "--dedup-window", "0s"]).is_err());
        assert!(Config::try_parse_from(["c", "--dedup-window", "forever"]).is_err());
        assert!(Config::try_parse_from(["c", "--dedup-capacity", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--dedup-capacity", "lots"]).is_err());
        assert!(Config::try_parse_from(["c", "--ledger-max-in-flight", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--ordering", "customer"]).is_err());
        assert!(Config::try_parse_from(["c", "--max-in-flight", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--max-concurrency", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--max-in-flight-bytes", "0"]).is_err());
    }

    #[test]
    fn parking_is_off_in_partition_ordering_and_on_after_3_attempts_in_key_ordering_unless_given() {
        let parse = |args: &[&str]| Config::try_parse_from(std::iter::once("c").chain(args.iter().copied()));
        assert_eq!(parse(&[]).unwrap().park_after(), None);
        assert_eq!(parse(&["--ordering", "key"]).unwrap().park_after(), Some(KEY_MODE_PARK_AFTER));
        assert_eq!(parse(&["--ordering", "key", "--park-after", "off"]).unwrap().park_after(), None);
        assert_eq!(parse(&["--park-after", "5"]).unwrap().park_after(), Some(5));
        // Never above --max-attempts: by default it follows it down; given, it is refused.
        assert_eq!(parse(&["--ordering", "key", "--max-attempts", "2"]).unwrap().park_after(), Some(2));
        let above = parse(&["--park-after", "9"]).unwrap();
        assert!(above.validate().unwrap_err().contains("--park-after (9) must not be above --max-attempts (8)"));
        for bad in ["0", "1001", "-1", "soon", ""] {
            assert!(parse(&["--park-after", bad]).is_err(), "{bad:?}");
        }

        let config = parse(&[]).unwrap();
        assert_eq!(config.parking.retry_schedule.0.len(), 7);
        let total = config.parking.retry_schedule.total();
        assert!(total > Duration::from_secs(26 * 3600) && total < Duration::from_secs(28 * 3600), "{total:?}");
        let custom = parse(&["--retry-schedule", "250ms, 1s,2m"]).unwrap().parking.retry_schedule;
        assert_eq!(custom.0, [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(120)]);
        for bad in ["", "5s,,1m", "0s", "5s,never"] {
            assert!(parse(&["--retry-schedule", bad]).is_err(), "{bad:?}");
        }
        let too_long = vec!["1s"; MAX_RETRY_STEPS + 1].join(",");
        assert!(parse(&["--retry-schedule", &too_long]).is_err());

        assert_eq!(parse(&[]).unwrap().parking.disable_after, Window(Some(DEFAULT_DISABLE_AFTER)));
        assert_eq!(parse(&["--disable-after", "off"]).unwrap().parking.disable_after, Window(None));
        assert_eq!(
            parse(&["--disable-after", "90s"]).unwrap().parking.disable_after,
            Window(Some(Duration::from_secs(90)))
        );
        assert!(parse(&["--disable-after", "0s"]).is_err());
        assert!(parse(&["--disable-after", "soon"]).is_err());
    }

    #[test]
    fn key_ordering_parses_and_refuses_to_run_without_the_ledger() {
        let config = Config::try_parse_from(["c"]).unwrap();
        assert_eq!(config.ordering.ordering, Ordering::Partition);
        assert_eq!(config.ordering.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(config.ordering.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        assert_eq!(config.validate(), Ok(()));

        let config = Config::try_parse_from([
            "c",
            "--ordering",
            "key",
            "--max-in-flight",
            "50",
            "--max-in-flight-bytes",
            "4096",
            "--max-concurrency",
            "8",
        ])
        .unwrap();
        assert_eq!(config.ordering.ordering, Ordering::Key);
        assert_eq!(
            (config.ordering.max_in_flight, config.ordering.max_in_flight_bytes, config.ordering.max_concurrency),
            (50, 4096, 8)
        );
        assert_eq!(config.validate(), Ok(()));

        let refused = Config::try_parse_from(["c", "--ordering", "key", "--dedup-window", "off"]).unwrap().validate();
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("--ordering key") && e.contains("--dedup-window off")),
            "{refused:?}"
        );
        let partition = Config::try_parse_from(["c", "--dedup-window", "off"]).unwrap();
        assert_eq!(partition.validate(), Ok(()));
    }
}

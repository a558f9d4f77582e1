//! Command-line and environment settings of `hookline-publisher`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hookline_core::config::{
    KafkaArgs, ListenAddr, LogArgs, RuntimeArgs, SchemaRegistryArgs, SecretString, TopicArgs, parse_duration,
};
use hookline_core::limits;
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::MasterKeyArgs;

/// Default `--listen` address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4242";
/// Default `--grpc-listen`: the event broker's well-known port, 9620.
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:9620";

/// Extra time granted beyond `produce_timeout` before giving up on acknowledgements, so that
/// librdkafka's own `message.timeout.ms` verdict (a definite answer) normally arrives first.
pub(crate) const ACK_GRACE: Duration = Duration::from_secs(1);
/// Room in a request body, beyond the largest record value, for what surrounds the payload
/// (`type`, `target`, JSON punctuation, whitespace): the default `--max-body-size` is the record
/// limit plus this. A body within it whose record is still too large gets 413 all the same.
pub const BODY_SLACK: usize = 4096;
/// Default `--max-inflight-bytes` (lowered to fit librdkafka's queue, see [`Config::limits`]).
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// What one copy in flight is charged beyond its record's bytes: librdkafka's bookkeeping per
/// queued message. It also makes the byte budget bound the number of queued messages.
pub const COPY_OVERHEAD: usize = 1024;
/// librdkafka's defaults for the producer queue's bounds.
const QUEUE_MAX_KBYTES: (&str, usize) = ("queue.buffering.max.kbytes", 1_048_576);
const QUEUE_MAX_MESSAGES: (&str, usize) = ("queue.buffering.max.messages", 100_000);
/// Default `--fanout-timeout`.
pub const DEFAULT_FANOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--directory-load-timeout`.
pub const DEFAULT_DIRECTORY_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--produce-timeout`.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--idempotency-window`.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Default `--idempotency-max-keys`: about 160 MB of keys (see the README).
pub const DEFAULT_IDEMPOTENCY_MAX_KEYS: NonZeroUsize = NonZeroUsize::new(400_000).unwrap();
/// Default `--signing-secret-grace`.
pub const DEFAULT_SIGNING_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Default `--event-schemas-refresh`.
pub const DEFAULT_EVENT_SCHEMAS_REFRESH: Duration = Duration::from_secs(60);
/// Default `--http-request-timeout`: above the longest a publish may legitimately take (a schema
/// registry look-up, an idempotency claim, a target look-up, then up to `--fanout-timeout` and its
/// grace to write the copies).
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--http-max-connections`.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 1024;
/// Default `--http-header-read-timeout`: request headers arrive in one packet or two.
pub const DEFAULT_HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the publisher.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hookline-publisher",
    version,
    about = "Accepts events over HTTP and writes one delivery record per subscribed customer to Kafka."
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Address the gRPC event broker (`hookline.v1.EventBroker`, health, reflection) listens on,
    /// or `off`.
    #[arg(long, env = "HOOKLINE_GRPC_LISTEN", default_value = DEFAULT_GRPC_LISTEN)]
    pub grpc_listen: ListenAddr,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    /// Records are written in the Confluent wire format through this registry when set, else
    /// in Avro single-object encoding.
    #[command(flatten)]
    pub schema_registry: SchemaRegistryArgs,

    /// Largest accepted request body, in bytes; larger requests get 413. Default: the largest
    /// event record (librdkafka's `message.max.bytes` less room for Hookline's headers) plus 4 KiB;
    /// a larger value is refused at start (raise `message.max.bytes` instead).
    #[arg(long, env = "HOOKLINE_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,

    /// Bytes of delivery copies in flight (handed to the shared producer, not yet acknowledged)
    /// across all requests; a copy waits for room beyond it. Default: 32 MiB, or less to stay
    /// within half of librdkafka's queue (`queue.buffering.max.kbytes`,
    /// `queue.buffering.max.messages`, each copy counted as its size plus 1 KiB); a larger value
    /// is refused at start.
    #[arg(long, env = "HOOKLINE_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<usize>,

    /// Bytes of one request's copies in flight: a fan-out streams through this window, so that
    /// it cannot take all of `--max-inflight-bytes`. Default: a quarter of that, at least one
    /// largest record.
    #[arg(long, env = "HOOKLINE_MAX_REQUEST_INFLIGHT_BYTES")]
    pub max_request_inflight_bytes: Option<usize>,

    /// How long one publish request may take to write all its copies (a large fan-out streams
    /// through the in-flight bounds); then it gets 503 and no further copy is sent. At least
    /// `--produce-timeout`, which still bounds each copy and each wait for room (e.g. `30s`).
    #[arg(long, env = "HOOKLINE_FANOUT_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub fanout_timeout: Duration,

    /// How long to wait at start-up for the customer directory to load (e.g. `30s`).
    #[arg(long, env = "HOOKLINE_DIRECTORY_LOAD_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub directory_load_timeout: Duration,

    /// How long a publish request waits for the broker to acknowledge every copy before answering
    /// 503 (e.g. `10s`). Also used as librdkafka's `message.timeout.ms` unless that is set with
    /// `--kafka-property`, so that a timed-out record is not silently written later.
    #[arg(long, env = "HOOKLINE_PRODUCE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub produce_timeout: Duration,

    /// Operator tokens for the admin API (`/v1/customers`), comma-separated. None: the admin API
    /// refuses every request.
    #[arg(long, env = "HOOKLINE_ADMIN_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub admin_tokens: Vec<SecretString>,

    /// Tokens allowed to `POST /publish`, comma-separated. None: every publish is refused.
    #[arg(long, env = "HOOKLINE_PRODUCER_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub producer_tokens: Vec<SecretString>,

    /// How long a replaced signing secret keeps signing after a rotation (both signatures are
    /// sent meanwhile), e.g. `24h`.
    #[arg(long, env = "HOOKLINE_SIGNING_SECRET_GRACE", value_parser = parse_duration, default_value = "24h")]
    pub signing_secret_grace: Duration,

    /// How long an `Idempotency-Key` is remembered: a repeat within it is answered from the first
    /// request and produces nothing (at most the idempotency topic's retention, 7 days).
    #[arg(long, env = "HOOKLINE_IDEMPOTENCY_WINDOW", value_parser = parse_duration, default_value = "24h")]
    pub idempotency_window: Duration,

    /// Where the deliveries index is kept (`deliveries.sqlite3`, rebuilt from the delivery log
    /// when missing); without it, in memory (rebuilt at every start).
    #[arg(long, env = "HOOKLINE_DELIVERY_LOG_DIR")]
    pub delivery_log_dir: Option<PathBuf>,

    /// How long the deliveries index keeps a delivery: the delivery log's retention (7 days by
    /// `hookline-setup topics create`).
    #[arg(long, env = "HOOKLINE_DELIVERY_LOG_RETENTION", value_parser = parse_duration, default_value = "7d")]
    pub delivery_log_retention: Duration,

    /// The address customers reach this publisher at, for portal links (e.g.
    /// `https://webhooks.example.com`); without it, the address the admin called.
    #[arg(long, env = "HOOKLINE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// How long a portal link lives unless its request says (at most 24h).
    #[arg(long, env = "HOOKLINE_PORTAL_LINK_TTL", value_parser = parse_duration, default_value = "1h")]
    pub portal_link_ttl: Duration,

    /// The most `Idempotency-Key`s remembered (at least 1). Beyond it the keys closest to expiry
    /// are forgotten early (`hookline_idempotency_evictions_total`), and a retry of one of them is
    /// published again under a new event id; a restart reads at most twice this many records.
    #[arg(long, env = "HOOKLINE_IDEMPOTENCY_MAX_KEYS", default_value_t = DEFAULT_IDEMPOTENCY_MAX_KEYS)]
    pub idempotency_max_keys: NonZeroUsize,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub master_key: MasterKeyArgs,

    #[command(flatten)]
    pub network: NetworkArgs,

    /// Directory of event-type schemas: `<type>.avsc` (Avro), `<type>.json` or
    /// `<type>.schema.json` (JSON Schema). Read at start-up; a bad file stops the start-up. Its
    /// schemas win over the schema registry's.
    #[arg(long, env = "HOOKLINE_EVENT_SCHEMAS_DIR")]
    pub event_schemas_dir: Option<PathBuf>,

    /// Refuse (422) events whose type has no schema. The variable takes `true`/`false` (or
    /// `1`/`0`, `yes`/`no`, `on`/`off`).
    #[arg(long, env = "HOOKLINE_REQUIRE_SCHEMAS", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_schemas: bool,

    /// How often the schema registry's event-type schemas are reloaded (e.g. `60s`).
    #[arg(long, env = "HOOKLINE_EVENT_SCHEMAS_REFRESH", value_parser = parse_duration, default_value = "60s")]
    pub event_schemas_refresh: Duration,

    /// The longest an HTTP request may take from its headers to its answer, body included, and
    /// the longest a gRPC call may take. A body still arriving then gets 408; a request still
    /// being handled 503 (gRPC: CANCELLED). Not the consumer's `--request-timeout` (its webhook
    /// calls).
    #[arg(long, env = "HOOKLINE_HTTP_REQUEST_TIMEOUT", value_parser = positive_duration, default_value = "60s")]
    pub http_request_timeout: Duration,

    /// How long a client may take to send a request's line and headers (also the longest a
    /// keep-alive connection may stay idle) before its HTTP connection is closed.
    #[arg(long, env = "HOOKLINE_HTTP_HEADER_READ_TIMEOUT", value_parser = positive_duration, default_value = "10s")]
    pub http_header_read_timeout: Duration,

    /// HTTP connections open at once; at the limit new clients wait in the listen backlog until
    /// one closes. Bounds the memory and file descriptors clients can hold (keep it below the
    /// process's open-file limit).
    #[arg(long, env = "HOOKLINE_HTTP_MAX_CONNECTIONS", default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
}

/// A duration that is not zero (a zero time limit would refuse everything).
fn positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        Duration::ZERO => Err(format!("`{raw}` must be more than zero")),
        duration => Ok(duration),
    }
}

impl Config {
    /// Settings with every default but the Kafka connection and topic names (for tests and the
    /// in-process demo, which pass their own listener to [`crate::serve`]), and with the gRPC
    /// server off: a fixed port would collide between publishers in one process (tests pass
    /// their own gRPC listener to [`crate::serve_with_grpc`]).
    pub fn new(kafka: KafkaArgs, topics: TopicArgs) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4242)),
            grpc_listen: ListenAddr(None),
            kafka,
            topics,
            schema_registry: SchemaRegistryArgs::default(),
            max_body_size: None,
            max_inflight_bytes: None,
            max_request_inflight_bytes: None,
            fanout_timeout: DEFAULT_FANOUT_TIMEOUT,
            directory_load_timeout: DEFAULT_DIRECTORY_LOAD_TIMEOUT,
            produce_timeout: DEFAULT_PRODUCE_TIMEOUT,
            admin_tokens: Vec::new(),
            producer_tokens: Vec::new(),
            signing_secret_grace: DEFAULT_SIGNING_SECRET_GRACE,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            delivery_log_dir: None,
            delivery_log_retention: hookline_core::topics::STATE_RETENTION,
            public_url: None,
            portal_link_ttl: Duration::from_secs(3600),
            idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
            log: LogArgs::default(),
            runtime: RuntimeArgs::default(),
            master_key: MasterKeyArgs::default(),
            network: NetworkArgs::default(),
            event_schemas_dir: None,
            require_schemas: false,
            event_schemas_refresh: DEFAULT_EVENT_SCHEMAS_REFRESH,
            http_request_timeout: DEFAULT_HTTP_REQUEST_TIMEOUT,
            http_header_read_timeout: DEFAULT_HTTP_HEADER_READ_TIMEOUT,
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

/// The size bounds of a publisher, derived from its settings by [`Config::limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The shared producer's `message.max.bytes`.
    pub message_max_bytes: usize,
    /// The largest encoded record value (Avro envelope and payload): larger events get 413.
    pub record: usize,
    /// The largest request body: larger bodies get 413 before they are parsed.
    pub body: usize,
    /// Bytes of copies in flight across all requests.
    pub inflight: usize,
    /// Bytes of one request's copies in flight.
    pub request_inflight: usize,
}

impl Config {
    /// The size bounds these settings give, or why they cannot work (`hookline-publisher`
    /// refuses to start, exit code 2): one record limit from `message.max.bytes`
    /// ([`hookline_core::limits`]), the body limit around it, and in-flight budgets that stay
    /// within half of librdkafka's queue, so copies never find it full.
    pub fn limits(&self) -> hookline_core::Result<Limits> {
        let invalid = |field: &'static str, reason: String| hookline_core::Error::Invalid { field, reason };
        let message_max_bytes = limits::message_max_bytes(&self.kafka)?;
        let record = limits::max_record_value(message_max_bytes)?;

        let largest_body = record + BODY_SLACK;
        let body = match self.max_body_size {
            None => largest_body,
            Some(body) if body <= largest_body => body,
            Some(body) => {
                return Err(invalid(
                    "--max-body-size",
                    format!(
                        "{body} bytes is more than an event can be: {largest_body} at most ({} less {} bytes kept \
                         for Hookline's headers, plus {BODY_SLACK} for the request around the payload); raise \
                         message.max.bytes with --kafka-property (and the topic's max.message.bytes) to accept \
                         larger events",
                        property_text(limits::MESSAGE_MAX_BYTES, message_max_bytes),
                        limits::HEADROOM,
                    ),
                ));
            }
        };

        let kbytes = limits::property(&self.kafka, QUEUE_MAX_KBYTES.0, QUEUE_MAX_KBYTES.1)?;
        let messages = limits::property(&self.kafka, QUEUE_MAX_MESSAGES.0, QUEUE_MAX_MESSAGES.1)?;
        let queue_room = (kbytes.saturating_mul(1024) / 2).min((messages / 2).saturating_mul(COPY_OVERHEAD));
        let queue = format!(
            "half of librdkafka's queue: {} bytes with {} and {}",
            queue_room,
            property_text(QUEUE_MAX_KBYTES.0, kbytes),
            property_text(QUEUE_MAX_MESSAGES.0, messages)
        );
        // A copy is charged its record's size plus COPY_OVERHEAD, and a record is at most
        // message.max.bytes.
        let largest_copy = message_max_bytes + COPY_OVERHEAD;
        let inflight = match self.max_inflight_bytes {
            Some(inflight) if inflight > queue_room => {
                return Err(invalid("--max-inflight-bytes", format!("{inflight} is more than {queue}")));
            }
            Some(inflight) => inflight,
            None => DEFAULT_MAX_INFLIGHT_BYTES.min(queue_room),
        };
        if inflight < largest_copy {
            // Without the flag, the queue's properties are what to change.
            let field = match self.max_inflight_bytes {
                Some(_) => "--max-inflight-bytes",
                None => "librdkafka's queue (queue.buffering.max.kbytes, queue.buffering.max.messages)",
            };
            return Err(invalid(
                field,
                format!(
                    "{inflight} cannot hold the largest copy ({largest_copy} bytes: {} plus {COPY_OVERHEAD}); it is \
                     at most {queue}",
                    property_text(limits::MESSAGE_MAX_BYTES, message_max_bytes)
                ),
            ));
        }
        let request_inflight = match self.max_request_inflight_bytes {
            None => (inflight / 4).max(largest_copy),
            Some(window) if (largest_copy..=inflight).contains(&window) => window,
            Some(window) => {
                return Err(invalid(
                    "--max-request-inflight-bytes",
                    format!(
                        "{window} must lie between the largest copy ({largest_copy} bytes) and \
                         --max-inflight-bytes ({inflight})"
                    ),
                ));
            }
        };
        Ok(Limits { message_max_bytes, record, body, inflight, request_inflight })
    }

    /// The longest the produce phase of one publish request may take: `--fanout-timeout`, at
    /// least `--produce-timeout`, plus the grace for librdkafka's own verdicts.
    pub fn publish_deadline(&self) -> Duration {
        self.fanout_timeout.max(self.produce_timeout) + ACK_GRACE
    }
}

/// `name=value`, for error messages.
fn property_text(name: &str, value: usize) -> String {
    format!("{name}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_new() {
        let parsed = Config::try_parse_from(["hookline-publisher"]).unwrap();
        let built = Config::new(KafkaArgs::new("127.0.0.1:9092"), TopicArgs::default());
        assert_eq!(parsed.listen, built.listen);
        assert_eq!(parsed.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(parsed.grpc_listen.0.map(|a| a.to_string()).as_deref(), Some(DEFAULT_GRPC_LISTEN));
        assert_eq!(built.grpc_listen, ListenAddr(None));
        assert_eq!(parsed.max_body_size, built.max_body_size);
        assert_eq!(parsed.directory_load_timeout, built.directory_load_timeout);
        assert_eq!(parsed.produce_timeout, built.produce_timeout);
        assert_eq!(parsed.signing_secret_grace, built.signing_secret_grace);
        assert_eq!(parsed.idempotency_window, built.idempotency_window);
        assert_eq!(parsed.idempotency_max_keys, built.idempotency_max_keys);
        assert!(parsed.admin_tokens.is_empty() && parsed.producer_tokens.is_empty());
        assert_eq!(parsed.kafka.brokers, built.kafka.brokers);
        assert_eq!(parsed.topics.deliveries, built.topics.deliveries);
        assert_eq!(parsed.event_schemas_dir, built.event_schemas_dir);
        assert_eq!(parsed.require_schemas, built.require_schemas);
        assert_eq!(parsed.schema_registry.url, built.schema_registry.url);
        assert_eq!(parsed.event_schemas_refresh, built.event_schemas_refresh);
        assert_eq!(parsed.http_request_timeout, built.http_request_timeout);
        assert_eq!(parsed.http_header_read_timeout, built.http_header_read_timeout);
        assert_eq!(parsed.http_max_connections, built.http_max_connections);
    }

    #[test]
    fn timeout_flags_parse() {
        let parsed = Config::try_parse_from([
            "hookline-publisher",
            "--http-request-timeout",
            "45s",
            "--http-header-read-timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(parsed.http_request_timeout, Duration::from_secs(45));
        assert_eq!(parsed.http_header_read_timeout, Duration::from_secs(2));
        for flag in ["--http-request-timeout", "--http-header-read-timeout"] {
            let error = Config::try_parse_from(["hookline-publisher", flag, "0s"]).unwrap_err().to_string();
            assert!(error.contains("more than zero"), "{flag}: {error}");
        }
    }

    fn limits_with(adjust: impl FnOnce(&mut Config)) -> hookline_core::Result<Limits> {
        let mut config = Config::new(KafkaArgs::new("b:9092"), TopicArgs::default());
        adjust(&mut config);
        config.limits()
    }

    #[test]
    fn limits_derive_from_message_max_bytes() {
        let limits = limits_with(|_| {}).unwrap();
        assert_eq!(limits.message_max_bytes, limits::DEFAULT_MESSAGE_MAX_BYTES);
        assert_eq!(limits.record, limits::DEFAULT_MESSAGE_MAX_BYTES - limits::HEADROOM);
        assert_eq!(limits.body, limits.record + BODY_SLACK);
        // Below librdkafka's default 1,000,000, where the old fixed 1 MiB body limit was above it.
        assert!(limits.body < 1_000_000, "{limits:?}");
        assert_eq!(limits.inflight, DEFAULT_MAX_INFLIGHT_BYTES);
        assert_eq!(limits.request_inflight, DEFAULT_MAX_INFLIGHT_BYTES / 4);

        let larger = limits_with(|c| c.kafka = c.kafka.clone().with_property("message.max.bytes", "4000000")).unwrap();
        assert_eq!(larger.record, 4_000_000 - limits::HEADROOM);
        let smaller = limits_with(|c| c.max_body_size = Some(1000)).unwrap();
        assert_eq!(smaller.body, 1000);
    }

    #[test]
    fn a_body_limit_above_the_record_limit_is_refused() {
        let error = limits_with(|c| c.max_body_size = Some(1_048_576)).unwrap_err().to_string();
        assert!(error.contains("--max-body-size") && error.contains("message.max.bytes=1000000"), "{error}");
        let error = limits_with(|c| c.kafka = c.kafka.clone().with_property("message.max.bytes", "2000"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("message.max.bytes"), "{error}");
        let error = limits_with(|c| c.kafka = c.kafka.clone().with_property("message.max.bytes", "lots"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("lots"), "{error}");
    }

    #[test]
    fn in_flight_budgets_stay_within_half_of_librdkafkas_queue() {
        // 10,000 messages: copies are charged at least 1 KiB, so at most 5,000 KiB in flight.
        let queue = |c: &mut Config| c.kafka = c.kafka.clone().with_property("queue.buffering.max.messages", "10000");
        let limits = limits_with(queue).unwrap();
        assert_eq!(limits.inflight, 5_000 * COPY_OVERHEAD);
        assert_eq!(limits.request_inflight, limits.inflight / 4);
        let error = limits_with(|c| {
            queue(c);
            c.max_inflight_bytes = Some(6_000 * COPY_OVERHEAD);
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--max-inflight-bytes") && error.contains("queue.buffering.max.messages=10000"),
            "{error}"
        );

        // A queue of 1 MiB cannot hold a 1 MB record twice over.
        let error = limits_with(|c| c.kafka = c.kafka.clone().with_property("queue.buffering.max.kbytes", "1024"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("largest copy"), "{error}");

        let small = |c: &mut Config| {
            c.kafka = c
                .kafka
                .clone()
                .with_property("message.max.bytes", "100000")
                .with_property("queue.buffering.max.kbytes", "512");
        };
        let limits = limits_with(small).unwrap();
        assert_eq!(limits.inflight, 256 * 1024);
        assert_eq!(limits.request_inflight, 100_000 + COPY_OVERHEAD, "at least one largest copy");
        for window in [1000, 300 * 1024] {
            let error = limits_with(|c| {
                small(c);
                c.max_request_inflight_bytes = Some(window);
            })
            .unwrap_err()
            .to_string();
            assert!(error.contains("--max-request-inflight-bytes"), "{error}");
        }
    }

    #[test]
    fn the_publish_deadline_is_at_least_the_produce_timeout() {
        let mut config = Config::new(KafkaArgs::new("b:9092"), TopicArgs::default());
        assert_eq!(config.publish_deadline(), DEFAULT_FANOUT_TIMEOUT + ACK_GRACE);
        config.produce_timeout = Duration::from_secs(90);
        assert_eq!(config.publish_deadline(), Duration::from_secs(90) + ACK_GRACE);
    }

    #[test]
    fn schema_flags_parse() {
        let parsed = Config::try_parse_from([
            "hookline-publisher",
            "--event-schemas-dir",
            "/etc/hookline/schemas",
            "--require-schemas",
            "--schema-registry-url",
            "http://registry:8081",
            "--event-schemas-refresh",
            "5m",
        ])
        .unwrap();
        assert_eq!(parsed.event_schemas_dir, Some(PathBuf::from("/etc/hookline/schemas")));
        assert!(parsed.require_schemas);
        assert_eq!(parsed.schema_registry.url.as_deref(), Some("http://registry:8081"));
        assert_eq!(parsed.event_schemas_refresh, Duration::from_secs(300));
    }

    #[test]
    fn flags_parse() {
        let parsed = Config::try_parse_from([
            "hookline-publisher",
            "--listen",
            "127.0.0.1:8080",
            "--grpc-listen",
            "off",
            "--max-body-size",
            "64",
            "--directory-load-timeout",
            "5s",
            "--produce-timeout",
            "250ms",
            "--brokers",
            "k:9092",
            "--topic",
            "t",
            "--admin-tokens",
            "a1,a2",
            "--producer-tokens",
            "p1",
        ])
        .unwrap();
        assert_eq!(parsed.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(parsed.grpc_listen, ListenAddr(None));
        assert_eq!(parsed.max_body_size, Some(64));
        assert_eq!(parsed.directory_load_timeout, Duration::from_secs(5));
        assert_eq!(parsed.produce_timeout, Duration::from_millis(250));
        assert_eq!(parsed.kafka.brokers, "k:9092");
        assert_eq!(parsed.topics.deliveries, "t");
        assert_eq!(parsed.admin_tokens, [SecretString::new("a1"), SecretString::new("a2")]);
        assert_eq!(parsed.producer_tokens, [SecretString::new("p1")]);
        assert!(!format!("{parsed:?}").contains("a1"), "tokens must not show in Debug output");
        assert!(Config::try_parse_from(["hookline-publisher", "--produce-timeout", "10"]).is_err());
        let capped = Config::try_parse_from(["hookline-publisher", "--idempotency-max-keys", "1000"]).unwrap();
        assert_eq!(capped.idempotency_max_keys.get(), 1000);
        assert!(Config::try_parse_from(["hookline-publisher", "--idempotency-max-keys", "0"]).is_err());
    }
}

//! Flags and environment variables of `hookline-bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hookline_core::config::{parse_duration, parse_key_value};

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The machine's ceiling: the receiver alone under an HTTP load, and the broker's raw
    /// produce and consume rates.
    Ceiling,
    /// The publisher: events accepted per second from concurrent keep-alive clients.
    Publisher,
    /// The consumer draining a prefilled topic: signing only, and signing + JWE; one and three
    /// consumer processes.
    Drain,
    /// The drain with one customer answering 503 to everything.
    HeadOfLine,
    /// Drains to endpoints that behave like real ones (every answer after a latency), healthy,
    /// with one customer dead and with one customer slow; per ordering mode, each against its
    /// ideal.
    Endpoints,
    /// Publish-to-delivery latency at fixed offered rates.
    EndToEnd,
    /// Publishes with an `Idempotency-Key` (each claims its key on the idempotency topic and
    /// reads the claim back): throughput and latency.
    Keyed,
    /// Changes through the customer API, one after another (each written to the customers topic
    /// and read back): latency.
    CustomerApi,
    /// The delivery ledger: how long a partition's restore takes and how much memory its
    /// delivered set holds, for ledgers of millions of entries and several capacities.
    Ledger,
}

impl Scenario {
    /// The scenario that measured the figure `id` (its first component names it).
    pub fn of_figure(id: &str) -> Option<Self> {
        match id.split('.').next()? {
            "ceiling" => Some(Self::Ceiling),
            "publisher" => Some(Self::Publisher),
            "drain" => Some(Self::Drain),
            "head_of_line" => Some(Self::HeadOfLine),
            "endpoints" => Some(Self::Endpoints),
            "end_to_end" => Some(Self::EndToEnd),
            "keyed" => Some(Self::Keyed),
            "customer_api" => Some(Self::CustomerApi),
            "ledger" => Some(Self::Ledger),
            _ => None,
        }
    }

    /// Whether it runs Hookline's binaries (the others run in this process).
    pub fn needs_binaries(self) -> bool {
        self != Self::Ledger
    }
}

/// How deliveries are sealed in a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sealing {
    /// Signed (Standard Webhooks), JSON body.
    Signing,
    /// Signed, body encrypted as a JWE to the customer's RSA key.
    Jwe,
}

impl Sealing {
    pub fn id(self) -> &'static str {
        match self {
            Self::Signing => "signing",
            Self::Jwe => "jwe",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Signing => "signing only",
            Self::Jwe => "signing + JWE",
        }
    }
}

/// How the consumers order deliveries: `hookline-consumer --ordering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderingMode {
    /// One delivery at a time per partition: the consumer's default, started without the flag.
    Partition,
    /// One lane per record key, concurrent across keys (`--ordering key`).
    Key,
}

/// The most HTTP attempts a key-ordered consumer process has in flight: the default of its
/// `--max-concurrency`. Only the ideal of the endpoint scenarios uses it.
pub const KEY_MODE_MAX_CONCURRENCY: u32 = {
    let concurrency = hookline_consumer::config::DEFAULT_MAX_CONCURRENCY;
    assert!(concurrency <= u32::MAX as u64);
    concurrency as u32
};

impl OrderingMode {
    pub fn id(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::Key => "key",
        }
    }

    /// What a consumer process is started with for this mode (partition: nothing, its default).
    pub fn consumer_args(self) -> &'static [&'static str] {
        match self {
            Self::Partition => &[],
            Self::Key => &["--ordering", "key"],
        }
    }

    /// The most deliveries in flight at once in a group of `consumers` processes over
    /// `partitions` partitions.
    pub fn concurrency(self, partitions: i32, consumers: u32) -> u32 {
        match self {
            Self::Partition => u32::try_from(partitions).unwrap_or(1),
            Self::Key => KEY_MODE_MAX_CONCURRENCY.saturating_mul(consumers),
        }
    }
}

/// Deliveries per second if `customers` endpoints that each take `latency` were kept busy, one
/// delivery at a time each (the order of a customer's deliveries allows no more), by at most
/// `concurrency` deliveries in flight: *min(customers, concurrency) ÷ latency*. `None` for no
/// latency.
pub fn ideal_rate(customers: u32, concurrency: u32, latency: Duration) -> Option<f64> {
    (!latency.is_zero()).then(|| f64::from(customers.min(concurrency)) / latency.as_secs_f64())
}

/// A latency that is not zero.
fn parse_latency(raw: &str) -> Result<Duration, String> {
    let latency = parse_duration(raw)?;
    if latency.is_zero() { Err(format!("`{raw}`: an endpoint latency must be above zero")) } else { Ok(latency) }
}

/// Settings of a benchmark run. The defaults are the workload; `--smoke` shrinks it to
/// seconds (what the test suite runs to keep the harness from rotting).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hookline-bench",
    version,
    about = "Benchmarks Hookline against a real broker (tansu) and a fast loopback receiver; writes BENCHMARKS.md and JSON."
)]
pub struct Config {
    /// Scenarios to run (comma-separated); all by default.
    #[arg(long, env = "BENCH_SCENARIOS", value_delimiter = ',', value_enum)]
    pub scenarios: Vec<Scenario>,

    /// Runs of every figure; the report gives their median, min and max.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,

    /// Events prefilled for a drain (one delivery record each).
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 100_000)]
    pub events: usize,

    /// Customers the events are spread over (keys of the delivery topic).
    #[arg(long, env = "BENCH_CUSTOMERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub customers: u32,

    /// Partitions of the delivery topic.
    #[arg(long, env = "BENCH_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub partitions: i32,

    /// Size of the customers' RSA keys (JWE scenarios). Keys are generated once and cached.
    #[arg(long, env = "BENCH_RSA_BITS", default_value_t = 4096)]
    pub rsa_bits: usize,

    /// Consumer processes of the drains: one run set per count.
    #[arg(long, env = "BENCH_CONSUMERS", value_delimiter = ',', default_values_t = [1_u32, 3], value_parser = clap::value_parser!(u32).range(1..=64))]
    pub consumers: Vec<u32>,

    /// How the drains' deliveries are sealed: one run set per choice.
    #[arg(long, env = "BENCH_SEALING", value_delimiter = ',', value_enum, default_values_t = [Sealing::Signing, Sealing::Jwe])]
    pub sealing: Vec<Sealing>,

    /// Ordering modes of the drain, head-of-line and endpoint scenarios: one set of figures per
    /// mode, side by side.
    #[arg(long, env = "BENCH_ORDERINGS", value_delimiter = ',', value_enum, default_values_t = [OrderingMode::Partition, OrderingMode::Key])]
    pub orderings: Vec<OrderingMode>,

    /// Events prefilled for each drain of the endpoint scenarios (over `--customers`).
    #[arg(long, env = "BENCH_ENDPOINT_EVENTS", default_value_t = 3_000)]
    pub endpoint_events: usize,

    /// How long every endpoint takes to answer in the endpoint scenarios.
    #[arg(long, env = "BENCH_ENDPOINT_LATENCY", value_parser = parse_latency, default_value = "50ms")]
    pub endpoint_latency: Duration,

    /// How long the slow customer's endpoint takes to answer.
    #[arg(long, env = "BENCH_SLOW_ENDPOINT_LATENCY", value_parser = parse_latency, default_value = "2s")]
    pub slow_endpoint_latency: Duration,

    /// The longest a drain with a dead or slow customer runs (from the gate opening) before the
    /// other customers' deliveries still missing are counted as left behind.
    #[arg(long, env = "BENCH_ENDPOINT_CAP", value_parser = parse_latency, default_value = "60s")]
    pub endpoint_cap: Duration,

    /// Concurrent keep-alive clients of the publisher benchmark.
    #[arg(long, env = "BENCH_CLIENTS", default_value_t = 64)]
    pub clients: usize,

    /// Measured time of the publisher and ceiling load runs (after a warm-up of a fifth of it).
    #[arg(long, env = "BENCH_LOAD_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub load_duration: Duration,

    /// Offered rates (events/s) of the end-to-end latency runs.
    #[arg(long, env = "BENCH_RATES", value_delimiter = ',', default_values_t = [1000_u32, 5000])]
    pub rates: Vec<u32>,

    /// Measured time of each end-to-end run (after a warm-up of a fifth of it).
    #[arg(long, env = "BENCH_E2E_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub e2e_duration: Duration,

    /// Entries in the ledger partition restored by the ledger scenario: one run set per size.
    #[arg(long, env = "BENCH_LEDGER_ENTRIES", value_delimiter = ',', default_values_t = [1_000_000_usize, 4_000_000])]
    pub ledger_entries: Vec<usize>,

    /// `--dedup-capacity` of the ledger scenario's restores: one restore per capacity up to the
    /// ledger's size (a capacity of the whole ledger reads all of it, as an unbounded set would).
    #[arg(long, env = "BENCH_LEDGER_CAPACITIES", value_delimiter = ',', default_values_t = [100_000_usize, 1_000_000, 4_000_000])]
    pub ledger_capacities: Vec<usize>,

    /// librdkafka property KEY=VALUE for every Kafka client of the run, Hookline's processes and
    /// the harness's own (repeatable; `;`-separated in the environment). The default works
    /// around tansu 0.6, which answers a waiting fetch only when `fetch.wait.max.ms` is over,
    /// not when records arrive as Apache Kafka does: with librdkafka's 500 ms every record would
    /// wait a quarter of a second on average at low rates.
    #[arg(
        long = "kafka-property",
        env = "BENCH_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        value_delimiter = ';',
        default_value = "fetch.wait.max.ms=5"
    )]
    pub kafka_properties: Vec<(String, String)>,

    /// Tokio worker threads of each Hookline process (`--worker-threads`) in the throughput
    /// scenarios (publisher, drains, head-of-line); `0` keeps their default (one per core). One
    /// thread spends less CPU per delivery where the processes share two cores (BENCHMARKS.md).
    #[arg(long, env = "BENCH_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,

    /// The same for the end-to-end latency scenario. Its default, `0`, keeps the processes'
    /// own default: a second thread shortens the latency tail at moderate load (BENCHMARKS.md).
    #[arg(long, env = "BENCH_E2E_WORKER_THREADS", default_value_t = 0)]
    pub e2e_worker_threads: usize,

    /// Tokio worker threads of the tansu broker; `0` keeps its default (one per core). The
    /// broker stands in for a Kafka cluster that runs on machines of its own; here it shares the
    /// cores with what is measured, and one thread costs it and its neighbours less CPU.
    #[arg(long, env = "BENCH_BROKER_WORKER_THREADS", default_value_t = 1)]
    pub broker_worker_threads: usize,

    /// Where `hookline-consumer` and `hookline-publisher` are; by default the directory of
    /// this binary (`target/release` under `make bench`).
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Where generated RSA keys are kept between runs (they take seconds each to make).
    #[arg(long, env = "BENCH_KEY_CACHE")]
    pub key_cache: Option<PathBuf>,

    /// The Markdown report: the results go between its `<!-- bench:results -->` markers, so the
    /// text around them is kept (the file is created when missing).
    #[arg(long, env = "BENCH_MARKDOWN", default_value = "BENCHMARKS.md")]
    pub markdown: PathBuf,

    /// The machine-readable results.
    #[arg(long, env = "BENCH_JSON", default_value = "bench/results.json")]
    pub json: PathBuf,

    /// Do not write the reports (print the table only).
    #[arg(long, env = "BENCH_NO_WRITE")]
    pub no_write: bool,

    /// A run of seconds with a tiny workload: checks that the harness works, measures nothing.
    #[arg(long, env = "BENCH_SMOKE")]
    pub smoke: bool,
}

impl Config {
    /// The settings for `args` (as on a command line, without the program name).
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(args: I) -> Self {
        Self::parse_from(std::iter::once("hookline-bench".into()).chain(args.into_iter().map(Into::into)))
    }

    /// The workload after `--smoke`.
    pub fn effective(mut self) -> Self {
        if self.smoke {
            self.runs = 1;
            self.events = self.events.min(600);
            self.endpoint_events = self.endpoint_events.min(120);
            self.endpoint_latency = self.endpoint_latency.min(Duration::from_millis(10));
            self.slow_endpoint_latency = self.slow_endpoint_latency.min(Duration::from_millis(200));
            self.endpoint_cap = self.endpoint_cap.min(Duration::from_secs(5));
            self.customers = self.customers.min(4);
            self.rsa_bits = self.rsa_bits.min(2048);
            self.clients = self.clients.min(8);
            self.load_duration = self.load_duration.min(Duration::from_secs(1));
            self.e2e_duration = self.e2e_duration.min(Duration::from_secs(1));
            self.rates = vec![200];
            self.consumers = vec![1, 2];
            self.ledger_entries = vec![20_000];
            self.ledger_capacities = vec![5_000, 20_000];
        }
        if self.scenarios.is_empty() {
            self.scenarios = vec![
                Scenario::Ceiling,
                Scenario::Publisher,
                Scenario::Drain,
                Scenario::HeadOfLine,
                Scenario::Endpoints,
                Scenario::EndToEnd,
                Scenario::Keyed,
                Scenario::CustomerApi,
                Scenario::Ledger,
            ];
        }
        self.scenarios.sort();
        self.scenarios.dedup();
        self
    }

    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The warm-up before a measured window of `measured`.
    pub fn warmup(measured: Duration) -> Duration {
        measured / 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_is_the_busy_customers_over_the_latency() {
        let latency = Duration::from_millis(50);
        let partition = OrderingMode::Partition.concurrency(6, 1);
        assert_eq!(ideal_rate(100, partition, latency), Some(120.0), "6 partitions, one in flight each");
        let key = OrderingMode::Key.concurrency(6, 1);
        assert_eq!(ideal_rate(100, key, latency), Some(2000.0), "every customer busy");
        assert_eq!(ideal_rate(1000, key, latency), Some(5120.0), "the consumer's concurrency");
        assert_eq!(OrderingMode::Key.concurrency(6, 3), 768);
        assert_eq!(ideal_rate(100, 6, Duration::ZERO), None);
    }

    #[test]
    fn endpoint_flags() {
        let config = Config::from_args(["--orderings", "partition,key", "--endpoint-latency", "20ms"]);
        assert_eq!(config.orderings, [OrderingMode::Partition, OrderingMode::Key]);
        assert_eq!(config.endpoint_latency, Duration::from_millis(20));
        assert_eq!(OrderingMode::Key.consumer_args(), ["--ordering", "key"]);
        assert!(OrderingMode::Partition.consumer_args().is_empty());
        let refused = Config::try_parse_from(["hookline-bench", "--endpoint-latency", "0s"]).unwrap_err();
        assert!(refused.to_string().contains("above zero"), "{refused}");
        let smoke = Config::from_args(["--smoke"]).effective();
        assert!(smoke.runs(Scenario::Endpoints) && smoke.endpoint_events <= 120);
        assert_eq!(Scenario::of_figure("endpoints.dead.partition.left_behind"), Some(Scenario::Endpoints));
    }
}

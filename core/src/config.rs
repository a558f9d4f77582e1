//! Settings shared by every Hookline binary.
//!
//! Each struct is a clap `Args` group with `global = true` flags, so a flag is accepted before or
//! after a subcommand, and every flag can also come from the environment.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// How to reach Kafka.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,

    /// Extra librdkafka property KEY=VALUE, passed through unchanged (SASL, SSL, timeouts...).
    /// Repeatable; in the environment, separate several with `;`.
    #[arg(
        long = "kafka-property",
        env = "KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        value_delimiter = ';',
        // May hold `sasl.password` and the like: `--help` must not print it.
        hide_env_values = true,
        global = true
    )]
    pub kafka_properties: Vec<(String, String)>,
}

/// Property values that are credentials (`sasl.password`, `ssl.key.password`, ...) show as
/// `<redacted>`, so a printed configuration does not leak them.
impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .kafka_properties
            .iter()
            .map(|(key, value)| {
                let secret = ["password", "secret", "token", "jaas", "pem"].iter().any(|word| key.contains(word));
                (key.as_str(), if secret { "<redacted>" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("KafkaArgs").field("brokers", &self.brokers).field("kafka_properties", &properties).finish()
    }
}

impl KafkaArgs {
    /// Settings for a given bootstrap address and no extra properties (tests, the demo).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), kafka_properties: Vec::new() }
    }

    /// Adds a librdkafka property (builder style, for tests and the demo).
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.kafka_properties.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A secret given as a flag or environment variable (a bearer token, say): it never shows in
/// `Debug` output, so a logged or printed configuration does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self(raw.to_owned()))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Where the Confluent Schema Registry is, if records are to use it.
///
/// Without a URL, records are written in Avro single-object encoding with the compiled-in
/// schemas (see [`crate::codec`]); with one, in the Confluent wire format with the schema id the
/// registry gave the compiled-in schema (`hookline-setup schemas register` registers it).
#[derive(Clone, Default, Args)]
pub struct SchemaRegistryArgs {
    /// Base URL of the Confluent Schema Registry, e.g. `http://registry:8081`.
    // Explicit ids: the default (the field name) would clash with subcommands' own `url`.
    #[arg(
        id = "schema_registry_url",
        long = "schema-registry-url",
        env = "SCHEMA_REGISTRY_URL",
        value_name = "URL",
        // A URL may carry credentials (`https://user:password@...`).
        hide_env_values = true,
        global = true
    )]
    pub url: Option<String>,

    /// HTTP basic credentials for the registry, `USER:PASSWORD` (e.g. a Confluent Cloud API key
    /// and secret).
    #[arg(
        id = "schema_registry_basic_auth",
        long = "schema-registry-basic-auth",
        env = "SCHEMA_REGISTRY_BASIC_AUTH",
        value_name = "USER:PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub basic_auth: Option<SecretString>,
}

/// The credentials show as `<redacted>`.
impl std::fmt::Debug for SchemaRegistryArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryArgs")
            .field("url", &self.url)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SchemaRegistryArgs {
    /// A registry at `url` without credentials (tests, the demo).
    pub fn with_url(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), basic_auth: None }
    }
}

/// Names of the topics Hookline uses.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Delivery topic: one record per (event, customer), keyed by customer id.
    #[arg(long = "topic", env = "HOOKLINE_TOPIC", default_value = "webhooks", global = true)]
    pub deliveries: String,

    /// Dead-letter topic: records whose delivery was given up, with the reason in headers.
    #[arg(long = "dlq-topic", env = "HOOKLINE_DLQ_TOPIC", default_value = "webhooks.dlq", global = true)]
    pub dlq: String,

    /// Compacted topic holding the customer directory (key = customer id).
    #[arg(
        long = "customers-topic",
        env = "HOOKLINE_CUSTOMERS_TOPIC",
        default_value = "webhooks.customers",
        global = true
    )]
    pub customers: String,

    /// Delivery ledger: one record per delivered (event, customer), co-partitioned with the
    /// delivery topic, read back by a partition's new owner so that it never sends twice.
    #[arg(
        long = "delivered-topic",
        env = "HOOKLINE_DELIVERED_TOPIC",
        default_value = "webhooks.delivered",
        global = true
    )]
    pub delivered: String,

    /// Idempotency records of `POST /publish` requests made with an `Idempotency-Key`.
    #[arg(
        long = "idempotency-topic",
        env = "HOOKLINE_IDEMPOTENCY_TOPIC",
        default_value = "webhooks.idempotency",
        global = true
    )]
    pub idempotency: String,

    /// Retry topic: the records of parked customers (`--park-after`), in order, unchanged,
    /// co-partitioned with the delivery topic.
    #[arg(long = "retry-topic", env = "HOOKLINE_RETRY_TOPIC", default_value = "webhooks.retry", global = true)]
    pub retry: String,

    /// Compacted parking state (key = customer id): which customers of each partition are parked,
    /// their oldest parked record and when it is due, co-partitioned with the delivery topic.
    #[arg(long = "parking-topic", env = "HOOKLINE_PARKING_TOPIC", default_value = "webhooks.parking", global = true)]
    pub parking: String,

    /// The delivery log: one record per delivery attempt and per parking, dead-letter or skip
    /// decision (key = customer id), kept for 7 days, read by the publisher's deliveries API.
    #[arg(
        long = "attempts-topic",
        env = "HOOKLINE_ATTEMPTS_TOPIC",
        default_value = "webhooks.attempts",
        global = true
    )]
    pub attempts: String,
}

impl Default for TopicArgs {
    fn default() -> Self {
        Self::with_prefix("webhooks")
    }
}

impl TopicArgs {
    /// Every name derived from one prefix: `P`, `P.dlq`, `P.customers`, `P.delivered`,
    /// `P.idempotency`, `P.retry`, `P.parking`, `P.attempts` (the defaults use `webhooks`; tests
    /// use a unique prefix per test).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            deliveries: prefix.to_owned(),
            dlq: format!("{prefix}.dlq"),
            customers: format!("{prefix}.customers"),
            delivered: format!("{prefix}.delivered"),
            idempotency: format!("{prefix}.idempotency"),
            retry: format!("{prefix}.retry"),
            parking: format!("{prefix}.parking"),
            attempts: format!("{prefix}.attempts"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings every binary shares.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log line format on stderr: `text` or `json` (filter with `RUST_LOG`).
    #[arg(long = "log-format", env = "HOOKLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub format: LogFormat,
}

/// The async runtime of a binary.
#[derive(Debug, Clone, Default, Args)]
pub struct RuntimeArgs {
    /// Tokio worker threads; by default one per CPU core. On a machine shared with other busy
    /// processes (the broker, other consumers), fewer threads spend less CPU on waking and
    /// stealing work: `make bench` measured 15-20% less CPU per delivery with one thread on two
    /// cores (BENCHMARKS.md). Scale out with more processes rather than more threads.
    #[arg(long, env = "HOOKLINE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

impl RuntimeArgs {
    /// The multi-threaded Tokio runtime these settings describe.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let Some(threads) = self.worker_threads {
            builder.worker_threads(usize::from(threads));
        }
        builder.build()
    }
}

/// Parses `KEY=VALUE` (the value may itself contain `=`).
pub fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

/// Parses a human duration such as `250ms`, `30s`, `5m` or `1h 30m`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("`{raw}` is not a duration like 250ms, 30s or 5m ({e})"))
}

/// A listen address, or `off` (the server is not started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        raw.parse().map(|a| Self(Some(a))).map_err(|_| format!("`{raw}` is not an address like 0.0.0.0:9464 or `off`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_do_not_show_in_debug_output() {
        let args = KafkaArgs::new("b:9092")
            .with_property("sasl.password", "hunter2")
            .with_property("ssl.key.pem", "-----BEGIN")
            .with_property("linger.ms", "5");
        let shown = format!("{args:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("BEGIN"), "{shown}");
        assert!(shown.contains("linger.ms") && shown.contains('5'), "{shown}");
        assert!(!format!("{:?}", SecretString::new("token-1")).contains("token-1"));
        let registry = SchemaRegistryArgs {
            url: Some("http://r:8081".into()),
            basic_auth: Some(SecretString::new("key:hunter2")),
        };
        let shown = format!("{registry:?}");
        assert!(!shown.contains("hunter2") && shown.contains("http://r:8081"), "{shown}");
    }

    #[test]
    fn key_value_keeps_equals_in_value() {
        assert_eq!(parse_key_value("sasl.jaas.config=a=b").unwrap(), ("sasl.jaas.config".to_owned(), "a=b".to_owned()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn common_flags_work_before_and_after_a_subcommand() {
        use clap::{Parser, Subcommand};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaArgs,
            #[command(flatten)]
            topics: TopicArgs,
            #[command(subcommand)]
            command: Cmd,
        }
        #[derive(Subcommand)]
        enum Cmd {
            Go,
        }
        let before = Cli::try_parse_from(["x", "--brokers", "b:1", "--topic", "t", "go"]).unwrap();
        let after = Cli::try_parse_from(["x", "go", "--brokers", "b:1", "--topic", "t"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.kafka.brokers, "b:1");
            assert_eq!(cli.topics.deliveries, "t");
            assert_eq!(cli.topics.dlq, "webhooks.dlq");
        }
        let props = Cli::try_parse_from(["x", "go", "--kafka-property", "a=1", "--kafka-property", "b=2"]).unwrap();
        assert_eq!(props.kafka.kafka_properties, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    }
}

//! Command-line and environment settings of `hookline-publisher`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hookline_core::config::{
    KafkaArgs, ListenAddr, LogArgs, RuntimeArgs, SchemaRegistryArgs, SecretString, TopicArgs, parse_duration,
};
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::MasterKeyArgs;

/// Default `--listen` address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4242";
/// Default `--grpc-listen` (the event broker's port in seed 000).
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:9620";
/// Default `--max-body-size`: 1 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1_048_576;
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

    /// Largest accepted request body, in bytes; larger requests get 413.
    #[arg(long, env = "HOOKLINE_MAX_BODY_SIZE", default_value_t = DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: usize,

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
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            directory_load_timeout: DEFAULT_DIRECTORY_LOAD_TIMEOUT,
            produce_timeout: DEFAULT_PRODUCE_TIMEOUT,
            admin_tokens: Vec::new(),
            producer_tokens: Vec::new(),
            signing_secret_grace: DEFAULT_SIGNING_SECRET_GRACE,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
            log: LogArgs::default(),
            runtime: RuntimeArgs::default(),
            master_key: MasterKeyArgs::default(),
            network: NetworkArgs::default(),
            event_schemas_dir: None,
            require_schemas: false,
            event_schemas_refresh: DEFAULT_EVENT_SCHEMAS_REFRESH,
        }
    }
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
        assert_eq!(parsed.max_body_size, 64);
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

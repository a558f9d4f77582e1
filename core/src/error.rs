//! Errors of the shared core.

use rdkafka::error::KafkaError;

/// What to do when no broker answers; every "cannot reach Kafka" message ends with it.
pub const BROKERS_HINT: &str = "check that the broker is running and that --brokers / KAFKA_BROKERS points at it";

/// Result alias used across `hookline-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the shared core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),

    /// No broker answered: names the bootstrap servers tried and how to point elsewhere (see
    /// [`crate::kafka::name_brokers`]).
    #[error("cannot reach Kafka at {brokers} ({source}); {hint}", hint = BROKERS_HINT)]
    // Boxed: the error is kept small (every `Result` of the core carries it).
    Unreachable { brokers: String, source: Box<KafkaError> },

    #[error("topic `{topic}` does not exist; create it with `hookline-setup topics create`")]
    MissingTopic { topic: String },

    #[error("invalid customer record for key `{key}`: {reason}")]
    InvalidCustomer { key: String, reason: String },

    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),

    #[error("the view of a state topic (the customer directory, the idempotency keys) has stopped")]
    DirectoryStopped,

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// A sealed secret did not open: wrong master key, a value sealed for another record, an
    /// altered value, or not a sealed value at all. Deliberately says nothing about the value.
    #[error("cannot decrypt {what} with this master key")]
    Unseal { what: &'static str },

    #[error("customer `{0}` already exists")]
    CustomerExists(String),

    #[error("unknown customer `{0}`")]
    UnknownCustomer(String),

    #[error("unknown inbound source `{0}`")]
    UnknownSource(String),

    /// A record value that cannot be decoded (see [`crate::codec`]). `reason` is a short,
    /// bounded label (metrics, DLQ error text).
    #[error("{detail}")]
    Undecodable { reason: &'static str, detail: String },

    /// The schema registry could not be reached or failed (network error, 502/503): worth
    /// retrying, never a verdict on the record.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),

    /// The schema registry answered with an error (`error_code` and `message` as it sent them).
    #[error("schema registry refused: {message} (error code {error_code})")]
    RegistryRefused { error_code: u32, message: String },

    #[error(
        "the schema of subject `{subject}` is not registered in the schema registry at {url}; register it with \
         `hookline-setup schemas register`"
    )]
    SchemaNotRegistered { subject: String, url: String },

    #[error("avro: {0}")]
    Avro(String),
}

impl Error {
    /// Whether the failure is temporary (the schema registry is unreachable), so the operation
    /// should be retried rather than the record given up.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RegistryUnavailable(_))
    }

    /// A short label for metrics: the reason a record could not be decoded, or `other`.
    pub fn decode_reason(&self) -> &'static str {
        match self {
            Self::Undecodable { reason, .. } => reason,
            Self::RegistryUnavailable(_) => "registry_unavailable",
            Self::RegistryRefused { .. } | Self::SchemaNotRegistered { .. } => "unknown_schema",
            _ => "other",
        }
    }
}

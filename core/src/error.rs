//! Errors of the shared core.

use rdkafka::error::KafkaError;

/// Result alias used across `hookline-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the shared core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),

    #[error("topic `{topic}` does not exist; create it with `hookline-setup topics create`")]
    MissingTopic { topic: String },

    #[error("invalid customer record for key `{key}`: {reason}")]
    InvalidCustomer { key: String, reason: String },

    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),

    #[error("the customer directory has stopped")]
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
}

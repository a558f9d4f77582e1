//! Errors of the delivery worker.

use rdkafka::error::KafkaError;

/// Result alias used across `hookline-consumer`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the consumer. Per-message failures are not errors: they become retries or
/// dead letters (see [`crate::delivery`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] hookline_core::Error),

    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),

    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),

    #[error("cannot serve metrics on {address}: {source}")]
    MetricsListen { address: std::net::SocketAddr, source: std::io::Error },

    /// Settings that cannot work together (the binary exits with code 2 before getting here).
    #[error("{0}")]
    Settings(String),

    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    #[error(
        "a record of {topic}/{partition} arrived on the consumer's main queue; its partition queue was not split \
         (this is a bug). Stopping without committing it."
    )]
    UnsplitPartition { topic: String, partition: i32 },

    #[error(
        "the delivery ledger `{topic}` has {partitions} partitions but the delivery topic `{deliveries}` has \
         {expected}; they must match (create the ledger with `hookline-setup topics create`, or run with \
         `--dedup-window off`)"
    )]
    LedgerLayout { topic: String, partitions: usize, deliveries: String, expected: usize },

    #[error(
        "`{topic}` has {partitions} partitions but the delivery topic `{deliveries}` has {expected}; with \
         --park-after the retry topic and the parking state must match it (create them with `hookline-setup \
         topics create`)"
    )]
    ParkingLayout { topic: String, partitions: usize, deliveries: String, expected: usize },

    #[error("cannot read the delivery ledger: {0}")]
    LedgerRead(String),

    /// A blocking start-up task (a metadata check) panicked or was cancelled.
    #[error("the {0} failed to run")]
    StartupTask(&'static str),
}

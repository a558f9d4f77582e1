//! This crate's error type.

use std::path::PathBuf;

/// Why a benchmark could not run or its figures cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Core(#[from] hookline_core::Error),
    #[error("consumer: {0}")]
    Consumer(#[from] hookline_consumer::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("key material: {0}")]
    Keys(#[from] hookline_wire::Error),
    #[error("cannot start {binary}: {source}; build it first (`make bench` does)")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("{what} did not happen within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    #[error("{process} exited during the benchmark ({status})")]
    Exited { process: String, status: String },
    /// The run finished but did not do what it was to measure (lost or refused requests, ...).
    #[error("invalid run: {0}")]
    Invalid(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

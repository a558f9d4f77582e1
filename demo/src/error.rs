//! Errors of the demo: what stops it before it can tell whether every delivery was accounted for.
//! (A run that ends with deliveries missing is not an error: see [`crate::Summary::is_complete`].)

use std::time::Duration;

use rdkafka::error::KafkaError;

/// Result alias used across `hookline-demo`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the in-process mock Kafka cluster: {0}")]
    MockCluster(#[source] KafkaError),

    #[error("cannot create topic `{topic}` on the mock cluster: {source}")]
    MockTopic { topic: String, source: KafkaError },

    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),

    #[error(transparent)]
    Core(#[from] hookline_core::Error),

    #[error("cannot start the receiver of `{customer}`: {source}")]
    Receiver { customer: String, source: hookline_receiver::Error },

    #[error("onboarding call {path} answered HTTP {status}: {answer}")]
    Onboarding { path: String, status: u16, answer: String },

    #[error("customer keys: {0}")]
    Keys(String),

    #[error("cannot listen for the publisher on 127.0.0.1: {0}")]
    PublisherListen(#[source] std::io::Error),

    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),

    #[error("publishing event #{index} ({event_type}) failed with HTTP {status}: {body}")]
    Publish { index: u32, event_type: String, status: u16, body: String },

    #[error("event #{index} ({event_type}) went to {actual} customers, expected {expected}")]
    FanOut { index: u32, event_type: String, expected: usize, actual: usize },

    #[error(
        "event #{index} sent again with its Idempotency-Key was not answered from the first request ({first}, then {again})"
    )]
    NotReplayed { index: u32, first: String, again: String },

    #[error("the consumer group did not take all {partitions} partitions within {waited:?}")]
    GroupNotReady { partitions: i32, waited: Duration },

    #[error("interrupted before the workload was published")]
    Interrupted,

    #[error("{component} stopped: {reason}")]
    Component { component: String, reason: String },
}

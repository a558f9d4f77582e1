//! Keeping every Kafka interaction of a command within `--timeout`.
//!
//! The `hookline_core` helpers wait up to 30 s for the broker. An operator who mistyped
//! `--brokers` should learn so faster, so every command first asks the broker for metadata with
//! the operator's timeout ([`check_reachable`]) and only then calls into the core, which then
//! answers quickly. [`bounded`] is the backstop should the broker stall after that.

use std::future::Future;
use std::time::Duration;

use hookline_core::config::KafkaArgs;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{Error, Result};

/// Extra time given to the blocking probe over its own librdkafka timeout before giving up on it.
const PROBE_SLACK: Duration = Duration::from_secs(2);

/// Fails with [`Error::Unreachable`] unless a broker answers a metadata request within `timeout`.
pub async fn check_reachable(kafka: &KafkaArgs, timeout: Duration) -> Result<()> {
    let args = kafka.clone();
    let probe = tokio::task::spawn_blocking(move || -> Result<()> {
        let reader: BaseConsumer = hookline_core::kafka::reader(&args, "hookline-setup")?;
        let answered = reader.fetch_metadata(None, timeout);
        // Destroying the client is blocking too, so it belongs on this thread.
        drop(reader);
        answered.map(|_| ()).map_err(|source| Error::Unreachable { brokers: args.brokers.clone(), timeout, source })
    });
    match tokio::time::timeout(timeout + PROBE_SLACK, probe).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panicked_or_cancelled)) => Err(Error::Timeout(timeout, "the broker to answer")),
        Err(_elapsed) => Err(Error::Timeout(timeout, "the broker to answer")),
    }
}

/// Runs a core operation, giving up with [`Error::Timeout`] after `timeout`.
pub async fn bounded<T>(
    timeout: Duration,
    what: &'static str,
    operation: impl Future<Output = hookline_core::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(Error::Timeout(timeout, what)),
    }
}

/// Settings for writing to the customers topic: a record not acknowledged within `timeout` fails
/// (the core producer's default is 30 s), unless the operator set `message.timeout.ms` already.
pub fn for_writes(kafka: &KafkaArgs, timeout: Duration) -> KafkaArgs {
    if kafka.kafka_properties.iter().any(|(key, _)| key == "message.timeout.ms") {
        return kafka.clone();
    }
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    kafka.clone().with_property("message.timeout.ms", &millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_timeout_follows_the_flag_unless_overridden() {
        let args = for_writes(&KafkaArgs::new("b:1"), Duration::from_secs(15));
        assert_eq!(args.kafka_properties, vec![("message.timeout.ms".into(), "15000".into())]);
        let operator = KafkaArgs::new("b:1").with_property("message.timeout.ms", "1000");
        assert_eq!(for_writes(&operator, Duration::from_secs(15)).kafka_properties.len(), 1);
    }
}

//! Keeping every Kafka interaction of a command within `--timeout`.
//!
//! The `hookline_core` helpers wait up to 30 s for the broker. An operator who mistyped
//! `--brokers` should learn so faster, so every command first asks the broker for metadata with
//! the operator's timeout ([`check_reachable`]) and only then calls into the core, which then
//! answers quickly. [`bounded`] is the backstop should the broker stall after that.
//!
//! A broker that is not running refuses the connection at once, and librdkafka says so (its
//! error callback reports each failed connection, then "all brokers are down"): the probe then
//! fails at once instead of waiting out `--timeout`, which is kept for a broker that accepts the
//! connection and never answers (an overloaded broker, a firewall that drops packets).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hookline_core::config::KafkaArgs;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, NoCustomPartitioner, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// Extra time given to the blocking probe over its own librdkafka timeout before giving up on it.
const PROBE_SLACK: Duration = Duration::from_secs(2);

/// How often the probe looks at what librdkafka reported while it waits for metadata.
const PROBE_SLICE: Duration = Duration::from_millis(100);
/// How long the probe serves librdkafka's events after each slice.
const EVENTS_DRAIN: Duration = Duration::from_millis(5);

/// Fails with [`Error::Unreachable`] unless a broker answers a metadata request within `timeout`;
/// at once when every broker refused (or dropped) the connection.
pub async fn check_reachable(kafka: &KafkaArgs, timeout: Duration) -> Result<()> {
    let args = kafka.clone();
    let probe = tokio::task::spawn_blocking(move || probe(&args, timeout));
    match tokio::time::timeout(timeout + PROBE_SLACK, probe).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panicked_or_cancelled)) => Err(Error::Timeout(timeout, "the broker to answer")),
        Err(_elapsed) => Err(Error::Timeout(timeout, "the broker to answer")),
    }
}

/// The blocking probe: metadata requests of [`PROBE_SLICE`] each until one is answered, every
/// broker is down, or `timeout` passed.
fn probe(kafka: &KafkaArgs, timeout: Duration) -> Result<()> {
    let client: BaseProducer<Reports> = hookline_core::kafka::admin_config(kafka, "hookline-setup")
        .create_with_context(Reports::default())
        .map_err(hookline_core::Error::from)?;
    let unreachable = |reason| Error::Unreachable { brokers: kafka.brokers.clone(), reason };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        let slice = PROBE_SLICE.min(deadline.saturating_duration_since(Instant::now()));
        let error = match client.client().fetch_metadata(None, slice) {
            Ok(_) => break Ok(()),
            Err(error) => error,
        };
        // Serves librdkafka's queued error events to `Reports` (a poll serves events until its
        // timeout; with none, at most one).
        client.poll(EVENTS_DRAIN);
        if let Some(reason) = client.context().all_down() {
            break Err(unreachable(reason));
        }
        if Instant::now() >= deadline {
            break Err(unreachable(format!("no answer within {timeout:?} ({error})")));
        }
    };
    // Destroying the client is blocking too, so it belongs on this thread.
    drop(client);
    outcome
}

/// What librdkafka's error callback reported: the last failed connection, and whether every
/// broker was down after it.
#[derive(Debug, Default)]
struct Reports {
    state: Mutex<Seen>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    /// librdkafka's words for the last connection that failed.
    last_failure: Option<String>,
    all_down: bool,
}

impl Seen {
    /// Takes in one error report. A pure function of the reports, so it is tested without a broker.
    fn report(&mut self, error: &KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => self.all_down = true,
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve) => {
                self.last_failure = Some(reason.to_owned());
            }
            _ => {}
        }
    }

    /// Why the probe gives up early: every broker is down.
    fn all_down(&self) -> Option<String> {
        self.all_down.then(|| match &self.last_failure {
            Some(failure) => format!("every broker refused or dropped the connection ({failure})"),
            None => "every broker refused or dropped the connection".to_owned(),
        })
    }
}

impl Reports {
    fn all_down(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).all_down()
    }
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        // The command's own message says what went wrong; librdkafka's words are for debugging.
        tracing::debug!(%error, reason, "librdkafka reported an error");
        self.state.lock().unwrap_or_else(PoisonError::into_inner).report(&error, reason);
    }
}

impl ProducerContext<NoCustomPartitioner> for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, (): ()) {}
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
    fn every_broker_down_ends_the_wait_with_the_last_failure() {
        let refused = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        let mut seen = Seen::default();
        seen.report(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), refused);
        assert_eq!(seen.all_down(), None, "one failed connection: librdkafka tries the other brokers");
        seen.report(&KafkaError::Global(RDKafkaErrorCode::RequestTimedOut), "slow");
        assert_eq!(seen.all_down(), None);
        seen.report(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        let reason = seen.all_down().expect("all down");
        assert!(reason.contains("refused") && reason.contains(refused), "{reason}");
    }

    #[test]
    fn write_timeout_follows_the_flag_unless_overridden() {
        let args = for_writes(&KafkaArgs::new("b:1"), Duration::from_secs(15));
        assert_eq!(args.kafka_properties, vec![("message.timeout.ms".into(), "15000".into())]);
        let operator = KafkaArgs::new("b:1").with_property("message.timeout.ms", "1000");
        assert_eq!(for_writes(&operator, Duration::from_secs(15)).kafka_properties.len(), 1);
    }
}

//! The delivery log as the consumer writes it: every attempt, and every decision taken without
//! one (a parking, a dead letter, a skip), becomes a `hookline_core::attempts` record on the
//! attempts topic.
//!
//! The log must never slow delivery: [`AttemptLog::record`] encodes the record and hands it to
//! librdkafka's queue without waiting (a threaded producer that lingers, so records travel in
//! batches); when that queue is full the record is dropped and counted, never waited for. The
//! queue is bounded explicitly ([`MAX_QUEUED_RECORDS`], [`MAX_QUEUED_KBYTES`]) so that the log's
//! memory does not depend on the broker's defaults. The broker's verdict on each record is
//! counted by the producer's delivery callback (`hookline_attempt_log_records_total{outcome}`:
//! `written`, `failed`, `dropped`). At most once: a record lost to a full queue or a broker
//! failure is not written again (the log tells what happened; the delivery itself is guarded by
//! the commit rule and the ledger, not by the log).

use std::time::Duration;

use hookline_core::attempts::AttemptRecord;
use hookline_core::config::KafkaArgs;
use hookline_core::kafka;
use prometheus::IntCounterVec;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::Result;

/// Most records waiting in librdkafka's queue for the broker.
pub const MAX_QUEUED_RECORDS: u32 = 100_000;
/// Most kilobytes of records waiting in librdkafka's queue (32 MiB).
pub const MAX_QUEUED_KBYTES: u32 = 32 * 1024;
/// How long records wait to fill a batch: the log is read by people, so a few tens of
/// milliseconds cost nothing, and batching keeps the log's broker round trips few.
const LINGER_MS: &str = "50";

/// Counts the broker's verdicts on log records.
struct Counted {
    records: IntCounterVec,
}

impl ClientContext for Counted {}

impl ProducerContext for Counted {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => self.records.with_label_values(&["written"]).inc(),
            Err((error, _)) => {
                self.records.with_label_values(&["failed"]).inc();
                tracing::debug!(%error, "delivery log record not written");
            }
        }
    }
}

/// Writes the delivery log, or nothing when the log is off.
pub struct AttemptLog {
    writer: Option<Writer>,
    records: IntCounterVec,
}

struct Writer {
    producer: ThreadedProducer<Counted>,
    topic: String,
}

impl std::fmt::Debug for AttemptLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptLog").field("topic", &self.writer.as_ref().map(|w| &w.topic)).finish_non_exhaustive()
    }
}

impl AttemptLog {
    /// A log that records nothing (`--delivery-log off`).
    pub fn off(records: IntCounterVec) -> Self {
        Self { writer: None, records }
    }

    /// A log written to `topic` through its own producer, so that a flood of log records can
    /// never fill the queue the ledger and the dead letters go through.
    pub fn start(kafka_args: &KafkaArgs, client_id: &str, topic: &str, records: IntCounterVec) -> Result<Self> {
        let mut config = kafka::producer_config(kafka_args, &format!("{client_id}-log"));
        let defaults = [
            ("linger.ms", LINGER_MS.to_owned()),
            ("queue.buffering.max.messages", MAX_QUEUED_RECORDS.to_string()),
            ("queue.buffering.max.kbytes", MAX_QUEUED_KBYTES.to_string()),
        ];
        // An operator's `--kafka-property` wins, as everywhere else.
        for (key, value) in defaults {
            if !kafka_args.kafka_properties.iter().any(|(set, _)| set == key) {
                config.set(key, value);
            }
        }
        let producer = config.create_with_context(Counted { records: records.clone() })?;
        Ok(Self { writer: Some(Writer { producer, topic: topic.to_owned() }), records })
    }

    /// Hands `record` to the producer without waiting; drops it (counted) when the queue is full.
    pub fn record(&self, record: &AttemptRecord) {
        let Some(writer) = &self.writer else { return };
        let value = record.to_value();
        let base = BaseRecord::to(&writer.topic).key(record.customer_id.as_bytes()).payload(&value);
        if let Err((error, _)) = writer.producer.send(base) {
            self.records.with_label_values(&["dropped"]).inc();
            if matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                tracing::debug!("delivery log record dropped: the log's queue is full");
            } else {
                tracing::warn!(%error, "delivery log record dropped");
            }
        }
    }

    /// Waits up to `timeout` for the records queued to be written (blocking: call it off the
    /// runtime, at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Some(writer) = &self.writer
            && let Err(error) = writer.producer.flush(timeout)
        {
            tracing::warn!(%error, "delivery log records still queued at shutdown are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use hookline_core::attempts::AttemptOutcome;
    use prometheus::Opts;

    use super::*;

    fn entry(n: u32) -> AttemptRecord {
        AttemptRecord {
            event_id: format!("evt_{n}"),
            customer_id: "acme".into(),
            event_type: "t".into(),
            attempt: n,
            at_ms: 0,
            duration_ms: None,
            status: None,
            error_class: None,
            error: None,
            response: None,
            outcome: AttemptOutcome::Failed,
            reason: None,
            topic: "webhooks".into(),
            partition: 0,
            offset: 0,
        }
    }

    fn counters() -> IntCounterVec {
        IntCounterVec::new(Opts::new("records", "help"), &["outcome"]).unwrap()
    }

    #[tokio::test]
    async fn a_full_queue_drops_records_instead_of_waiting() {
        // No broker answers: records stay queued, and the queue holds two.
        let kafka = KafkaArgs::new("127.0.0.1:1").with_property("queue.buffering.max.messages", "2");
        let records = counters();
        let log = AttemptLog::start(&kafka, "test", "webhooks.attempts", records.clone()).unwrap();
        for n in 0..5 {
            log.record(&entry(n));
        }
        assert_eq!(records.with_label_values(&["dropped"]).get(), 3);
    }

    #[test]
    fn a_log_that_is_off_records_nothing() {
        let records = counters();
        let log = AttemptLog::off(records.clone());
        log.record(&entry(1));
        log.flush(Duration::from_millis(1));
        assert!(log.writer.is_none());
        for outcome in ["written", "failed", "dropped"] {
            assert_eq!(records.with_label_values(&[outcome]).get(), 0);
        }
    }
}

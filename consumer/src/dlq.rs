//! Writing a record to the dead-letter topic.
//!
//! The DLQ record is the original record unchanged (key, value, headers) plus headers saying why,
//! how many attempts were made, the last HTTP status or error (clipped to
//! [`hookline_core::limits::DLQ_ERROR_MAX`]), and where the record came from: the contract of
//! [`hookline_core::deadletter`], which builds them. The original's offset may be
//! committed only once this write is acknowledged, so a write that fails for a passing reason
//! (broker away, timeout) is retried with backoff until it succeeds or the partition's work is
//! cancelled (revoked, shutdown): a record is never dropped because the DLQ was briefly
//! unavailable.
//!
//! A write refused for good ([`kafka::is_permanent`]: the record is too large for the DLQ producer's
//! `message.max.bytes` or the DLQ topic, or the broker calls it invalid) would be refused on
//! every retry and hold the partition forever. It is written again at once *without the body*:
//! no value, only the original key (a customer id), event id, type and `traceparent`, the usual
//! DLQ headers (coordinates included) and [`deadletter::headers::DLQ_BODY_DROPPED`] saying why; counted in
//! `hookline_dlq_bodies_dropped_total` and logged at `error`. The original stays readable at its
//! coordinates on the delivery topic until that topic's retention removes it. If even that small
//! letter is refused for good (a DLQ producer or topic limit of a few kilobytes, a compacted DLQ
//! topic refusing a record without a key), nothing more can be written: the record is committed
//! without a dead letter, counted in `hookline_dlq_unwritable_total` and
//! `hookline_deliveries_total{outcome="skipped"}`, and logged at `error` with its coordinates, so
//! the partition moves on instead of stopping for every customer on it.

use std::time::{Duration, SystemTime};

use hookline_core::deadletter::{self, DeadLetter};
use hookline_core::kafka::{self, Backoff};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::metrics::Metrics;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF: Backoff = Backoff { first: Duration::from_millis(500), max: Duration::from_secs(30) };

/// Where a dead letter ended up. Every outcome lets the record's offset be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The whole record is in the DLQ.
    Whole,
    /// The DLQ holds the record's coordinates, key, event id and type, but not its value: the
    /// whole record was refused for good.
    BodyDropped,
    /// The DLQ refused even the body-less letter for good: the record is in no DLQ (said loudly).
    Nowhere,
}

/// Produces dead letters with an idempotent, `acks=all` producer.
#[derive(Clone)]
pub struct DlqWriter {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
}

impl std::fmt::Debug for DlqWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqWriter").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// One record to write to the DLQ.
struct Letter<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: OwnedHeaders,
}

impl DlqWriter {
    pub fn new(producer: FutureProducer, topic: String, metrics: Metrics) -> Self {
        Self { producer, topic, metrics }
    }

    /// The producer, to flush it on shutdown.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Writes `original` to the DLQ and returns once the broker acknowledged it (or, refused for
    /// good, its body-less form, or that too was refused for good: see the module docs), retrying
    /// passing failures with backoff. Cancel by dropping the future.
    pub async fn write(&self, original: &OwnedMessage, letter: &DeadLetter) -> Written {
        let whole = Letter {
            key: original.key(),
            value: original.payload(),
            headers: deadletter::letter_headers(original, letter, SystemTime::now()),
        };
        let refused = match self.produce(original, &whole).await {
            Ok(at) => {
                self.written(original, letter, at, "record dead-lettered");
                return Written::Whole;
            }
            Err(error) => error,
        };
        let why = format!(
            "the DLQ refused the dead letter with the record's {} value bytes for good ({refused}); written \
             without them",
            original.payload().map_or(0, <[u8]>::len)
        );
        tracing::error!(
            topic = original.topic(),
            partition = original.partition(),
            offset = original.offset(),
            error = %refused,
            "dead letter refused for good; writing it without the body"
        );
        let bodiless = Letter {
            key: deadletter::bodiless_key(original.key()),
            value: None,
            headers: deadletter::bodiless_headers(original, letter, SystemTime::now(), &why),
        };
        match self.produce(original, &bodiless).await {
            Ok(at) => {
                self.metrics.dlq_bodies_dropped.inc();
                self.written(original, letter, at, "record dead-lettered WITHOUT its body (too large for the DLQ)");
                Written::BodyDropped
            }
            Err(error) => {
                self.metrics.dlq_unwritable.inc();
                tracing::error!(
                    topic = original.topic(),
                    partition = original.partition(),
                    offset = original.offset(),
                    reason = letter.reason.as_str(),
                    %error,
                    "the DLQ refused even the body-less dead letter for good: the record is committed WITHOUT a \
                     dead letter; it stays at these coordinates on the delivery topic until its retention ends"
                );
                Written::Nowhere
            }
        }
    }

    fn written(
        &self,
        original: &OwnedMessage,
        letter: &DeadLetter,
        (dlq_partition, dlq_offset): (i32, i64),
        what: &str,
    ) {
        self.metrics.dlq_records.with_label_values(&[letter.reason.as_str()]).inc();
        tracing::info!(
            topic = original.topic(),
            partition = original.partition(),
            offset = original.offset(),
            reason = letter.reason.as_str(),
            attempts = letter.attempts,
            dlq_partition,
            dlq_offset,
            "{what}"
        );
    }

    /// Produces `letter`, retrying passing failures with backoff; returns where it was written,
    /// or the error that refused it for good.
    async fn produce(&self, original: &OwnedMessage, letter: &Letter<'_>) -> Result<(i32, i64), KafkaError> {
        let (producer, topic) = (&self.producer, &self.topic);
        let send = || async move {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(letter.headers.clone());
            if let Some(key) = letter.key {
                record = record.key(key);
            }
            if let Some(value) = letter.value {
                record = record.payload(value);
            }
            producer.send(record, PRODUCE_TIMEOUT).await.map(|d| (d.partition, d.offset)).map_err(|(error, _)| error)
        };
        kafka::produce_until_acknowledged(send, BACKOFF, kafka::is_permanent, |error, retry_in| {
            self.metrics.dlq_write_errors.inc();
            if let Some(retry_in) = retry_in {
                tracing::warn!(
                    topic = original.topic(),
                    partition = original.partition(),
                    offset = original.offset(),
                    %error,
                    ?retry_in,
                    "DLQ write failed; retrying (the record's offset is not committed)"
                );
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use hookline_core::deadletter::DlqReason;
    use hookline_core::limits;
    use rdkafka::Timestamp;

    use super::*;

    /// librdkafka refuses a record above `message.max.bytes` before it reaches any broker, so
    /// this needs none: the whole letter and then the body-less one (a long error and reason)
    /// are refused for good, and the write ends, counted, instead of retrying forever.
    #[tokio::test]
    async fn a_letter_refused_for_good_even_without_its_body_ends_and_is_counted() {
        let metrics = Metrics::new().unwrap();
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.max.bytes", "1000")
            .create()
            .unwrap();
        let writer = DlqWriter::new(producer, "dlq".into(), metrics.clone());
        let message = OwnedMessage::new(
            Some(vec![b'x'; 5000]),
            Some(b"customer-1".to_vec()),
            "webhooks".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(OwnedHeaders::new()),
        );
        let letter = DeadLetter {
            reason: DlqReason::MaxAttempts,
            error: "e".repeat(2 * limits::DLQ_ERROR_MAX),
            attempts: 8,
            last_status: Some(500),
        };
        assert_eq!(writer.write(&message, &letter).await, Written::Nowhere);
        assert_eq!(metrics.dlq_write_errors.get(), 2);
        assert_eq!(metrics.dlq_unwritable.get(), 1);
        assert_eq!(metrics.dlq_bodies_dropped.get(), 0);
        assert_eq!(metrics.dlq_records.with_label_values(&["max_attempts"]).get(), 0);
    }
}

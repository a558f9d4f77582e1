//! Writing a record to the dead-letter topic.
//!
//! The DLQ record is the original record unchanged (key, value, headers) plus headers saying why,
//! how many attempts were made, the last HTTP status or error (clipped to
//! [`limits::DLQ_ERROR_MAX`]), and where the record came from. The original's offset may be
//! committed only once this write is acknowledged, so a write that fails for a passing reason
//! (broker away, timeout) is retried with backoff until it succeeds or the partition's work is
//! cancelled (revoked, shutdown): a record is never dropped because the DLQ was briefly
//! unavailable.
//!
//! A write refused for good ([`is_permanent`]: the record is too large for the DLQ producer's
//! `message.max.bytes` or the DLQ topic, or the broker calls it invalid) would be refused on
//! every retry and hold the partition forever. It is written again at once *without the body*:
//! no value, only the original key (a customer id), event id, type and `traceparent`, the usual
//! DLQ headers (coordinates included) and [`headers::DLQ_BODY_DROPPED`] saying why; counted in
//! `hookline_dlq_bodies_dropped_total` and logged at `error`. The original stays readable at its
//! coordinates on the delivery topic until that topic's retention removes it. If even that small
//! letter is refused for good (a DLQ producer or topic limit of a few kilobytes, a compacted DLQ
//! topic refusing a record without a key), nothing more can be written: the record is committed
//! without a dead letter, counted in `hookline_dlq_unwritable_total` and
//! `hookline_deliveries_total{outcome="skipped"}`, and logged at `error` with its coordinates, so
//! the partition moves on instead of stopping for every customer on it.

use std::time::{Duration, SystemTime};

use hookline_core::customer::MAX_ID_LEN;
use hookline_core::envelope::headers;
use hookline_core::limits;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics::Metrics;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The original headers a body-less dead letter keeps (when not longer than
/// [`limits::KEPT_HEADER_MAX`]): enough to find, list and trace the event.
const KEPT_ON_BODILESS: [&str; 3] = [headers::EVENT_ID, headers::EVENT_TYPE, headers::TRACEPARENT];

/// Why a record was dead-lettered; the value of the `hookline-dlq-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqReason {
    /// Every attempt failed.
    MaxAttempts,
    /// The record's key or value cannot be decoded (poison record).
    Undecodable,
    /// The customer the record is keyed by does not exist (any more).
    UnknownCustomer,
    /// The customer has no webhook URL configured.
    NoWebhookUrl,
    /// The webhook URL resolves to an address the SSRF guard forbids (checked at every attempt).
    BlockedDestination,
    /// The delivery cannot be signed: no active signing secret, or the master key does not open
    /// it (an operator misconfiguration; replay once fixed). Nothing is ever sent unsigned.
    SigningFailed,
    /// The customer's stored public key cannot be used. Nothing is ever sent unencrypted to a
    /// customer that asked for encryption.
    EncryptionFailed,
}

impl DlqReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::Undecodable => "undecodable",
            Self::UnknownCustomer => "unknown_customer",
            Self::NoWebhookUrl => "no_webhook_url",
            Self::BlockedDestination => "blocked_destination",
            Self::SigningFailed => "signing_failed",
            Self::EncryptionFailed => "encryption_failed",
        }
    }
}

/// What the DLQ headers say about a record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DlqReason,
    pub error: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
}

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

/// Whether a failed produce would fail again with the same record, whatever the wait: it is too
/// large for the producer or the topic, or the broker rejects it as invalid. Anything else
/// (timeouts, broker or leader unavailable, authorization, a missing topic an operator can
/// create) may pass and is retried.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
        )
    )
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
        let whole = Letter { key: original.key(), value: original.payload(), headers: dlq_headers(original, letter) };
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
            // A key longer than any customer id is no customer id, and may be the problem.
            key: original.key().filter(|key| key.len() <= MAX_ID_LEN),
            value: None,
            headers: bodiless_headers(original, letter, &why),
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
        let mut delay = RETRY_MIN;
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(letter.headers.clone());
            if let Some(key) = letter.key {
                record = record.key(key);
            }
            if let Some(value) = letter.value {
                record = record.payload(value);
            }
            let error = match self.producer.send(record, PRODUCE_TIMEOUT).await {
                Ok(delivery) => return Ok((delivery.partition, delivery.offset)),
                Err((error, _)) => error,
            };
            self.metrics.dlq_write_errors.inc();
            if is_permanent(&error) {
                return Err(error);
            }
            tracing::warn!(
                topic = original.topic(),
                partition = original.partition(),
                offset = original.offset(),
                %error,
                retry_in = ?delay,
                "DLQ write failed; retrying (the record's offset is not committed)"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// The original headers (minus DLQ headers from an earlier dead-lettering) plus this one's.
fn dlq_headers(original: &OwnedMessage, letter: &DeadLetter) -> OwnedHeaders {
    let kept =
        original.headers().into_iter().flat_map(|existing| existing.iter()).filter(|header| {
            !(header.key.starts_with("hookline-dlq-") || header.key.starts_with("hookline-original-"))
        });
    let out = kept.fold(OwnedHeaders::new(), |out, header| out.insert(Header { key: header.key, value: header.value }));
    with_letter_headers(out, original, letter)
}

/// The headers of a dead letter written without the body: the original's event id, type and
/// `traceparent` (when of a sane length; anything else may be what made it too large), this
/// letter's, and [`headers::DLQ_BODY_DROPPED`] saying `why`.
fn bodiless_headers(original: &OwnedMessage, letter: &DeadLetter, why: &str) -> OwnedHeaders {
    let kept = original.headers().into_iter().flat_map(|existing| existing.iter()).filter(|header| {
        KEPT_ON_BODILESS.contains(&header.key) && header.value.is_some_and(|v| v.len() <= limits::KEPT_HEADER_MAX)
    });
    let out = kept.fold(OwnedHeaders::new(), |out, header| out.insert(Header { key: header.key, value: header.value }));
    with_letter_headers(out, original, letter)
        .insert(Header { key: headers::DLQ_BODY_DROPPED, value: Some(limits::clip(why, limits::DLQ_ERROR_MAX)) })
}

/// `out` with the DLQ headers of `letter` about `original` added.
fn with_letter_headers(out: OwnedHeaders, original: &OwnedMessage, letter: &DeadLetter) -> OwnedHeaders {
    let attempts = letter.attempts.to_string();
    let partition = original.partition().to_string();
    let offset = original.offset().to_string();
    let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut added: Vec<(&str, &str)> = vec![
        (headers::DLQ_REASON, letter.reason.as_str()),
        (headers::DLQ_ERROR, limits::clip(&letter.error, limits::DLQ_ERROR_MAX)),
        (headers::DLQ_ATTEMPTS, &attempts),
        (headers::DLQ_AT, &at),
        (headers::ORIGINAL_TOPIC, original.topic()),
        (headers::ORIGINAL_PARTITION, &partition),
        (headers::ORIGINAL_OFFSET, &offset),
    ];
    let status = letter.last_status.map(|s| s.to_string());
    if let Some(status) = status.as_deref() {
        added.push((headers::DLQ_LAST_STATUS, status));
    }
    added.into_iter().fold(out, |out, (key, value)| out.insert(Header { key, value: Some(value) }))
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn header_map(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect()
    }

    #[test]
    fn keeps_original_headers_and_replaces_earlier_dlq_headers() {
        let original_headers = OwnedHeaders::new()
            .insert(Header { key: headers::EVENT_ID, value: Some("evt_1") })
            .insert(Header { key: headers::DLQ_REASON, value: Some("stale") });
        let original = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"customer-1".to_vec()),
            "webhooks".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(original_headers),
        );
        let letter = DeadLetter {
            reason: DlqReason::MaxAttempts,
            error: "HTTP 503".into(),
            attempts: 5,
            last_status: Some(503),
        };
        let found = header_map(&dlq_headers(&original, &letter));
        let get = |k: &str| found.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get(headers::EVENT_ID), ["evt_1"]);
        assert_eq!(get(headers::DLQ_REASON), ["max_attempts"]);
        assert_eq!(get(headers::DLQ_ATTEMPTS), ["5"]);
        assert_eq!(get(headers::DLQ_LAST_STATUS), ["503"]);
        assert_eq!(get(headers::DLQ_ERROR), ["HTTP 503"]);
        assert_eq!(get(headers::ORIGINAL_TOPIC), ["webhooks"]);
        assert_eq!(get(headers::ORIGINAL_PARTITION), ["3"]);
        assert_eq!(get(headers::ORIGINAL_OFFSET), ["42"]);
        assert_eq!(get(headers::DLQ_AT).len(), 1);
    }

    fn original(value: Option<Vec<u8>>, key: &[u8], record_headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            value,
            Some(key.to_vec()),
            "webhooks".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(record_headers),
        )
    }

    #[test]
    fn the_error_text_is_clipped() {
        let letter = DeadLetter {
            reason: DlqReason::MaxAttempts,
            error: "é".repeat(limits::DLQ_ERROR_MAX),
            attempts: 8,
            last_status: Some(500),
        };
        let found = header_map(&dlq_headers(&original(None, b"c", OwnedHeaders::new()), &letter));
        let error = &found.iter().find(|(k, _)| k == headers::DLQ_ERROR).unwrap().1;
        assert_eq!(error.len(), limits::DLQ_ERROR_MAX);
    }

    /// The publisher's limit holds: its largest record, with every header it writes at its
    /// longest, still fits `message.max.bytes` once dead-lettered with the longest error.
    #[test]
    fn the_largest_publishable_record_fits_once_dead_lettered() {
        let message_max_bytes = limits::DEFAULT_MESSAGE_MAX_BYTES;
        let value_len = limits::max_record_value(message_max_bytes).unwrap();
        let event_id = hookline_core::envelope::new_event_id();
        let event_type = "t".repeat(hookline_core::customer::MAX_EVENT_TYPE_LEN);
        let traceparent = "0".repeat(55);
        let tracestate = "v".repeat(limits::TRACE_HEADER_MAX);
        let replayed_from = format!("{}/2147483647/{}", "d".repeat(249), i64::MAX);
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: headers::EVENT_ID, value: Some(event_id.as_str()) })
            .insert(Header { key: headers::EVENT_TYPE, value: Some(event_type.as_str()) })
            .insert(Header { key: headers::TRACEPARENT, value: Some(traceparent.as_str()) })
            .insert(Header { key: headers::TRACESTATE, value: Some(tracestate.as_str()) })
            .insert(Header { key: headers::REPLAYED_AT, value: Some("2026-11-23T18:00:00.000Z") })
            .insert(Header { key: headers::REPLAYED_FROM, value: Some(replayed_from.as_str()) });
        // The longest key and topic name, the largest coordinates.
        let message = OwnedMessage::new(
            Some(vec![b'x'; value_len]),
            Some(vec![b'k'; MAX_ID_LEN]),
            "w".repeat(249),
            Timestamp::NotAvailable,
            i32::MAX,
            i64::MAX,
            Some(record_headers),
        );
        let letter = DeadLetter {
            reason: DlqReason::BlockedDestination,
            error: "e".repeat(10 * limits::DLQ_ERROR_MAX),
            attempts: u32::MAX,
            last_status: Some(599),
        };
        let dead = dlq_headers(&message, &letter);
        let size =
            limits::record_size(MAX_ID_LEN, value_len, dead.iter().map(|h| (h.key, h.value.map_or(0, <[u8]>::len))));
        assert!(size <= message_max_bytes, "{size} > {message_max_bytes}");
    }

    #[test]
    fn a_bodiless_letter_keeps_the_coordinates_and_the_event_only() {
        let huge = "x".repeat(10_000);
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: headers::EVENT_ID, value: Some("evt_1") })
            .insert(Header { key: headers::EVENT_TYPE, value: Some("order.created") })
            .insert(Header { key: headers::TRACEPARENT, value: Some(huge.as_str()) })
            .insert(Header { key: "x-custom", value: Some(huge.as_str()) });
        let message = original(Some(huge.clone().into_bytes()), b"customer-1", record_headers);
        let letter =
            DeadLetter { reason: DlqReason::UnknownCustomer, error: "gone".into(), attempts: 0, last_status: None };
        let found = header_map(&bodiless_headers(&message, &letter, &huge));
        let get = |k: &str| found.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get(headers::EVENT_ID), ["evt_1"]);
        assert_eq!(get(headers::EVENT_TYPE), ["order.created"]);
        assert!(get(headers::TRACEPARENT).is_empty(), "an oversized original header is left out");
        assert!(get("x-custom").is_empty());
        assert_eq!(get(headers::DLQ_REASON), ["unknown_customer"]);
        assert_eq!(get(headers::ORIGINAL_TOPIC), ["webhooks"]);
        assert_eq!(get(headers::ORIGINAL_PARTITION), ["3"]);
        assert_eq!(get(headers::ORIGINAL_OFFSET), ["42"]);
        assert_eq!(get(headers::DLQ_BODY_DROPPED), [&huge[..limits::DLQ_ERROR_MAX]]);
    }

    #[test]
    fn only_errors_about_the_record_itself_are_permanent() {
        use RDKafkaErrorCode as Code;
        for code in
            [Code::MessageSizeTooLarge, Code::InvalidMessageSize, Code::MessageBatchTooLarge, Code::InvalidRecord]
        {
            assert!(is_permanent(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        for code in [
            Code::MessageTimedOut,
            Code::QueueFull,
            Code::BrokerTransportFailure,
            Code::NotLeaderForPartition,
            Code::UnknownTopicOrPartition,
            Code::TopicAuthorizationFailed,
            Code::RequestTimedOut,
        ] {
            assert!(!is_permanent(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(!is_permanent(&KafkaError::Canceled));
    }

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
        let message = original(Some(vec![b'x'; 5000]), b"customer-1", OwnedHeaders::new());
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

    #[test]
    fn no_status_header_without_a_response() {
        let original = OwnedMessage::new(None, None, "webhooks".into(), Timestamp::NotAvailable, 0, 0, None);
        let letter = DeadLetter { reason: DlqReason::Undecodable, error: "bad".into(), attempts: 0, last_status: None };
        let found = header_map(&dlq_headers(&original, &letter));
        assert!(found.iter().all(|(k, _)| k != headers::DLQ_LAST_STATUS));
    }
}

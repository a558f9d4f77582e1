//! Writing a record to the dead-letter topic.
//!
//! The DLQ record is the original record unchanged (key, value, headers) plus headers saying why,
//! how many attempts were made, the last HTTP status or error, and where the record came from.
//! The original's offset may be committed only once this write is acknowledged, so a failing
//! write is retried until it succeeds or the partition's work is cancelled (revoked, shutdown):
//! a record is never dropped because the DLQ was briefly unavailable.

use std::time::{Duration, SystemTime};

use hookline_core::envelope::headers;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::metrics::Metrics;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

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

impl DlqWriter {
    pub fn new(producer: FutureProducer, topic: String, metrics: Metrics) -> Self {
        Self { producer, topic, metrics }
    }

    /// The producer, to flush it on shutdown.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Writes `original` to the DLQ and returns once the broker acknowledged it, retrying failed
    /// writes with backoff. Cancel by dropping the future.
    pub async fn write(&self, original: &OwnedMessage, letter: &DeadLetter) {
        let record_headers = dlq_headers(original, letter);
        let mut delay = RETRY_MIN;
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(record_headers.clone());
            if let Some(key) = original.key() {
                record = record.key(key);
            }
            if let Some(payload) = original.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, PRODUCE_TIMEOUT).await {
                Ok(delivery) => {
                    self.metrics.dlq_records.with_label_values(&[letter.reason.as_str()]).inc();
                    tracing::info!(
                        topic = original.topic(),
                        partition = original.partition(),
                        offset = original.offset(),
                        reason = letter.reason.as_str(),
                        attempts = letter.attempts,
                        dlq_partition = delivery.partition,
                        dlq_offset = delivery.offset,
                        "record dead-lettered"
                    );
                    return;
                }
                Err((error, _)) => {
                    self.metrics.dlq_write_errors.inc();
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
    }
}

/// The original headers (minus DLQ headers from an earlier dead-lettering) plus this one's.
fn dlq_headers(original: &OwnedMessage, letter: &DeadLetter) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(existing) = original.headers() {
        for header in existing.iter() {
            if header.key.starts_with("hookline-dlq-") || header.key.starts_with("hookline-original-") {
                continue;
            }
            out = out.insert(Header { key: header.key, value: header.value });
        }
    }
    let attempts = letter.attempts.to_string();
    let partition = original.partition().to_string();
    let offset = original.offset().to_string();
    let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut added: Vec<(&str, &str)> = vec![
        (headers::DLQ_REASON, letter.reason.as_str()),
        (headers::DLQ_ERROR, &letter.error),
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
    for (key, value) in added {
        out = out.insert(Header { key, value: Some(value) });
    }
    out
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

    #[test]
    fn no_status_header_without_a_response() {
        let original = OwnedMessage::new(None, None, "webhooks".into(), Timestamp::NotAvailable, 0, 0, None);
        let letter = DeadLetter { reason: DlqReason::Undecodable, error: "bad".into(), attempts: 0, last_status: None };
        let found = header_map(&dlq_headers(&original, &letter));
        assert!(found.iter().all(|(k, _)| k != headers::DLQ_LAST_STATUS));
    }
}

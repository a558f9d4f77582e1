//! The delivery log contract: what happened to each delivery, one record per attempt and per
//! decision taken without one, on the attempts topic (`--attempts-topic`, default
//! `webhooks.attempts`), keyed by customer id and kept for [`crate::topics::STATE_RETENTION`].
//!
//! The consumer writes the records (batched, never holding an attempt up: a record that finds no
//! room is dropped and counted); the publisher follows the topic into the index behind its
//! deliveries API. The topic is the source of truth: an index can always be rebuilt from it.
//!
//! A record does not copy the event's payload: [`AttemptRecord::topic`], `partition` and `offset`
//! say where the delivery record lives (the delivery topic, or the retry topic for a parked
//! customer's record), to be read from there while it is retained. What a record does carry is
//! bounded: the error to [`ERROR_MAX`] bytes and the response excerpt to [`EXCERPT_MAX`].
//!
//! Like the other state topics (the ledger, the idempotency keys, the parking state), the values
//! are small JSON documents internal to Hookline; fields are only ever added, optional, so an
//! older reader skips what it does not know.

use std::time::SystemTime;

use rdkafka::message::Message;
use serde::{Deserialize, Serialize};

use crate::envelope::headers;
use crate::{kafka, limits, parking};

/// The longest error text a record carries, in bytes.
pub const ERROR_MAX: usize = 512;
/// The longest response excerpt a record carries, in bytes: the start of the endpoint's answer,
/// enough to show a customer why its endpoint refused.
pub const EXCERPT_MAX: usize = 256;

/// What one record tells of a delivery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// An attempt the endpoint acknowledged (2xx).
    Delivered,
    /// An attempt that failed (an HTTP error, a timeout, a refused connection, a blocked
    /// destination): a retry, a parking or a dead letter follows.
    Failed,
    /// The customer is parked: the record waits on the retry topic for the next try.
    Parked,
    /// The record was given up and written to the dead-letter topic (`reason` says why).
    DeadLettered,
    /// Not sent: the ledger says the event was delivered to this customer already.
    Skipped,
}

impl AttemptOutcome {
    /// Every outcome, in the order a listing names them.
    pub const ALL: [Self; 5] = [Self::Delivered, Self::Failed, Self::Parked, Self::DeadLettered, Self::Skipped];

    /// The outcome's name in records, metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Parked => "parked",
            Self::DeadLettered => "dead_lettered",
            Self::Skipped => "skipped",
        }
    }
}

/// One record of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The customer (or inbound source) the delivery is for; also the record key.
    pub customer_id: String,
    pub event_type: String,
    /// The attempt's number within this processing of the record, from 1; for a decision, the
    /// attempts made before it (0 for a skip).
    pub attempt: u32,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long the attempt took, for an attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The endpoint's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A failure's class: `3xx`, `4xx`, `5xx`, `timeout`, `connect`, `blocked`, `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// A failure's cause, at most [`ERROR_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the endpoint's answer, at most [`EXCERPT_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub outcome: AttemptOutcome,
    /// A dead letter's reason (`hookline_core::deadletter::DlqReason`'s name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the delivery record lives: the delivery topic, or the retry topic once parked.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl AttemptRecord {
    /// A record of `outcome`, at `at`, for the delivery record `record` as read: its key, where
    /// it lives, and the event id and type its headers carry (the publisher writes them on every
    /// record). The caller adds the rest.
    pub fn of<M: Message>(record: &M, outcome: AttemptOutcome, at: SystemTime) -> Self {
        let (mut event_id, mut event_type) = ("", "");
        for (key, value) in kafka::text_headers(record) {
            match key {
                headers::EVENT_ID => event_id = value,
                headers::EVENT_TYPE => event_type = value,
                _ => {}
            }
        }
        Self::of_event(record, event_id, event_type, outcome, at)
    }

    /// [`AttemptRecord::of`] for an event whose id and type are known (its value was decoded).
    pub fn of_event<M: Message>(
        record: &M,
        event_id: &str,
        event_type: &str,
        outcome: AttemptOutcome,
        at: SystemTime,
    ) -> Self {
        Self {
            event_id: event_id.to_owned(),
            customer_id: record.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            event_type: event_type.to_owned(),
            attempt: 0,
            at_ms: parking::unix_ms(at),
            duration_ms: None,
            status: None,
            error_class: None,
            error: None,
            response: None,
            outcome,
            reason: None,
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
        }
    }

    /// The record value (JSON), its texts clipped to their bounds.
    pub fn to_value(&self) -> Vec<u8> {
        let mut clipped = self.clone();
        clipped.error = self.error.as_deref().map(|e| limits::clip(e, ERROR_MAX).to_owned());
        clipped.response = self.response.as_deref().map(|r| limits::clip(r, EXCERPT_MAX).to_owned());
        // Cannot fail: plain strings and numbers.
        serde_json::to_vec(&clipped).unwrap_or_default()
    }

    /// A record value read back; `None` when it is not an attempt record (the caller counts and
    /// skips it: the log is not worth stopping for).
    pub fn from_value(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AttemptRecord {
        AttemptRecord {
            event_id: "evt_1".into(),
            customer_id: "acme".into(),
            event_type: "order.created".into(),
            attempt: 2,
            at_ms: 1_700_000_000_000,
            duration_ms: Some(120),
            status: Some(503),
            error_class: Some("5xx".into()),
            error: Some("HTTP 503 Service Unavailable".into()),
            response: Some("{\"error\":\"busy\"}".into()),
            outcome: AttemptOutcome::Failed,
            reason: None,
            topic: "webhooks".into(),
            partition: 3,
            offset: 42,
        }
    }

    #[test]
    fn a_record_of_a_delivery_record_says_where_it_lives() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: headers::EVENT_ID, value: Some("evt_9") })
            .insert(Header { key: headers::EVENT_TYPE, value: Some("invoice.paid") });
        let message = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"acme".to_vec()),
            "webhooks.retry".into(),
            Timestamp::NotAvailable,
            2,
            77,
            Some(record_headers),
        );
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_234);
        let of = AttemptRecord::of(&message, AttemptOutcome::Parked, at);
        assert_eq!(
            (of.event_id.as_str(), of.event_type.as_str(), of.customer_id.as_str()),
            ("evt_9", "invoice.paid", "acme")
        );
        assert_eq!((of.topic.as_str(), of.partition, of.offset, of.at_ms), ("webhooks.retry", 2, 77, 1_234));
        assert_eq!((of.outcome, of.attempt, of.status), (AttemptOutcome::Parked, 0, None));
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let written = record();
        assert_eq!(AttemptRecord::from_value(&written.to_value()), Some(written));
        let value: serde_json::Value = serde_json::from_slice(&record().to_value()).unwrap();
        assert_eq!(value["outcome"], "failed");
        let skipped = AttemptRecord { outcome: AttemptOutcome::Skipped, status: None, duration_ms: None, ..record() };
        let value: serde_json::Value = serde_json::from_slice(&skipped.to_value()).unwrap();
        assert!(value.get("status").is_none() && value.get("duration_ms").is_none(), "{value}");
    }

    #[test]
    fn texts_are_clipped_to_their_bounds() {
        let long = AttemptRecord { error: Some("e".repeat(10_000)), response: Some("é".repeat(10_000)), ..record() };
        let read = AttemptRecord::from_value(&long.to_value()).unwrap();
        assert_eq!(read.error.unwrap().len(), ERROR_MAX);
        let response = read.response.unwrap();
        assert!(response.len() <= EXCERPT_MAX && response.len() > EXCERPT_MAX - 2, "{}", response.len());
    }

    #[test]
    fn unknown_fields_are_skipped_and_other_values_refused() {
        let mut value: serde_json::Value = serde_json::from_slice(&record().to_value()).unwrap();
        value["added_later"] = serde_json::json!(1);
        assert_eq!(AttemptRecord::from_value(value.to_string().as_bytes()), Some(record()));
        assert_eq!(AttemptRecord::from_value(b"{\"event_id\":\"e\"}"), None);
        assert_eq!(AttemptRecord::from_value(b"\xC3\x01avro"), None);
        let names: Vec<&str> = AttemptOutcome::ALL.iter().map(|o| o.as_str()).collect();
        for name in names {
            let parsed: AttemptOutcome = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed.as_str(), name);
        }
    }
}

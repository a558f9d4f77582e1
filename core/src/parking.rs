//! The parking contract: what a record on the retry topic carries besides the original record,
//! and the parking state record, written by the consumer and read by it (after a restart or a
//! rebalance), `hookline-setup` and the tests.
//!
//! A customer whose endpoint keeps failing is *parked*: its failing record and every later record
//! of the same customer from that partition go, in order and unchanged (key, value, headers), to
//! partition `p` of the retry topic, `p` being the delivery topic's partition they came from.
//! [`parked_headers`] adds what the consumer knew of the record then ([`headers`]): when it was
//! parked, the attempts made, the last status and error, and where it came from. [`parse`] reads
//! them back.
//!
//! Which customers of partition `p` are parked, and where their oldest parked record is, is kept
//! in partition `p` of the compacted parking-state topic, keyed by customer id: a
//! [`ParkState`] ([`ParkState::to_value`]) while parked, a tombstone once drained. The retry topic
//! itself is never committed: a customer's parked records are those at or after its state's
//! [`ParkState::head`].
//!
//! Everything here is pure: no I/O, the time is the caller's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Message, OwnedHeaders};
use serde::{Deserialize, Serialize};

use crate::{kafka, limits};

/// Record headers of a parked record. Values are UTF-8.
pub mod headers {
    /// When the record was parked (RFC 3339): its retry schedule counts from here.
    pub const PARKED_AT: &str = "hookline-parked-at";
    /// HTTP attempts made on the record before it was parked (0 when parked behind an earlier
    /// record of its customer without an attempt of its own).
    pub const PARKED_ATTEMPTS: &str = "hookline-parked-attempts";
    /// HTTP status of the last attempt before parking, when there was a response.
    pub const PARKED_LAST_STATUS: &str = "hookline-parked-last-status";
    /// Detail of the last failure before parking (or why the customer was parked).
    pub const PARKED_LAST_ERROR: &str = "hookline-parked-last-error";
    /// Where the record came from: `<topic>/<partition>/<offset>` of the delivery topic.
    pub const PARKED_FROM: &str = "hookline-parked-from";

    /// Every `hookline-parked-*` header starts so.
    pub const PARKED_PREFIX: &str = "hookline-parked-";
}

/// Whether `key` is a header of this contract: dropped from a record before it is parked again,
/// and by a DLQ replay.
pub fn is_parked_header(key: &str) -> bool {
    key.starts_with(headers::PARKED_PREFIX)
}

/// What the consumer knew of a record when it parked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parking {
    pub at: SystemTime,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// The headers of the parked copy of `original`: its own (minus those of an earlier parking),
/// plus this parking's.
pub fn parked_headers<M: Message>(original: &M, parking: &Parking) -> OwnedHeaders {
    let out = kafka::owned_headers(kafka::original_headers(original).filter(|header| !is_parked_header(header.key)));
    let at = humantime::format_rfc3339_millis(parking.at).to_string();
    let attempts = parking.attempts.to_string();
    let from = format!("{}/{}/{}", original.topic(), original.partition(), original.offset());
    let status = parking.last_status.map(|s| s.to_string());
    let mut added: Vec<(&str, &str)> =
        vec![(headers::PARKED_AT, &at), (headers::PARKED_ATTEMPTS, &attempts), (headers::PARKED_FROM, &from)];
    if let Some(status) = status.as_deref() {
        added.push((headers::PARKED_LAST_STATUS, status));
    }
    if let Some(error) = parking.last_error.as_deref() {
        added.push((headers::PARKED_LAST_ERROR, limits::clip(error, limits::DLQ_ERROR_MAX)));
    }
    kafka::append_text_headers(out, added)
}

/// What a parked record's headers say, as [`parse`] reads them; each field `None` when its header
/// is missing or does not parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub at: Option<SystemTime>,
    pub attempts: Option<u32>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub from: Option<String>,
}

/// Reads a parked record's headers (of a repeated header the last counts).
pub fn parse<M: Message>(record: &M) -> Parsed {
    let mut parsed = Parsed::default();
    for (key, text) in kafka::text_headers(record) {
        match key {
            headers::PARKED_AT => parsed.at = humantime::parse_rfc3339_weak(text).ok(),
            headers::PARKED_ATTEMPTS => parsed.attempts = text.parse().ok(),
            headers::PARKED_LAST_STATUS => parsed.last_status = text.parse().ok(),
            headers::PARKED_LAST_ERROR => parsed.last_error = Some(text.to_owned()),
            headers::PARKED_FROM => parsed.from = Some(text.to_owned()),
            _ => {}
        }
    }
    parsed
}

/// A parked customer's state, the value of its record on the parking-state topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkState {
    /// Offset, in the retry topic's partition, of the customer's oldest parked record not yet
    /// delivered or dead-lettered. Records of the customer before it are done.
    pub head: i64,
    /// Steps of the retry schedule already used on the head record.
    pub step: u32,
    /// When the head record is due (milliseconds since the Unix epoch).
    pub due_ms: u64,
    /// When the customer's endpoint began failing (milliseconds since the Unix epoch).
    pub since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ParkState {
    /// The record value (JSON), its error clipped to [`limits::DLQ_ERROR_MAX`].
    pub fn to_value(&self) -> Vec<u8> {
        let mut clipped = self.clone();
        clipped.last_error = self.last_error.as_deref().map(|e| limits::clip(e, limits::DLQ_ERROR_MAX).to_owned());
        serde_json::to_vec(&clipped).unwrap_or_default()
    }

    /// A record value read back; `None` when it is not a parking state (the caller logs it).
    pub fn from_value(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

/// Milliseconds since the Unix epoch of `at` (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, Headers, OwnedMessage};

    use super::*;

    fn record(headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"acme".to_vec()),
            "webhooks".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(headers),
        )
    }

    #[test]
    fn a_parked_record_keeps_its_headers_and_says_what_was_known_and_where_it_came_from() {
        let original = record(
            OwnedHeaders::new()
                .insert(Header { key: "hookline-event-id", value: Some("evt_1") })
                .insert(Header { key: headers::PARKED_ATTEMPTS, value: Some("9") }),
        );
        let at = from_unix_ms(1_700_000_000_123);
        let parking = Parking { at, attempts: 3, last_status: Some(503), last_error: Some("HTTP 503".into()) };
        let parked = record(parked_headers(&original, &parking));
        let keys: Vec<String> = parked.headers().unwrap().iter().map(|h| h.key.to_owned()).collect();
        assert_eq!(keys.iter().filter(|k| k.as_str() == headers::PARKED_ATTEMPTS).count(), 1, "{keys:?}");
        assert!(keys.contains(&"hookline-event-id".to_owned()));
        assert_eq!(
            parse(&parked),
            Parsed {
                at: Some(at),
                attempts: Some(3),
                last_status: Some(503),
                last_error: Some("HTTP 503".into()),
                from: Some("webhooks/3/42".into()),
            }
        );
        let behind =
            record(parked_headers(&original, &Parking { at, attempts: 0, last_status: None, last_error: None }));
        assert_eq!(parse(&behind).last_status, None);
        assert_eq!(parse(&behind).attempts, Some(0));
    }

    #[test]
    fn park_state_round_trips_and_refuses_what_is_not_one() {
        let state = ParkState {
            head: 7,
            step: 2,
            due_ms: 1_700_000_300_000,
            since_ms: 1_700_000_000_000,
            last_status: Some(500),
            last_error: Some("x".repeat(10_000)),
        };
        let back = ParkState::from_value(&state.to_value()).expect("parses");
        assert_eq!(
            (back.head, back.step, back.due_ms, back.since_ms, back.last_status),
            (7, 2, state.due_ms, state.since_ms, Some(500))
        );
        assert!(back.last_error.unwrap().len() <= limits::DLQ_ERROR_MAX, "the error is clipped");
        assert_eq!(ParkState::from_value(b"{\"head\":1}"), None);
        assert_eq!(ParkState::from_value(b"not json"), None);
        assert_eq!(from_unix_ms(unix_ms(from_unix_ms(1234))), from_unix_ms(1234));
    }
}

//! The dead-letter record contract: what a record on the DLQ topic carries besides the original
//! record, written by the consumer and read by `hookline-setup dlq`, the demo and the tests.
//!
//! A dead letter is the original delivery record unchanged (key, value, headers) plus the
//! [`headers`] of this module saying why ([`DlqReason`]), how many attempts were made, the last
//! HTTP status and error, when, and where the record came from. [`letter_headers`] builds them
//! (replacing those of an earlier dead-lettering), [`bodiless_headers`] and [`bodiless_key`] the
//! form written without the original value when the whole record is refused for good, and
//! [`parse`] reads them back. `dlq replay` strips them again and marks the copy it re-produces
//! ([`replayed_headers`]).
//!
//! Everything here is pure: no I/O, the time is the caller's.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use rdkafka::message::{Header, Message, OwnedHeaders};

use crate::customer::MAX_ID_LEN;
use crate::envelope::headers as event_headers;
use crate::{kafka, limits};

/// Record headers of the dead-letter contract. Values are UTF-8. The event headers a record
/// carries from the publisher on are [`crate::envelope::headers`].
pub mod headers {
    /// Why a record was dead-lettered: a [`DlqReason`](super::DlqReason).
    pub const DLQ_REASON: &str = "hookline-dlq-reason";
    /// Human-readable detail of the last failure.
    pub const DLQ_ERROR: &str = "hookline-dlq-error";
    /// Delivery attempts made before giving up.
    pub const DLQ_ATTEMPTS: &str = "hookline-dlq-attempts";
    /// HTTP status of the last attempt, when there was a response.
    pub const DLQ_LAST_STATUS: &str = "hookline-dlq-last-status";
    /// When the record was dead-lettered (RFC 3339).
    pub const DLQ_AT: &str = "hookline-dlq-at";
    /// On a dead letter written without the original value (and without the original headers
    /// but the event id, type and `traceparent`), because the broker or the producer refused the
    /// whole record permanently (too large): why. Its presence says the body is not there; the
    /// original is at [`ORIGINAL_TOPIC`] / [`ORIGINAL_PARTITION`] / [`ORIGINAL_OFFSET`] until the
    /// delivery topic's retention removes it.
    pub const DLQ_BODY_DROPPED: &str = "hookline-dlq-body-dropped";
    /// Where the record came from.
    pub const ORIGINAL_TOPIC: &str = "hookline-original-topic";
    pub const ORIGINAL_PARTITION: &str = "hookline-original-partition";
    pub const ORIGINAL_OFFSET: &str = "hookline-original-offset";
    /// On a record re-produced by `hookline-setup dlq replay`: when (RFC 3339).
    pub const REPLAYED_AT: &str = "hookline-replayed-at";
    /// On a record re-produced by `hookline-setup dlq replay`: the dead letter it came from,
    /// `<dlq topic>/<partition>/<offset>`.
    pub const REPLAYED_FROM: &str = "hookline-replayed-from";

    /// Every `hookline-dlq-*` header starts so.
    pub const DLQ_PREFIX: &str = "hookline-dlq-";
    /// Every `hookline-original-*` header starts so.
    pub const ORIGINAL_PREFIX: &str = "hookline-original-";
    /// Every `hookline-replayed-*` header starts so.
    pub const REPLAYED_PREFIX: &str = "hookline-replayed-";
}

/// Why a record was dead-lettered; the value of the [`headers::DLQ_REASON`] header and the
/// `reason` label of `hookline_dlq_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// A parked record's retry schedule (`--retry-schedule`) ran out with its endpoint still
    /// failing.
    RetriesExhausted,
    /// The customer's endpoint is disabled (it failed continuously for `--disable-after`): no
    /// request was made. Replay once it is enabled again.
    EndpointDisabled,
}

impl DlqReason {
    /// Every reason, in the order documented.
    pub const ALL: [Self; 9] = [
        Self::MaxAttempts,
        Self::Undecodable,
        Self::UnknownCustomer,
        Self::NoWebhookUrl,
        Self::BlockedDestination,
        Self::SigningFailed,
        Self::EncryptionFailed,
        Self::RetriesExhausted,
        Self::EndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::Undecodable => "undecodable",
            Self::UnknownCustomer => "unknown_customer",
            Self::NoWebhookUrl => "no_webhook_url",
            Self::BlockedDestination => "blocked_destination",
            Self::SigningFailed => "signing_failed",
            Self::EncryptionFailed => "encryption_failed",
            Self::RetriesExhausted => "retries_exhausted",
            Self::EndpointDisabled => "endpoint_disabled",
        }
    }
}

impl fmt::Display for DlqReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DlqReason {
    type Err = crate::Error;

    /// One of [`DlqReason::ALL`] by its name, else [`crate::Error::Invalid`] naming them.
    fn from_str(raw: &str) -> crate::Result<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == raw).ok_or_else(|| crate::Error::Invalid {
            field: "dead-letter reason",
            reason: format!("`{}` is none of {}", crate::quote::clip(raw), Self::ALL.map(Self::as_str).join(", ")),
        })
    }
}

/// What the consumer says about a record it dead-letters.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DlqReason,
    pub error: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
}

/// The original headers kept on a body-less dead letter (when not longer than
/// [`limits::KEPT_HEADER_MAX`]): enough to find, list and trace the event.
const KEPT_ON_BODILESS: [&str; 3] = [event_headers::EVENT_ID, event_headers::EVENT_TYPE, event_headers::TRACEPARENT];

/// Whether `key` is a header of this contract that a dead-lettering writes (`hookline-dlq-*`,
/// `hookline-original-*`): dropped from the original before a new dead-lettering, and by a replay.
pub fn is_letter_header(key: &str) -> bool {
    key.starts_with(headers::DLQ_PREFIX) || key.starts_with(headers::ORIGINAL_PREFIX)
}

/// The headers of the dead letter of `original` written whole at `at`: the original headers (minus
/// those of an earlier dead-lettering) plus this one's.
pub fn letter_headers<M: Message>(original: &M, letter: &DeadLetter, at: SystemTime) -> OwnedHeaders {
    let kept = kafka::original_headers(original).filter(|header| !is_letter_header(header.key));
    with_letter_headers(kafka::owned_headers(kept), original, letter, at)
}

/// The headers of the dead letter of `original` written at `at` without the body: the original's
/// event id, type and `traceparent` (when of a sane length; anything else may be what made it too
/// large), this letter's, and [`headers::DLQ_BODY_DROPPED`] saying `why` (clipped to
/// [`limits::DLQ_ERROR_MAX`]).
pub fn bodiless_headers<M: Message>(original: &M, letter: &DeadLetter, at: SystemTime, why: &str) -> OwnedHeaders {
    let kept = kafka::original_headers(original).filter(|header| {
        KEPT_ON_BODILESS.contains(&header.key) && header.value.is_some_and(|v| v.len() <= limits::KEPT_HEADER_MAX)
    });
    with_letter_headers(kafka::owned_headers(kept), original, letter, at)
        .insert(Header { key: headers::DLQ_BODY_DROPPED, value: Some(limits::clip(why, limits::DLQ_ERROR_MAX)) })
}

/// The key of a body-less dead letter: the original's, unless longer than any customer id (then
/// it is no customer id, and may be what made the record too large).
pub fn bodiless_key(key: Option<&[u8]>) -> Option<&[u8]> {
    key.filter(|key| key.len() <= MAX_ID_LEN)
}

/// The headers of a dead letter re-produced to the delivery topic by `dlq replay`: its headers
/// minus this contract's (dead-letter headers and an earlier replay's marks) and a parking's
/// ([`crate::parking::headers`]), plus
/// [`headers::REPLAYED_AT`] `replayed_at` and [`headers::REPLAYED_FROM`]
/// `<dlq topic>/<partition>/<offset>`.
pub fn replayed_headers<'a>(
    letter_headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    (dlq, partition, offset): (&str, i32, i64),
    replayed_at: &str,
) -> OwnedHeaders {
    let kept = letter_headers
        .into_iter()
        .filter(|(key, _)| {
            !is_letter_header(key)
                && !key.starts_with(headers::REPLAYED_PREFIX)
                && !crate::parking::is_parked_header(key)
        })
        .map(|(key, value)| Header { key, value });
    let from = format!("{dlq}/{partition}/{offset}");
    kafka::owned_headers(kept)
        .insert(Header { key: headers::REPLAYED_AT, value: Some(replayed_at) })
        .insert(Header { key: headers::REPLAYED_FROM, value: Some(&from) })
}

/// `out` with the headers of `letter` about `original` added.
fn with_letter_headers<M: Message>(
    out: OwnedHeaders,
    original: &M,
    letter: &DeadLetter,
    at: SystemTime,
) -> OwnedHeaders {
    let attempts = letter.attempts.to_string();
    let partition = original.partition().to_string();
    let offset = original.offset().to_string();
    let at = humantime::format_rfc3339_millis(at).to_string();
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
    kafka::append_text_headers(out, added)
}

/// What a record's headers say under this contract, as [`parse`] reads them. Each field is `None`
/// when its header is missing, not UTF-8 or (numbers, times) does not parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The reason as written: a [`DlqReason`] ([`Parsed::known_reason`]) unless written by another
    /// version.
    pub reason: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub last_status: Option<u16>,
    /// When it was dead-lettered.
    pub at: Option<SystemTime>,
    /// Why the body was dropped, on a body-less dead letter.
    pub body_dropped: Option<String>,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    /// On a replayed record: when (as written, RFC 3339) and from which dead letter.
    pub replayed_at: Option<String>,
    pub replayed_from: Option<String>,
    /// The event headers, read along: the event id and type.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
}

impl Parsed {
    /// The reason, when it is one this version knows.
    pub fn known_reason(&self) -> Option<DlqReason> {
        self.reason.as_deref()?.parse().ok()
    }
}

/// Reads a record's headers (in order; of a repeated header the last counts) under this contract.
pub fn parse<'a>(record_headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Parsed {
    let mut parsed = Parsed::default();
    for (key, value) in record_headers {
        let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        let owned = || Some(text.to_owned());
        match key {
            headers::DLQ_REASON => parsed.reason = owned(),
            headers::DLQ_ERROR => parsed.error = owned(),
            headers::DLQ_ATTEMPTS => parsed.attempts = text.parse().ok(),
            headers::DLQ_LAST_STATUS => parsed.last_status = text.parse().ok(),
            headers::DLQ_AT => parsed.at = humantime::parse_rfc3339_weak(text).ok(),
            headers::DLQ_BODY_DROPPED => parsed.body_dropped = owned(),
            headers::ORIGINAL_TOPIC => parsed.original_topic = owned(),
            headers::ORIGINAL_PARTITION => parsed.original_partition = text.parse().ok(),
            headers::ORIGINAL_OFFSET => parsed.original_offset = text.parse().ok(),
            headers::REPLAYED_AT => parsed.replayed_at = owned(),
            headers::REPLAYED_FROM => parsed.replayed_from = owned(),
            event_headers::EVENT_ID => parsed.event_id = owned(),
            event_headers::EVENT_TYPE => parsed.event_type = owned(),
            _ => {}
        }
    }
    parsed
}

/// [`parse`] of a message's headers.
pub fn parse_message<M: Message>(message: &M) -> Parsed {
    parse(kafka::original_headers(message).map(|header| (header.key, header.value)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::Timestamp;
    use rdkafka::message::{Headers, OwnedMessage};

    use super::*;

    fn header_map(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect()
    }

    fn pairs(headers: &OwnedHeaders) -> Vec<(&str, Option<&[u8]>)> {
        headers.iter().map(|h| (h.key, h.value)).collect()
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

    fn at() -> SystemTime {
        humantime::parse_rfc3339("2026-11-23T18:00:00.250Z").unwrap()
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in DlqReason::ALL {
            assert_eq!(reason.as_str().parse::<DlqReason>().unwrap(), reason);
            assert_eq!(reason.to_string(), reason.as_str());
            assert!(reason.as_str().len() <= limits::REASON_MAX, "{reason}");
        }
        let names: std::collections::HashSet<_> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DlqReason::ALL.len());
        let refused = "stale".parse::<DlqReason>().unwrap_err().to_string();
        assert!(refused.contains("`stale` is none of max_attempts, undecodable,"), "{refused}");
    }

    /// The names are a wire contract with DLQ records already written and with operators' tools:
    /// they never change.
    #[test]
    fn header_names_and_reasons_are_the_documented_ones() {
        let names = [
            headers::DLQ_REASON,
            headers::DLQ_ERROR,
            headers::DLQ_ATTEMPTS,
            headers::DLQ_LAST_STATUS,
            headers::DLQ_AT,
            headers::DLQ_BODY_DROPPED,
            headers::ORIGINAL_TOPIC,
            headers::ORIGINAL_PARTITION,
            headers::ORIGINAL_OFFSET,
            headers::REPLAYED_AT,
            headers::REPLAYED_FROM,
        ];
        let expected = [
            "hookline-dlq-reason",
            "hookline-dlq-error",
            "hookline-dlq-attempts",
            "hookline-dlq-last-status",
            "hookline-dlq-at",
            "hookline-dlq-body-dropped",
            "hookline-original-topic",
            "hookline-original-partition",
            "hookline-original-offset",
            "hookline-replayed-at",
            "hookline-replayed-from",
        ];
        assert_eq!(names, expected);
        let reasons = DlqReason::ALL.map(DlqReason::as_str);
        let expected = [
            "max_attempts",
            "undecodable",
            "unknown_customer",
            "no_webhook_url",
            "blocked_destination",
            "signing_failed",
            "encryption_failed",
            "retries_exhausted",
            "endpoint_disabled",
        ];
        assert_eq!(reasons, expected);
        assert!(names[..6].iter().all(|name| name.starts_with(headers::DLQ_PREFIX) && is_letter_header(name)));
        assert!(names[6..9].iter().all(|name| name.starts_with(headers::ORIGINAL_PREFIX) && is_letter_header(name)));
        assert!(names[9..].iter().all(|name| name.starts_with(headers::REPLAYED_PREFIX) && !is_letter_header(name)));
    }

    #[test]
    fn keeps_original_headers_and_replaces_earlier_dlq_headers() {
        let original_headers = OwnedHeaders::new()
            .insert(Header { key: event_headers::EVENT_ID, value: Some("evt_1") })
            .insert(Header { key: headers::DLQ_REASON, value: Some("stale") })
            .insert(Header { key: headers::ORIGINAL_OFFSET, value: Some("1") });
        let message = original(Some(b"{}".to_vec()), b"customer-1", original_headers);
        let letter = DeadLetter {
            reason: DlqReason::MaxAttempts,
            error: "HTTP 503".into(),
            attempts: 5,
            last_status: Some(503),
        };
        let found = header_map(&letter_headers(&message, &letter, at()));
        let get = |k: &str| found.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get(event_headers::EVENT_ID), ["evt_1"]);
        assert_eq!(get(headers::DLQ_REASON), ["max_attempts"]);
        assert_eq!(get(headers::DLQ_ATTEMPTS), ["5"]);
        assert_eq!(get(headers::DLQ_LAST_STATUS), ["503"]);
        assert_eq!(get(headers::DLQ_ERROR), ["HTTP 503"]);
        assert_eq!(get(headers::ORIGINAL_TOPIC), ["webhooks"]);
        assert_eq!(get(headers::ORIGINAL_PARTITION), ["3"]);
        assert_eq!(get(headers::ORIGINAL_OFFSET), ["42"]);
        assert_eq!(get(headers::DLQ_AT), ["2026-11-23T18:00:00.250Z"]);
    }

    #[test]
    fn the_error_text_is_clipped() {
        let letter = DeadLetter {
            reason: DlqReason::MaxAttempts,
            error: "é".repeat(limits::DLQ_ERROR_MAX),
            attempts: 8,
            last_status: Some(500),
        };
        let found = header_map(&letter_headers(&original(None, b"c", OwnedHeaders::new()), &letter, at()));
        let error = &found.iter().find(|(k, _)| k == headers::DLQ_ERROR).unwrap().1;
        assert_eq!(error.len(), limits::DLQ_ERROR_MAX);
    }

    #[test]
    fn no_status_header_without_a_response() {
        let message = OwnedMessage::new(None, None, "webhooks".into(), Timestamp::NotAvailable, 0, 0, None);
        let letter = DeadLetter { reason: DlqReason::Undecodable, error: "bad".into(), attempts: 0, last_status: None };
        let found = header_map(&letter_headers(&message, &letter, at()));
        assert!(found.iter().all(|(k, _)| k != headers::DLQ_LAST_STATUS));
    }

    /// The publisher's limit holds: its largest record, with every header it writes at its
    /// longest, still fits `message.max.bytes` once dead-lettered with the longest error.
    #[test]
    fn the_largest_publishable_record_fits_once_dead_lettered() {
        let message_max_bytes = limits::DEFAULT_MESSAGE_MAX_BYTES;
        let value_len = limits::max_record_value(message_max_bytes).unwrap();
        let event_id = crate::envelope::new_event_id();
        let event_type = "t".repeat(crate::customer::MAX_EVENT_TYPE_LEN);
        let traceparent = "0".repeat(55);
        let tracestate = "v".repeat(limits::TRACE_HEADER_MAX);
        let replayed_from = format!("{}/2147483647/{}", "d".repeat(249), i64::MAX);
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: event_headers::EVENT_ID, value: Some(event_id.as_str()) })
            .insert(Header { key: event_headers::EVENT_TYPE, value: Some(event_type.as_str()) })
            .insert(Header { key: event_headers::TRACEPARENT, value: Some(traceparent.as_str()) })
            .insert(Header { key: event_headers::TRACESTATE, value: Some(tracestate.as_str()) })
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
        let dead = letter_headers(&message, &letter, SystemTime::now());
        let size =
            limits::record_size(MAX_ID_LEN, value_len, dead.iter().map(|h| (h.key, h.value.map_or(0, <[u8]>::len))));
        assert!(size <= message_max_bytes, "{size} > {message_max_bytes}");
    }

    #[test]
    fn a_bodiless_letter_keeps_the_coordinates_and_the_event_only() {
        let huge = "x".repeat(10_000);
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: event_headers::EVENT_ID, value: Some("evt_1") })
            .insert(Header { key: event_headers::EVENT_TYPE, value: Some("order.created") })
            .insert(Header { key: event_headers::TRACEPARENT, value: Some(huge.as_str()) })
            .insert(Header { key: "x-custom", value: Some(huge.as_str()) });
        let message = original(Some(huge.clone().into_bytes()), b"customer-1", record_headers);
        let letter =
            DeadLetter { reason: DlqReason::UnknownCustomer, error: "gone".into(), attempts: 0, last_status: None };
        let found = header_map(&bodiless_headers(&message, &letter, at(), &huge));
        let get = |k: &str| found.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get(event_headers::EVENT_ID), ["evt_1"]);
        assert_eq!(get(event_headers::EVENT_TYPE), ["order.created"]);
        assert!(get(event_headers::TRACEPARENT).is_empty(), "an oversized original header is left out");
        assert!(get("x-custom").is_empty());
        assert_eq!(get(headers::DLQ_REASON), ["unknown_customer"]);
        assert_eq!(get(headers::ORIGINAL_TOPIC), ["webhooks"]);
        assert_eq!(get(headers::ORIGINAL_PARTITION), ["3"]);
        assert_eq!(get(headers::ORIGINAL_OFFSET), ["42"]);
        assert_eq!(get(headers::DLQ_BODY_DROPPED), [&huge[..limits::DLQ_ERROR_MAX]]);

        assert_eq!(bodiless_key(Some(b"customer-1")), Some(&b"customer-1"[..]));
        let long = vec![b'k'; MAX_ID_LEN + 1];
        assert_eq!(bodiless_key(Some(&long)), None, "no customer id is that long");
        assert_eq!(bodiless_key(None), None);
    }

    #[test]
    fn what_is_written_parses_back() {
        let record_headers = OwnedHeaders::new()
            .insert(Header { key: event_headers::EVENT_ID, value: Some("evt_1") })
            .insert(Header { key: event_headers::EVENT_TYPE, value: Some("order.created") });
        let message = original(Some(b"{}".to_vec()), b"customer-1", record_headers);
        let letter = DeadLetter {
            reason: DlqReason::SigningFailed,
            error: "no active signing secret".into(),
            attempts: 3,
            last_status: Some(502),
        };
        let whole = letter_headers(&message, &letter, at());
        let parsed = parse(pairs(&whole));
        assert_eq!(
            parsed,
            Parsed {
                reason: Some("signing_failed".into()),
                error: Some("no active signing secret".into()),
                attempts: Some(3),
                last_status: Some(502),
                at: Some(at()),
                body_dropped: None,
                original_topic: Some("webhooks".into()),
                original_partition: Some(3),
                original_offset: Some(42),
                replayed_at: None,
                replayed_from: None,
                event_id: Some("evt_1".into()),
                event_type: Some("order.created".into()),
            }
        );
        assert_eq!(parsed.known_reason(), Some(DlqReason::SigningFailed));

        let bodiless = parse(pairs(&bodiless_headers(&message, &letter, at(), "too large")));
        assert_eq!(bodiless.body_dropped.as_deref(), Some("too large"));
        assert_eq!((bodiless.original_partition, bodiless.original_offset), (Some(3), Some(42)));

        let dead = OwnedMessage::new(None, None, "dlq".into(), Timestamp::NotAvailable, 0, 0, Some(whole));
        assert_eq!(parse_message(&dead), parsed);
    }

    #[test]
    fn parsing_tolerates_foreign_and_broken_headers() {
        let found = parse([
            (headers::DLQ_REASON, Some(&b"stale"[..])),
            (headers::DLQ_REASON, Some(&b"from_the_future"[..])),
            (headers::DLQ_ATTEMPTS, Some(&b"many"[..])),
            (headers::DLQ_LAST_STATUS, Some(&b"\xff"[..])),
            (headers::DLQ_AT, Some(&b"yesterday"[..])),
            (headers::DLQ_ERROR, None),
            ("x-custom", Some(&b"1"[..])),
        ]);
        assert_eq!(found.reason.as_deref(), Some("from_the_future"), "the last one counts");
        assert_eq!(found.known_reason(), None);
        assert_eq!((found.attempts, found.last_status, found.at, found.error), (None, None, None, None));
        assert_eq!(parse([]), Parsed::default());
        let at = humantime::parse_rfc3339("2026-11-23T18:00:00Z").unwrap() + Duration::from_millis(5);
        assert_eq!(parse([(headers::DLQ_AT, Some(&b"2026-11-23T18:00:00.005Z"[..]))]).at, Some(at));
    }

    #[test]
    fn a_replayed_record_keeps_the_originals_only() {
        let letter = [
            (event_headers::EVENT_ID, Some(&b"evt_1"[..])),
            ("traceparent", Some(&b"00-abc-def-01"[..])),
            (headers::DLQ_REASON, Some(&b"max_attempts"[..])),
            (headers::ORIGINAL_OFFSET, Some(&b"7"[..])),
            (headers::REPLAYED_FROM, Some(&b"old"[..])),
        ];
        let replayed = replayed_headers(letter, ("webhooks.dlq", 2, 5), "2026-11-23T18:00:00.000Z");
        let found = header_map(&replayed);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [event_headers::EVENT_ID, "traceparent", headers::REPLAYED_AT, headers::REPLAYED_FROM]);
        let parsed = parse(pairs(&replayed));
        assert_eq!(parsed.replayed_from.as_deref(), Some("webhooks.dlq/2/5"));
        assert_eq!(parsed.replayed_at.as_deref(), Some("2026-11-23T18:00:00.000Z"));
        assert_eq!(parsed.reason, None);
    }
}

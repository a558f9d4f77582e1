//! How large a record Hookline produces may be: one limit, derived from the producers'
//! `message.max.bytes`, that the publisher and the consumer's dead-letter writer agree on.
//!
//! librdkafka refuses to enqueue a record whose value, key and headers (plus its framing) exceed
//! `message.max.bytes`, and that error is permanent: the same record is refused every time. So
//! the publisher must refuse (413) an event whose record could not be produced, *and* a record it
//! did produce must still fit once the consumer adds its dead-letter headers, or it could never
//! be dead-lettered. [`max_record_value`] is that limit: `message.max.bytes` less [`HEADROOM`],
//! the worst case of everything a record carries besides its value through its whole life
//! (key, delivery headers, replay headers, dead-letter headers, framing). What makes the
//! worst case hold is bounded here too: the dead-letter error text is clipped to
//! [`DLQ_ERROR_MAX`] and trace-context headers longer than [`TRACE_HEADER_MAX`] are not written.

use std::str::FromStr;

use crate::config::KafkaArgs;
use crate::customer::{MAX_EVENT_TYPE_LEN, MAX_ID_LEN};
use crate::deadletter::headers as letter;
use crate::envelope::headers;
use crate::{Error, Result};

/// The librdkafka property that bounds one record.
pub const MESSAGE_MAX_BYTES: &str = "message.max.bytes";
/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The longest dead-letter error text (`hookline-dlq-error`), in bytes; longer text is clipped.
pub const DLQ_ERROR_MAX: usize = 1024;
/// The longest trace-context header value (`traceparent`, `tracestate`) written on a record:
/// the W3C recommendation for `tracestate`. A longer one is left out (the trace still joins
/// through `traceparent`).
pub const TRACE_HEADER_MAX: usize = 512;
/// The longest value of an original header kept on a dead letter written without its body.
pub const KEPT_HEADER_MAX: usize = 256;

/// librdkafka's worst-case framing of one record (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`: length,
/// attributes, timestamp, offset, key length, value length and header count varints).
const RECORD_FRAMING: usize = 36;
/// Worst-case framing of one header: the varints of its name length and value length.
const HEADER_FRAMING: usize = 10;
/// Kafka's longest topic name.
const TOPIC_NAME_MAX: usize = 249;
/// An event id (`evt_` and 32 hex digits), with room to spare.
const EVENT_ID_MAX: usize = 64;
/// A decimal `i64`, or an RFC 3339 timestamp with milliseconds.
const NUMBER_MAX: usize = 20;
const TIMESTAMP_MAX: usize = 32;
/// A DLQ reason (`max_attempts`, `blocked_destination`, ...).
pub(crate) const REASON_MAX: usize = 32;
/// Room for what the table below cannot know of (librdkafka versions framing differently).
const MARGIN: usize = 1024;
/// The smallest record value worth running with.
const MIN_RECORD_VALUE: usize = 1024;

/// Every header a delivery record can carry through its life, with its longest value: written by
/// the publisher, by `hookline-setup dlq replay`, and added by the consumer's dead-letter writer.
const HEADERS: &[(&str, usize)] = &[
    (headers::EVENT_ID, EVENT_ID_MAX),
    (headers::EVENT_TYPE, MAX_EVENT_TYPE_LEN),
    (headers::TRACEPARENT, TRACE_HEADER_MAX),
    (headers::TRACESTATE, TRACE_HEADER_MAX),
    (letter::REPLAYED_AT, TIMESTAMP_MAX),
    // `<dlq topic>/<partition>/<offset>`
    (letter::REPLAYED_FROM, TOPIC_NAME_MAX + 2 + 2 * NUMBER_MAX),
    (letter::DLQ_REASON, REASON_MAX),
    (letter::DLQ_ERROR, DLQ_ERROR_MAX),
    (letter::DLQ_ATTEMPTS, NUMBER_MAX),
    (letter::DLQ_LAST_STATUS, NUMBER_MAX),
    (letter::DLQ_AT, TIMESTAMP_MAX),
    (letter::ORIGINAL_TOPIC, TOPIC_NAME_MAX),
    (letter::ORIGINAL_PARTITION, NUMBER_MAX),
    (letter::ORIGINAL_OFFSET, NUMBER_MAX),
];

/// Everything but the value that a record Hookline produced may carry by the time it is
/// dead-lettered, at worst: framing, key (a customer or source id), every header in [`HEADERS`].
pub const HEADROOM: usize = headroom();

const fn headroom() -> usize {
    let mut total = RECORD_FRAMING + MAX_ID_LEN + MARGIN;
    let mut i = 0;
    while i < HEADERS.len() {
        total += HEADER_FRAMING + HEADERS[i].0.len() + HEADERS[i].1;
        i += 1;
    }
    total
}

/// The size librdkafka checks against `message.max.bytes` for one record, at worst (header
/// varints counted at their longest).
pub fn record_size<'a>(key: usize, value: usize, headers: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
    RECORD_FRAMING
        + key
        + value
        + headers.into_iter().map(|(name, value)| HEADER_FRAMING + name.len() + value).sum::<usize>()
}

/// The largest record value Hookline produces when its producers have `message_max_bytes`, or
/// an error if that leaves no useful room.
pub fn max_record_value(message_max_bytes: usize) -> Result<usize> {
    match message_max_bytes.checked_sub(HEADROOM) {
        Some(value) if value >= MIN_RECORD_VALUE => Ok(value),
        _ => Err(Error::Invalid {
            field: MESSAGE_MAX_BYTES,
            reason: format!(
                "{message_max_bytes} leaves no room for an event: at least {} is needed ({HEADROOM} bytes are kept \
                 for the key and the delivery and dead-letter headers)",
                HEADROOM + MIN_RECORD_VALUE
            ),
        }),
    }
}

/// The `message.max.bytes` the producers built from `kafka` get: the last `--kafka-property`
/// setting it, else librdkafka's default.
pub fn message_max_bytes(kafka: &KafkaArgs) -> Result<usize> {
    property(kafka, MESSAGE_MAX_BYTES, DEFAULT_MESSAGE_MAX_BYTES)
}

/// The value of librdkafka property `name` as passed with `--kafka-property` (the last one wins,
/// as in the client configuration), else `default`.
pub fn property<T: FromStr>(kafka: &KafkaArgs, name: &'static str, default: T) -> Result<T> {
    match kafka.kafka_properties.iter().rev().find(|(key, _)| key == name) {
        None => Ok(default),
        Some((_, value)) => value
            .trim()
            .parse()
            .map_err(|_| Error::Invalid { field: name, reason: format!("`{value}` is not a number") }),
    }
}

/// The longest prefix of `text` that is at most `max` bytes and ends on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_leaves_headroom_below_librdkafkas_default() {
        let limit = max_record_value(DEFAULT_MESSAGE_MAX_BYTES).unwrap();
        assert_eq!(limit, DEFAULT_MESSAGE_MAX_BYTES - HEADROOM);
        // Room for every header at its longest, and not absurdly more.
        assert!((3_000..8_000).contains(&HEADROOM), "{HEADROOM}");
        let worst = record_size(MAX_ID_LEN, limit, HEADERS.iter().copied());
        assert!(worst <= DEFAULT_MESSAGE_MAX_BYTES, "{worst}");
    }

    #[test]
    fn too_small_a_message_max_bytes_is_refused_naming_the_property() {
        let error = max_record_value(HEADROOM).unwrap_err().to_string();
        assert!(error.contains(MESSAGE_MAX_BYTES), "{error}");
        assert!(max_record_value(HEADROOM + MIN_RECORD_VALUE).is_ok());
        assert!(max_record_value(0).is_err());
    }

    #[test]
    fn message_max_bytes_comes_from_the_last_property() {
        let kafka = KafkaArgs::new("b:9092");
        assert_eq!(message_max_bytes(&kafka).unwrap(), DEFAULT_MESSAGE_MAX_BYTES);
        let kafka = kafka.with_property(MESSAGE_MAX_BYTES, "2000000").with_property(MESSAGE_MAX_BYTES, " 3000000 ");
        assert_eq!(message_max_bytes(&kafka).unwrap(), 3_000_000);
        let bad = KafkaArgs::new("b:9092").with_property(MESSAGE_MAX_BYTES, "1MB");
        let error = message_max_bytes(&bad).unwrap_err().to_string();
        assert!(error.contains(MESSAGE_MAX_BYTES) && error.contains("1MB"), "{error}");
    }

    #[test]
    fn record_size_counts_framing_key_value_and_headers() {
        assert_eq!(record_size(0, 0, []), RECORD_FRAMING);
        assert_eq!(record_size(5, 100, [("abc", 7)]), RECORD_FRAMING + 5 + 100 + HEADER_FRAMING + 3 + 7);
    }

    #[test]
    fn clip_keeps_whole_characters() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("ééé", 3), "é");
        assert_eq!(clip("ééé", 0), "");
    }
}

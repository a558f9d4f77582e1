//! What travels on the delivery topic, and the webhook body built from it.
//!
//! One published event becomes one [`EventRecord`] per receiving customer, keyed by customer id
//! so that one customer's events share a partition and keep their order. All copies of an event
//! share its [`EventRecord::event_id`], which is sent as `webhook-id` on every attempt so that
//! receivers can de-duplicate.

use std::time::SystemTime;

use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Record headers the publisher writes, which a record keeps through its life (the dead-letter
/// and replay headers are [`crate::deadletter::headers`]). Values are UTF-8.
pub mod headers {
    /// Event id, duplicated from the value so tools can read it without decoding.
    pub const EVENT_ID: &str = "hookline-event-id";
    /// Event type, duplicated from the value for the same reason.
    pub const EVENT_TYPE: &str = "hookline-event-type";
    /// W3C trace context of the span that produced the record (the publish request), so that
    /// delivery attempts and the DLQ write join the publisher's trace. Kept on DLQ records.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C vendor trace state accompanying [`TRACEPARENT`], when there is one.
    pub const TRACESTATE: &str = "tracestate";
}

/// The value of a record on the delivery topic: `dev.hookline.DeliveryRecord` in Avro (see
/// [`crate::codec`]; older records are JSON of the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// Unique, stable id of the published event (`evt_…`), the same for every customer's copy.
    pub event_id: String,
    /// Event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was accepted, RFC 3339 with milliseconds.
    pub timestamp: String,
    /// The event's payload, kept as the exact JSON text the producer sent.
    pub payload: Box<RawValue>,
}

impl EventRecord {
    /// A new event with a fresh time-ordered id.
    pub fn new(event_type: impl Into<String>, payload: Box<RawValue>) -> Self {
        Self {
            event_id: new_event_id(),
            event_type: event_type.into(),
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            payload,
        }
    }

    /// Encodes the record value in Avro single-object encoding. With a schema registry, use
    /// [`Codec::encode_delivery`](crate::codec::Codec::encode_delivery) instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: the value is built field by field after the compiled-in schema, which the
        // codec's tests check against this type.
        crate::codec::encode_delivery_single_object(self).expect("a delivery record matches its schema")
    }

    /// Decodes a record value written without a schema registry: Avro single-object encoding, or
    /// the JSON of records written before Avro. [`Codec::decode_delivery`](crate::codec::Codec::decode_delivery)
    /// also reads the Confluent wire format.
    pub fn from_bytes(bytes: &[u8]) -> crate::Result<Self> {
        crate::codec::Framing::of(bytes).and_then(crate::codec::decode_delivery_offline)
    }

    /// The headers a delivery-topic record of this event carries from its producer:
    /// [`headers::EVENT_ID`] and [`headers::EVENT_TYPE`] (the trace context is the producer's to
    /// add).
    pub fn record_headers(&self) -> OwnedHeaders {
        OwnedHeaders::new()
            .insert(Header { key: headers::EVENT_ID, value: Some(self.event_id.as_str()) })
            .insert(Header { key: headers::EVENT_TYPE, value: Some(self.event_type.as_str()) })
    }

    /// The body POSTed to the customer, in the Standard Webhooks shape `{type, timestamp, data}`.
    pub fn webhook_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            event_type: &'a str,
            timestamp: &'a str,
            data: &'a RawValue,
        }
        serde_json::to_vec(&Body { event_type: &self.event_type, timestamp: &self.timestamp, data: &self.payload })
            .unwrap_or_default()
    }
}

/// A new event id: `evt_` and a UUIDv7, so ids sort by creation time.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn a_record_carries_its_event_id_and_type_as_headers() {
        let record = EventRecord::new("order.created", RawValue::from_string("1".to_owned()).unwrap());
        let found: Vec<(String, Option<Vec<u8>>)> =
            record.record_headers().iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect();
        assert_eq!(
            found,
            [
                (headers::EVENT_ID.to_owned(), Some(record.event_id.clone().into_bytes())),
                (headers::EVENT_TYPE.to_owned(), Some(b"order.created".to_vec())),
            ]
        );
    }

    #[test]
    fn round_trips_and_keeps_payload_bytes() {
        let payload = RawValue::from_string(r#"{"b":1,  "a":[2,3]}"#.to_owned()).unwrap();
        let record = EventRecord::new("order.created", payload);
        let decoded = EventRecord::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(decoded.event_id, record.event_id);
        assert_eq!(decoded.event_type, record.event_type);
        assert_eq!(decoded.timestamp, record.timestamp);
        assert_eq!(decoded.payload.get(), record.payload.get());
        assert!(decoded.event_id.starts_with("evt_"));

        let body: serde_json::Value = serde_json::from_slice(&record.webhook_body()).unwrap();
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["timestamp"], record.timestamp.as_str());
        assert_eq!(body["data"]["a"][1], 3);
        // The payload text is forwarded as sent, not re-serialized.
        assert!(String::from_utf8(record.webhook_body()).unwrap().contains(r#"{"b":1,  "a":[2,3]}"#));
    }

    #[test]
    fn event_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_event_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(EventRecord::from_bytes(b"not json").is_err());
        assert!(EventRecord::from_bytes(br#"{"event_id":"x"}"#).is_err());
    }
}

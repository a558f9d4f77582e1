//! What travels on the delivery topic (with its Avro mapping, see [`crate::codec`]), and the
//! webhook body built from it.
//!
//! One published event becomes one [`EventRecord`] per receiving customer, keyed by customer id
//! so that one customer's events share a partition and keep their order. All copies of an event
//! share its [`EventRecord::event_id`], which is sent as `webhook-id` on every attempt so that
//! receivers can de-duplicate.

use std::time::SystemTime;

use apache_avro::types::Value;
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codec::mapping::{Fields, invalid_record, record, string};
use crate::codec::{self, AvroRecord, Codec, Framing, RecordType};
use crate::{Error, Result};

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
    /// On a copy produced by a resend (the deliveries API, `hookline-setup deliveries resend`):
    /// the resend's id. The consumer sends such a copy even though its ledger has the event as
    /// delivered, once per resend ([`ledger_id`](super::ledger_id)).
    pub const RESEND_ID: &str = "hookline-resend-id";
}

/// The resend id a delivery-topic record carries ([`headers::RESEND_ID`]), if it is a resend.
pub fn resend_id<M: rdkafka::message::Message>(record: &M) -> Option<&str> {
    crate::kafka::text_headers(record).find(|(key, _)| *key == headers::RESEND_ID).map(|(_, value)| value)
}

/// The id the delivery ledger knows a copy by: the event id, or `<event id>/<resend id>` for a
/// resent copy, so that a resend is sent once although the event was delivered before it.
pub fn ledger_id(event_id: &str, resend: Option<&str>) -> String {
    match resend {
        Some(resend) => format!("{event_id}/{resend}"),
        None => event_id.to_owned(),
    }
}

/// The value of a record on the delivery topic: `dev.hookline.DeliveryRecord` in Avro (see
/// [`crate::codec`]; older records are JSON of the same shape). Its Avro mapping is the
/// [`AvroRecord`] implementation below.
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
    /// [`Codec::encode_delivery`] instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: the value is built field by field after the compiled-in schema, which the
        // tests below check against this type.
        codec::encode_single_object(self).expect("a delivery record matches its schema")
    }

    /// Decodes a record value written without a schema registry: Avro single-object encoding, or
    /// the JSON of records written before Avro. [`Codec::decode_delivery`] also reads the
    /// Confluent wire format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Framing::of(bytes).and_then(|framing| codec::decode_offline(&(), framing))
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

impl AvroRecord for EventRecord {
    const TYPE: RecordType = RecordType::Delivery;
    type Key = ();

    fn to_value(&self) -> Value {
        let EventRecord { event_id, event_type, timestamp, payload } = self;
        record(vec![
            ("event_id", string(event_id)),
            ("type", string(event_type)),
            ("timestamp", string(timestamp)),
            ("payload", string(payload.get())),
        ])
    }

    fn from_value((): &(), value: Value) -> Result<Self> {
        let mut fields = Fields::of("DeliveryRecord", value)?;
        let payload = fields.string("payload")?;
        let payload = RawValue::from_string(payload)
            .map_err(|e| invalid_record("DeliveryRecord", format!("`payload` is not JSON text: {e}")))?;
        Ok(EventRecord {
            event_id: fields.string("event_id")?,
            event_type: fields.string("type")?,
            timestamp: fields.string("timestamp")?,
            payload,
        })
    }

    fn from_json((): &(), json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json)
            .map_err(|e| Error::Undecodable { reason: "invalid_json", detail: format!("invalid JSON record: {e}") })
    }
}

/// The codec's entry points for delivery records.
impl Codec {
    /// Encodes a delivery record for `topic` (the delivery topic).
    pub async fn encode_delivery(&self, topic: &str, record: &EventRecord) -> Result<Vec<u8>> {
        self.encode(topic, record).await
    }

    /// Decodes a delivery record in any of the accepted forms.
    pub async fn decode_delivery(&self, bytes: &[u8]) -> Result<EventRecord> {
        self.decode(&(), bytes).await
    }
}

/// A new event id: `evt_` and a UUIDv7, so ids sort by creation time.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// A fresh resend id ([`headers::RESEND_ID`]): `rs_` + a UUIDv7.
pub fn new_resend_id() -> String {
    format!("rs_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    #[test]
    fn a_resent_copy_has_a_ledger_id_of_its_own() {
        use rdkafka::message::{OwnedMessage, Timestamp};
        let record = |headers: Option<OwnedHeaders>| {
            OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, headers)
        };
        let resend = super::new_resend_id();
        let marked = OwnedHeaders::new().insert(Header { key: headers::RESEND_ID, value: Some(resend.as_str()) });
        let resent = record(Some(marked));
        assert_eq!(resend_id(&resent), Some(resend.as_str()));
        assert_eq!(ledger_id("evt_1", resend_id(&resent)), format!("evt_1/{resend}"));
        assert_eq!(resend_id(&record(None)), None);
        assert_eq!(ledger_id("evt_1", None), "evt_1");
        assert!(resend.starts_with("rs_") && resend != super::new_resend_id());
    }

    use super::*;
    use crate::codec::{
        DELIVERY_SCHEMA, Known, SINGLE_OBJECT_MAGIC, assert_schema_fields, avro_datum, fingerprint, read_single_object,
    };

    fn event() -> EventRecord {
        let payload = RawValue::from_string(r#"{"b":1,  "a":[2,3], "s":"é"}"#.to_owned()).unwrap();
        EventRecord::new("order.created", payload)
    }

    fn assert_same_event(a: &EventRecord, b: &EventRecord) {
        assert_eq!(
            (&a.event_id, &a.event_type, &a.timestamp, a.payload.get()),
            (&b.event_id, &b.event_type, &b.timestamp, b.payload.get())
        );
    }

    fn decode_delivery_offline(framing: Framing<'_>) -> Result<EventRecord> {
        codec::decode_offline(&(), framing)
    }

    /// `schemas/delivery.avsc` plus an optional `trace_id` at the end (tests of schema evolution).
    fn delivery_v2() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(DELIVERY_SCHEMA).unwrap();
        schema["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "trace_id", "type": ["null", "string"], "default": null}));
        schema.to_string()
    }

    /// The Rust type and `schemas/delivery.avsc` agree: every field survives a round trip, and
    /// every field the JSON form has (the serde representation) is a field of the schema.
    #[test]
    fn schema_and_type_agree() {
        let event = event();
        let bytes = codec::encode_single_object(&event).unwrap();
        assert_same_event(&decode_delivery_offline(Framing::of(&bytes).unwrap()).unwrap(), &event);
        assert_schema_fields(RecordType::Delivery.schema(), &serde_json::to_value(&event).unwrap(), "DeliveryRecord");
    }

    #[test]
    fn legacy_json_records_still_decode() {
        let json = br#"{"event_id":"evt_1","type":"a.b","timestamp":"t","payload":{"x": 1}}"#;
        let event = decode_delivery_offline(Framing::of(json).unwrap()).unwrap();
        assert_eq!((event.event_id.as_str(), event.payload.get()), ("evt_1", r#"{"x": 1}"#));
    }

    #[test]
    fn garbage_is_an_error_with_a_reason_not_a_panic() {
        let reason = |bytes: &[u8]| match Framing::of(bytes).and_then(decode_delivery_offline) {
            Err(Error::Undecodable { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b""), "unknown_format");
        assert_eq!(reason(b"not json"), "unknown_format");
        assert_eq!(reason(b"{}"), "invalid_json");
        assert_eq!(reason(&[0xC3, 0x01, 1]), "unknown_format");
        let mut good = codec::encode_single_object(&event()).unwrap();
        good.truncate(good.len() - 3);
        // (apache-avro reads a truncated last field as null, which the mapping refuses.)
        assert!(matches!(reason(&good), "invalid_avro" | "invalid_record"));
        let customer = crate::customer::Customer { id: "acme".into(), ..Default::default() }.to_bytes();
        assert_eq!(reason(&customer), "wrong_record_type");
        let mut unknown = codec::encode_single_object(&event()).unwrap();
        unknown[5] ^= 0xff;
        assert_eq!(reason(&unknown), "unknown_schema", "unknown fingerprint, nothing appended");
        // A Confluent record without a registry needs one.
        let codec = Codec::single_object();
        let confluent = [0, 0, 0, 0, 7, 2, b'x'];
        let error = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(codec.decode_delivery(&confluent))
            .unwrap_err();
        assert_eq!(error.decode_reason(), "no_registry", "{error}");
        assert!(!error.is_transient());
    }

    /// v2 = v1 plus an optional field at the end: a v1 reader decodes what a v2 writer wrote,
    /// without knowing v2's fingerprint.
    #[test]
    fn a_newer_writer_that_appended_an_optional_field_is_read() {
        let v2 = apache_avro::Schema::parse_str(&delivery_v2()).unwrap();
        let event = event();
        let Value::Record(mut fields) = event.to_value() else { unreachable!() };
        fields.push(("trace_id".into(), Value::Union(1, Box::new(Value::String("trace-1".into())))));
        let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
        bytes.extend_from_slice(&fingerprint(&v2));
        bytes.extend(avro_datum(&v2, Value::Record(fields)).unwrap());
        assert_same_event(&decode_delivery_offline(Framing::of(&bytes).unwrap()).unwrap(), &event);
    }

    /// A newer reader resolves a record of an earlier version it keeps as history; without the
    /// history it could not tell the older record from a garbled one, and refuses it.
    #[test]
    fn a_newer_reader_resolves_an_earlier_version_kept_as_history() {
        let v2 = apache_avro::Schema::parse_str(&delivery_v2()).unwrap();
        let v2 = Known { schema: &v2, fingerprint: fingerprint(&v2) };
        let v1 = RecordType::Delivery.compiled().known();
        let event = event();
        let bytes = codec::encode_single_object(&event).unwrap();
        let Framing::SingleObject { fingerprint, body } = Framing::of(&bytes).unwrap() else { unreachable!() };
        let value = read_single_object("DeliveryRecord", v2, &[v1], fingerprint, body).unwrap();
        let Value::Record(fields) = &value else { panic!("{value:?}") };
        assert_eq!(
            fields.last().map(|(name, v)| (name.as_str(), v)),
            Some(("trace_id", &Value::Union(0, Box::new(Value::Null))))
        );
        assert_same_event(&EventRecord::from_value(&(), value).unwrap(), &event);
        let refused = read_single_object("DeliveryRecord", v2, &[], fingerprint, body).unwrap_err();
        assert_eq!(refused.decode_reason(), "unknown_schema", "{refused}");
    }

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

//! Publishing, whatever the transport: a validated [`PublishRequest`] becomes one delivery record
//! per recipient on the delivery topic. `POST /publish` ([`crate::http`]), the gRPC event broker
//! ([`crate::grpc`]) and inbound webhooks (`inbound`) parse their own input into a request and call
//! [`Publisher::publish`]; the onboarding API's test event uses [`Publisher::produce_copies`].
//!
//! In order: the payload is checked against its type's schema ([`crate::event_types`]); with an
//! idempotency key, a repeat is answered from the first request ([`crate::idempotency`]); the
//! recipients are resolved (the target, or the type's subscribers); the record is encoded once and
//! refused beyond the record limit; then one copy per recipient is written within the in-flight
//! bounds (`fanout`) and every acknowledgement awaited.
//!
//! The field rules every transport shares (event type, ids, JSON payload text) live here too, so
//! that a request refused on one transport is refused alike on the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_core::codec::Codec;
use hookline_core::customer::{ALL_EVENTS, Customer, validate_event_type, validate_id};
use hookline_core::directory::Directory;
use hookline_core::envelope::{EventRecord, headers};
use hookline_core::notices::{self, RESERVED_PREFIX};
use hookline_core::telemetry;
use rdkafka::error::KafkaError;
use rdkafka::message::Header;
use rdkafka::producer::FutureProducer;
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::event_types::EventTypes;
use crate::fanout::{Copies, Fanout};
use crate::idempotency::{self, Accepted, Begin, Idempotency};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// How long a targeted request waits for the directory to catch up with the customers topic
/// before calling the target unknown: long enough to see a customer created a moment ago, short
/// enough that a typo is answered quickly.
pub(crate) const TARGET_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What publishing needs: the shared producer and the views and bounds around it.
pub(crate) struct Publisher {
    pub producer: FutureProducer,
    pub directory: Directory,
    /// The delivery topic.
    pub topic: String,
    /// Encodes delivery records (Avro; through the schema registry when one is configured).
    pub codec: Codec,
    /// The largest encoded record ([`crate::config::Limits::record`]).
    pub record_limit: usize,
    /// Writes an event's copies within the in-flight and time bounds.
    pub fanout: Fanout,
    pub metrics: Metrics,
    pub idempotency: Idempotency,
    /// Event-type schemas, checked before anything is produced.
    pub event_types: Arc<EventTypes>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("record_limit", &self.record_limit)
            .finish_non_exhaustive()
    }
}

/// A validated publish request.
#[derive(Debug)]
pub(crate) struct PublishRequest {
    pub event_type: String,
    pub payload: Box<RawValue>,
    /// Deliver to this customer only, whatever its subscriptions. For an incoming event, the
    /// inbound source it is for (required).
    pub target: Option<String>,
    /// A repeat of a request with this key within the window is answered from the first one.
    pub idempotency_key: Option<String>,
    pub direction: Direction,
}

impl PublishRequest {
    /// What identifies the request's content for [`crate::idempotency`].
    fn fingerprint(&self) -> idempotency::Fingerprint {
        let target = self.target.as_deref().unwrap_or_default();
        idempotency::fingerprint(&[self.event_type.as_bytes(), self.payload.get().as_bytes(), target.as_bytes()])
    }
}

/// Whom an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// To customers (`POST /publish`, `SendOutgoingEvent`): `target` must be a customer, never an
    /// inbound source.
    Outgoing,
    /// From an external sender to an inbound source's internal endpoint (`POST /inbound/{source}`,
    /// `HandleIncomingEvent`): `target` must be an inbound source.
    Incoming,
}

/// Checks the type of an event to publish: a valid event type, not the `*` wildcard, and not
/// one of Hookline's own (`hookline.…`: operational events come from Hookline only).
pub(crate) fn validate_publish_type(event_type: &str) -> Result<()> {
    if event_type == ALL_EVENTS {
        return Err(Error::InvalidRequest(format!(
            "invalid `type`: `{ALL_EVENTS}` only subscribes to every event type; publish a concrete type"
        )));
    }
    if notices::is_reserved(event_type) {
        return Err(Error::InvalidRequest(format!(
            "invalid `type`: `{RESERVED_PREFIX}…` types are Hookline's own events; publish a type of yours"
        )));
    }
    validate_event_type(event_type).map_err(|e| invalid_field("type", e))
}

/// Checks a customer or source id given in the request field `field`.
pub(crate) fn validate_id_field(field: &str, id: &str) -> Result<()> {
    validate_id(id).map_err(|e| invalid_field(field, e))
}

/// A payload given as JSON text (gRPC): any JSON value, kept as sent (without surrounding
/// whitespace).
pub(crate) fn parse_payload(field: &str, text: String) -> Result<Box<RawValue>> {
    if text.trim().is_empty() {
        return Err(Error::InvalidRequest(format!("invalid `{field}`: JSON text is required, e.g. `{{}}`")));
    }
    RawValue::from_string(text).map_err(|e| Error::InvalidRequest(format!("invalid `{field}`: not JSON ({e})")))
}

/// The type of an incoming event whose sender gave none.
pub(crate) fn default_incoming_type(source: &str) -> String {
    format!("{source}.received")
}

fn invalid_field(field: &str, error: hookline_core::Error) -> Error {
    match error {
        hookline_core::Error::Invalid { reason, .. } => Error::InvalidRequest(format!("invalid `{field}`: {reason}")),
        other => Error::InvalidRequest(format!("invalid `{field}`: {other}")),
    }
}

/// The span of one publish request (`POST /publish`, inbound webhook, gRPC call), a child of the
/// caller's span when `parent` (extracted from its `traceparent`) holds one. The records carry
/// its context on to the consumer (see [`Publisher::produce_copies`]).
pub(crate) fn publish_span(parent: telemetry::TraceContext) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        event_type = tracing::field::Empty,
        target = tracing::field::Empty,
        event_id = tracing::field::Empty,
        deliveries = tracing::field::Empty,
    );
    telemetry::set_parent(&span, parent);
    span
}

impl Publisher {
    /// Publishes `request` within `span` (from [`publish_span`]), recording the request's fields
    /// on it: checks the payload against its type's schema, then writes one copy of the event per
    /// recipient and waits for every acknowledgement. With an idempotency key, a repeat is
    /// answered from the first request instead.
    pub(crate) async fn publish(&self, request: PublishRequest, span: &tracing::Span) -> Result<Accepted> {
        span.record("event_type", request.event_type.as_str());
        if let Some(target) = &request.target {
            span.record("target", target.as_str());
        }
        let result = self.publish_checked(request).instrument(span.clone()).await;
        if let Ok(accepted) = &result {
            span.record("event_id", accepted.event_id.as_str());
            span.record("deliveries", accepted.deliveries);
        }
        result
    }

    async fn publish_checked(&self, request: PublishRequest) -> Result<Accepted> {
        self.event_types.check(&request.event_type, &request.payload).await?;
        let Some(key) = request.idempotency_key.clone() else {
            return self.publish_once(request, None).await;
        };
        let claim = match self.idempotency.begin(&key, request.fingerprint()).await? {
            Begin::Replay(accepted) => {
                tracing::info!(event_id = %accepted.event_id, "idempotent request answered from the first one");
                return Ok(accepted);
            }
            Begin::Claimed(claim) => claim,
        };
        let published = self.publish_once(request, Some(claim.event_id.clone())).await;
        self.idempotency.finish(claim, published.as_ref().ok()).await;
        published
    }

    /// Resolves the recipients and writes one copy per recipient, with `event_id` if given.
    async fn publish_once(&self, request: PublishRequest, event_id: Option<String>) -> Result<Accepted> {
        let recipients: Vec<Arc<Customer>> = match (&request.target, request.direction) {
            // A directory that has not seen the customer yet may just be lagging: catch up first.
            (Some(id), direction) => {
                let found = self.directory.get_fresh(id, TARGET_LOOKUP_TIMEOUT).await.map_err(Error::Directory)?;
                match (found, direction) {
                    (Some(customer), Direction::Outgoing) if !customer.is_source() => vec![customer],
                    (Some(source), Direction::Incoming) if source.is_source() => vec![source],
                    (_, Direction::Outgoing) => return Err(Error::UnknownCustomer(id.clone())),
                    (_, Direction::Incoming) => return Err(Error::UnknownSource(id.clone())),
                }
            }
            (None, Direction::Outgoing) => self.directory.subscribers(&request.event_type),
            (None, Direction::Incoming) => {
                return Err(Error::InvalidRequest("invalid `source`: an incoming event needs its source".into()));
            }
        };
        let mut record = EventRecord::new(request.event_type, request.payload);
        if let Some(event_id) = event_id {
            record.event_id = event_id;
        }
        self.produce_copies(record, &recipients).await
    }

    /// Encodes `record`, refuses it if it exceeds the record limit (whether or not anyone
    /// receives it, so the answer does not depend on subscriptions), then writes one copy per
    /// recipient, keyed by the customer id, within the in-flight bounds (`fanout`) and waits for
    /// every acknowledgement.
    pub(crate) async fn produce_copies(&self, record: EventRecord, recipients: &[Arc<Customer>]) -> Result<Accepted> {
        self.produce_marked(record, recipients, None).await
    }

    /// Writes `record` once more for `customer`, the same event (its id, type, time and payload),
    /// marked as resend `resend_id` ([`headers::RESEND_ID`]) so that the consumer sends it even
    /// though it delivered the event before.
    pub(crate) async fn resend(
        &self,
        record: EventRecord,
        customer: Arc<Customer>,
        resend_id: &str,
    ) -> Result<Accepted> {
        self.produce_marked(record, &[customer], Some(resend_id)).await
    }

    async fn produce_marked(
        &self,
        record: EventRecord,
        recipients: &[Arc<Customer>],
        resend_id: Option<&str>,
    ) -> Result<Accepted> {
        let value = self.codec.encode_delivery(&self.topic, &record).await.map_err(Error::Encode)?;
        if value.len() > self.record_limit {
            return Err(Error::EventTooLarge { size: value.len(), limit: self.record_limit });
        }
        if recipients.is_empty() {
            tracing::info!(event_id = %record.event_id, event_type = %record.event_type, "event has no subscribers");
            return Ok(Accepted { event_id: record.event_id, deliveries: 0, replayed: false });
        }
        // The current span's W3C context (`traceparent`, `tracestate`), so that the deliveries
        // join this trace; nothing without the OpenTelemetry layer.
        let mut own_headers = record.record_headers();
        if let Some(resend_id) = resend_id {
            own_headers = own_headers.insert(Header { key: headers::RESEND_ID, value: Some(resend_id) });
        }
        let record_headers = telemetry::with_trace_headers(own_headers, &telemetry::current_trace_headers());
        let total = recipients.len();
        let started = Instant::now();
        let copies = Copies { producer: &self.producer, topic: &self.topic, value: &value, headers: &record_headers };
        let sent = self.fanout.send(copies, recipients).await;
        let (produced, first_error) = (sent.produced, sent.failure);
        self.metrics.produce_took(started.elapsed().as_secs_f64());
        self.metrics.produced(produced);

        if let Some(reason) = first_error {
            return Err(Error::Produce {
                event_id: record.event_id,
                total,
                failed: total - produced,
                produced,
                reason,
            });
        }
        tracing::info!(
            event_id = %record.event_id,
            event_type = %record.event_type,
            deliveries = total,
            "event published"
        );
        Ok(Accepted { event_id: record.event_id, deliveries: total, replayed: false })
    }

    /// Whether the broker answers a metadata request for the delivery topic within `timeout`.
    /// librdkafka blocks, so the request runs on the blocking pool.
    pub(crate) async fn broker_reachable(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let answered = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer as _;
            producer.client().fetch_metadata(Some(&topic), timeout).map(|_| ())
        })
        .await;
        match answered {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("kafka: {error}")),
            Err(_) => Err("the readiness check failed".to_owned()),
        }
    }

    /// Flushes the producer (librdkafka blocks: on the blocking pool), for shutdown.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        self.producer.flush(rdkafka::util::Timeout::After(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<()>) -> String {
        match result {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn publish_types_are_concrete_types_of_the_caller() {
        assert!(validate_publish_type("order.created").is_ok());
        assert!(invalid(validate_publish_type("*")).contains("only subscribes"));
        assert!(invalid(validate_publish_type("hookline.endpoint.parked")).contains("Hookline's own events"));
        assert!(invalid(validate_publish_type("has space")).starts_with("invalid `type`"));
    }

    #[test]
    fn payload_text_must_be_json() {
        assert_eq!(parse_payload("payload", r#"{"a": 1}"#.into()).unwrap().get(), r#"{"a": 1}"#);
        assert!(invalid(parse_payload("payload", "  ".into()).map(drop)).contains("JSON text is required"));
        assert!(invalid(parse_payload("data", "{".into()).map(drop)).starts_with("invalid `data`: not JSON"));
    }
}

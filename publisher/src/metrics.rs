//! Prometheus metrics of the publisher, served as text on `GET /metrics`.
//!
//! Each publisher owns its registry (not the process-global one) so that several publishers in
//! one process (tests, the demo) do not mix their counts.

use std::sync::{Mutex, PoisonError};

use hookline_core::notices::{EndpointEvent, Published};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// How a publish request ended: the `outcome` label. A closed set, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Answered from an earlier request with the same `Idempotency-Key`; nothing produced.
    Replayed,
    /// A request with the same `Idempotency-Key` is in progress (409).
    Conflict,
    /// Malformed JSON, wrong content type, unreadable body.
    BadRequest,
    /// Well-formed JSON that is not a valid request.
    Invalid,
    TooLarge,
    UnknownTarget,
    /// Missing or wrong credentials (401), or credentials of another role (403).
    Unauthorized,
    /// The broker (or the directory, which reads from it) did not answer in time.
    BrokerError,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::Conflict => "conflict",
            Self::BadRequest => "bad_request",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::UnknownTarget => "unknown_target",
            Self::Unauthorized => "unauthorized",
            Self::BrokerError => "broker_error",
        }
    }

    const ALL: [Self; 9] = [
        Self::Accepted,
        Self::Replayed,
        Self::Conflict,
        Self::BadRequest,
        Self::Invalid,
        Self::TooLarge,
        Self::UnknownTarget,
        Self::Unauthorized,
        Self::BrokerError,
    ];
}

/// How a `POST /inbound/{source}` request ended: the `outcome` label (a closed set; no
/// per-source label, since anyone can name any source in the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    Accepted,
    /// Missing, malformed or wrong signature.
    BadSignature,
    /// The signed timestamp is outside the tolerance.
    Stale,
    UnknownSource,
    /// Verified, but not an acceptable event (not JSON, invalid type, too large...).
    Invalid,
    /// The broker or the directory could not take it (503).
    Unavailable,
}

impl InboundOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
            Self::UnknownSource => "unknown_source",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
        }
    }

    const ALL: [Self; 6] =
        [Self::Accepted, Self::BadSignature, Self::Stale, Self::UnknownSource, Self::Invalid, Self::Unavailable];
}

/// The idempotency view's metrics, updated by its follower thread (see [`crate::idempotency`]).
#[derive(Debug, Clone)]
pub struct IdempotencyMetrics {
    /// Keys the view holds now.
    pub(crate) keys: IntGauge,
    /// Keys forgotten before their window ended, at the cap.
    pub(crate) evictions: IntCounter,
    /// Records read to load the view at start-up.
    pub(crate) load_records: IntGauge,
    /// How long the load at start-up took.
    pub(crate) load_seconds: Gauge,
}

/// A counter kept where Prometheus is not (`hookline-core` counts catch-ups itself), read when
/// the metrics are gathered.
struct ReadCounter {
    counter: IntCounter,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Serializes gathers, so that two of them do not both add the same increase.
    gathering: Mutex<()>,
}

impl Collector for ReadCounter {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _gathering = self.gathering.lock().unwrap_or_else(PoisonError::into_inner);
        let value = (self.read)();
        self.counter.inc_by(value.saturating_sub(self.counter.get()));
        self.counter.collect()
    }
}

/// The publisher's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    records_produced: IntCounter,
    produce_duration: Histogram,
    api_requests: IntCounterVec,
    schema_validation_failures: IntCounterVec,
    event_types: IntGaugeVec,
    schema_registry_requests: IntCounterVec,
    grpc_requests: IntCounterVec,
    inbound_requests: IntCounterVec,
    request_timeouts: IntCounterVec,
    http_connections: IntGauge,
    http_connection_waits: IntCounter,
    inflight_bytes: IntGauge,
    inflight_waits: IntCounterVec,
    notices: IntCounterVec,
    idempotency: IdempotencyMetrics,
}

/// Which in-flight bound a copy waited for: the `bound` label of
/// `hookline_produce_inflight_waits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The request's own window (`--max-request-inflight-bytes`).
    Request,
    /// Every request's copies together (`--max-inflight-bytes`).
    Total,
}

impl Bound {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Total => "total",
        }
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("hookline_publish_requests_total", "Publish requests by outcome."),
            &["outcome"],
        )?;
        let records_produced =
            IntCounter::new("hookline_records_produced_total", "Delivery records acknowledged by the broker.")?;
        let produce_duration = Histogram::with_opts(
            HistogramOpts::new(
                "hookline_produce_duration_seconds",
                "Time from the first copy sent to the last acknowledged, per accepted or failed request.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let api_requests = IntCounterVec::new(
            Opts::new("hookline_api_requests_total", "Onboarding API requests (/v1/...) by operation and HTTP status."),
            &["operation", "status"],
        )?;
        let schema_validation_failures = IntCounterVec::new(
            Opts::new(
                "hookline_schema_validation_failures_total",
                "Published payloads refused because they do not match their event type's schema, by schema format.",
            ),
            &["format"],
        )?;
        let event_types = IntGaugeVec::new(
            Opts::new("hookline_event_types", "Event types with a schema, by where the schema comes from."),
            &["source"],
        )?;
        let schema_registry_requests = IntCounterVec::new(
            Opts::new(
                "hookline_schema_registry_requests_total",
                "Schema registry reads: full refreshes and lookups of a single type, by result.",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(schema_validation_failures.clone()))?;
        registry.register(Box::new(event_types.clone()))?;
        registry.register(Box::new(schema_registry_requests.clone()))?;
        for format in ["avro", "json-schema"] {
            schema_validation_failures.with_label_values(&[format]);
        }
        for source in ["directory", "registry"] {
            event_types.with_label_values(&[source]);
        }
        let grpc_requests = IntCounterVec::new(
            Opts::new("hookline_grpc_requests_total", "gRPC event broker calls by method and status code."),
            &["method", "code"],
        )?;
        let inbound_requests = IntCounterVec::new(
            Opts::new(
                "hookline_inbound_requests_total",
                "Inbound webhook requests (POST /inbound/{source}) by outcome.",
            ),
            &["outcome"],
        )?;
        let request_timeouts = IntCounterVec::new(
            Opts::new(
                "hookline_http_request_timeouts_total",
                "HTTP requests cut off by --http-request-timeout, by stage: body (408) or answer (503).",
            ),
            &["stage"],
        )?;
        for stage in ["body", "answer"] {
            request_timeouts.with_label_values(&[stage]);
        }
        registry.register(Box::new(request_timeouts.clone()))?;
        let http_connections = IntGauge::new("hookline_http_connections", "HTTP connections open now.")?;
        let http_connection_waits = IntCounter::new(
            "hookline_http_connection_waits_total",
            "Times the HTTP server stopped accepting because --http-max-connections were open.",
        )?;
        registry.register(Box::new(http_connections.clone()))?;
        registry.register(Box::new(http_connection_waits.clone()))?;
        let inflight_bytes = IntGauge::new(
            "hookline_produce_inflight_bytes",
            "Bytes of delivery copies handed to the producer and not yet acknowledged (each copy counted as its \
             record plus 1 KiB), all requests.",
        )?;
        let inflight_waits = IntCounterVec::new(
            Opts::new(
                "hookline_produce_inflight_waits_total",
                "Copies that waited for room in flight, by the bound that was full (request, total).",
            ),
            &["bound"],
        )?;
        registry.register(Box::new(inflight_bytes.clone()))?;
        registry.register(Box::new(inflight_waits.clone()))?;
        let notices = IntCounterVec::new(
            Opts::new(
                "hookline_notices_total",
                "Operational events (hookline.endpoint.enabled) by type and outcome (published, no_subscriber, failed).",
            ),
            &["type", "outcome"],
        )?;
        registry.register(Box::new(notices.clone()))?;
        for bound in [Bound::Request, Bound::Total] {
            inflight_waits.with_label_values(&[bound.as_str()]);
        }
        let idempotency = IdempotencyMetrics {
            keys: IntGauge::new("hookline_idempotency_keys", "Idempotency keys the view holds now.")?,
            evictions: IntCounter::new(
                "hookline_idempotency_evictions_total",
                "Idempotency keys forgotten before their window ended because the view was at --idempotency-max-keys.",
            )?,
            load_records: IntGauge::new(
                "hookline_idempotency_load_records",
                "Records of the idempotency topic read to load the view at start-up.",
            )?,
            load_seconds: Gauge::new(
                "hookline_idempotency_load_seconds",
                "How long loading the idempotency view took at start-up.",
            )?,
        };
        registry.register(Box::new(idempotency.keys.clone()))?;
        registry.register(Box::new(idempotency.evictions.clone()))?;
        registry.register(Box::new(idempotency.load_records.clone()))?;
        registry.register(Box::new(idempotency.load_seconds.clone()))?;
        registry.register(Box::new(inbound_requests.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(grpc_requests.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(records_produced.clone()))?;
        registry.register(Box::new(produce_duration.clone()))?;
        // Exporting every outcome at zero lets rate() and alerts see a series before its first hit.
        for outcome in Outcome::ALL {
            requests.with_label_values(&[outcome.as_str()]);
        }
        for outcome in InboundOutcome::ALL {
            inbound_requests.with_label_values(&[outcome.as_str()]);
        }
        Ok(Self {
            registry,
            requests,
            records_produced,
            produce_duration,
            api_requests,
            schema_validation_failures,
            event_types,
            schema_registry_requests,
            grpc_requests,
            inbound_requests,
            request_timeouts,
            http_connections,
            http_connection_waits,
            inflight_bytes,
            inflight_waits,
            notices,
            idempotency,
        })
    }

    /// Adds `bytes` (negative: removes) to the bytes of copies in flight.
    pub fn inflight(&self, bytes: i64) {
        self.inflight_bytes.add(bytes);
    }

    /// Counts one copy that waited for room in flight because `bound` was full.
    pub fn inflight_wait(&self, bound: Bound) {
        self.inflight_waits.with_label_values(&[bound.as_str()]).inc();
    }

    /// The handles the idempotency view updates.
    pub fn idempotency(&self) -> IdempotencyMetrics {
        self.idempotency.clone()
    }

    /// Exports a count kept elsewhere as the counter `name`, read at every gather (`read` must
    /// never decrease).
    pub fn export_counter(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        let counter = IntCounter::new(name, help)?;
        self.registry.register(Box::new(ReadCounter { counter, read: Box::new(read), gathering: Mutex::new(()) }))
    }

    /// Counts one payload refused by its schema; `format` is `avro` or `json-schema`.
    pub fn schema_validation_failed(&self, format: &'static str) {
        self.schema_validation_failures.with_label_values(&[format]).inc();
    }

    /// Sets how many event types have a schema from `source` (`directory` or `registry`).
    pub fn event_types(&self, source: &'static str, count: usize) {
        self.event_types.with_label_values(&[source]).set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one schema registry read: `kind` is `refresh` or `lookup`; `result` is `ok`,
    /// `not_found` or `error`.
    pub fn schema_registry_request(&self, kind: &'static str, result: &'static str) {
        self.schema_registry_requests.with_label_values(&[kind, result]).inc();
    }

    /// Counts one publish request.
    pub fn request(&self, outcome: Outcome) {
        self.requests.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Counts one onboarding API request; `operation` is one of a fixed set of route names.
    pub fn api_request(&self, operation: &'static str, status: u16) {
        self.api_requests.with_label_values(&[operation, &status.to_string()]).inc();
    }

    /// Counts one gRPC call; `method` is one of the service's RPC names, `code` a gRPC status code
    /// (17 values), so both labels stay bounded.
    pub fn grpc_request(&self, method: &'static str, code: tonic::Code) {
        self.grpc_requests.with_label_values(&[method, &format!("{code:?}")]).inc();
    }

    /// Counts one operational event published (or not) after an endpoint was enabled.
    pub fn notice(&self, event: EndpointEvent, outcome: Published) {
        self.notices.with_label_values(&[event.label(), outcome.label()]).inc();
    }

    /// Counts one inbound webhook request.
    pub fn inbound_request(&self, outcome: InboundOutcome) {
        self.inbound_requests.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Counts one HTTP request cut off by the request timeout; `stage` is `body` (its body was
    /// still arriving) or `answer` (its handler was still at work).
    pub fn request_timed_out(&self, stage: &'static str) {
        self.request_timeouts.with_label_values(&[stage]).inc();
    }

    /// Adds `change` (1 or -1) to the HTTP connections open.
    pub(crate) fn http_connections(&self, change: i64) {
        self.http_connections.add(change);
    }

    /// Counts one time the HTTP server waited for a connection to close before accepting.
    pub(crate) fn http_connection_waited(&self) {
        self.http_connection_waits.inc();
    }

    /// Counts acknowledged records.
    pub fn produced(&self, records: usize) {
        self.records_produced.inc_by(u64::try_from(records).unwrap_or(u64::MAX));
    }

    /// Records how long producing one request's copies took.
    pub fn produce_took(&self, seconds: f64) {
        self.produce_duration.observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> prometheus::Result<String> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let metrics = Metrics::new().unwrap();
        metrics.request(Outcome::Accepted);
        metrics.produced(3);
        metrics.produce_took(0.01);
        metrics.api_request("create_customer", 201);
        metrics.schema_validation_failed("avro");
        metrics.event_types("directory", 2);
        metrics.schema_registry_request("lookup", "not_found");
        metrics.grpc_request("SendOutgoingEvent", tonic::Code::InvalidArgument);
        metrics.request_timed_out("body");
        let text = metrics.render().unwrap();
        assert!(text.contains(r#"hookline_http_request_timeouts_total{stage="body"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_http_request_timeouts_total{stage="answer"} 0"#), "{text}");
        metrics.inflight(2048);
        metrics.inflight(-1024);
        metrics.inflight_wait(Bound::Total);
        let text = metrics.render().unwrap();
        assert!(text.contains("hookline_produce_inflight_bytes 1024"), "{text}");
        assert!(text.contains(r#"hookline_produce_inflight_waits_total{bound="total"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_produce_inflight_waits_total{bound="request"} 0"#), "{text}");
        let idempotency = metrics.idempotency();
        idempotency.keys.set(7);
        idempotency.evictions.inc_by(2);
        let catchups = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
        let read = std::sync::Arc::clone(&catchups);
        metrics
            .export_counter("hookline_directory_catchups_total", "Catch-ups.", move || {
                read.load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap();
        let text = metrics.render().unwrap();
        assert!(text.contains("hookline_idempotency_keys 7"), "{text}");
        assert!(text.contains("hookline_idempotency_evictions_total 2"), "{text}");
        assert!(text.contains("hookline_idempotency_load_records 0"), "{text}");
        assert!(text.contains("hookline_directory_catchups_total 3"), "{text}");
        catchups.store(10, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.render().unwrap();
        assert!(text.contains("hookline_directory_catchups_total 10"), "{text}");
        assert!(text.contains(r#"hookline_publish_requests_total{outcome="accepted"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_publish_requests_total{outcome="broker_error"} 0"#), "{text}");
        assert!(text.contains("hookline_records_produced_total 3"), "{text}");
        metrics.inbound_request(InboundOutcome::Stale);
        let text = metrics.render().unwrap();
        assert!(text.contains(r#"hookline_inbound_requests_total{outcome="stale"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_inbound_requests_total{outcome="accepted"} 0"#), "{text}");
        assert!(text.contains("hookline_produce_duration_seconds_count 1"), "{text}");
        assert!(text.contains(r#"hookline_api_requests_total{operation="create_customer",status="201"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_schema_validation_failures_total{format="avro"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_schema_validation_failures_total{format="json-schema"} 0"#), "{text}");
        assert!(text.contains(r#"hookline_event_types{source="directory"} 2"#), "{text}");
        assert!(text.contains(r#"hookline_event_types{source="registry"} 0"#), "{text}");
        assert!(
            text.contains(r#"hookline_schema_registry_requests_total{kind="lookup",result="not_found"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hookline_grpc_requests_total{code="InvalidArgument",method="SendOutgoingEvent"} 1"#),
            "{text}"
        );
    }
}

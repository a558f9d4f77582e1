//! W3C trace context: a record's `traceparent` header makes its `deliver` span, every `attempt`
//! and the `dead_letter` write join the publisher's trace, and the DLQ record keeps the header.
//!
//! This binary installs a global subscriber with the OpenTelemetry layer over an in-memory
//! exporter (the consumer works on other tasks, so a thread-local default would miss them).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Env;
use hookline_core::envelope::{EventRecord, headers};
use hookline_testkit::kafka::{header, read_topic};
use hookline_testkit::{Endpoint, wait_until};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISH_SPAN: &str = "00f067aa0ba902b7";

/// The spans finished so far in this process.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info,rdkafka=warn"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("hookline-consumer-test")))
            .init();
        // The provider stays alive with the layer's tracer.
        std::mem::forget(provider);
        exporter
    })
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_the_dlq_write_join_the_records_trace() {
    let exporter = exporter();
    let env = Env::new(1).await;
    let endpoint = Endpoint::always(503).await;
    env.customer("traced", &endpoint.url()).await;

    let raw = serde_json::value::to_raw_value(&serde_json::json!({"n": 1})).expect("payload");
    let event = EventRecord::new("test.event", raw);
    let traceparent = format!("00-{TRACE_ID}-{PUBLISH_SPAN}-01");
    let record_headers = OwnedHeaders::new()
        .insert(Header { key: headers::EVENT_ID, value: Some(&event.event_id) })
        .insert(Header { key: headers::TRACEPARENT, value: Some(&traceparent) });
    env.producer
        .send(
            FutureRecord::to(&env.topics.deliveries).key("traced").payload(&event.to_bytes()).headers(record_headers),
            WAIT,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");

    let mut config = env.config();
    config.delivery.max_attempts = 2;
    let consumer = env.start(config);
    wait_until(WAIT, "dead-lettered", || {
        consumer.counter("hookline_deliveries_total", &[("outcome", "dead_lettered")]) == 1
    })
    .await;
    let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
    wait_until(WAIT, "the deliver span finished", || {
        exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .any(|s| s.name == "deliver" && s.span_context.trace_id() == trace_id)
    })
    .await;

    let spans: Vec<SpanData> =
        exporter.get_finished_spans().unwrap().into_iter().filter(|s| s.span_context.trace_id() == trace_id).collect();
    let deliver = spans.iter().find(|s| s.name == "deliver").expect("deliver span");
    assert_eq!(deliver.parent_span_id, SpanId::from_hex(PUBLISH_SPAN).unwrap());
    assert_eq!(attribute(deliver, "event_id").as_deref(), Some(event.event_id.as_str()));
    assert_eq!(attribute(deliver, "customer").as_deref(), Some("traced"));

    let mut attempts: Vec<&SpanData> = spans.iter().filter(|s| s.name == "attempt").collect();
    attempts.sort_by_key(|s| attribute(s, "attempt"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.parent_span_id, deliver.span_context.span_id());
        assert_eq!(attribute(attempt, "attempt"), Some((n + 1).to_string()));
        assert_eq!(attribute(attempt, "status").as_deref(), Some("503"));
        assert_eq!(attribute(attempt, "error_class").as_deref(), Some("5xx"));
    }
    let dead_letter = spans.iter().find(|s| s.name == "dead_letter").expect("dead_letter span");
    assert_eq!(dead_letter.parent_span_id, deliver.span_context.span_id());
    assert_eq!(attribute(dead_letter, "reason").as_deref(), Some("max_attempts"));

    // The DLQ record keeps the original trace context.
    let dlq = read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(header(&dlq[0], headers::TRACEPARENT), Some(traceparent));

    consumer.stop().await;
}

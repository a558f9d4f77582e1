//! W3C trace context: a publish request joins the caller's trace (its `traceparent` header), and
//! every record it produces carries the request span's context in its own `traceparent` header.
//!
//! This binary installs a global subscriber with the OpenTelemetry layer over an in-memory
//! exporter (the publisher serves on other tasks, so a thread-local default would miss them).

use std::sync::OnceLock;

use hookline_core::envelope::headers;
use hookline_publisher::grpc::pb::SendOutgoingEventRequest;
use hookline_publisher::grpc::pb::event_broker_client::EventBrokerClient;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod common;

use common::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The spans finished so far in this process.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info,rdkafka=warn"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("hookline-publisher-test")))
            .init();
        // The provider stays alive with the layer's tracer.
        std::mem::forget(provider);
        exporter
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_callers_trace() {
    let exporter = exporter();
    let harness = Harness::start(&[("alice", &["order.created"]), ("bob", &["*"])], |_| {}).await;

    let response = harness
        .client
        .post(format!("{}/publish", harness.base))
        .bearer_auth(PRODUCER_TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"type": "order.created", "payload": {"n": 1}}))
        .send()
        .await
        .expect("publish request");
    let (status, answer) = decode(response).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 2, "{answer}");
    let event_id = answer["event_id"].as_str().expect("event_id");

    // The request's span: a child of the caller's, in the caller's trace.
    let spans = exporter.get_finished_spans().expect("finished spans");
    let publish = spans
        .iter()
        .find(|span| span.name == "publish" && span.span_context.trace_id() == TraceId::from_hex(TRACE_ID).unwrap())
        .unwrap_or_else(|| panic!("no `publish` span in the caller's trace: {spans:#?}"));
    assert_eq!(publish.parent_span_id, SpanId::from_hex(CALLER_SPAN).unwrap());
    let attribute = |key: &str| {
        publish.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(attribute("event_type").as_deref(), Some("order.created"));
    assert_eq!(attribute("event_id").as_deref(), Some(event_id));
    assert_eq!(attribute("deliveries").as_deref(), Some("2"));

    // Every copy carries the request span's context: same trace, the publisher's span.
    let expected = format!("00-{TRACE_ID}-{}-01", publish.span_context.span_id());
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        let traceparent = record.headers.get(headers::TRACEPARENT).expect("traceparent header");
        assert_eq!(traceparent, &expected, "{record:?}");
        assert_ne!(traceparent, &format!("00-{TRACE_ID}-{CALLER_SPAN}-01"));
        assert_eq!(record.headers.get(headers::EVENT_ID).map(String::as_str), Some(event_id));
    }

    // Without a caller's context the request starts its own trace, still carried by the records.
    let (status, answer) = harness.publish(json!({"type": "invoice.paid", "payload": null})).await;
    assert_eq!(status, 202, "{answer}");
    let event_id = answer["event_id"].as_str().expect("event_id");
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    let copy = records.iter().find(|record| record.value.event_id == event_id).expect("the copy for bob");
    let traceparent = copy.headers.get(headers::TRACEPARENT).expect("traceparent header");
    assert!(traceparent.starts_with("00-") && !traceparent.contains(TRACE_ID), "{traceparent}");

    // The gRPC event broker reads the caller's context from the request metadata.
    let grpc_span = "b7ad6b7169203331";
    let mut client = EventBrokerClient::connect(format!("http://{}", harness.grpc)).await.expect("connect");
    let mut request = tonic::Request::new(SendOutgoingEventRequest {
        r#type: "order.created".into(),
        payload: r#"{"n":3}"#.into(),
        target: Some("alice".into()),
        idempotency_key: None,
    });
    request.metadata_mut().insert("authorization", format!("Bearer {PRODUCER_TOKEN}").parse().expect("ascii"));
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{grpc_span}-01").parse().expect("ascii"));
    let answer = client.send_outgoing_event(request).await.expect("published").into_inner();
    let spans = exporter.get_finished_spans().expect("finished spans");
    let publish = spans
        .iter()
        .find(|span| span.name == "publish" && span.parent_span_id == SpanId::from_hex(grpc_span).unwrap())
        .unwrap_or_else(|| panic!("no `publish` span under the gRPC caller's: {spans:#?}"));
    assert_eq!(publish.span_context.trace_id(), TraceId::from_hex(TRACE_ID).unwrap());
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    let copy = records.iter().find(|record| record.value.event_id == answer.event_id).expect("the copy for alice");
    let expected = format!("00-{TRACE_ID}-{}-01", publish.span_context.span_id());
    assert_eq!(copy.headers.get(headers::TRACEPARENT), Some(&expected));

    harness.stop().await;
}

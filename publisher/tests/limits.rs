//! The publisher's size limits and in-flight bounds against a real tansu broker: one record limit
//! derived from `message.max.bytes` (413 above it, nothing produced; HTTP and gRPC alike), and a
//! large fan-out that streams through a small producer queue while other requests still get
//! through.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use hookline_core::codec::Codec;
use hookline_core::customer::Customer;
use hookline_core::directory::put_customers_with;
use hookline_core::envelope::EventRecord;
use hookline_core::limits;
use hookline_core::topics::watermarks;
use hookline_publisher::grpc::pb::SendOutgoingEventRequest;
use hookline_publisher::grpc::pb::event_broker_client::EventBrokerClient;
use serde_json::json;
use serde_json::value::RawValue;

/// A JSON string of exactly `len` bytes.
fn payload_of(len: usize) -> String {
    format!("\"{}\"", "x".repeat(len - 2))
}

fn body(event_type: &str, payload_len: usize) -> String {
    format!(r#"{{"type":"{event_type}","payload":{}}}"#, payload_of(payload_len))
}

/// The size of the record value the publisher writes for `event_type` and a payload of `len`
/// bytes (single-object Avro, as without a schema registry).
fn record_len(event_type: &str, payload_len: usize) -> usize {
    let payload = RawValue::from_string(payload_of(payload_len)).expect("JSON");
    EventRecord::new(event_type, payload).to_bytes().len()
}

/// The payload length whose record value is exactly `record` bytes.
fn payload_for_record(event_type: &str, record: usize) -> usize {
    // The envelope's size does not change with the payload's within the same varint width.
    let probe = record - 1000;
    let len = record - (record_len(event_type, probe) - probe);
    assert_eq!(record_len(event_type, len), record);
    len
}

fn metric(metrics: &str, series: &str) -> u64 {
    find_metric(metrics, series).unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

fn find_metric(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_above_the_record_limit_get_413_and_produce_nothing() {
    let harness = Harness::start(&[("alice", &["big.event"])], |_| {}).await;
    let limit = limits::max_record_value(limits::DEFAULT_MESSAGE_MAX_BYTES).expect("limit");

    // Between librdkafka's default message.max.bytes (1,000,000) and the old fixed body limit
    // (1 MiB): librdkafka refused the record, and the publisher answered 503 (retry!) forever.
    let (status, answer) = harness.post_raw("application/json", body("big.event", 1_020_000)).await;
    assert_eq!(status, 413, "{answer}");

    // A body within the body limit whose record is one byte over the record limit, with and
    // without subscribers: the answer does not depend on who would receive it.
    let over = payload_for_record("big.event", limit + 1);
    for event_type in ["big.event", "nobody.event"] {
        let over = payload_for_record(event_type, limit + 1);
        let (status, answer) = harness.post_raw("application/json", body(event_type, over)).await;
        assert_eq!(status, 413, "{answer}");
        let error = error_of(&answer);
        assert!(error.contains(&limit.to_string()) && error.contains("message.max.bytes"), "{error}");
    }
    // gRPC refuses it alike.
    let mut client =
        EventBrokerClient::connect(format!("http://{}", harness.grpc)).await.expect("connect to the gRPC broker");
    let mut request = tonic::Request::new(SendOutgoingEventRequest {
        r#type: "big.event".into(),
        payload: payload_of(over),
        target: None,
        idempotency_key: None,
    });
    request.metadata_mut().insert("authorization", format!("Bearer {PRODUCER_TOKEN}").parse().expect("metadata"));
    let status = client.send_outgoing_event(request).await.expect_err("too large");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(&limit.to_string()), "{status:?}");

    let marks = watermarks(&harness.kafka, &harness.topics.deliveries).await.expect("watermarks");
    assert!(marks.iter().all(|(_, _, high)| *high == 0), "records were produced: {marks:?}");

    // Exactly at the limit: accepted, and on the topic whole.
    let at = payload_for_record("big.event", limit);
    let (status, answer) = harness.post_raw("application/json", body("big.event", at)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.payload.get().len(), at);

    let (_, metrics) = harness.get("/metrics").await;
    assert_eq!(metric(&metrics, r#"hookline_publish_requests_total{outcome="too_large"}"#), 3, "{metrics}");
    assert_eq!(metric(&metrics, r#"hookline_publish_requests_total{outcome="broker_error"}"#), 0, "{metrics}");
    assert_eq!(metric(&metrics, r#"hookline_publish_requests_total{outcome="accepted"}"#), 1, "{metrics}");

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fan_out_streams_through_while_small_publishes_get_through() {
    const SUBSCRIBERS: usize = 100;
    const SMALL: usize = 20;
    const PAYLOAD: usize = 90_000;
    let ids: Vec<String> = (0..SUBSCRIBERS).map(|n| format!("sub-{n:03}")).collect();
    // librdkafka's queue holds 256 KiB: two copies of the big event, where the fan-out is 100
    // copies (9 MB). Handed over all at once, most copies found the queue full and the request
    // failed after --produce-timeout.
    let harness = Harness::start(&[("small", &["small.event"])], |config| {
        config.kafka = config
            .kafka
            .clone()
            .with_property("message.max.bytes", "100000")
            .with_property("queue.buffering.max.kbytes", "256");
        config.produce_timeout = Duration::from_secs(2);
    })
    .await;
    // The subscribers, written through one producer (one at a time through `add_customer` takes
    // a minute); a targeted event to the last one makes the directory catch up with them all.
    let subscribers: Vec<Customer> = ids
        .iter()
        .map(|id| Customer::new(id, "http://127.0.0.1:9/webhook", vec!["big.event".into()]).expect("customer"))
        .collect();
    put_customers_with(&harness.kafka, &Codec::single_object(), &harness.topics.customers, &subscribers)
        .await
        .expect("put customers");
    let last = ids.last().expect("subscribers");
    let (status, answer) = harness.publish(json!({"type": "probe.event", "payload": 1, "target": last})).await;
    assert_eq!(status, 202, "{answer}");
    let probe_id = answer["event_id"].as_str().expect("event_id").to_owned();

    let big = harness.post_raw("application/json", body("big.event", PAYLOAD));
    let small = async {
        // Once the fan-out is under way: it has waited for its window (give up waiting after a
        // while, so that the test cannot hang on it).
        for _ in 0..500 {
            let (_, metrics) = harness.get("/metrics").await;
            if find_metric(&metrics, r#"hookline_produce_inflight_waits_total{bound="request"}"#).is_some_and(|n| n > 0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut answers = Vec::new();
        for n in 0..SMALL {
            answers.push(harness.publish(json!({"type": "small.event", "payload": {"n": n}})).await);
        }
        answers
    };
    let ((status, answer), small) = tokio::join!(big, small);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], SUBSCRIBERS, "{answer}");
    let big_id = answer["event_id"].as_str().expect("event_id").to_owned();
    let mut small_ids = BTreeSet::new();
    for (status, answer) in &small {
        assert_eq!(*status, 202, "{answer}");
        small_ids.insert(answer["event_id"].as_str().expect("event_id").to_owned());
    }
    assert_eq!(small_ids.len(), SMALL);

    let mut keys_by_event: HashMap<String, BTreeSet<String>> = HashMap::new();
    for record in read_all(&harness.kafka, &harness.topics.deliveries).await {
        keys_by_event.entry(record.value.event_id).or_default().insert(record.key);
    }
    assert_eq!(keys_by_event.remove(&big_id), Some(ids.iter().cloned().collect()));
    assert_eq!(keys_by_event.remove(&probe_id), Some(BTreeSet::from([last.clone()])));
    assert_eq!(keys_by_event.keys().cloned().collect::<BTreeSet<_>>(), small_ids);
    assert!(keys_by_event.values().all(|keys| *keys == BTreeSet::from(["small".to_owned()])));

    let (_, metrics) = harness.get("/metrics").await;
    assert!(metric(&metrics, r#"hookline_produce_inflight_waits_total{bound="request"}"#) > 0, "{metrics}");
    assert_eq!(metric(&metrics, "hookline_produce_inflight_bytes"), 0, "{metrics}");
    assert_eq!(metric(&metrics, r#"hookline_publish_requests_total{outcome="broker_error"}"#), 0, "{metrics}");

    harness.stop().await;
}

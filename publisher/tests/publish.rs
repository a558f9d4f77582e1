//! End-to-end tests of the publisher against a real tansu broker: HTTP in, records on the
//! delivery topic read back with a plain Kafka reader.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use hookline_core::envelope::headers;
use hookline_core::topics::watermarks;
use hookline_testkit::{Broker, init_test_logging};
use serde_json::{Value, json};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_to_subscribed_customers() {
    let harness =
        Harness::start(&[("alice", &["order.created"]), ("bob", &["*"]), ("carol", &["invoice.paid"])], |_| {}).await;

    let payload = r#"{"order_id":42,  "items":["a","b"]}"#;
    let body = format!(r#"{{"type":"order.created","payload":{payload}}}"#);
    let (status, answer) = harness.post_raw("application/json", body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 2, "{answer}");
    let event_id = answer["event_id"].as_str().expect("event_id").to_owned();
    assert!(event_id.starts_with("evt_"), "{event_id}");

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["alice", "bob"]));
    for record in &records {
        assert_eq!(record.value.event_id, event_id);
        assert_eq!(record.value.event_type, "order.created");
        // The payload is forwarded byte for byte, not re-serialized.
        assert_eq!(record.value.payload.get(), payload);
        assert_eq!(record.headers.get(headers::EVENT_ID), Some(&event_id));
        assert_eq!(record.headers.get(headers::EVENT_TYPE).map(String::as_str), Some("order.created"));
    }

    // `bob` subscribes to everything: he alone gets an event type nobody else wants.
    let (status, answer) = harness.publish(json!({"type": "invoice.voided", "payload": null})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let event_id = answer["event_id"].as_str().expect("event_id");
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let copies: Vec<_> = records.iter().filter(|r| r.value.event_id == event_id).collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!((copies[0].key.as_str(), copies[0].value.payload.get()), ("bob", "null"));

    let (status, metrics) = harness.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="accepted"} 2"#), "{metrics}");
    assert!(metrics.contains("hookline_records_produced_total 3"), "{metrics}");

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_reaches_only_that_customer() {
    let harness = Harness::start(&[("alice", &["order.created"]), ("bob", &["order.created"])], |_| {}).await;

    let (status, answer) =
        harness.publish(json!({"type": "order.created", "payload": {"n": 1}, "target": "bob"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].key, "bob");
    assert_eq!(records[0].value.event_id, answer["event_id"].as_str().expect("event_id"));

    let (status, answer) =
        harness.publish(json!({"type": "order.created", "payload": {"n": 2}, "target": "mallory"})).await;
    assert_eq!(status, 404, "{answer}");
    assert!(error_of(&answer).contains("mallory"), "{answer}");

    // No subscriber is not an error.
    let (status, answer) = harness.publish(json!({"type": "nobody.cares", "payload": {"n": 3}})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 0, "{answer}");
    assert_eq!(read_all(&harness.kafka, &harness.topics.deliveries).await.len(), 1);

    // A customer added after start-up is found: the directory catches up before saying unknown.
    add_customer(&harness.kafka, &harness.topics, "dave", &["order.created"]).await;
    let (status, answer) =
        harness.publish(json!({"type": "order.created", "payload": {"n": 4}, "target": "dave"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");

    // An explicit target is delivered to even if the customer does not subscribe to the type.
    let (status, answer) =
        harness.publish(json!({"type": "invoice.paid", "payload": {"n": 5}, "target": "alice"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["alice", "bob", "dave"]);

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_produce_nothing() {
    let harness =
        Harness::start(&[("alice", &["order.created", "*"])], |config| config.max_body_size = Some(256)).await;

    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("malformed JSON", "application/json", r#"{"type": "order.created", "payload": "#.into(), 400, ""),
        ("empty body", "application/json", String::new(), 400, ""),
        ("missing type", "application/json", r#"{"payload": {}}"#.into(), 422, "type"),
        ("missing payload", "application/json", r#"{"type": "order.created"}"#.into(), 422, "payload"),
        (
            "unknown field",
            "application/json",
            r#"{"type": "order.created", "payload": {}, "extra": 1}"#.into(),
            422,
            "extra",
        ),
        ("ill-typed type", "application/json", r#"{"type": 7, "payload": {}}"#.into(), 422, "type"),
        ("invalid type", "application/json", r#"{"type": "order created", "payload": {}}"#.into(), 422, "type"),
        ("wildcard type", "application/json", r#"{"type": "*", "payload": {}}"#.into(), 422, "type"),
        (
            "invalid target",
            "application/json",
            r#"{"type": "order.created", "payload": {}, "target": "no such id"}"#.into(),
            422,
            "target",
        ),
        ("array body", "application/json", r#"["order.created", {}]"#.into(), 422, ""),
        ("wrong content type", "text/plain", r#"{"type": "order.created", "payload": {}}"#.into(), 415, ""),
        (
            "too large",
            "application/json",
            format!(r#"{{"type": "order.created", "payload": "{}"}}"#, "x".repeat(1000)),
            413,
            "",
        ),
    ];
    for (name, content_type, body, status, mentions) in cases {
        let (got, answer) = harness.post_raw(content_type, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        let error = error_of(&answer);
        assert!(!error.is_empty(), "{name}: empty error");
        assert!(error.contains(mentions), "{name}: {error:?} should mention {mentions:?}");
    }

    // A request without any content type is refused the same way.
    let response = harness
        .client
        .post(format!("{}/publish", harness.base))
        .bearer_auth(PRODUCER_TOKEN)
        .body(r#"{"type": "order.created", "payload": {}}"#)
        .send()
        .await
        .expect("request");
    let (status, answer) = decode(response).await;
    assert_eq!(status, 415, "{answer}");

    let marks = watermarks(&harness.kafka, &harness.topics.deliveries).await.expect("watermarks");
    assert_eq!(marks.len(), usize::try_from(PARTITIONS).expect("partitions"));
    assert!(marks.iter().all(|(_, _, high)| *high == 0), "records were produced: {marks:?}");

    // Other routes: JSON everywhere.
    let (status, body) = harness.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json"), json!({"status": "ok"}));
    let response = harness.client.get(format!("{}/nowhere", harness.base)).send().await.expect("request");
    let (status, answer) = decode(response).await;
    assert_eq!(status, 404);
    assert!(error_of(&answer).contains("/nowhere"), "{answer}");
    let response = harness.client.get(format!("{}/publish", harness.base)).send().await.expect("request");
    let (status, answer) = decode(response).await;
    assert_eq!(status, 405);
    error_of(&answer);

    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="bad_request"} 4"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="invalid"} 8"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="too_large"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="accepted"} 0"#), "{metrics}");

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_all_published() {
    const REQUESTS: usize = 200;
    const CONCURRENCY: usize = 32;
    let harness = Harness::start(&[("alice", &["order.created"]), ("bob", &["order.created"])], |_| {}).await;

    let answers: Vec<(u16, Value)> = futures::stream::iter(0..REQUESTS)
        .map(|n| harness.publish(json!({"type": "order.created", "payload": {"n": n}})))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut accepted_ids = BTreeSet::new();
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer}");
        assert_eq!(answer["deliveries"], 2, "{answer}");
        accepted_ids.insert(answer["event_id"].as_str().expect("event_id").to_owned());
    }
    assert_eq!(accepted_ids.len(), REQUESTS, "event ids must be distinct");

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), REQUESTS * 2);
    let mut keys_by_event: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for record in &records {
        assert_eq!(record.headers.get(headers::EVENT_ID), Some(&record.value.event_id));
        keys_by_event.entry(record.value.event_id.as_str()).or_default().insert(record.key.as_str());
    }
    let on_topic: BTreeSet<String> = keys_by_event.keys().map(|id| (*id).to_owned()).collect();
    assert_eq!(on_topic, accepted_ids);
    assert!(keys_by_event.values().all(|keys| *keys == BTreeSet::from(["alice", "bob"])));

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_answers_503() {
    init_test_logging();
    let broker = Broker::start();
    let mut harness = Harness::start_on(broker, &[("alice", &["order.created"])], |config| {
        config.produce_timeout = Duration::from_secs(2);
        config.kafka = config.kafka.clone().with_property("message.timeout.ms", "2000");
    })
    .await;

    // Works while the broker is up...
    let (status, answer) = harness.publish(json!({"type": "order.created", "payload": {"n": 1}})).await;
    assert_eq!(status, 202, "{answer}");
    let (status, body) = harness.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // ...and answers 503 with a JSON error, not a hang or a 202, once it is gone.
    harness.broker.kill();
    let (status, answer) = harness.publish(json!({"type": "order.created", "payload": {"n": 2}})).await;
    assert_eq!(status, 503, "{answer}");
    let error = error_of(&answer);
    assert!(error.contains("could not publish event evt_"), "{error}");
    assert!(error.contains("1 of 1 deliveries failed"), "{error}");

    // Alive, but not ready.
    let (status, _) = harness.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = harness.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not_ready"), "{body}");
    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="broker_error"} 1"#), "{metrics}");

    harness.stop().await;
}

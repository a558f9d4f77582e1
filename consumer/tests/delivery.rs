//! Delivery against a real broker (tansu) and real HTTP endpoints on 127.0.0.1.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::Env;
use hookline_core::deadletter::headers as dlq_headers;
use hookline_core::envelope::headers;
use hookline_testkit::kafka::{committed_offsets, header, produce_raw, read_topic};
use hookline_testkit::{Endpoint, Respond, wait_until};
use rdkafka::message::Message;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_many_customers_in_order_per_customer() {
    let env = Env::new(6).await;
    let endpoint = Endpoint::ok().await;
    let customers: Vec<String> = (0..8).map(|i| format!("customer-{i}")).collect();
    for customer in &customers {
        env.customer(customer, &format!("{}?c={customer}", endpoint.url())).await;
    }
    let mut published = BTreeSet::new();
    for seq in 0..15 {
        for customer in &customers {
            published.insert(env.publish(customer, json!({"customer": customer, "seq": seq})).await);
        }
    }
    let consumer = env.start(env.config());
    wait_until(WAIT, "every event delivered", || endpoint.distinct_ids().len() == published.len()).await;

    let received = endpoint.received();
    assert_eq!(endpoint.distinct_ids(), published);
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for request in &received {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert!(request.webhook_id().starts_with("evt_"));
        assert!(request.header("webhook-timestamp").and_then(|t| t.parse::<u64>().ok()).is_some());
        let body = request.json();
        assert_eq!(body["type"], "test.event");
        assert!(body["timestamp"].is_string());
        let customer = body["data"]["customer"].as_str().unwrap().to_owned();
        let seq = body["data"]["seq"].as_i64().unwrap();
        let previous = last_seq.insert(customer.clone(), seq);
        assert!(previous.is_none_or(|p| p < seq), "{customer}: seq {seq} after {previous:?}");
    }
    assert_eq!(last_seq.len(), customers.len());
    assert!(last_seq.values().all(|seq| *seq == 14));

    consumer.stop().await;
    // Everything was ACKed, so the group's commits cover every record.
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    let total: i64 = committed.values().sum();
    assert_eq!(total, i64::try_from(published.len()).unwrap(), "{committed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_endpoint_accepts() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::fail_first(2, 503).await;
    env.customer("flaky", &endpoint.url()).await;
    let id = env.publish("flaky", json!({"n": 1})).await;
    let consumer = env.start(env.config());
    wait_until(WAIT, "three attempts", || endpoint.count() >= 3).await;
    wait_until(WAIT, "delivered metric", || {
        consumer.counter("hookline_deliveries_total", &[("outcome", "delivered")]) == 1
    })
    .await;

    let received = endpoint.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.webhook_id() == id), "same webhook-id on every attempt");
    assert!(received.windows(2).all(|w| w[1].at > w[0].at + Duration::from_millis(50)), "backoff between attempts");
    assert_eq!(consumer.counter("hookline_retries_total", &[]), 2);
    assert_eq!(
        consumer.counter("hookline_delivery_attempts_total", &[("outcome", "failed"), ("status_class", "5xx")]),
        2
    );
    assert_eq!(consumer.counter("hookline_delivery_attempts_total", &[("outcome", "ack")]), 1);
    consumer.stop().await;
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_retry_after_within_the_maximum() {
    let env = Env::new(1).await;
    let endpoint =
        Endpoint::start(
            |r| if r.earlier_attempts == 0 { Respond::status(429).retry_after("1") } else { Respond::ok() },
        )
        .await;
    env.customer("limited", &endpoint.url()).await;
    env.publish("limited", json!({})).await;
    let mut config = env.config();
    config.delivery.max_backoff = Duration::from_secs(3);
    let consumer = env.start(config);
    wait_until(WAIT, "two attempts", || endpoint.count() >= 2).await;
    let received = endpoint.received();
    // The schedule alone would have waited 100-200 ms; Retry-After asked for a second.
    assert!(received[1].at - received[0].at >= Duration::from_millis(950), "{:?}", received[1].at - received[0].at);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_after_the_last_attempt_then_commits() {
    let env = Env::new(2).await;
    let broken = Endpoint::always(500).await;
    let healthy = Endpoint::ok().await;
    env.customer("broken", &broken.url()).await;
    env.customer("healthy", &healthy.url()).await;
    let dead = env.publish("broken", json!({"n": 1})).await;
    let fine = env.publish("healthy", json!({"n": 2})).await;
    let consumer = env.start(env.config());
    wait_until(WAIT, "dead letter", || consumer.counter("hookline_dlq_records_total", &[]) == 1).await;
    wait_until(WAIT, "healthy delivery", || healthy.distinct_ids().contains(&fine)).await;
    consumer.stop().await;

    assert_eq!(broken.count(), 4, "max-attempts = 4");
    let dlq = read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dlq.len(), 1);
    let letter = &dlq[0];
    assert_eq!(letter.key(), Some(b"broken".as_slice()));
    assert_eq!(header(letter, headers::EVENT_ID).as_deref(), Some(dead.as_str()));
    assert_eq!(header(letter, dlq_headers::DLQ_REASON).as_deref(), Some("max_attempts"));
    assert_eq!(header(letter, dlq_headers::DLQ_ATTEMPTS).as_deref(), Some("4"));
    assert_eq!(header(letter, dlq_headers::DLQ_LAST_STATUS).as_deref(), Some("500"));
    assert_eq!(header(letter, dlq_headers::ORIGINAL_TOPIC).as_deref(), Some(env.topics.deliveries.as_str()));
    let originals = read_topic(&env.kafka, &env.topics.deliveries).await;
    let original = originals.iter().find(|m| m.key() == Some(b"broken".as_slice())).unwrap();
    assert_eq!(letter.payload(), original.payload(), "the value is the original record, unchanged");
    assert_eq!(header(letter, dlq_headers::ORIGINAL_PARTITION), Some(original.partition().to_string()));
    assert_eq!(header(letter, dlq_headers::ORIGINAL_OFFSET), Some(original.offset().to_string()));

    // Both records are done (one ACKed, one dead-lettered), so the commits cover both.
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    for partition in 0..2 {
        let records = originals.iter().filter(|m| m.partition() == partition).count();
        assert_eq!(committed.get(&partition).copied().unwrap_or(0), i64::try_from(records).unwrap(), "{committed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_orphan_records_go_to_the_dlq_at_once() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    env.customer("known", &endpoint.url()).await;
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"known"), b"not json").await;
    produce_raw(&env.producer, &env.topics.deliveries, None, b"{}").await;
    env.publish("nobody", json!({})).await;
    let after = env.publish("known", json!({"still": "delivered"})).await;
    let consumer = env.start(env.config());
    wait_until(WAIT, "later record delivered", || endpoint.distinct_ids().contains(&after)).await;
    consumer.stop().await;

    assert_eq!(endpoint.count(), 1, "nothing else was sent");
    let reasons: Vec<String> = read_topic(&env.kafka, &env.topics.dlq)
        .await
        .iter()
        .filter_map(|m| header(m, dlq_headers::DLQ_REASON))
        .collect();
    assert_eq!(reasons, ["undecodable", "undecodable", "unknown_customer"]);
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_uses_the_customers_current_url() {
    let env = Env::new(1).await;
    let old = Endpoint::always(503).await;
    let new = Endpoint::ok().await;
    env.customer("moving", &old.url()).await;
    let id = env.publish("moving", json!({})).await;
    let mut config = env.config();
    config.delivery.max_attempts = 50;
    let consumer = env.start(config);
    wait_until(WAIT, "a failed attempt at the old URL", || old.count() >= 1).await;
    env.customer("moving", &new.url()).await;
    wait_until(WAIT, "delivery at the new URL", || new.distinct_ids().contains(&id)).await;
    consumer.stop().await;
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
}

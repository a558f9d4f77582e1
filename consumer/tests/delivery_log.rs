//! The delivery log (the attempts topic) as a real consumer writes it, against a real broker
//! (tansu) and real HTTP endpoints on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Env, event};
use hookline_consumer::config::Switch;
use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use hookline_testkit::kafka::{produce_record, read_topic};
use hookline_testkit::{Endpoint, Respond, wait_until};
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(60);

/// The delivery log's records of `customer`, in the order written.
async fn log_of(env: &Env, customer: &str) -> Vec<AttemptRecord> {
    read_topic(&env.kafka, &env.topics.attempts)
        .await
        .iter()
        .filter(|m| m.key() == Some(customer.as_bytes()))
        .map(|m| AttemptRecord::from_value(m.payload().unwrap_or_default()).expect("an attempt record"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_and_decision_is_in_the_delivery_log() {
    let env = Env::new(1).await;
    // "flaky" refuses twice, with a reason in the body, then accepts; "broken" always refuses.
    let endpoint = Endpoint::start(|request| {
        let broken = request.path.contains("broken");
        if broken || request.earlier_attempts < 2 {
            Respond::status(503).body(&format!("busy {}", "x".repeat(1_000)))
        } else {
            Respond::ok()
        }
    })
    .await;
    env.customer("flaky", &format!("{}/flaky", endpoint.url())).await;
    env.customer("broken", &format!("{}/broken", endpoint.url())).await;
    let flaky_event = event(1);
    produce_record(&env.producer, &env.topics.deliveries, "flaky", &flaky_event).await;
    let broken_event = event(2);
    produce_record(&env.producer, &env.topics.deliveries, "broken", &broken_event).await;
    // The same event again for "flaky": the ledger has it once delivered, so it is skipped.
    produce_record(&env.producer, &env.topics.deliveries, "flaky", &flaky_event).await;

    let consumer = env.start(env.config());
    wait_until(WAIT, "the log tells of every attempt and decision", || {
        let written = consumer.counter("hookline_attempt_log_records_total", &[("outcome", "written")]);
        // flaky: 2 failed, 1 delivered, 1 skipped; broken: 4 failed, 1 dead-lettered.
        written >= 9
    })
    .await;

    let flaky = log_of(&env, "flaky").await;
    let outcomes: Vec<(AttemptOutcome, u32)> = flaky.iter().map(|r| (r.outcome, r.attempt)).collect();
    assert_eq!(
        outcomes,
        [
            (AttemptOutcome::Failed, 1),
            (AttemptOutcome::Failed, 2),
            (AttemptOutcome::Delivered, 3),
            (AttemptOutcome::Skipped, 0)
        ]
    );
    for record in &flaky {
        assert_eq!(
            (record.event_id.as_str(), record.event_type.as_str()),
            (flaky_event.event_id.as_str(), "test.event")
        );
        assert_eq!((record.topic.as_str(), record.partition), (env.topics.deliveries.as_str(), 0));
    }
    assert!(flaky[..3].iter().all(|r| r.offset == 0), "the attempts point at the record: {flaky:?}");
    assert_eq!(flaky[3].offset, 2, "the skip points at the copy seen again");
    let refused = &flaky[0];
    assert_eq!((refused.status, refused.error_class.as_deref()), (Some(503), Some("5xx")));
    assert!(refused.error.as_deref().is_some_and(|e| e.contains("503")), "{refused:?}");
    let excerpt = refused.response.as_deref().expect("the start of the endpoint's answer");
    assert!(excerpt.starts_with("busy xxx") && excerpt.len() <= hookline_core::attempts::EXCERPT_MAX, "{excerpt}");
    assert!(refused.duration_ms.is_some() && flaky[2].status == Some(200));
    assert!(flaky.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "in time order");

    let broken = log_of(&env, "broken").await;
    let outcomes: Vec<AttemptOutcome> = broken.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [[AttemptOutcome::Failed; 4].as_slice(), &[AttemptOutcome::DeadLettered]].concat());
    let letter = broken.last().unwrap();
    assert_eq!((letter.reason.as_deref(), letter.attempt, letter.status), (Some("max_attempts"), 4, Some(503)));
    assert_eq!(letter.event_id, broken_event.event_id);
    assert_eq!(consumer.counter("hookline_attempt_log_records_total", &[("outcome", "dropped")]), 0);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_topic_is_needed_only_with_the_log_on() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    env.customer("acme", &endpoint.url()).await;
    let mut missing = env.config();
    missing.topics.attempts = format!("{}.nowhere", env.topics.deliveries);

    // On (the default): a consumer without its log topic refuses to start, naming it.
    let refused = env.start(missing.clone());
    let error = refused.handle.await.expect("the consumer task").expect_err("a missing log topic");
    assert!(error.to_string().contains(".nowhere"), "{error}");

    // Off: it delivers, and records nothing.
    missing.delivery_log = Switch::Off;
    let consumer = env.start(missing);
    env.publish("acme", serde_json::json!({"n": 1})).await;
    wait_until(WAIT, "delivered", || endpoint.count() == 1).await;
    consumer.stop().await;
    assert!(read_topic(&env.kafka, &env.topics.attempts).await.is_empty());
}

/// Produces `event` for `customer` as a resend would: the same record, marked with `resend_id`.
async fn produce_resend(env: &Env, customer: &str, event: &hookline_core::envelope::EventRecord, resend_id: &str) {
    use hookline_core::envelope::headers;
    use rdkafka::message::Header;
    use rdkafka::producer::FutureRecord;
    let value = event.to_bytes();
    let marked = event.record_headers().insert(Header { key: headers::RESEND_ID, value: Some(resend_id) });
    let record = FutureRecord::to(&env.topics.deliveries).key(customer).payload(&value).headers(marked);
    env.producer.send(record, Duration::from_secs(10)).await.expect("produce the resend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_is_sent_once_although_the_event_was_delivered() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    env.customer("acme", &endpoint.url()).await;
    let delivered = event(1);
    produce_record(&env.producer, &env.topics.deliveries, "acme", &delivered).await;
    let consumer = env.start(env.config());
    wait_until(WAIT, "delivered", || endpoint.count() == 1).await;

    // The same event again: a duplicate is skipped; a resend is sent, once however often its
    // copy is seen (a redelivery after a crash, say).
    produce_record(&env.producer, &env.topics.deliveries, "acme", &delivered).await;
    produce_resend(&env, "acme", &delivered, "rs_1").await;
    produce_resend(&env, "acme", &delivered, "rs_1").await;
    wait_until(WAIT, "the log tells of all four copies", || {
        consumer.counter("hookline_attempt_log_records_total", &[("outcome", "written")]) >= 4
    })
    .await;
    let outcomes: Vec<AttemptOutcome> = log_of(&env, "acme").await.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Delivered, AttemptOutcome::Skipped, AttemptOutcome::Delivered, AttemptOutcome::Skipped]
    );
    assert_eq!(endpoint.count(), 2);
    assert!(endpoint.received().iter().all(|r| r.webhook_id() == delivered.event_id), "the same webhook-id");
    consumer.stop().await;
}

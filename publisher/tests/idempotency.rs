//! `Idempotency-Key` on `POST /publish`, against a real broker (tansu): a repeat is answered from
//! the first request and produces nothing, across a publisher restart and between replicas; the
//! view of the keys stays within its window and its cap, and a restart reads a bounded tail.

use std::time::Duration;

use hookline_core::config::{SecretString, TopicArgs};
use hookline_publisher::idempotency::CLOCK_MARGIN;
use hookline_testkit::tenants;
use rdkafka::message::Message;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod common;

use common::*;

/// A publisher on the harness's broker and topics (another replica, or the same one restarted).
struct Replica {
    base: String,
    shutdown: CancellationToken,
    server: JoinHandle<hookline_publisher::Result<()>>,
}

impl Replica {
    async fn start(harness: &Harness) -> Self {
        Self::start_with(harness, |_| {}).await
    }

    async fn start_with(harness: &Harness, tweak: impl FnOnce(&mut hookline_publisher::Config)) -> Self {
        let mut config = hookline_publisher::Config::new(harness.kafka.clone(), harness.topics.clone());
        config.producer_tokens = vec![SecretString::new(PRODUCER_TOKEN)];
        config.master_key = tenants::master_key_args();
        config.network = tenants::loopback_network();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(hookline_publisher::serve(config, listener, shutdown.clone()));
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(!server.is_finished(), "the replica stopped during start-up");
            assert!(tokio::time::Instant::now() < deadline, "the replica did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { base, shutdown, server }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.expect("metrics").text().await.expect("text");
        metric_value(&text, name)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("replica task").expect("replica result");
    }
}

/// POSTs `body` to `base`'s `/publish` with `key`; the status, the replay header and the answer.
async fn publish_with_key(base: &str, key: &str, body: &Value) -> (u16, bool, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/publish"))
        .bearer_auth(PRODUCER_TOKEN)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("publish");
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let status = response.status().as_u16();
    (status, replayed, response.json().await.expect("JSON answer"))
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

async fn harness_metric(harness: &Harness, name: &str) -> f64 {
    metric_value(&harness.get("/metrics").await.1, name)
}

async fn copies_of(harness: &Harness, topics: &TopicArgs, event_id: &str) -> usize {
    read_all(&harness.kafka, &topics.deliveries).await.iter().filter(|r| r.value.event_id == event_id).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_gets_the_first_answer_and_produces_nothing_new() {
    let harness = Harness::start(&[("alice", &["order.created"]), ("bob", &["*"])], |_| {}).await;
    let body = json!({"type": "order.created", "payload": {"id": 1}});

    let (status, replayed, first) = publish_with_key(&harness.base, "order-1", &body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    assert_eq!(first["deliveries"], 2);
    let event_id = first["event_id"].as_str().expect("event_id").to_owned();

    let (status, replayed, again) = publish_with_key(&harness.base, "order-1", &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first, "the same answer");
    assert_eq!(copies_of(&harness, &harness.topics, &event_id).await, 2, "nothing produced by the repeat");

    // The same key for another request is refused, naming the header.
    let other = json!({"type": "order.created", "payload": {"id": 2}});
    let (status, _, refused) = publish_with_key(&harness.base, "order-1", &other).await;
    assert_eq!(status, 422, "{refused}");
    assert!(error_of(&refused).contains("Idempotency-Key"), "{refused}");
    // Another key is another event.
    let (status, replayed, second) = publish_with_key(&harness.base, "order-2", &other).await;
    assert_eq!((status, replayed), (202, false), "{second}");
    assert_ne!(second["event_id"], first["event_id"]);
    // Without a key nothing changes: every request is a new event.
    let (status, plain) = harness.publish(body.clone()).await;
    assert_eq!(status, 202);
    assert_ne!(plain["event_id"], first["event_id"]);

    // A malformed key is refused before anything is produced.
    let (status, _, refused) = publish_with_key(&harness.base, &"k".repeat(300), &body).await;
    assert_eq!(status, 422, "{refused}");
    assert!(error_of(&refused).contains("Idempotency-Key"), "{refused}");
    assert_eq!(read_all(&harness.kafka, &harness.topics.deliveries).await.len(), 2 + 2 + 2);

    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="replayed"} 1"#), "{metrics}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_hold_across_a_restart_and_between_replicas() {
    let harness = Harness::start(&[("alice", &["*"]), ("bob", &["*"]), ("carol", &["*"])], |_| {}).await;
    let body = json!({"type": "invoice.paid", "payload": {"invoice": "in_1"}});
    let (status, _, first) = publish_with_key(&harness.base, "invoice-1", &body).await;
    assert_eq!(status, 202, "{first}");
    let event_id = first["event_id"].as_str().expect("event_id").to_owned();

    // A publisher started afterwards (a restart, or another replica) knows the key.
    let restarted = Replica::start(&harness).await;
    let (status, replayed, again) = publish_with_key(&restarted.base, "invoice-1", &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first);
    restarted.stop().await;

    // Two replicas racing on a new key, many times over: one event, three copies, whoever wins.
    let (one, two) = (Replica::start(&harness).await, Replica::start(&harness).await);
    let race = json!({"type": "invoice.paid", "payload": {"invoice": "in_2"}});
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let base = if i % 2 == 0 { one.base.clone() } else { two.base.clone() };
            let race = race.clone();
            tokio::spawn(async move { publish_with_key(&base, "invoice-2", &race).await })
        })
        .collect();
    let mut event_ids = Vec::new();
    for attempt in attempts {
        let (status, _, answer) = attempt.await.expect("request task");
        match status {
            202 => event_ids.push(answer["event_id"].as_str().expect("event_id").to_owned()),
            // Lost the race while the winner was still producing: retry later.
            409 => assert!(error_of(&answer).contains("in progress"), "{answer}"),
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(!event_ids.is_empty(), "one request at least won");
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 1, "every accepted answer names the same event: {event_ids:?}");
    // Once the winner is done, a retry of a refused request is a replay.
    let (status, replayed, settled) = publish_with_key(&two.base, "invoice-2", &race).await;
    assert_eq!((status, replayed), (202, true), "{settled}");
    assert_eq!(settled["event_id"].as_str(), Some(event_ids[0].as_str()));
    assert_eq!(copies_of(&harness, &harness.topics, &event_ids[0]).await, 3, "one copy per customer");
    assert_eq!(copies_of(&harness, &harness.topics, &event_id).await, 3);
    one.stop().await;
    two.stop().await;
    harness.stop().await;
}

/// A keyed publish reads its claim back without waiting for the fetch deadline of a broker that
/// answers a waiting fetch only then (tansu; librdkafka's mock cluster), with the publisher's
/// defaults: ten in a row take well under ten of librdkafka's default 500 ms deadlines, which
/// each of them waited at least once before. The bound, 250 ms a request, is generous; it is not
/// a benchmark (`make bench` has the figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_publishes_in_a_row_do_not_each_wait_for_a_fetch_deadline() {
    const REQUESTS: u32 = 10;
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let body = json!({"type": "order.created", "payload": {"id": 1}});
    let started = std::time::Instant::now();
    for i in 0..REQUESTS {
        let (status, replayed, answer) = publish_with_key(&harness.base, &format!("order-{i}"), &body).await;
        assert_eq!((status, replayed), (202, false), "{answer}");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(250) * REQUESTS,
        "{REQUESTS} keyed publishes took {took:?}: each waits for a fetch deadline"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_keeps_the_view_within_the_window_and_a_restart_reads_the_window() {
    let window = Duration::from_secs(8);
    let windowed = move |config: &mut hookline_publisher::Config| {
        config.idempotency_window = window;
    };
    let harness = Harness::start(&[("alice", &["*"])], windowed).await;
    let body = json!({"type": "order.created", "payload": {"id": 1}});
    for i in 0..30 {
        let (status, replayed, answer) = publish_with_key(&harness.base, &format!("order-{i}"), &body).await;
        assert_eq!((status, replayed), (202, false), "{answer}");
    }
    assert!(harness_metric(&harness, "hookline_idempotency_keys").await >= 1.0);

    // Once the window (and the restart read's margin) has passed, the next claim's own clock
    // expires every earlier key.
    tokio::time::sleep(window + CLOCK_MARGIN + Duration::from_millis(500)).await;
    let (status, _, recent) = publish_with_key(&harness.base, "order-30", &body).await;
    assert_eq!(status, 202, "{recent}");
    assert_eq!(harness_metric(&harness, "hookline_idempotency_keys").await, 1.0, "only the last key is held");

    // A restart reads the records of the window only (looked up by time), not the 31 keys'.
    let restarted = Replica::start_with(&harness, windowed).await;
    let loaded = restarted.metric("hookline_idempotency_load_records").await;
    assert!(loaded <= 2.0, "read {loaded} records of 62 to load");
    let (status, replayed, again) = publish_with_key(&restarted.base, "order-30", &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, recent);
    // An expired key is a new request.
    let (status, replayed, answer) = publish_with_key(&restarted.base, "order-0", &body).await;
    assert_eq!((status, replayed), (202, false), "{answer}");
    assert_eq!(harness_metric(&harness, "hookline_idempotency_evictions_total").await, 0.0);
    restarted.stop().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_is_capped_and_a_restart_reads_a_bounded_tail() {
    const CAP: usize = 20;
    const REQUESTS: usize = 100;
    let capped = |config: &mut hookline_publisher::Config| {
        config.idempotency_max_keys = std::num::NonZeroUsize::new(CAP).expect("cap");
    };
    let harness = Harness::start(&[("alice", &["*"])], capped).await;
    let body = json!({"type": "order.created", "payload": {"id": 1}});
    let mut answers = Vec::new();
    // One at a time: each request writes its claim and its outcome, two records.
    for i in 0..REQUESTS {
        let (status, _, answer) = publish_with_key(&harness.base, &format!("order-{i}"), &body).await;
        assert_eq!(status, 202, "{answer}");
        answers.push(answer);
    }
    assert_eq!(harness_metric(&harness, "hookline_idempotency_keys").await, CAP as f64);
    assert_eq!(harness_metric(&harness, "hookline_idempotency_evictions_total").await, (REQUESTS - CAP) as f64);

    // A restart reads at most two records per key of the cap, not the whole topic.
    let restarted = Replica::start_with(&harness, capped).await;
    let loaded = restarted.metric("hookline_idempotency_load_records").await;
    assert!(loaded <= (2 * CAP) as f64, "read {loaded} records of {} to load", 2 * REQUESTS);
    assert!(restarted.metric("hookline_idempotency_keys").await <= CAP as f64);
    // The recent keys are known: a retry is a replay.
    let last = format!("order-{}", REQUESTS - 1);
    let (status, replayed, again) = publish_with_key(&restarted.base, &last, &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, answers[REQUESTS - 1]);
    // The oldest key was evicted (as on the replica that ran all along): a retry of it is
    // published again, under a new event id. This is what the cap costs.
    let (status, replayed, anew) = publish_with_key(&restarted.base, "order-0", &body).await;
    assert_eq!((status, replayed), (202, false), "{anew}");
    assert_ne!(anew["event_id"], answers[0]["event_id"]);
    restarted.stop().await;
    harness.stop().await;
}

/// A key the view does not know is claimed without a catch-up first (a watermark round trip and
/// a read): the claim's read-back shows every record before it. A key the view knows is looked
/// up in a caught-up view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_claimed_without_a_catch_up() {
    const CATCHUPS: &str = "hookline_idempotency_catchups_total";
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let body = json!({"type": "order.created", "payload": {"id": 1}});
    let before = harness_metric(&harness, CATCHUPS).await;
    for i in 0..5 {
        let (status, replayed, answer) = publish_with_key(&harness.base, &format!("order-{i}"), &body).await;
        assert_eq!((status, replayed), (202, false), "{answer}");
    }
    assert_eq!(harness_metric(&harness, CATCHUPS).await, before, "new keys cost no catch-up");
    let (status, replayed, answer) = publish_with_key(&harness.base, "order-0", &body).await;
    assert_eq!((status, replayed), (202, true), "{answer}");
    assert_eq!(harness_metric(&harness, CATCHUPS).await, before + 1.0, "a known key is looked up caught up");
    harness.stop().await;
}

/// A replica whose view has not read a key written through another replica a moment ago (tansu
/// answers its reader's waiting fetch only at the deadline) claims the key without catching up,
/// loses to what the topic holds, and answers as a replica that knew the key would: the first
/// answer; a 422 for another body; and the takeover of a failed or abandoned claim with that
/// claim's event id (not a new one, which would deliver the copies already written twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_view_is_behind_answers_as_one_that_knew_the_key() {
    const ROUNDS: usize = 2;
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let behind = Replica::start(&harness).await;
    let producer = hookline_testkit::kafka::producer(&harness.kafka);
    // Claims the replica behind wrote without knowing the key (each lost).
    let mut blind_claims = 0;
    for i in 0..ROUNDS {
        // A repeat through the replica behind: the first answer.
        let (key, body) = (format!("order-{i}"), json!({"type": "order.created", "payload": {"id": i}}));
        let (status, _, first) = publish_with_key(&harness.base, &key, &body).await;
        assert_eq!(status, 202, "{first}");
        let (status, replayed, again) = publish_with_key(&behind.base, &key, &body).await;
        assert_eq!((status, replayed), (202, true), "{again}");
        assert_eq!(again, first);
        let claims = claims_of(&harness, &key).await;
        blind_claims += claims.len() - 1;
        // That request's claim, as a model of a claim for `body`.
        let model = claim_records(&harness, &key).await.remove(0);

        // The key reused for another body through the replica behind: 422.
        let (key, other) = (format!("reused-{i}"), json!({"type": "order.created", "payload": {"id": -1}}));
        let (status, _, first) = publish_with_key(&harness.base, &key, &body).await;
        assert_eq!(status, 202, "{first}");
        let (status, _, refused) = publish_with_key(&behind.base, &key, &other).await;
        assert_eq!(status, 422, "{refused}");
        blind_claims += claims_of(&harness, &key).await.len() - 1;

        // A claim whose owner failed, and one whose owner died (its lease over), written a
        // moment ago as that owner would have: the retry through the replica behind takes each
        // over with its event id.
        for (key, failed) in [(format!("failed-{i}"), true), (format!("abandoned-{i}"), false)] {
            let event_id = hookline_core::envelope::new_event_id();
            let lease_ms = model["lease_ms"].as_i64().expect("lease_ms");
            let at_ms = if failed { now_ms() } else { now_ms() - lease_ms - 5_000 };
            let mut claim = model.clone();
            claim["event_id"] = json!(event_id);
            claim["owner"] = json!("claim_gone");
            claim["at_ms"] = json!(at_ms);
            let mut records = vec![claim];
            if failed {
                records.push(json!({"state": "failed", "event_id": event_id, "owner": "claim_gone", "at_ms": at_ms}));
            }
            for record in records {
                let value = serde_json::to_vec(&record).expect("JSON");
                hookline_testkit::kafka::produce_raw(
                    &producer,
                    &harness.topics.idempotency,
                    Some(key.as_bytes()),
                    &value,
                )
                .await;
            }
            let (status, replayed, retried) = publish_with_key(&behind.base, &key, &body).await;
            assert_eq!((status, replayed), (202, false), "{key}: {retried}");
            let claims = claims_of(&harness, &key).await;
            assert_eq!(retried["event_id"].as_str(), Some(event_id.as_str()), "{key}: {claims:?}");
            assert_eq!(copies_of(&harness, &harness.topics, &event_id).await, 1, "{key}");
            blind_claims += claims.iter().filter(|claimed| **claimed != event_id).count();
        }
    }
    // The replica was behind at least once (it is behind unless its reader's fetch, answered
    // every 500 ms, came in the moment between the write and the request): the path was taken.
    assert!(blind_claims > 0, "the replica knew every key already: nothing tested");
    eprintln!("claims written by the replica behind without knowing the key: {blind_claims} of {}", 4 * ROUNDS);
    hookline_testkit::kafka::close_producer(producer).await;
    behind.stop().await;
    harness.stop().await;
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds")
}

/// The claims (`pending` records) of `key` on the idempotency topic, in order.
async fn claim_records(harness: &Harness, key: &str) -> Vec<Value> {
    hookline_testkit::kafka::read_topic(&harness.kafka, &harness.topics.idempotency)
        .await
        .iter()
        .filter(|message| message.key() == Some(key.as_bytes()))
        .filter_map(|message| serde_json::from_slice::<Value>(message.payload().expect("record value")).ok())
        .filter(|record| record["state"] == "pending")
        .collect()
}

/// The event ids of [`claim_records`].
async fn claims_of(harness: &Harness, key: &str) -> Vec<String> {
    claim_records(harness, key)
        .await
        .iter()
        .map(|record| record["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

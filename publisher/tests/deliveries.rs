//! The deliveries API against a real broker (tansu): the delivery log's records, written on the
//! attempts topic as a consumer writes them, become each customer's deliveries, and no tenant
//! sees another's.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{ADMIN_TOKEN, Harness, error_of};
use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use hookline_core::envelope::headers;
use hookline_testkit::kafka::{header, produce_raw, read_topic};
use rdkafka::message::Message;
use reqwest::Method;
use serde_json::{Value, json};

/// Creates a customer as the admin; its API key.
async fn customer(harness: &Harness, id: &str) -> String {
    let (status, body) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": id }))).await;
    assert_eq!(status, 201, "{body}");
    body["api_key"].as_str().expect("api_key").to_owned()
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A log record as the consumer writes it, for the delivery record at `location`.
fn logged(
    customer: &str,
    event_id: &str,
    outcome: AttemptOutcome,
    attempt: u32,
    location: (&str, i32, i64),
) -> AttemptRecord {
    AttemptRecord {
        event_id: event_id.into(),
        customer_id: customer.into(),
        event_type: "order.created".into(),
        attempt,
        at_ms: now_ms(),
        duration_ms: Some(12),
        status: Some(if outcome == AttemptOutcome::Delivered { 200 } else { 503 }),
        error_class: (outcome == AttemptOutcome::Failed).then(|| "5xx".to_owned()),
        error: (outcome == AttemptOutcome::Failed).then(|| "HTTP 503 Service Unavailable".to_owned()),
        response: (outcome == AttemptOutcome::Failed).then(|| "busy".to_owned()),
        outcome,
        reason: None,
        topic: location.0.into(),
        partition: location.1,
        offset: location.2,
    }
}

/// GETs `path` with `token` until `done` holds for the answer (the log is eventually consistent).
async fn get_until(harness: &Harness, path: &str, token: &str, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = harness.call(Method::GET, path, Some(token), None).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{path}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_see_their_own_deliveries_with_attempts_and_payload() {
    let harness = Harness::start(&[], |_| {}).await;
    let acme = customer(&harness, "acme").await;
    let globex = customer(&harness, "globex").await;

    // A real delivery record for acme, so that its payload can be read back.
    let (status, accepted) =
        harness.publish(json!({"type": "order.created", "payload": {"order": 42}, "target": "acme"})).await;
    assert_eq!(status, 202, "{accepted}");
    let event_id = accepted["event_id"].as_str().unwrap().to_owned();
    let record = read_topic(&harness.kafka, &harness.topics.deliveries).await;
    let record = record.iter().find(|m| m.key() == Some(b"acme".as_slice())).expect("acme's record");
    let location = (harness.topics.deliveries.as_str(), record.partition(), record.offset());

    // What a consumer logs: two refusals, then the ACK; and for globex, a dead letter.
    let log = [
        logged("acme", &event_id, AttemptOutcome::Failed, 1, location),
        logged("acme", &event_id, AttemptOutcome::Failed, 2, location),
        logged("acme", &event_id, AttemptOutcome::Delivered, 3, location),
        AttemptRecord {
            reason: Some("max_attempts".into()),
            ..logged("globex", "evt_globex", AttemptOutcome::DeadLettered, 4, (location.0, 0, 999))
        },
    ];
    let producer = hookline_testkit::kafka::producer(&harness.kafka);
    for entry in &log {
        produce_raw(&producer, &harness.topics.attempts, Some(entry.customer_id.as_bytes()), &entry.to_value()).await;
    }

    let (_, listed) = get_until(&harness, "/v1/customer/deliveries", &acme, |status, body| {
        status == 200 && body["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let deliveries = listed["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{listed}");
    assert_eq!(deliveries[0]["event_id"], event_id.as_str());
    assert_eq!(deliveries[0]["attempts"], 3);
    assert_eq!(deliveries[0]["last_error"], "HTTP 503 Service Unavailable");
    assert!(listed["next_cursor"].is_null());

    let (status, shown) =
        harness.call(Method::GET, &format!("/v1/customer/deliveries/{event_id}"), Some(&acme), None).await;
    assert_eq!(status, 200, "{shown}");
    let outcomes: Vec<&str> =
        shown["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "delivered"]);
    assert_eq!(shown["attempts"][0]["response"], "busy");
    assert_eq!(shown["payload_available"], true);
    assert_eq!(shown["payload"], json!({"order": 42}));

    // Filters, and what is wrong with a filter is named.
    let (_, failed) =
        harness.call(Method::GET, "/v1/customer/deliveries?status=dead_lettered", Some(&acme), None).await;
    assert_eq!(failed["deliveries"], json!([]));
    let (status, bad) = harness.call(Method::GET, "/v1/customer/deliveries?limit=1000", Some(&acme), None).await;
    assert_eq!(status, 422);
    assert!(error_of(&bad).starts_with("invalid `limit`"), "{bad}");

    // Tenants never see each other's deliveries.
    let (_, theirs) = get_until(&harness, "/v1/customer/deliveries", &globex, |status, body| {
        status == 200 && body["deliveries"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let ids: Vec<&str> =
        theirs["deliveries"].as_array().unwrap().iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_globex"]);
    assert_eq!(theirs["deliveries"][0]["status"], "dead_lettered");
    let (status, body) =
        harness.call(Method::GET, &format!("/v1/customer/deliveries/{event_id}"), Some(&globex), None).await;
    assert_eq!(status, 404, "{body}");
    // A record the delivery topic never held has no payload.
    let (_, gone) = harness.call(Method::GET, "/v1/customer/deliveries/evt_globex", Some(&globex), None).await;
    assert_eq!((gone["payload_available"].clone(), gone["payload"].clone()), (json!(false), Value::Null));

    // The admin sees any customer's; an unknown customer is 404; a customer key is not an admin's.
    let (status, admin) = harness.call(Method::GET, "/v1/customers/acme/deliveries", Some(ADMIN_TOKEN), None).await;
    assert_eq!((status, admin["deliveries"][0]["event_id"].clone()), (200, json!(event_id)));
    let (status, _) = harness.call(Method::GET, "/v1/customers/nobody/deliveries", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404);
    let (status, _) = harness.call(Method::GET, "/v1/customers/acme/deliveries", Some(&globex), None).await;
    assert_eq!(status, 403);
    let (status, _) = harness.call(Method::GET, "/v1/customer/deliveries", None, None).await;
    assert_eq!(status, 401);

    // A resend writes the same event again for the same customer, marked so the consumer sends it.
    let resend_path = format!("/v1/customer/deliveries/{event_id}/resend");
    let (status, body) = harness.call(Method::POST, &resend_path, Some(&globex), None).await;
    assert_eq!(status, 404, "another tenant cannot resend it: {body}");
    let (status, resent) = harness.call(Method::POST, &resend_path, Some(&acme), None).await;
    assert_eq!(status, 202, "{resent}");
    assert_eq!(resent["event_id"], event_id.as_str());
    let resend_id = resent["resend_id"].as_str().unwrap().to_owned();
    let copies = copies_of(&harness, &event_id).await;
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(copies[1].1.as_deref(), Some(resend_id.as_str()), "the copy is marked as a resend");
    assert_eq!(copies[0].1, None);
    // What the topic no longer holds cannot be resent, and says so.
    let (status, gone) =
        harness.call(Method::POST, "/v1/customer/deliveries/evt_globex/resend", Some(&globex), None).await;
    assert_eq!(status, 409, "{gone}");
    assert!(error_of(&gone).contains("no longer on its topic"), "{gone}");

    // Recover: every dead-lettered delivery in the window, once each.
    let dead = logged("acme", &event_id, AttemptOutcome::DeadLettered, 4, location);
    produce_raw(&producer, &harness.topics.attempts, Some(b"acme"), &dead.to_value()).await;
    get_until(&harness, &format!("/v1/customer/deliveries/{event_id}"), &acme, |_, body| {
        body["delivery"]["status"] == "dead_lettered"
    })
    .await;
    let (status, bad) =
        harness.call(Method::POST, "/v1/customer/recover", Some(&acme), Some(json!({"since": "soon"}))).await;
    assert_eq!(status, 422, "{bad}");
    assert!(error_of(&bad).starts_with("invalid `since`"), "{bad}");
    let window = json!({"since": "2000-01-01T00:00:00Z"});
    let (status, recovered) =
        harness.call(Method::POST, "/v1/customer/recover", Some(&acme), Some(window.clone())).await;
    assert_eq!(status, 202, "{recovered}");
    assert_eq!(recovered, json!({"resent": 1, "unavailable": 0, "next_until": null}));
    assert_eq!(copies_of(&harness, &event_id).await.len(), 3);
    let (status, theirs) =
        harness.call(Method::POST, "/v1/customers/globex/recover", Some(ADMIN_TOKEN), Some(window)).await;
    assert_eq!((status, theirs), (202, json!({"resent": 0, "unavailable": 1, "next_until": null})));
    // Counted with the status answered.
    let (_, metrics) = harness.get("/metrics").await;
    for line in [
        r#"hookline_api_requests_total{operation="resend_own_delivery",status="202"} 1"#,
        r#"hookline_api_requests_total{operation="resend_own_delivery",status="409"} 1"#,
        r#"hookline_api_requests_total{operation="recover_own",status="202"} 1"#,
        r#"hookline_api_requests_total{operation="recover",status="202"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in {metrics}");
    }
    harness.stop().await;
}

/// The copies of `event_id` on the delivery topic, in order, with their resend ids.
async fn copies_of(harness: &Harness, event_id: &str) -> Vec<(String, Option<String>)> {
    read_topic(&harness.kafka, &harness.topics.deliveries)
        .await
        .iter()
        .filter(|m| header(m, headers::EVENT_ID).as_deref() == Some(event_id))
        .map(|m| (String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), header(m, headers::RESEND_ID)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_index_resumes_after_a_restart() {
    let dir = std::env::temp_dir().join(hookline_testkit::unique_name("deliveries-index"));
    let dir_for_config = dir.clone();
    let harness = Harness::start(&[], move |config| config.delivery_log_dir = Some(dir_for_config)).await;
    let acme = customer(&harness, "acme").await;
    let producer = hookline_testkit::kafka::producer(&harness.kafka);
    let first = logged("acme", "evt_1", AttemptOutcome::Delivered, 1, (&harness.topics.deliveries, 0, 0));
    produce_raw(&producer, &harness.topics.attempts, Some(b"acme"), &first.to_value()).await;
    get_until(&harness, "/v1/customer/deliveries", &acme, |_, body| {
        body["deliveries"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    let (kafka, topics) = (harness.kafka.clone(), harness.topics.clone());
    let broker = {
        harness.shutdown.cancel();
        let common::Harness { broker, server, .. } = harness;
        server.await.expect("publisher task").expect("publisher stops cleanly");
        broker
    };
    assert!(dir.join("deliveries.sqlite3").exists());

    // Restarted on the same topics: the index resumes from its position and sees the new record.
    let second = logged("acme", "evt_2", AttemptOutcome::Delivered, 1, (&topics.deliveries, 0, 1));
    produce_raw(&producer, &topics.attempts, Some(b"acme"), &second.to_value()).await;
    let dir_for_config = dir.clone();
    let restarted =
        Harness::restart_on(broker, kafka, topics, move |config| config.delivery_log_dir = Some(dir_for_config)).await;
    let (_, listed) = get_until(&restarted, "/v1/customer/deliveries", &acme, |_, body| {
        body["deliveries"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert_eq!(listed["deliveries"][0]["event_id"], "evt_2");
    // Resumed, not rebuilt: only the record written while it was down was read.
    let (_, metrics) = restarted.get("/metrics").await;
    assert!(metrics.lines().any(|line| line == "hookline_delivery_log_indexed_total 1"), "{metrics}");
    restarted.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The receiver over real HTTP on `127.0.0.1:0`.

use std::time::Duration;

use hookline_receiver::{Receiver, ReceiverConfig, ReceiverHandle, Stats, serve};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn start(config: ReceiverConfig) -> ReceiverHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Receiver::start(config, listener).expect("start receiver")
}

fn body(event_type: &str) -> Value {
    json!({ "type": event_type, "timestamp": "2025-01-01T00:00:00.000Z", "data": { "order": 42 } })
}

/// POSTs a delivery with the Standard Webhooks headers; `None` leaves the webhook-id out.
async fn deliver(client: &reqwest::Client, url: &str, id: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = client.post(url).header("webhook-timestamp", "1735689600").json(body);
    if let Some(id) = id {
        request = request.header("webhook-id", id);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

async fn stats_over_http(client: &reqwest::Client, receiver: &ReceiverHandle) -> Stats {
    let url = format!("http://{}/stats", receiver.local_addr());
    client.get(url).send().await.expect("stats request").json().await.expect("stats JSON")
}

#[tokio::test]
async fn accepts_a_valid_delivery() {
    let receiver = start(ReceiverConfig::named("ok")).await;
    let client = reqwest::Client::new();
    assert!(receiver.url().ends_with("/webhook"));

    let (status, answer) = deliver(&client, &receiver.url(), Some("evt_1"), &body("order.created")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({ "received": true }));

    let expected = Stats { received: 1, unique: 1, ..Stats::default() };
    assert_eq!(receiver.stats(), expected);
    assert_eq!(stats_over_http(&client, &receiver).await, expected);
    let raw: Value = client
        .get(format!("http://{}/stats", receiver.local_addr()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (raw["received"].as_u64(), raw["unique"].as_u64(), raw["duplicates"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    receiver.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rejects_missing_webhook_id_and_malformed_bodies_with_400() {
    let receiver = start(ReceiverConfig::named("strict")).await;
    let client = reqwest::Client::new();

    let (status, answer) = deliver(&client, &receiver.url(), None, &body("order.created")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("webhook-id")), "{answer}");

    let no_type = json!({ "timestamp": "t", "data": {} });
    let (status, answer) = deliver(&client, &receiver.url(), Some("evt_1"), &no_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("`type`")), "{answer}");

    let no_data = json!({ "type": "a", "timestamp": "t" });
    let (status, answer) = deliver(&client, &receiver.url(), Some("evt_1"), &no_data).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("`data`")), "{answer}");

    let response = client
        .post(receiver.url())
        .header("webhook-id", "evt_1")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("JSON answer");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("not JSON")), "{answer}");

    let response = client
        .post(receiver.url())
        .header("webhook-id", "evt_1")
        .header("webhook-timestamp", "yesterday")
        .json(&body("a"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("JSON answer");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("webhook-timestamp")), "{answer}");

    assert_eq!(receiver.stats(), Stats { received: 5, rejected: 5, ..Stats::default() });
}

#[tokio::test]
async fn fail_first_refuses_the_first_attempts_of_each_id() {
    let receiver = start(ReceiverConfig::named("flaky").with_fail_first(2)).await;
    let client = reqwest::Client::new();
    let url = receiver.url();

    for id in ["evt_a", "evt_b"] {
        for attempt in 1..=2 {
            let (status, answer) = deliver(&client, &url, Some(id), &body("order.created")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{id} attempt {attempt}");
            assert!(answer["error"].as_str().is_some_and(|e| e.contains("simulated")), "{answer}");
        }
    }
    for id in ["evt_a", "evt_b"] {
        let (status, _) = deliver(&client, &url, Some(id), &body("order.created")).await;
        assert_eq!(status, StatusCode::OK, "{id} third attempt");
    }
    // A new id starts its own count.
    let (status, _) = deliver(&client, &url, Some("evt_c"), &body("order.created")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(
        stats_over_http(&client, &receiver).await,
        Stats { received: 7, unique: 2, failed: 5, ..Stats::default() }
    );
}

#[tokio::test]
async fn duplicates_are_acknowledged_and_counted() {
    let receiver = start(ReceiverConfig::named("dedupe")).await;
    let client = reqwest::Client::new();
    let url = receiver.url();

    for id in ["evt_1", "evt_2", "evt_1", "evt_1", "evt_3", "evt_2"] {
        let (status, _) = deliver(&client, &url, Some(id), &body("order.created")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, answer) = deliver(&client, &url, Some("evt_3"), &body("order.created")).await;
    assert_eq!(answer, json!({ "received": true, "duplicate": true }));

    assert_eq!(receiver.stats(), Stats { received: 7, unique: 3, duplicates: 4, ..Stats::default() });
}

#[tokio::test]
async fn fail_rate_one_always_answers_503() {
    let receiver = start(ReceiverConfig::named("down").with_fail_rate(1.0)).await;
    let client = reqwest::Client::new();

    for n in 0..20 {
        let (status, _) = deliver(&client, &receiver.url(), Some(&format!("evt_{}", n % 3)), &body("a")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(receiver.stats(), Stats { received: 20, failed: 20, ..Stats::default() });
}

#[tokio::test]
async fn fail_rate_half_fails_some_and_accepts_some() {
    let receiver = start(ReceiverConfig::named("coin").with_fail_rate(0.5)).await;
    let client = reqwest::Client::new();

    for n in 0..200 {
        deliver(&client, &receiver.url(), Some(&format!("evt_{n}")), &body("a")).await;
    }
    let stats = receiver.stats();
    assert_eq!(stats.received, 200);
    assert_eq!(stats.unique + stats.failed, 200);
    // Binomial(200, 0.5): outside 40..=160 has negligible probability.
    assert!((40..=160).contains(&stats.failed), "{stats:?}");
}

#[tokio::test]
async fn serve_stops_when_cancelled_and_several_receivers_coexist() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(ReceiverConfig::named("served"), listener, shutdown.clone()));
    let other = Receiver::bind(ReceiverConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ReceiverConfig::named("bound")
    })
    .await
    .expect("bind a second receiver");
    assert_ne!(other.local_addr(), address);

    let client = reqwest::Client::new();
    let (status, _) = deliver(&client, &format!("http://{address}/webhook"), Some("evt_1"), &body("a")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = deliver(&client, &other.url(), Some("evt_1"), &body("a")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other.stats().unique, 1);

    // Unknown paths are not webhooks.
    let response = client.get(format!("http://{address}/nope")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after cancellation")
        .expect("task")
        .expect("serve ok");
    other.shutdown().await.expect("clean shutdown");
}

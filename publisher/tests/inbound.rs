//! `POST /inbound/{source}` against a real tansu broker: a request is queued only when the
//! sender's signature verifies; everything else is refused (401/404/415/400) with nothing on the
//! delivery topic. Delivery to the internal endpoint is tested in the consumer's tests.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Harness, error_of, read_all};
use hookline_core::customer::{Customer, SignatureScheme};
use hookline_core::directory::put_customer;
use hookline_testkit::tenants;
use hookline_wire::signing::{SigningSecret, hub_signature};
use serde_json::{Value, json};

const HUB_SECRET: &str = "a-github-webhook-secret";

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("seconds")
}

/// Registers an inbound source delivering nowhere in particular (these tests stop at the topic).
async fn add_source(harness: &Harness, id: &str, scheme: SignatureScheme, secret: Option<&str>) -> String {
    let issued =
        Customer::source(id, scheme, "http://10.0.0.1/internal", secret, &tenants::master_key()).expect("valid source");
    put_customer(&harness.kafka, &harness.topics.customers, &issued.source).await.expect("put source");
    issued.inbound_secret.to_string()
}

/// POSTs `body` to `/inbound/{source}` with `headers`; the status and JSON answer.
async fn post(harness: &Harness, source: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = harness.client.post(format!("{}/inbound/{source}", harness.base)).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    common::decode(request.send().await.expect("inbound request")).await
}

/// Standard Webhooks headers signing `body` with `secret` at `timestamp`, plus a JSON content type.
fn standard_headers(secret: &str, id: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let secret = SigningSecret::parse(secret).expect("whsec secret");
    vec![
        ("content-type", "application/json".into()),
        ("webhook-id", id.into()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", secret.sign(id, timestamp, body.as_bytes())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verified_requests_are_queued() {
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let secret = add_source(&harness, "billing", SignatureScheme::StandardWebhooks, None).await;
    add_source(&harness, "github", SignatureScheme::HubSignature256, Some(HUB_SECRET)).await;
    let body = r#"{"type": "invoice.paid", "data": {"id": "in_1", "amount": 42}}"#;

    // Unknown sources (a customer is not one), before any signature check.
    let signed = standard_headers(&secret, "msg_1", now(), body);
    for source in ["nobody", "alice", "bad%20id"] {
        let (status, answer) = post(&harness, source, &signed, body).await;
        assert_eq!(status, 404, "{source}: {answer}");
    }

    // Standard Webhooks failures: 401, and the message says why.
    let mut missing = signed.clone();
    missing.retain(|(name, _)| *name != "webhook-signature");
    let (status, answer) = post(&harness, "billing", &missing, body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(error_of(&answer).contains("webhook-signature"), "{answer}");
    let other_secret = SigningSecret::generate().expose();
    let (status, answer) =
        post(&harness, "billing", &standard_headers(&other_secret, "msg_1", now(), body), body).await;
    assert_eq!(status, 401, "wrong secret: {answer}");
    let tampered = body.replace("42", "43");
    let (status, answer) = post(&harness, "billing", &signed, &tampered).await;
    assert_eq!(status, 401, "tampered body: {answer}");
    let stale_at = now() - 600;
    let (status, answer) = post(&harness, "billing", &standard_headers(&secret, "msg_1", stale_at, body), body).await;
    assert_eq!(status, 401, "stale: {answer}");
    assert!(error_of(&answer).contains("timestamp"), "{answer}");

    // Hub signature failures.
    let hub = |secret: &str, body: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", "d-1".to_owned()),
            ("x-hub-signature-256", hub_signature(secret.as_bytes(), body.as_bytes())),
        ]
    };
    let push = r#"{"ref": "refs/heads/main"}"#;
    let (status, answer) = post(&harness, "github", &hub(HUB_SECRET, push)[..3], push).await;
    assert_eq!(status, 401, "missing: {answer}");
    let (status, answer) = post(&harness, "github", &hub("not-the-secret-at-all", push), push).await;
    assert_eq!(status, 401, "wrong secret: {answer}");
    let (status, answer) = post(&harness, "github", &hub(HUB_SECRET, push), r#"{"ref": "refs/heads/evil"}"#).await;
    assert_eq!(status, 401, "tampered: {answer}");

    // Verified but not an acceptable event.
    let mut text = standard_headers(&secret, "msg_2", now(), "hello");
    text[0].1 = "text/plain".into();
    let (status, answer) = post(&harness, "billing", &text, "hello").await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer) =
        post(&harness, "billing", &standard_headers(&secret, "msg_3", now(), "{nope"), "{nope").await;
    assert_eq!(status, 400, "{answer}");
    let star = r#"{"type": "*"}"#;
    let (status, answer) = post(&harness, "billing", &standard_headers(&secret, "msg_4", now(), star), star).await;
    assert_eq!(status, 422, "{answer}");
    assert!(error_of(&answer).contains("`type`"), "{answer}");

    // `/publish` cannot target a source.
    let (status, answer) = harness.publish(json!({"type": "a", "payload": {}, "target": "billing"})).await;
    assert_eq!(status, 404, "{answer}");
    assert!(read_all(&harness.kafka, &harness.topics.deliveries).await.is_empty(), "nothing refused was queued");

    // Valid requests are queued for the source, with the body byte for byte.
    let (status, answer) = post(&harness, "billing", &signed, body).await;
    assert_eq!(status, 202, "{answer}");
    let billing_event = answer["event_id"].as_str().expect("event_id").to_owned();
    let (status, answer) = post(&harness, "github", &hub(HUB_SECRET, push), push).await;
    assert_eq!(status, 202, "{answer}");
    let github_event = answer["event_id"].as_str().expect("event_id").to_owned();
    let untyped = r#"{"hello": "world"}"#;
    let (status, answer) =
        post(&harness, "billing", &standard_headers(&secret, "msg_5", now(), untyped), untyped).await;
    assert_eq!(status, 202, "{answer}");

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let billing = records.iter().find(|r| r.value.event_id == billing_event).expect("billing record");
    assert_eq!(billing.key, "billing");
    assert_eq!(billing.value.event_type, "invoice.paid");
    assert_eq!(billing.value.payload.get(), body);
    let github = records.iter().find(|r| r.value.event_id == github_event).expect("github record");
    assert_eq!((github.key.as_str(), github.value.event_type.as_str()), ("github", "push"));
    assert_eq!(github.value.payload.get(), push);
    assert!(records.iter().any(|r| r.value.event_type == "billing.received"), "{records:?}");
    assert!(records.iter().all(|r| r.key != "alice"), "fan-out never reaches sources or customers from here");

    let (_, metrics) = harness.get("/metrics").await;
    for (outcome, count) in [("accepted", 3), ("unknown_source", 3), ("bad_signature", 6), ("stale", 1), ("invalid", 3)]
    {
        let line = format!("hookline_inbound_requests_total{{outcome=\"{outcome}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    harness.stop().await;
}

/// `X-GitHub-Delivery` and `X-GitHub-Event` are not covered by an `X-Hub-Signature-256`: a captured
/// request replayed with a fresh delivery id must not become a second event. De-duplication is
/// bound to the signed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_signed_replays_with_another_delivery_id_are_not_new_events() {
    let harness = Harness::start(&[], |_| {}).await;
    add_source(&harness, "github", SignatureScheme::HubSignature256, Some(HUB_SECRET)).await;
    let request = |delivery: &str, event: &str, body: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", event.to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("x-hub-signature-256", hub_signature(HUB_SECRET.as_bytes(), body.as_bytes())),
        ]
    };
    let push = r#"{"ref": "refs/heads/main", "after": "1f2e3d"}"#;
    let (status, first) = post(&harness, "github", &request("d-1", "push", push), push).await;
    assert_eq!(status, 202, "{first}");
    let (status, replayed) = post(&harness, "github", &request("d-forged", "push", push), push).await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["event_id"], first["event_id"], "a replayed body is answered as the first request");
    // The unsigned event type cannot turn the captured body into another event either.
    let (status, retyped) = post(&harness, "github", &request("d-other", "release", push), push).await;
    assert_eq!(status, 422, "{retyped}");
    // Another signed body is another event, whatever its delivery id says.
    let other = r#"{"ref": "refs/heads/main", "after": "4c5b6a"}"#;
    let (status, second) = post(&harness, "github", &request("d-1", "push", other), other).await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(second["event_id"], first["event_id"]);

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 2, "{records:?}");
    harness.stop().await;
}

/// A sender's delivery id that is not valid as an idempotency key (here longer than 255
/// characters with its prefix) still de-duplicates its retries: the same `webhook-id` is
/// answered as the first request, not queued as a second event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_id_too_long_for_a_key_still_de_duplicates() {
    let harness = Harness::start(&[], |_| {}).await;
    let secret = add_source(&harness, "billing", SignatureScheme::StandardWebhooks, None).await;
    let body = r#"{"type": "invoice.paid", "data": {"id": "in_1"}}"#;
    let long_id = format!("msg_{}", "7".repeat(250));
    let (status, first) = post(&harness, "billing", &standard_headers(&secret, &long_id, now(), body), body).await;
    assert_eq!(status, 202, "{first}");
    let (status, retried) = post(&harness, "billing", &standard_headers(&secret, &long_id, now(), body), body).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["event_id"], first["event_id"], "the sender's retry is the same event");
    let spaced = "msg with spaces";
    let (status, one) = post(&harness, "billing", &standard_headers(&secret, spaced, now(), body), body).await;
    assert_eq!(status, 202, "{one}");
    let (status, again) = post(&harness, "billing", &standard_headers(&secret, spaced, now(), body), body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["event_id"], one["event_id"], "an id with spaces is a key like any other");
    assert_ne!(one["event_id"], first["event_id"]);
}

//! Inbound webhooks end to end on a real broker (tansu): an external sender's signed request to
//! `POST /inbound/{source}` (Standard Webhooks or `X-Hub-Signature-256`), or a gateway's
//! `HandleIncomingEvent` gRPC call, reaches the source's internal endpoint on 127.0.0.1 through
//! a real consumer, signed with Hookline's own signature, even though the consumer's SSRF guard
//! allows no private network at all (the endpoint is the operator's, not a customer's).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Env, PRODUCER_TOKEN};
use hookline_core::customer::{Customer, SignatureScheme};
use hookline_core::netguard::NetworkArgs;
use hookline_publisher::grpc::pb::HandleIncomingEventRequest;
use hookline_publisher::grpc::pb::event_broker_client::EventBrokerClient;
use hookline_testkit::{Endpoint, tenants, wait_until};
use hookline_wire::signing::{SignatureVerifier, SigningSecret, hub_signature};

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_inbound_events_reach_the_internal_endpoint_signed_by_us() {
    let env = Env::new(2).await;
    let billing_endpoint = Endpoint::ok().await;
    let github_endpoint = Endpoint::ok().await;
    let master = tenants::master_key();
    let billing =
        Customer::source("billing", SignatureScheme::StandardWebhooks, &billing_endpoint.url(), None, &master)
            .expect("billing source");
    let github = Customer::source(
        "github",
        SignatureScheme::HubSignature256,
        &github_endpoint.url(),
        Some("a-github-webhook-secret"),
        &master,
    )
    .expect("github source");
    env.put(&billing.source).await;
    env.put(&github.source).await;

    let publisher = env.start_publisher().await;
    let mut config = env.config();
    // No allow-list: loopback is forbidden for customers, and sources must still be reached.
    config.network = NetworkArgs::default();
    let consumer = env.start(config);

    // A Standard Webhooks sender.
    let body = r#"{"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "in_1"}}"#;
    let sender = SigningSecret::parse(&billing.inbound_secret).expect("whsec secret");
    let timestamp = now();
    let response = publisher
        .http
        .post(format!("{}/inbound/billing", publisher.base))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_sender_1")
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sender.sign("msg_sender_1", timestamp, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("inbound request");
    assert_eq!(response.status().as_u16(), 202);
    let answer: serde_json::Value = response.json().await.expect("JSON answer");
    let billing_event = answer["event_id"].as_str().expect("event_id").to_owned();

    // A GitHub-style sender.
    let push = r#"{"ref": "refs/heads/main", "after": "abc123"}"#;
    let response = publisher
        .http
        .post(format!("{}/inbound/github", publisher.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "72d3162e")
        .header("x-hub-signature-256", hub_signature(b"a-github-webhook-secret", push.as_bytes()))
        .body(push)
        .send()
        .await
        .expect("inbound request");
    assert_eq!(response.status().as_u16(), 202);

    // A gateway that verified the sender itself calls the broker over gRPC.
    let mut broker = EventBrokerClient::connect(publisher.grpc.clone()).await.expect("connect gRPC");
    let mut call = tonic::Request::new(HandleIncomingEventRequest {
        source: "github".into(),
        r#type: Some("pull_request".into()),
        payload: r#"{"action": "opened"}"#.into(),
        idempotency_key: Some("72d3162f".into()),
    });
    call.metadata_mut().insert("authorization", format!("Bearer {PRODUCER_TOKEN}").parse().expect("metadata"));
    let grpc_event = broker.handle_incoming_event(call).await.expect("queued over gRPC").into_inner().event_id;

    wait_until(Duration::from_secs(60), "the billing delivery", || billing_endpoint.count() >= 1).await;
    wait_until(Duration::from_secs(60), "both github deliveries", || github_endpoint.distinct_ids().len() == 2).await;

    // Delivered with our signature, which the source's own signing secret verifies.
    let ours = SignatureVerifier::new(vec![billing.signing_secret.clone()]);
    let received = &billing_endpoint.received()[0];
    assert_eq!(received.webhook_id(), billing_event);
    ours.verify(&received.header_map(), &received.body).expect("signed with the source's signing secret");
    assert!(
        SignatureVerifier::new(vec![sender]).verify(&received.header_map(), &received.body).is_err(),
        "the sender's secret never signs our deliveries"
    );
    let envelope = received.json();
    assert_eq!(envelope["type"], "invoice.paid");
    assert_eq!(envelope["data"], serde_json::from_str::<serde_json::Value>(body).expect("body JSON"));

    let github_verifier = SignatureVerifier::new(vec![github.signing_secret.clone()]);
    let mut types = Vec::new();
    for received in github_endpoint.received() {
        github_verifier.verify(&received.header_map(), &received.body).expect("signed with github's signing secret");
        let envelope = received.json();
        types.push(envelope["type"].as_str().expect("type").to_owned());
        if received.webhook_id() == grpc_event {
            assert_eq!(envelope["data"]["action"], "opened");
        } else {
            assert_eq!(envelope["data"]["after"], "abc123");
        }
    }
    types.sort();
    types.dedup();
    assert_eq!(types, ["pull_request", "push"]);
    assert_eq!(consumer.counter("hookline_deliveries_total", &[("outcome", "delivered")]), 3);

    consumer.stop().await;
    publisher.stop().await;
}

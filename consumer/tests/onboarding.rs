//! Seed 003's customer flow, end to end on a real broker (tansu): an operator creates customers
//! over HTTP, each customer uploads an RSA public key, subscribes and sets its webhook URL;
//! published events arrive signed (Standard Webhooks) and encrypted (JWE) to each customer only;
//! a signing-secret rotation with a delivery in flight signs the retry with both secrets; the
//! SSRF guard stops a delivery whose URL turns out to reach a forbidden network.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ADMIN_TOKEN, Env, Publisher};
use hookline_core::deadletter::headers;
use hookline_core::netguard::NetworkArgs;
use hookline_testkit::{Endpoint, Received, Respond, wait_until};
use hookline_wire::jwe::Decryptor;
use hookline_wire::keys::PrivateKey;
use hookline_wire::signing::{SignatureVerifier, SigningSecret};
use reqwest::Method;
use serde_json::{Value, json};

/// A customer as the test sees it: its credentials and private key.
struct Tenant {
    api_key: String,
    secret: SigningSecret,
    private_key: PrivateKey,
}

/// Steps 1 to 8 of seed 003 over HTTP: create (admin), upload a public key, subscribe, set the URL.
async fn onboard(publisher: &Publisher, id: &str, events: &[&str], url: &str, key_bits: usize) -> Tenant {
    let (status, created) = publisher.call(Method::POST, "/v1/customers", ADMIN_TOKEN, Some(json!({ "id": id }))).await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["api_key"].as_str().expect("api key").to_owned();
    let secret = SigningSecret::parse(created["signing_secret"].as_str().expect("secret")).expect("whsec_ secret");

    let private_key = PrivateKey::generate(key_bits).expect("customer key pair");
    let upload = json!({ "public_key": private_key.public_key().to_spki_pem() });
    let (status, answer) = publisher.call(Method::PUT, "/v1/customer/public-key", &api_key, Some(upload)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        publisher.call(Method::PUT, "/v1/customer/subscriptions", &api_key, Some(json!({ "events": events }))).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        publisher.call(Method::PUT, "/v1/customer/webhook", &api_key, Some(json!({ "url": url }))).await;
    assert_eq!(status, 200, "{answer}");
    Tenant { api_key, secret, private_key }
}

/// Checks a delivery as the customer must: signature first, then decryption; the envelope.
fn open(request: &Received, secrets: Vec<SigningSecret>, key: &PrivateKey) -> Value {
    SignatureVerifier::new(secrets).verify(&request.header_map(), &request.body).expect("valid signature");
    assert_eq!(request.header("content-type"), Some("application/jose"));
    let compact = std::str::from_utf8(&request.body).expect("compact JWE is ASCII");
    assert_eq!(compact.split('.').count(), 5, "JWE compact serialization");
    let plaintext = Decryptor::new(key.clone()).decrypt(compact).expect("decrypts with the customer's key");
    serde_json::from_slice(&plaintext).expect("the plaintext is the JSON envelope")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarded_customers_receive_signed_encrypted_events_only_their_own() {
    let env = Env::new(3).await;
    let publisher = env.start_publisher().await;
    let consumer = env.start(env.config());

    let acme_endpoint = Endpoint::ok().await;
    let globex_endpoint = Endpoint::ok().await;
    let acme = onboard(&publisher, "acme", &["order.created"], &acme_endpoint.url(), 2048).await;
    let globex = onboard(&publisher, "globex", &["invoice.paid"], &globex_endpoint.url(), 4096).await;

    // Fan-out by subscription; a large payload targeted at one customer; a test event.
    let order = publisher.publish(json!({ "type": "order.created", "payload": { "order": 1 } })).await;
    assert_eq!(order["deliveries"], 1);
    let invoice = publisher.publish(json!({ "type": "invoice.paid", "payload": { "invoice": 7 } })).await;
    assert_eq!(invoice["deliveries"], 1);
    let big_text = "x".repeat(256 * 1024);
    let big =
        publisher.publish(json!({ "type": "report.ready", "payload": { "report": big_text }, "target": "acme" })).await;
    let (status, test_event) = publisher.call(Method::POST, "/v1/customer/test-event", &globex.api_key, None).await;
    assert_eq!(status, 202, "{test_event}");

    wait_until(Duration::from_secs(60), "acme's two deliveries", || acme_endpoint.distinct_ids().len() == 2).await;
    wait_until(Duration::from_secs(60), "globex's two deliveries", || globex_endpoint.distinct_ids().len() == 2).await;

    let mut acme_seen = Vec::new();
    for request in acme_endpoint.received() {
        let envelope = open(&request, vec![acme.secret.clone()], &acme.private_key);
        // The other tenant's secret does not verify it: signatures are per tenant.
        assert!(
            SignatureVerifier::new(vec![globex.secret.clone()]).verify(&request.header_map(), &request.body).is_err()
        );
        assert!(
            Decryptor::new(globex.private_key.clone()).decrypt(std::str::from_utf8(&request.body).unwrap()).is_err()
        );
        acme_seen.push((request.webhook_id().to_owned(), envelope));
    }
    let by_id = |id: &Value| acme_seen.iter().find(|(seen, _)| seen == id.as_str().unwrap()).map(|(_, e)| e.clone());
    assert_eq!(by_id(&order["event_id"]).expect("order delivered")["data"], json!({ "order": 1 }));
    let report = by_id(&big["event_id"]).expect("256 KiB report delivered");
    assert_eq!(report["type"], "report.ready");
    assert_eq!(report["data"]["report"].as_str().map(str::len), Some(256 * 1024));

    let globex_seen: Vec<(String, Value)> = globex_endpoint
        .received()
        .iter()
        .map(|request| {
            (request.webhook_id().to_owned(), open(request, vec![globex.secret.clone()], &globex.private_key))
        })
        .collect();
    let types: Vec<&str> = globex_seen.iter().filter_map(|(_, e)| e["type"].as_str()).collect();
    assert!(types.contains(&"invoice.paid") && types.contains(&"hookline.test"), "{types:?}");
    assert!(globex_seen.iter().all(|(id, _)| id != order["event_id"].as_str().unwrap()), "no cross-tenant delivery");

    consumer.stop().await;
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_retries_signs_with_both_secrets() {
    let env = Env::new(1).await;
    let publisher = env.start_publisher().await;
    let mut config = env.config();
    // Retries keep going until the rotation is done.
    config.delivery.max_attempts = 100;
    let consumer = env.start(config);

    // Refuses every attempt until told the rotation happened, and then those the consumer still
    // signs with the old secret alone: its view of the customer catches up with the rotation a
    // moment after the API answered (on tansu, up to its 500 ms fetch deadline).
    let rotated = Arc::new(AtomicBool::new(false));
    let accept = Arc::clone(&rotated);
    let endpoint = Endpoint::start(move |request| {
        let signatures = request.header("webhook-signature").map_or(0, |s| s.split(' ').count());
        if accept.load(Ordering::SeqCst) && signatures == 2 { Respond::ok() } else { Respond::status(503) }
    })
    .await;
    let customer = onboard(&publisher, "rotating", &["*"], &endpoint.url(), 2048).await;
    let event = publisher.publish(json!({ "type": "order.created", "payload": { "n": 1 } })).await;
    wait_until(Duration::from_secs(30), "a first, refused attempt", || endpoint.count() >= 1).await;

    let (status, answer) =
        publisher.call(Method::POST, "/v1/customer/signing-secret/rotate", &customer.api_key, None).await;
    assert_eq!(status, 200, "{answer}");
    let new_secret = SigningSecret::parse(answer["signing_secret"].as_str().unwrap()).unwrap();
    rotated.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(30), "a successful attempt", || {
        endpoint.received().last().is_some_and(|r| r.header("webhook-signature").is_some_and(|s| s.contains(' ')))
    })
    .await;

    let attempts = endpoint.received();
    assert!(attempts.iter().all(|r| r.webhook_id() == event["event_id"].as_str().unwrap()));
    let first = &attempts[0];
    assert_eq!(first.header("webhook-signature").unwrap().split(' ').count(), 1, "before: one signature");
    let last = attempts.last().unwrap();
    assert_eq!(last.header("webhook-signature").unwrap().split(' ').count(), 2, "during the grace period: two");
    // Receivers that know only the old, or only the new, secret both accept it.
    open(last, vec![customer.secret.clone()], &customer.private_key);
    open(last, vec![new_secret.clone()], &customer.private_key);
    // The new secret did not sign the attempts made before the rotation.
    assert!(SignatureVerifier::new(vec![new_secret]).verify(&first.header_map(), &first.body).is_err());

    consumer.stop().await;
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_time_guard_dead_letters_forbidden_destinations() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    // Registered while loopback was allowed (or through DNS that changed since): the consumer,
    // run without the allow-list, re-checks at delivery and refuses to connect.
    env.customer("sneaky", &endpoint.url()).await;
    let mut config = env.config();
    config.network = NetworkArgs::default();
    let consumer = env.start(config);
    env.publish("sneaky", json!({ "n": 1 })).await;

    wait_until(Duration::from_secs(30), "a dead letter", || {
        consumer.counter("hookline_dlq_records_total", &[("reason", "blocked_destination")]) == 1
    })
    .await;
    assert_eq!(endpoint.count(), 0, "nothing was sent to the forbidden address");
    let dead = hookline_testkit::kafka::read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(hookline_testkit::kafka::header(&dead[0], headers::DLQ_REASON).as_deref(), Some("blocked_destination"));
    // The dead letter tells the operator how to allow the destination.
    let error = hookline_testkit::kafka::header(&dead[0], headers::DLQ_ERROR).expect("an error header");
    assert_eq!(
        error,
        "destination blocked: 127.0.0.1 is a loopback address; to allow it, add 127.0.0.0/8 to HOOKLINE_ALLOW_NETWORKS \
         on the publisher, consumer and setup CLI"
    );
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_destination_is_logged_with_how_to_allow_it() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    // By name: the refusal comes from the consumer's resolver. The token must not be echoed.
    let url = format!("{}?token=s3cr3t", endpoint.url().replace("127.0.0.1", "localhost"));
    env.customer("sneaky", &url).await;
    let mut consumer = env.spawn_process_with(&["--log-format", "json"], |command| {
        command.env_remove("HOOKLINE_ALLOW_NETWORKS").env("RUST_LOG", "warn").stderr(Stdio::piped());
    });
    env.publish("sneaky", json!({ "n": 1 })).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = hookline_testkit::kafka::read_topic(&env.kafka, &env.topics.dlq).await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter within 60s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    consumer.start_kill().expect("kill the consumer");
    let output = consumer.wait_with_output().await.expect("the consumer's output");
    assert_eq!(endpoint.count(), 0, "nothing was sent to the forbidden address");

    let error = hookline_testkit::kafka::header(&dead[0], headers::DLQ_ERROR).expect("an error header");
    let logs = String::from_utf8_lossy(&output.stderr);
    let logged = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "webhook destination blocked by the SSRF guard")
        .unwrap_or_else(|| panic!("no log line about the blocked destination in:\n{logs}"));
    let reason = logged["fields"]["reason"].as_str().expect("a reason").to_owned();
    for text in [&error, &reason] {
        assert!(text.contains("host `localhost` resolves to"), "{text}");
        assert!(text.contains("add 127.0.0.0/8") && text.contains("to HOOKLINE_ALLOW_NETWORKS"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    assert!(!logs.contains("s3cr3t"), "{logs}");
}

/// A webhook URL set a moment before the event was published is used, not dead-lettered as
/// missing: the consumer's view of the customers may lag behind the publisher's write (on
/// tansu, by up to its 500 ms fetch deadline), so the consumer catches it up before concluding
/// that a customer has no URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_set_just_before_the_event_is_used() {
    let env = Env::new(1).await;
    let publisher = env.start_publisher().await;
    let consumer = env.start(env.config());
    let endpoint = Endpoint::ok().await;
    for n in 0..3 {
        let id = format!("late-{n}");
        let (status, created) =
            publisher.call(Method::POST, "/v1/customers", ADMIN_TOKEN, Some(json!({ "id": id }))).await;
        assert_eq!(status, 201, "{created}");
        let api_key = created["api_key"].as_str().expect("api key").to_owned();
        let events = json!({ "events": [format!("late.{n}")] });
        let (status, answer) = publisher.call(Method::PUT, "/v1/customer/subscriptions", &api_key, Some(events)).await;
        assert_eq!(status, 200, "{answer}");
        // The consumer's view learns of the customer, still without a URL.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let url = json!({ "url": endpoint.url() });
        let (status, answer) = publisher.call(Method::PUT, "/v1/customer/webhook", &api_key, Some(url)).await;
        assert_eq!(status, 200, "{answer}");
        publisher.publish(json!({ "type": format!("late.{n}"), "payload": { "n": n } })).await;
        wait_until(Duration::from_secs(30), "the delivery or its dead letter", || {
            endpoint.count() > n || consumer.counter("hookline_dlq_records_total", &[("reason", "no_webhook_url")]) > 0
        })
        .await;
        assert_eq!(consumer.counter("hookline_dlq_records_total", &[("reason", "no_webhook_url")]), 0);
    }
    consumer.stop().await;
    publisher.stop().await;
}

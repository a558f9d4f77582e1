//! Floods of unauthenticated requests against a real tansu broker: well-formed but unknown API
//! keys and unknown inbound sources cost coalesced, paced directory catch-ups (not one broker
//! round trip each), a known key id with a wrong secret costs none, and publishing with a valid
//! token carries on meanwhile.

mod common;

use common::*;
use hookline_core::customer::Customer;
use hookline_core::directory::put_customer;
use hookline_core::secrets::ApiKey;
use hookline_testkit::tenants;
use reqwest::Method;
use serde_json::json;

/// Catch-ups of the publisher's customer directory so far.
async fn catchups(harness: &Harness) -> u64 {
    let (_, text) = harness.get("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix("hookline_directory_catchups_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hookline_directory_catchups_total in {text}"))
}

/// `key` with its last character changed: the same key id, another secret part.
fn forged(key: &str) -> String {
    let last = if key.ends_with('A') { "B" } else { "A" };
    format!("{}{last}", &key[..key.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_unknown_credentials_cost_few_catch_ups_and_publishing_carries_on() {
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let (status, created) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": "acme" }))).await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["api_key"].as_str().expect("api_key").to_owned();
    let (status, answer) = harness.call(Method::GET, "/v1/customer", Some(&api_key), None).await;
    assert_eq!(status, 200, "{answer}");

    // A known key id with a wrong secret part is invalid: 401 without a catch-up.
    let before = catchups(&harness).await;
    for _ in 0..50 {
        let (status, answer) = harness.call(Method::GET, "/v1/customer", Some(&forged(&api_key)), None).await;
        assert_eq!(status, 401, "{answer}");
    }
    assert_eq!(catchups(&harness).await, before, "a known key id needs no catch-up");

    // A flood of unknown key ids (on the API and on /publish) and unknown inbound sources, with
    // publishes under a valid token alongside.
    const FLOOD: usize = 300;
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let (client, base) = (harness.client.clone(), harness.base.clone());
        flood.push(tokio::spawn(async move {
            let request = match i % 3 {
                0 => client.get(format!("{base}/v1/customer")).bearer_auth(ApiKey::generate().0.expose()),
                1 => client
                    .post(format!("{base}/publish"))
                    .bearer_auth(ApiKey::generate().0.expose())
                    .json(&json!({"type": "order.created", "payload": {}})),
                _ => client.post(format!("{base}/inbound/nobody-{i}")).body("{}"),
            };
            let (status, answer) = decode(request.send().await.expect("flood request")).await;
            let expected = if i % 3 == 2 { 404 } else { 401 };
            assert_eq!(status, expected, "{answer}");
        }));
    }
    let mut publishes = Vec::new();
    for i in 0..20 {
        let (client, base) = (harness.client.clone(), harness.base.clone());
        publishes.push(tokio::spawn(async move {
            let mut request = client
                .post(format!("{base}/publish"))
                .bearer_auth(PRODUCER_TOKEN)
                .json(&json!({"type": "order.created", "payload": {"n": i}}));
            if i % 2 == 0 {
                request = request.header("idempotency-key", format!("flood-{i}"));
            }
            decode(request.send().await.expect("publish")).await
        }));
    }
    for publish in publishes {
        let (status, answer) = publish.await.expect("publish task");
        assert_eq!(status, 202, "{answer}");
    }
    for request in flood {
        request.await.expect("flood task");
    }
    let spent = catchups(&harness).await - before;
    assert!(spent <= (FLOOD / 5) as u64, "{FLOOD} unauthenticated requests cost {spent} catch-ups");

    // A key issued a moment ago elsewhere (written to the topic by another replica) still works.
    let issued = Customer::onboard("globex", None, &tenants::master_key()).expect("onboard");
    put_customer(&harness.kafka, &harness.topics.customers, &issued.customer).await.expect("put customer");
    let (status, answer) = harness.call(Method::GET, "/v1/customer", Some(issued.api_key.expose()), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "globex");
    harness.stop().await;
}

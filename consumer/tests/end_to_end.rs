//! The whole pipeline on a real broker (tansu): HTTP publish → fan-out records → consumer group →
//! customer endpoints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Env;
use hookline_testkit::{Endpoint, tenants, wait_until};
use hookline_wire::signing::SignatureVerifier;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_reach_every_subscribed_customer() {
    let env = Env::new(3).await;
    let subscriptions: [(&str, &[&str]); 4] = [
        ("alice", &["order.created"]),
        ("bob", &["order.created", "invoice.paid"]),
        ("carol", &["*"]),
        ("dave", &["shipment.sent"]),
    ];
    let mut endpoints = BTreeMap::new();
    for (id, events) in subscriptions {
        let endpoint = Endpoint::ok().await;
        let (customer, secret) = tenants::signed_customer(id, &endpoint.url(), events);
        env.put(&customer).await;
        endpoints.insert(id, (endpoint, SignatureVerifier::new(vec![secret])));
    }

    let publisher = env.start_publisher().await;
    let consumer = env.start(env.config());

    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut payloads = BTreeMap::new();
    for n in 0..30 {
        let event_type = ["order.created", "invoice.paid", "user.deleted"][n % 3];
        let payload = json!({"n": n, "nested": {"ok": true}});
        let accepted = publisher.publish(json!({"type": event_type, "payload": payload})).await;
        let event_id = accepted["event_id"].as_str().unwrap().to_owned();
        let subscribers: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, events)| events.iter().any(|e| *e == event_type || *e == "*"))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(accepted["deliveries"], subscribers.len());
        for id in subscribers {
            expected.entry(id).or_default().insert(event_id.clone());
        }
        payloads.insert(event_id, payload);
    }

    for (id, (endpoint, verifier)) in &endpoints {
        let wanted = expected.get(id).cloned().unwrap_or_default();
        wait_until(Duration::from_secs(60), &format!("{id}'s deliveries"), || endpoint.distinct_ids() == wanted).await;
        for request in endpoint.received() {
            assert_eq!(request.json()["data"], payloads[request.webhook_id()], "payload forwarded unchanged");
            assert_eq!(request.header("content-type"), Some("application/json"));
            verifier.verify(&request.header_map(), &request.body).expect("signed with the customer's secret");
        }
    }
    assert!(!expected.contains_key("dave") && endpoints["dave"].0.count() == 0);
    assert_eq!(expected["carol"].len(), 30);

    consumer.stop().await;
    publisher.stop().await;
}

//! The whole pipeline on a real broker (tansu): HTTP publish → fan-out records → consumer group →
//! customer endpoints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Env;
use hookline_core::customer::Customer;
use hookline_core::directory;
use hookline_testkit::{Endpoint, wait_until};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
        let customer = Customer::new(id, &endpoint.url(), events.iter().map(|e| (*e).to_owned()).collect()).unwrap();
        directory::put_customer(&env.kafka, &env.topics.customers, &customer).await.unwrap();
        endpoints.insert(id, endpoint);
    }

    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let publisher = tokio::spawn(hookline_publisher::serve(
        hookline_publisher::Config::new(env.kafka.clone(), env.topics.clone()),
        listener,
        shutdown.clone(),
    ));
    let consumer = env.start(env.config());

    let http = reqwest::Client::new();
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut payloads = BTreeMap::new();
    for n in 0..30 {
        let event_type = ["order.created", "invoice.paid", "user.deleted"][n % 3];
        let payload = json!({"n": n, "nested": {"ok": true}});
        let response = loop {
            // The publisher answers once its directory is loaded.
            match http
                .post(format!("http://{address}/publish"))
                .json(&json!({"type": event_type, "payload": payload}))
                .send()
                .await
            {
                Ok(response) => break response,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.unwrap();
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

    for (id, endpoint) in &endpoints {
        let wanted = expected.get(id).cloned().unwrap_or_default();
        wait_until(Duration::from_secs(60), &format!("{id}'s deliveries"), || endpoint.distinct_ids() == wanted).await;
        for request in endpoint.received() {
            assert_eq!(request.json()["data"], payloads[request.webhook_id()], "payload forwarded unchanged");
        }
    }
    assert!(!expected.contains_key("dave") && endpoints["dave"].count() == 0);
    assert_eq!(expected["carol"].len(), 30);

    consumer.stop().await;
    shutdown.cancel();
    publisher.await.unwrap().unwrap();
}

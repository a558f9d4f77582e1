//! Rebalances against a real broker (tansu): a member joining while deliveries to slow endpoints
//! are in flight does not make the new owner send again what the previous owner delivered.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Env, assert_handed_over, received_counts};
use hookline_testkit::{Endpoint, Respond, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// `customers` customers behind one endpoint that answers 200 after `delay`, and `events` events
/// published to each (`{"customer", "seq"}`, seq by seq); the event ids.
async fn slow_customers(env: &Env, delay: Duration, customers: usize, events: i64) -> (Endpoint, Vec<String>) {
    let endpoint = Endpoint::start(move |_| Respond::ok().delayed(delay)).await;
    let customers: Vec<String> = (0..customers).map(|i| format!("customer-{i}")).collect();
    for customer in &customers {
        env.customer(customer, &endpoint.url()).await;
    }
    let mut published = Vec::new();
    for seq in 0..events {
        for customer in &customers {
            published.push(env.publish(customer, json!({"customer": customer, "seq": seq})).await);
        }
    }
    (endpoint, published)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_way_sends_nothing_the_previous_owner_delivered() {
    let env = Env::new(4).await;
    // A slow endpoint: when the second member joins, an attempt is in flight on every partition
    // the first one owns.
    let (endpoint, published) = slow_customers(&env, Duration::from_secs(1), 8, 6).await;

    let first = env.start(env.config());
    wait_until(WAIT, "the first member to be delivering", || endpoint.count() >= 6).await;
    let second = env.start(env.config());
    wait_until(WAIT, "every event delivered", || endpoint.distinct_ids().len() == published.len()).await;
    // Anything sent again would arrive within the next attempts; give it the time of a few.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_handed_over(&first, &second);
    let counts = received_counts(&endpoint);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events ACKed by the endpoint more than once: {twice:?}");
    assert_eq!(counts.len(), published.len());
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for request in endpoint.received() {
        let data = &request.json()["data"];
        let (customer, seq) = (data["customer"].as_str().unwrap().to_owned(), data["seq"].as_i64().unwrap());
        let previous = last_seq.insert(customer.clone(), seq);
        assert!(previous.is_none_or(|p| p < seq), "{customer}: seq {seq} after {previous:?}");
    }
    first.stop().await;
    second.stop().await;
}

/// An attempt that outlasts `--revoke-drain-timeout` does not hold the rebalance up: the wait
/// gives up, says so in `hookline_revoke_drain_timeouts_total`, and the unfinished records are
/// delivered all the same (by whichever member owns them next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_outlasts_its_timeout_gives_up_and_is_counted() {
    let env = Env::new(4).await;
    // Every attempt takes 4 s, well past the 1 s drain timeout (and within the 5 s request
    // timeout of the test configuration, so it is not a failure).
    let (endpoint, published) = slow_customers(&env, Duration::from_secs(4), 4, 2).await;
    let mut config = env.config();
    config.revoke_drain_timeout = Some(Duration::from_secs(1));

    let first = env.start(config.clone());
    wait_until(WAIT, "an attempt in flight", || endpoint.count() >= 1).await;
    let second = env.start(config);
    wait_until(WAIT, "the first member's drain to time out", || {
        first.counter("hookline_revoke_drain_timeouts_total", &[]) >= 1
    })
    .await;
    wait_until(WAIT, "every event delivered", || endpoint.distinct_ids().len() == published.len()).await;
    assert!(first.counter("hookline_rebalances_total", &[("kind", "revoke")]) >= 1);
    first.stop().await;
    second.stop().await;
}

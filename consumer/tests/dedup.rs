//! De-duplication by the delivery ledger, against a real broker (tansu): a duplicated record, a
//! replay of a delivered event and the uncommitted tail re-read after a SIGKILL are not sent again.

mod common;

use std::time::Duration;

use common::{Env, event, received_counts};
use hookline_core::envelope::EventRecord;
use hookline_testkit::kafka::{committed_offsets, produce_record, read_topic};
use hookline_testkit::{Endpoint, Respond, wait_until};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_record_is_sent_once_and_both_offsets_are_committed() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    env.customer("customer-1", &endpoint.url()).await;
    let (first, second) = (event(1), event(2));
    // A producer retry or a publisher retried by its caller: the same event twice in a row.
    for record in [&first, &first, &second] {
        produce_record(&env.producer, &env.topics.deliveries, "customer-1", record).await;
    }

    let consumer = env.start(env.config());
    wait_until(WAIT, "both events", || endpoint.count() >= 2).await;
    wait_until(WAIT, "the duplicate to be skipped", || consumer.counter("hookline_duplicates_skipped_total", &[]) == 1)
        .await;
    consumer.stop().await;

    let counts = received_counts(&endpoint);
    assert_eq!(counts.get(&first.event_id), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&second.event_id), Some(&1), "{counts:?}");
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&3));
    // Each delivery is in the ledger once, in the partition it was delivered from.
    let ledger = read_topic(&env.kafka, &env.topics.delivered).await;
    assert_eq!(ledger.len(), 2, "one ledger entry per delivery");
    assert!(ledger.iter().all(|m| rdkafka::Message::partition(m) == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivered_event_is_not_sent_again_by_a_restarted_consumer() {
    let env = Env::new(2).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    env.customer("customer-1", &endpoint.url()).await;
    env.customer("customer-2", &endpoint.url()).await;
    let delivered = event(1);
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &delivered).await;

    let consumer = env.start(env.config());
    wait_until(WAIT, "the first delivery", || endpoint.count() == 1).await;
    consumer.stop().await;

    // The same event replayed to customer-1 (not sent again), and to customer-2, which never had
    // it (sent), then a new event, read by a new consumer that restores the ledger.
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &delivered).await;
    produce_record(&env.producer, &env.topics.deliveries, "customer-2", &delivered).await;
    let fresh = event(2);
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &fresh).await;
    let restarted = env.start(env.config());
    wait_until(WAIT, "the new deliveries", || endpoint.count() >= 3).await;
    wait_until(WAIT, "the replay to be skipped", || restarted.counter("hookline_duplicates_skipped_total", &[]) == 1)
        .await;
    assert!(restarted.counter("hookline_ledger_restored_entries_total", &[]) >= 1);
    restarted.stop().await;

    let counts = received_counts(&endpoint);
    assert_eq!(counts.get(&delivered.event_id), Some(&2), "once per customer: {counts:?}");
    assert_eq!(counts.get(&fresh.event_id), Some(&1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_reread_after_a_sigkill_is_not_sent_again() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    env.customer("customer-1", &endpoint.url()).await;
    let events: Vec<EventRecord> = (1..=3).map(event).collect();
    for record in &events {
        produce_record(&env.producer, &env.topics.deliveries, "customer-1", record).await;
    }

    // Background commits far apart: when it is killed, the consumer has delivered and recorded
    // everything but committed nothing, the worst case for redelivery.
    let mut first = env.spawn_process(&["--kafka-property", "auto.commit.interval.ms=3600000"]);
    wait_until(WAIT, "three deliveries", || endpoint.count() >= 3).await;
    let ledger_topic = env.topics.delivered.clone();
    let kafka = env.kafka.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while read_topic(&kafka, &ledger_topic).await.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the deliveries were never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("wait");
    assert_eq!(
        committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0),
        None,
        "the test needs nothing committed before the kill"
    );

    // A replay of the first event and a new one; the new one arrives only after the whole tail.
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &events[0]).await;
    let last = event(4);
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &last).await;
    let mut second = env.spawn_process(&[]);
    wait_until(WAIT, "the new event", || received_counts(&endpoint).contains_key(&last.event_id)).await;
    let pid = second.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(30), second.wait()).await.expect("exits").expect("wait");
    assert!(status.success());

    let counts = received_counts(&endpoint);
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "every event exactly once: {counts:?}");
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&5));
}

//! The delivery ledger's bounds, against a real broker (tansu): a restore reads only the newest
//! `--dedup-capacity` entries however long the ledger is, a partition revoked and assigned back
//! to the same member continues the set it had, and a slow ledger holds its partition back at
//! `--ledger-max-in-flight` writes instead of piling them up.

mod common;

use std::time::Duration;

use common::{Env, event, metric_value, received_counts};
use hookline_consumer::Metrics;
use hookline_consumer::ledger::{DeliveredSet, entry_value};
use hookline_core::envelope::EventRecord;
use hookline_testkit::kafka::{committed_offsets, produce_record};
use hookline_testkit::{Endpoint, Respond, wait_until};
use rdkafka::producer::FutureRecord;

const WAIT: Duration = Duration::from_secs(90);

/// How many observations a histogram of `metrics` has.
fn histogram_count(metrics: &Metrics, name: &str) -> u64 {
    metrics
        .registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter().map(|m| m.get_histogram().get_sample_count()))
        .sum()
}

/// Writes ledger entries for `customer` straight to ledger partition 0, as consumers would have.
async fn write_ledger(env: &Env, customer: &str, entries: impl Iterator<Item = (String, i64)>) {
    let values: Vec<Vec<u8>> = entries.map(|(event_id, offset)| entry_value(&event_id, offset)).collect();
    let sends = values.iter().map(|value| {
        env.producer.send(
            FutureRecord::to(&env.topics.delivered).partition(0).key(customer).payload(value),
            Duration::from_secs(30),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(error, _)| error).expect("ledger entry written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reads_only_the_newest_capacity_entries_of_a_long_ledger() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    env.customer("customer-1", &endpoint.url()).await;
    // A long ledger: 5,000 older deliveries, then the newest one on its own (the broker's high
    // watermark is then the true end; tansu reports one inside the last batch).
    write_ledger(&env, "customer-1", (0..5_000).map(|n| (format!("evt_old_{n}"), n))).await;
    let newest = event(1);
    write_ledger(&env, "customer-1", std::iter::once((newest.event_id.clone(), 5_000))).await;

    let mut config = env.config();
    config.dedup.capacity = 1_000;
    // The newest delivery seen again, then a new event.
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &newest).await;
    let fresh = event(2);
    produce_record(&env.producer, &env.topics.deliveries, "customer-1", &fresh).await;
    let consumer = env.start(config);
    wait_until(WAIT, "the new event", || received_counts(&endpoint).contains_key(&fresh.event_id)).await;

    let read = consumer.counter("hookline_ledger_restored_entries_total", &[]);
    assert!((1_000..=1_100).contains(&read), "read {read} ledger records of 5,001 with a capacity of 1,000");
    assert_eq!(consumer.counter("hookline_duplicates_skipped_total", &[]), 1, "the newest delivery is remembered");
    assert_eq!(consumer.counter("hookline_ledger_restores_total", &[("kind", "read")]), 1);
    let memory = consumer.counter("hookline_ledger_memory_bytes", &[]);
    assert!(memory > 0 && memory <= DeliveredSet::max_bytes(1_000) as u64, "{memory} bytes");
    consumer.stop().await;
    assert_eq!(received_counts(&endpoint).get(&newest.event_id), None, "never sent");
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_revoked_and_assigned_back_continues_the_set_it_had() {
    let env = Env::new(2).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    let customers: Vec<String> = (0..6).map(|n| format!("customer-{n}")).collect();
    for customer in &customers {
        env.customer(customer, &endpoint.url()).await;
    }
    let mut delivered = vec![];
    for n in 0..3 {
        for customer in &customers {
            let record = event(n);
            produce_record(&env.producer, &env.topics.deliveries, customer, &record).await;
            delivered.push((customer.clone(), record));
        }
    }
    let first = env.start(env.config());
    wait_until(WAIT, "every event delivered", || endpoint.distinct_ids().len() == delivered.len()).await;
    wait_until(WAIT, "every delivery recorded", || {
        metric_value(&first.metrics, "hookline_ledger_records_total", &[]) == delivered.len() as u64
    })
    .await;
    assert_eq!(first.counter("hookline_ledger_restored_entries_total", &[]), 0, "the ledger was empty");

    // A second member joins: the first one's partitions are revoked, one is assigned back to it.
    let second = env.start(env.config());
    wait_until(WAIT, "the group rebalanced, each member restored its partition", || {
        metric_value(&first.metrics, "hookline_assigned_partitions", &[]) == 1
            && metric_value(&second.metrics, "hookline_assigned_partitions", &[]) == 1
            && histogram_count(&first.metrics, "hookline_ledger_restore_duration_seconds") >= 3
            && histogram_count(&second.metrics, "hookline_ledger_restore_duration_seconds") >= 1
    })
    .await;
    assert_eq!(
        first.counter("hookline_ledger_restored_entries_total", &[]),
        0,
        "the partition that came back read nothing: its set was kept, and nobody wrote to its ledger since"
    );
    assert!(first.counter("hookline_ledger_restores_total", &[("kind", "kept")]) >= 1);
    assert!(second.counter("hookline_ledger_restored_entries_total", &[]) >= 1, "a new owner reads the ledger");

    // Every delivery seen again: both members know them all.
    for (customer, record) in &delivered {
        produce_record(&env.producer, &env.topics.deliveries, customer, record).await;
    }
    wait_until(WAIT, "every duplicate skipped", || {
        first.counter("hookline_duplicates_skipped_total", &[])
            + second.counter("hookline_duplicates_skipped_total", &[])
            == delivered.len() as u64
    })
    .await;
    first.stop().await;
    second.stop().await;
    assert!(received_counts(&endpoint).values().all(|&n| n == 1), "{:?}", received_counts(&endpoint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ledger_holds_the_partition_at_the_cap_of_writes_in_flight() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::start(|_| Respond::ok()).await;
    env.customer("customer-1", &endpoint.url()).await;
    let records: Vec<EventRecord> = (0..12).map(event).collect();
    for record in &records {
        produce_record(&env.producer, &env.topics.deliveries, "customer-1", record).await;
    }
    let mut config = env.config();
    config.dedup.max_in_flight = 4;
    // A slow ledger while the delivery topic is fine: the consumer's producer (ledger and DLQ
    // only) holds each batch for 4 s before sending it.
    config.kafka = config.kafka.with_property("linger.ms", "4000");
    let consumer = env.start(config);
    wait_until(WAIT, "the first deliveries", || endpoint.count() >= 4).await;
    // Well inside the 4 s the first ledger batch waits: nothing more may be taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(endpoint.count(), 4, "records taken while 4 ledger writes were in flight");
    assert_eq!(consumer.counter("hookline_ledger_writes_in_flight", &[]), 4);
    assert_eq!(consumer.counter("hookline_partitions_waiting_on_ledger", &[]), 1);

    // As the ledger acknowledges, the partition goes on, 4 at a time, to the end.
    wait_until(WAIT, "every record delivered", || endpoint.distinct_ids().len() == records.len()).await;
    wait_until(WAIT, "every delivery recorded", || consumer.counter("hookline_ledger_records_total", &[]) == 12).await;
    assert!(consumer.counter("hookline_ledger_waits_total", &[]) >= 2);
    assert_eq!(consumer.counter("hookline_ledger_writes_in_flight", &[]), 0);
    consumer.stop().await;
    assert!(received_counts(&endpoint).values().all(|&n| n == 1));
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&12));
}

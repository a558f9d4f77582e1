//! Crashes, shutdowns and rebalances, with real `hookline-consumer` processes killed by SIGKILL,
//! against a real broker (tansu).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Env, free_port, metric_value};
use hookline_testkit::kafka::{committed_offsets, read_topic};
use hookline_testkit::{Endpoint, Respond, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// An endpoint that answers 503 until `healthy` is set.
async fn switchable() -> (Endpoint, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let endpoint =
        Endpoint::start(move |_| if flag.load(Ordering::SeqCst) { Respond::ok() } else { Respond::status(503) }).await;
    (endpoint, healthy)
}

fn acked_ids(endpoint: &Endpoint, healthy_from: usize) -> BTreeSet<String> {
    endpoint.received()[healthy_from.min(endpoint.count())..].iter().map(|r| r.webhook_id().to_owned()).collect()
}

async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running child");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits after SIGTERM").expect("wait")
}

async fn sigkill(child: &mut tokio::process::Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_retry_loses_nothing_and_commits_nothing_early() {
    let env = Env::new(1).await;
    let (endpoint, healthy) = switchable().await;
    env.customer("customer-1", &endpoint.url()).await;
    let id = env.publish("customer-1", json!({"important": true})).await;

    let mut first = env.spawn_process(&["--max-attempts", "1000"]);
    wait_until(WAIT, "the consumer to be retrying", || endpoint.count() >= 3).await;
    sigkill(&mut first).await;
    let attempts_before_kill = endpoint.count();

    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert_eq!(committed.get(&0), None, "nothing may be committed before the ACK: {committed:?}");

    healthy.store(true, Ordering::SeqCst);
    let mut second = env.spawn_process(&["--max-attempts", "1000"]);
    wait_until(WAIT, "delivery after the restart", || acked_ids(&endpoint, attempts_before_kill).contains(&id)).await;
    assert!(terminate(&mut second).await.success(), "SIGTERM is a clean exit");

    assert!(endpoint.received().iter().all(|r| r.webhook_id() == id), "the same webhook-id across the crash");
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert_eq!(committed.get(&0), Some(&1), "committed on shutdown after the ACK");
}

/// This one runs on librdkafka's mock cluster (a Kafka-protocol broker in this test process,
/// reached by the consumer processes over TCP) rather than tansu: tansu 0.6 notices a killed
/// member's missed heartbeats but keeps answering the survivors' heartbeats as if the group were
/// stable, so the dead member's partitions are never reassigned (seen with librdkafka's `cgrp`
/// debug log). The mock cluster implements session timeouts as Kafka does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_six_partitions_and_survive_a_sigkill() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let env = Env::on_mock(&cluster, 6);
    let endpoint = Endpoint::start(|_| Respond::ok().delayed(Duration::from_millis(20))).await;
    let customers: Vec<String> = (0..12).map(|i| format!("customer-{i}")).collect();
    for customer in &customers {
        env.customer(customer, &endpoint.url()).await;
    }
    let metrics_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut consumers: Vec<_> = metrics_ports
        .iter()
        .map(|port| env.spawn_process(&["--metrics-listen", &format!("127.0.0.1:{port}")]))
        .collect();

    let http = reqwest::Client::new();
    let mut shares = Vec::new();
    for _ in 0..600 {
        shares = assigned_partitions(&http, &metrics_ports).await;
        if shares.iter().sum::<u64>() == 6 && shares.iter().all(|s| *s >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shares.iter().sum::<u64>(), 6, "{shares:?}");
    assert!(shares.iter().all(|s| *s >= 1), "every member owns partitions: {shares:?}");

    let mut published = BTreeSet::new();
    for seq in 0..8 {
        for customer in &customers {
            published.insert(env.publish(customer, json!({"seq": seq})).await);
        }
    }
    wait_until(WAIT, "deliveries under way", || endpoint.distinct_ids().len() >= 24).await;
    sigkill(&mut consumers[1]).await;
    for seq in 8..12 {
        for customer in &customers {
            published.insert(env.publish(customer, json!({"seq": seq})).await);
        }
    }
    // The two survivors take the dead member's partitions over after session.timeout.ms and
    // redeliver what it had not committed.
    wait_until(WAIT, "every event delivered despite the crash", || endpoint.distinct_ids().is_superset(&published))
        .await;

    for (index, consumer) in consumers.iter_mut().enumerate() {
        if index != 1 {
            assert!(terminate(consumer).await.success());
        }
    }
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
}

async fn assigned_partitions(http: &reqwest::Client, ports: &[u16]) -> Vec<u64> {
    let mut shares = Vec::new();
    for port in ports {
        let text = match http.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("hookline_assigned_partitions "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        shares.push(value as u64);
    }
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_backoffs_keep_the_member_in_its_group() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::fail_first(2, 503).await;
    env.customer("slow", &endpoint.url()).await;
    let id = env.publish("slow", json!({})).await;
    let mut config = env.config();
    // Two backoffs of 4-8 s each: together well past max.poll.interval.ms.
    config.kafka = config.kafka.with_property("max.poll.interval.ms", "6500");
    config.delivery.initial_backoff = Duration::from_secs(4);
    config.delivery.max_backoff = Duration::from_secs(8);
    config.delivery.max_attempts = 5;
    let consumer = env.start(config);
    wait_until(WAIT, "delivery after two long backoffs", || endpoint.count() >= 3).await;
    let received = endpoint.received();
    assert!(
        received[2].at - received[0].at > Duration::from_millis(6500),
        "the retries outlasted max.poll.interval.ms"
    );
    assert_eq!(received[2].webhook_id(), id);
    assert_eq!(consumer.counter("hookline_rebalances_total", &[("kind", "revoke")]), 0, "never left the group");
    assert_eq!(consumer.counter("hookline_rebalances_total", &[("kind", "assign")]), 1);
    consumer.stop().await;
    assert_eq!(endpoint.count(), 3, "no redelivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_interrupts_a_retrying_partition_without_committing_it() {
    let env = Env::new(2).await;
    let (endpoint, healthy) = switchable().await;
    env.customer("customer-1", &endpoint.url()).await;
    let id = env.publish("customer-1", json!({})).await;
    let mut config = env.config();
    config.delivery.max_attempts = 1000;
    let first = env.start(config.clone());
    wait_until(WAIT, "the first member retrying", || endpoint.count() >= 2).await;

    // A second member joins: the group rebalances and the first member's partitions are revoked.
    let second = env.start(config);
    wait_until(WAIT, "the retrying partition revoked", || {
        metric_value(&first.metrics, "hookline_abandoned_records_total", &[("cause", "revoked")]) >= 1
    })
    .await;
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert!(committed.values().all(|o| *o == 0), "a revoked, unfinished record is not committed: {committed:?}");

    let before_heal = endpoint.count();
    healthy.store(true, Ordering::SeqCst);
    wait_until(WAIT, "delivery by whichever member owns it now", || acked_ids(&endpoint, before_heal).contains(&id))
        .await;
    first.stop().await;
    second.stop().await;
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert_eq!(committed.values().sum::<i64>(), 1, "{committed:?}");
}

//! `hookline-setup check` against a real broker (and the schema registry test double).

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{args, assert_exit, binary, in_process, stderr, stdout};
use hookline_core::config::TopicArgs;
use hookline_core::{kafka, topics};
use hookline_setup::{EXIT_FAILURE, Error};
use hookline_testkit::kafka::{close_producer, committed_offsets, produce_event, producer, read_topic};
use hookline_testkit::{Broker, SchemaRegistry, init_test_logging, unique_name};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// A loopback address nothing listens on.
fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

/// `args` with `--timeout 3s` instead of the usual 10 s (for brokers that are not there).
fn with_short_timeout(mut args: Vec<String>) -> Vec<String> {
    let at = args.iter().position(|a| a == "--timeout").expect("--timeout present");
    args[at + 1] = "3s".into();
    args
}

fn with(mut all: Vec<String>, extra: &[&str]) -> Vec<String> {
    all.extend(extra.iter().map(|a| (*a).to_owned()));
    all
}

#[tokio::test]
async fn check_passes_on_a_set_up_cluster_and_names_what_is_missing() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("check");

    // Nothing created yet: every topic fails, with what to do; exit 1.
    let output = binary(&args(&broker.bootstrap(), &prefix, &["check"])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains("ok   broker: 1 broker(s), bootstrap 127.0.0.1:"), "{out}");
    assert!(
        out.contains(&format!("FAIL topic {prefix} (deliveries): missing; run `hookline-setup topics create`")),
        "{out}"
    );
    assert!(out.contains(&format!("FAIL topic {prefix}.idempotency (idempotency): missing")), "{out}");
    assert!(stderr(&output).contains("check(s) failed"), "{}", stderr(&output));

    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "3"])).await;
    result.expect("topics create");
    let (result, out) = in_process(&args(&broker.bootstrap(), &prefix, &["check"])).await;
    result.unwrap_or_else(|e| panic!("check passes after `topics create`: {e}\n{out}"));
    for expected in [
        format!("ok   topic {prefix} (deliveries): 3 partitions"),
        format!("ok   topic {prefix}.dlq (dead letters): 3 partitions"),
        format!("ok   topic {prefix}.customers (customers): 1 partition"),
        format!("ok   topic {prefix}.delivered (delivery ledger): 3 partitions"),
        format!("ok   topic {prefix}.idempotency (idempotency): 1 partition"),
        format!("ok   group hookline lag: total 0 on {prefix}"),
        "ok   schema registry: not configured".to_owned(),
    ] {
        assert!(out.contains(&expected), "`{expected}` in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    // The broker answers DescribeConfigs (tansu does), so the cleanup policies were compared.
    if !out.contains("warn topic configs") {
        assert!(out.contains(&format!("{prefix}.customers (customers): 1 partition, cleanup.policy=compact")), "{out}");
    }
    // No consumer runs: worth a warning, not a failure.
    assert!(out.contains("warn group hookline: ") && out.contains("`hookline-consumer --group hookline`"), "{out}");

    // The same report as JSON, for scripts.
    let output = binary(&args(&broker.bootstrap(), &prefix, &["check", "--json"])).await;
    assert_exit(&output, 0);
    let report: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(report["ok"], true, "{report}");
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["check"] == format!("topic {prefix}.dlq (dead letters)") && c["status"] == "ok"));
}

#[tokio::test]
async fn a_missing_topic_and_a_dlq_laid_out_unlike_the_delivery_topic_fail() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("check-layout");
    // Everything but the idempotency topic, a DLQ with fewer partitions than the deliveries and a
    // customers topic that is not compacted (it would lose customers to retention).
    let mut specs = topics::specs(&TopicArgs::with_prefix(&prefix), 3, 1);
    specs.remove(4);
    specs[1].partitions = 2;
    specs[2].cleanup_policy = "delete";
    topics::ensure_topics(&broker.kafka_args(), &specs).await.expect("create topics");

    let output = binary(&args(&broker.bootstrap(), &prefix, &["check"])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains(&format!("ok   topic {prefix} (deliveries): 3 partitions")), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL topic {prefix}.dlq (dead letters): has 2 partitions, expected 3 (as many as the delivery topic)"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("ok   topic {prefix}.delivered (delivery ledger): 3 partitions")), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL topic {prefix}.idempotency (idempotency): missing; run `hookline-setup topics create`"
        )),
        "{out}"
    );
    // tansu answers DescribeConfigs; a broker that does not gets a warning instead.
    if !out.contains("warn topic configs") {
        assert!(
            out.contains(&format!(
                "FAIL topic {prefix}.customers (customers): has cleanup.policy=delete, expected compact; Hookline never \
                 alters topics"
            )),
            "{out}"
        );
    }
    let err = stderr(&output);
    assert!(err.contains("3 check(s) failed") && err.contains(&format!("topic {prefix}.idempotency")), "{err}");

    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["check"])).await;
    match result {
        Err(error @ Error::ChecksFailed(_)) => assert_eq!(error.exit_code(), EXIT_FAILURE),
        other => panic!("expected ChecksFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_broker_that_is_down_fails_the_check() {
    init_test_logging();
    let mut broker = Broker::start();
    let prefix = unique_name("check-down");
    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create"])).await;
    result.expect("topics create");
    let bootstrap = broker.bootstrap();
    broker.kill();

    for brokers in [bootstrap, dead_address()] {
        let output = binary(&with_short_timeout(args(&brokers, &prefix, &["check"]))).await;
        assert_exit(&output, 1);
        let out = stdout(&output);
        assert!(out.contains(&format!("FAIL broker: cannot reach Kafka at {brokers}")), "{out}");
        assert!(out.contains("check that the broker is running"), "{out}");
        // Nothing else about Kafka can be known; the registry is checked on its own.
        assert!(!out.contains("topic "), "{out}");
        assert!(stderr(&output).contains("1 check(s) failed: broker"), "{}", stderr(&output));
    }
}

/// Commits `offset` for `group` on `topic`/`partition` without joining the group, as a consumer
/// that processed the records before it would have.
async fn commit(brokers: &str, group: &str, topic: &str, partition: i32, offset: i64) {
    let kafka = hookline_core::config::KafkaArgs::new(brokers);
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            kafka::group_consumer_config(&kafka, "hookline-test-commit", &group).create().expect("consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, partition, Offset::Offset(offset)).expect("offset");
        consumer.commit(&list, CommitMode::Sync).expect("commit");
    })
    .await
    .expect("commit task");
}

#[tokio::test]
async fn the_groups_lag_is_reported_by_check_and_describe() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("check-lag");
    let group = unique_name("check-lag-group");
    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "2"])).await;
    result.expect("topics create");

    // Five events for one customer: one partition. Each send is awaited alone, so each is its own
    // batch and the high watermark is exact even on tansu (see the README's tansu notes).
    let producer = producer(&broker.kafka_args());
    for n in 0..5 {
        produce_event(&producer, &prefix, "c1", "order.created", serde_json::json!({ "n": n })).await;
    }
    close_producer(producer).await;
    let records = read_topic(&broker.kafka_args(), &prefix).await;
    assert_eq!(records.len(), 5);
    let partition = records[0].partition();
    let other = 1 - partition;

    commit(&broker.bootstrap(), &group, &prefix, partition, 2).await;
    assert_eq!(
        committed_offsets(&broker.kafka_args(), &group, &prefix).await.get(&partition),
        Some(&2),
        "the commit landed"
    );

    let (result, out) = in_process(&args(&broker.bootstrap(), &prefix, &["check", "--group", &group])).await;
    result.unwrap_or_else(|e| panic!("lag alone does not fail the check: {e}\n{out}"));
    assert!(
        out.contains(&format!("ok   group {group} lag: total 3 on {prefix} ("))
            && out.contains(&format!("p{partition} 3")),
        "{out}"
    );
    assert!(out.contains(&format!("p{other} 0")), "{out}");

    // Above --max-lag: a warning, still exit 0.
    let output = binary(&args(&broker.bootstrap(), &prefix, &["check", "--group", &group, "--max-lag", "2"])).await;
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(out.contains(&format!("warn group {group} lag: total 3")) && out.contains("above --max-lag 2"), "{out}");
    let output = binary(&args(&broker.bootstrap(), &prefix, &["check", "--group", &group, "--max-lag", "3"])).await;
    assert!(stdout(&output).contains(&format!("ok   group {group} lag: total 3")), "{}", stdout(&output));

    let (result, described) =
        in_process(&args(&broker.bootstrap(), &prefix, &["topics", "describe", "--group", &group])).await;
    result.expect("describe");
    assert!(described.contains(&format!("{prefix} (deliveries): 2 partitions, 5 records")), "{described}");
    assert!(described.contains(&format!("  group {group}: lag 3")), "{described}");
    let line = described
        .lines()
        .find(|l| l.starts_with(&format!("  partition {partition:>3}  leader")) && l.contains("committed"))
        .unwrap_or_else(|| panic!("partition {partition} of the delivery topic in\n{described}"));
    assert!(line.contains("high          5  committed          2  lag          3"), "{line}");
    let line = described
        .lines()
        .find(|l| l.starts_with(&format!("  partition {other:>3}  leader")) && l.contains("committed"))
        .unwrap_or_else(|| panic!("partition {other} in\n{described}"));
    assert!(line.ends_with("committed          -  lag          0"), "{line}");
}

#[tokio::test]
async fn a_running_consumer_is_a_member_of_the_group() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("check-members");
    let group = unique_name("check-members-group");
    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "2"])).await;
    result.expect("topics create");

    // A group member, as `hookline-consumer` is one, polled on its own thread until dropped.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (joined, has_joined) = tokio::sync::oneshot::channel();
    let kafka = broker.kafka_args();
    let (topic, member_group) = (prefix.clone(), group.clone());
    let member = std::thread::spawn(move || {
        let consumer: BaseConsumer =
            kafka::group_consumer_config(&kafka, "check-member", &member_group).create().expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut joined = Some(joined);
        while stopped.try_recv().is_err() {
            let _ = consumer.poll(Duration::from_millis(100));
            if let Ok(assignment) = consumer.assignment()
                && assignment.count() > 0
                && let Some(joined) = joined.take()
            {
                // A committed position, as a running consumer has once it delivered something:
                // tansu 0.6 lists a group only then.
                let mut position = TopicPartitionList::new();
                let first = &assignment.elements()[0];
                position.add_partition_offset(first.topic(), first.partition(), Offset::Offset(0)).expect("offset");
                consumer.commit(&position, CommitMode::Sync).expect("commit");
                let _ = joined.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), has_joined).await.expect("joined within 30s").expect("joined");

    let (result, out) = in_process(&args(&broker.bootstrap(), &prefix, &["check", "--group", &group])).await;
    let _ = stop.send(());
    member.join().expect("member thread");
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    let line = out.lines().find(|l| l.contains(&format!("group {group}: "))).expect("group line");
    // Apache Kafka names the member `client.id@host`; tansu 0.6 names neither.
    let prefix = format!("ok   group {group}: state Stable, 1 member(s): ");
    assert!(
        line.starts_with(&format!("{prefix}check-member@")) || line == format!("{prefix}(not named by the broker)"),
        "{out}"
    );
}

#[tokio::test]
async fn the_schema_registry_and_its_subjects_are_checked() {
    init_test_logging();
    let broker = Broker::start();
    let registry = SchemaRegistry::start().await;
    let prefix = unique_name("check-registry");
    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "1"])).await;
    result.expect("topics create");
    let url = registry.url();

    let output = binary(&with(args(&broker.bootstrap(), &prefix, &["check"]), &["--schema-registry-url", &url])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains(&format!("ok   schema registry: {url}: 0 subject(s)")), "{out}");
    for subject in [format!("{prefix}-value"), format!("{prefix}.dlq-value"), format!("{prefix}.customers-value")] {
        assert!(
            out.contains(&format!("FAIL subject {subject}: not registered; run `hookline-setup schemas register`")),
            "{out}"
        );
    }

    let (result, _) = in_process(&with(
        args(&broker.bootstrap(), &prefix, &["schemas", "register"]),
        &["--schema-registry-url", &url],
    ))
    .await;
    result.expect("schemas register");
    let output = binary(&with(args(&broker.bootstrap(), &prefix, &["check"]), &["--schema-registry-url", &url])).await;
    assert_exit(&output, 0);
    let out = stdout(&output);
    let (id, _) = registry.latest(&format!("{prefix}.customers-value")).expect("registered");
    assert!(out.contains(&format!("ok   schema registry: {url}: 3 subject(s)")), "{out}");
    assert!(
        out.contains(&format!("ok   subject {prefix}.customers-value: dev.hookline.Customer id {id} version 1")),
        "{out}"
    );
    assert!(out.contains(&format!("ok   subject {prefix}.dlq-value: ")), "{out}");

    // A registry that is not there.
    let gone = format!("http://{}", dead_address());
    let output = binary(&with(args(&broker.bootstrap(), &prefix, &["check"]), &["--schema-registry-url", &gone])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains(&format!("FAIL schema registry: {gone}: cannot reach it")), "{out}");
    assert!(out.contains("--schema-registry-url"), "{out}");
}

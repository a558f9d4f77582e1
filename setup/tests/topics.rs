//! `topics create` / `topics describe` against a real broker.

mod common;

use common::{args, assert_exit, binary, in_process, stderr, stdout};
use hookline_setup::{EXIT_FAILURE, Error};
use hookline_testkit::{Broker, init_test_logging, unique_name};

#[tokio::test]
async fn create_is_idempotent_and_describe_shows_partitions() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("setup-create");

    let create = args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "3"]);
    let (result, out) = in_process(&create).await;
    result.expect("first create succeeds");
    assert!(out.contains(&format!("created {prefix} (3 partitions, cleanup.policy=delete)")), "{out}");
    assert!(out.contains(&format!("created {prefix}.dlq (3 partitions, cleanup.policy=delete)")), "{out}");
    assert!(out.contains(&format!("created {prefix}.customers (1 partition, cleanup.policy=compact)")), "{out}");
    assert!(out.contains(&format!("created {prefix}.delivered (3 partitions, cleanup.policy=delete)")), "{out}");
    assert!(out.contains(&format!("created {prefix}.idempotency (1 partition, cleanup.policy=delete)")), "{out}");

    // The second run, through the real binary, changes nothing and succeeds.
    let again = binary(&create).await;
    assert_exit(&again, 0);
    let again_out = stdout(&again);
    assert!(again_out.contains(&format!("exists  {prefix} (3 partitions")), "{again_out}");
    assert!(again_out.contains(&format!("exists  {prefix}.dlq (3 partitions")), "{again_out}");
    assert!(again_out.contains(&format!("exists  {prefix}.customers (1 partition")), "{again_out}");
    assert!(!again_out.contains("created"), "{again_out}");

    let (result, described) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "describe"])).await;
    result.expect("describe succeeds");
    assert!(described.contains(&format!("{prefix} (deliveries): 3 partitions, 0 records")), "{described}");
    assert!(described.contains(&format!("{prefix}.dlq (dead letters): 3 partitions")), "{described}");
    assert!(described.contains(&format!("{prefix}.customers (customers): 1 partition")), "{described}");
    // kafka-topics style: leader, replicas, in-sync replicas (one broker here), then watermarks;
    // the delivery topic adds the group's committed offset and lag (nothing committed yet).
    assert!(
        described.contains(&format!("{prefix} (deliveries): 3 partitions, 0 records\n  group hookline: lag 0\n")),
        "{described}"
    );
    for partition in 0..3 {
        let line = described
            .lines()
            .find(|l| l.starts_with(&format!("  partition {partition:>3}  leader")))
            .unwrap_or_else(|| panic!("partition {partition} in\n{described}"));
        assert!(line.contains("  replicas ") && line.contains("  isr ") && line.contains("  low "), "{line}");
        assert!(line.ends_with("committed          -  lag          0"), "{line}");
    }
    assert!(!described.contains("partition   3"), "{described}");
}

#[tokio::test]
async fn create_with_a_different_partition_count_fails_without_altering() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("setup-differs");

    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "3"])).await;
    result.expect("first create succeeds");

    let output = binary(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "6"])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains(&format!("differs {prefix}: has 3 partitions, expected 6")), "{out}");
    assert!(out.contains(&format!("differs {prefix}.dlq: has 3 partitions, expected 6")), "{out}");
    // The customers topic always has one partition, so it still matches.
    assert!(out.contains(&format!("exists  {prefix}.customers")), "{out}");
    let err = stderr(&output);
    assert!(err.contains("never alters or deletes topics"), "{err}");

    // In-process, the same situation is a typed error with the same exit code.
    let (result, _) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "create", "--partitions", "6"])).await;
    match result {
        Err(error @ Error::TopicsDiffer(_)) => assert_eq!(error.exit_code(), EXIT_FAILURE),
        other => panic!("expected TopicsDiffer, got {other:?}"),
    }

    let (result, described) = in_process(&args(&broker.bootstrap(), &prefix, &["topics", "describe"])).await;
    result.expect("describe succeeds");
    assert!(described.contains(&format!("{prefix} (deliveries): 3 partitions")), "{described}");
}

#[tokio::test]
async fn describe_reports_missing_topics_and_fails() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("setup-missing");

    let output = binary(&args(&broker.bootstrap(), &prefix, &["topics", "describe"])).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    assert!(out.contains(&format!("{prefix} (deliveries): MISSING")), "{out}");
    assert!(out.contains(&format!("{prefix}.customers (customers): MISSING")), "{out}");
    let err = stderr(&output);
    assert!(err.contains("missing topic(s)") && err.contains("hookline-setup topics create"), "{err}");
}

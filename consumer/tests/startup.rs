//! What the consumer checks before it joins the group.

mod common;

use std::time::Duration;

use common::Env;
use hookline_consumer::Config;
use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::topics;
use hookline_testkit::unique_name;

/// Without the DLQ topic every record that must be dead-lettered would be retried forever,
/// uncommitted, stalling its partition: the consumer refuses to start and names the topic.
/// The error a consumer that must not start stops with (within a minute, without panicking).
async fn refusal(running: common::Running, what: &str) -> String {
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.handle)
        .await
        .unwrap_or_else(|_| panic!("the consumer stops instead of running with {what}"))
        .expect("no panic");
    stopped.expect_err(what).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_without_the_dlq_topic() {
    let env = Env::new(2).await;
    let mut config = env.config();
    let missing = unique_name("no-such-dlq");
    config.topics.dlq = missing.clone();
    let error = refusal(env.start(config), "a missing DLQ topic").await;
    assert!(error.contains(&missing) && error.contains("does not exist"), "{error}");
}

/// A ledger with another partition count than the delivery topic would record a customer's
/// deliveries where the partition's next owner never looks: refused before joining the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_with_a_ledger_not_co_partitioned_with_the_deliveries() {
    let env = Env::new(2).await;
    let ledger = unique_name("ledger-of-three");
    let spec = topics::TopicSpec {
        name: ledger.clone(),
        partitions: 3,
        replication_factor: 1,
        cleanup_policy: "delete",
        retention: None,
    };
    topics::ensure_topics(&env.kafka, &[spec]).await.expect("create the ledger topic");
    let mut config = env.config();
    config.topics.delivered = ledger.clone();
    let error = refusal(env.start(config), "a ledger of another layout").await;
    assert!(error.contains(&ledger) && error.contains("3 partitions"), "{error}");
}

/// librdkafka's own text ("BrokerTransportFailure") names neither the address nor the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_named_with_the_setting_that_points_at_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string();
    let mut config = Config::new(KafkaArgs::new(&closed), TopicArgs::with_prefix(&unique_name("nowhere")), "g");
    config.master_key = hookline_testkit::tenants::master_key_args();
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        hookline_consumer::run(config, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the consumer gives up")
    .expect_err("no broker, no consumer")
    .to_string();
    assert!(error.contains(&format!("cannot reach Kafka at {closed} (")), "{error}");
    assert!(error.contains("--brokers / KAFKA_BROKERS"), "{error}");
}

/// A member blocked in a rebalance for as long as its session timeout would be evicted from its
/// group: a drain timeout not below `session.timeout.ms` is a usage error, before any broker is
/// contacted.
#[test]
fn a_revoke_drain_timeout_not_below_the_session_timeout_is_refused_with_exit_code_2() {
    let stderr = common::usage_error(&["--kafka-property", "session.timeout.ms=6000", "--revoke-drain-timeout", "6s"]);
    assert!(
        stderr.contains("--revoke-drain-timeout (6s)") && stderr.contains("session.timeout.ms (6000 ms)"),
        "{stderr}"
    );
}

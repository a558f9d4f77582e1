//! What the consumer checks before it joins the group.

mod common;

use std::time::Duration;

use common::Env;
use hookline_testkit::unique_name;

/// Without the DLQ topic every record that must be dead-lettered would be retried forever,
/// uncommitted, stalling its partition: the consumer refuses to start and names the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_without_the_dlq_topic() {
    let env = Env::new(2).await;
    let mut config = env.config();
    let missing = unique_name("no-such-dlq");
    config.topics.dlq = missing.clone();
    let running = env.start(config);
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.handle)
        .await
        .expect("the consumer stops instead of running without a DLQ")
        .expect("no panic");
    let error = stopped.expect_err("a missing DLQ topic is refused").to_string();
    assert!(error.contains(&missing) && error.contains("does not exist"), "{error}");
}

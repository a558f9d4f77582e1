//! The demo's consumer group on the in-process mock cluster: a member that joins after the others
//! have formed the group still gets its partitions within seconds.
//!
//! The members are plain librdkafka group consumers with exactly the client settings the demo
//! gives its delivery consumers ([`hookline_demo::consumer_config`]).

use std::time::{Duration, Instant};

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "demo-group-late-member";
const PARTITIONS: i32 = 6;
/// The issue asks for a group ready in a few seconds; with librdkafka's default session timeout
/// the mock cluster keeps a late member waiting 44 s.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// The first members form the group after the mock's initial rebalance delay (3 s).
const FORMED_WITHIN: Duration = Duration::from_secs(30);

fn member(kafka: &KafkaArgs, group: &str, n: usize) -> BaseConsumer {
    let member: BaseConsumer =
        kafka::group_consumer_config(kafka, &format!("demo-member-{n}"), group).create().expect("group consumer");
    member.subscribe(&[TOPIC]).expect("subscribe");
    member
}

fn owned(member: &BaseConsumer) -> usize {
    member.assignment().map(|assignment| assignment.count()).unwrap_or_default()
}

/// Whether every member owns some partitions and together they own all of them.
fn shared_out(members: &[BaseConsumer]) -> bool {
    members.iter().all(|m| owned(m) > 0) && members.iter().map(owned).sum::<usize>() == PARTITIONS as usize
}

/// Polls every member (which runs their rebalances) until they share out the partitions or
/// `within` has passed; whether they did.
fn poll_until_shared_out(members: &[BaseConsumer], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for member in members {
            // No records are produced: a poll only serves the group protocol.
            let _ = member.poll(Duration::from_millis(50));
        }
        if shared_out(members) {
            return true;
        }
    }
    false
}

#[test]
fn a_member_joining_a_formed_group_gets_partitions_within_seconds() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let config =
        hookline_demo::consumer_config(&KafkaArgs::new(mock.bootstrap_servers()), &TopicArgs::default(), "demo", true);

    let mut members: Vec<BaseConsumer> = (0..2).map(|n| member(&config.kafka, &config.group, n)).collect();
    assert!(poll_until_shared_out(&members, FORMED_WITHIN), "the first two members form the group");

    members.push(member(&config.kafka, &config.group, 2));
    let joined = Instant::now();
    let ready = poll_until_shared_out(&members, READY_WITHIN);
    let shares: Vec<usize> = members.iter().map(owned).collect();
    assert!(ready, "after {:?} the partitions per member are {shares:?}", joined.elapsed());
}

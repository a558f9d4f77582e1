//! One look at the cluster, shared by `topics describe` and `check`: brokers, the layout of every
//! Hookline topic (leader, replicas, ISR and watermarks per partition), the consumer group's
//! committed offsets on the delivery topic, and the group's state and members.
//!
//! All of it is librdkafka's blocking API, so it runs on a blocking thread, each request bounded
//! by the operator's `--timeout`.

use std::collections::HashMap;
use std::time::Duration;

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::check_reachable;
use crate::{Error, Result};

/// Extra time given to the blocking thread over its own librdkafka timeouts before giving up.
const SLACK: Duration = Duration::from_secs(2);

/// What one partition looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: i32,
    /// Broker id of the leader; -1 when the partition has none.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Low and high watermarks, when the leader answered.
    pub watermarks: Option<(i64, i64)>,
}

/// One Hookline topic, by its role.
#[derive(Debug, Clone)]
pub struct Topic {
    /// `deliveries`, `dead letters`, ...
    pub role: &'static str,
    pub name: String,
    /// `None` when the topic does not exist.
    pub partitions: Option<Vec<Partition>>,
}

/// The Kafka side of the cluster, as far as Hookline cares.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub brokers: usize,
    /// The eight topics, in [`roles`] order.
    pub topics: Vec<Topic>,
    /// The group's committed offsets on the delivery topic by partition (partitions without a
    /// commit omitted), or why they could not be read. `None` when not asked for.
    pub committed: Option<Result<HashMap<i32, i64>, String>>,
}

/// The group as the broker describes it.
#[derive(Debug, Clone)]
pub struct Group {
    pub state: String,
    /// `client_id@host` of each member.
    pub members: Vec<String>,
}

/// Every Hookline topic with the role it is shown under, delivery topic first.
pub fn roles(names: &TopicArgs) -> [(&'static str, &str); 8] {
    [
        ("deliveries", &names.deliveries),
        ("dead letters", &names.dlq),
        ("customers", &names.customers),
        ("delivery ledger", &names.delivered),
        ("idempotency", &names.idempotency),
        ("retry", &names.retry),
        ("parking state", &names.parking),
        ("delivery log", &names.attempts),
    ]
}

impl Snapshot {
    /// The delivery topic.
    pub fn deliveries(&self) -> &Topic {
        &self.topics[0]
    }
}

/// Reads the [`Snapshot`]; with `group`, also its committed offsets on the delivery topic.
/// Fails with [`Error::Unreachable`] when no broker answers a metadata request.
pub async fn snapshot(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    group: Option<&str>,
    timeout: Duration,
) -> Result<Snapshot> {
    // Fails at once when the broker refuses the connection, else waits up to `timeout`.
    check_reachable(kafka, timeout).await?;
    let kafka = kafka.clone();
    let names = names.clone();
    let group = group.map(str::to_owned);
    blocking(timeout, "the broker to answer", move || read_snapshot(&kafka, &names, group.as_deref(), timeout)).await
}

/// The group's state and members (`None` when the broker does not list it), or the broker's
/// refusal (some brokers do not implement ListGroups/DescribeGroups), as text.
pub async fn group(kafka: &KafkaArgs, group: &str, timeout: Duration) -> Result<Result<Option<Group>, String>> {
    let kafka = kafka.clone();
    let group = group.to_owned();
    blocking(timeout, "the group description", move || {
        let reader: BaseConsumer = kafka::reader(&kafka, "hookline-setup")?;
        // librdkafka lists the groups (ListGroups) and describes those named `group`
        // (DescribeGroups): a group no member ever joined, or whose offsets expired, is not listed.
        let answer = reader.fetch_group_list(Some(&group), timeout);
        let found = match answer {
            Ok(list) => Ok(list.groups().iter().find(|g| g.name() == group).map(|info| Group {
                state: info.state().to_owned(),
                members: info.members().iter().map(|m| member_name(m.client_id(), m.client_host())).collect(),
            })),
            Err(error) => Err(error.to_string()),
        };
        drop(reader);
        Ok(found)
    })
    .await
}

/// How a group member is shown: `client.id@host`, or what of the two the broker reported (tansu
/// 0.6 reports neither).
fn member_name(client_id: &str, host: &str) -> String {
    match (client_id.is_empty(), host.is_empty()) {
        (false, false) => format!("{client_id}@{host}"),
        (false, true) => client_id.to_owned(),
        (true, false) => format!("(no client.id)@{host}"),
        (true, true) => "(not named by the broker)".to_owned(),
    }
}

/// Runs `work` on a blocking thread, giving up after `timeout` plus some slack.
async fn blocking<T: Send + 'static>(
    timeout: Duration,
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // Several requests run one after another, each bounded by `timeout`; the whole is bounded
    // more loosely so that a slow but answering broker is not cut off half-way.
    match tokio::time::timeout(timeout * 4 + SLACK, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(Error::Timeout(timeout, what)),
    }
}

fn read_snapshot(kafka: &KafkaArgs, names: &TopicArgs, group: Option<&str>, timeout: Duration) -> Result<Snapshot> {
    let reader: BaseConsumer = kafka::reader(kafka, "hookline-setup")?;
    // All topics at once: asking for the eight by name could auto-create them on a broker that
    // does so for metadata requests, and a check must not change what it checks.
    let metadata = reader.fetch_metadata(None, timeout).map_err(|error| Error::Unreachable {
        brokers: kafka.brokers.clone(),
        reason: format!("no answer within {timeout:?} ({error})"),
    })?;
    let mut topics = Vec::new();
    for (role, name) in roles(names) {
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            .map(|found| {
                let mut partitions: Vec<Partition> = found
                    .partitions()
                    .iter()
                    .map(|p| Partition {
                        id: p.id(),
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                        watermarks: reader.fetch_watermarks(name, p.id(), timeout).ok(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                partitions
            });
        topics.push(Topic { role, name: name.to_owned(), partitions });
    }
    let brokers = metadata.brokers().len();
    drop(reader);
    let committed = match (group, &topics[0].partitions) {
        (Some(group), Some(partitions)) => Some(
            committed_offsets(kafka, group, &names.deliveries, partitions, timeout).map_err(|error| error.to_string()),
        ),
        _ => None,
    };
    Ok(Snapshot { brokers, topics, committed })
}

/// The offsets `group` committed on `topic`. The consumer never subscribes, so it does not join
/// the group (no rebalance of the running consumers), and never commits.
fn committed_offsets(
    kafka: &KafkaArgs,
    group: &str,
    topic: &str,
    partitions: &[Partition],
    timeout: Duration,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let consumer: BaseConsumer =
        kafka::group_consumer_config(kafka, "hookline-setup", group).set("enable.auto.commit", "false").create()?;
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, partition.id);
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// Lag of one partition: records past the committed offset (from the low watermark when the
/// group committed nothing there, as the consumers start from the earliest record). Never
/// negative: a broker's high watermark may lag behind (tansu 0.6 undercounts it).
pub fn lag(watermarks: Option<(i64, i64)>, committed: Option<i64>) -> Option<i64> {
    let (low, high) = watermarks?;
    Some((high - committed.unwrap_or(low).max(low)).max(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn members_are_shown_with_what_the_broker_reported() {
        assert_eq!(super::member_name("hookline-consumer-vm-7", "/10.0.0.5"), "hookline-consumer-vm-7@/10.0.0.5");
        assert_eq!(super::member_name("hookline-consumer-vm-7", ""), "hookline-consumer-vm-7");
        assert_eq!(super::member_name("", "/10.0.0.5"), "(no client.id)@/10.0.0.5");
        assert_eq!(super::member_name("", ""), "(not named by the broker)");
    }

    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_low_watermark() {
        assert_eq!(lag(Some((0, 10)), Some(4)), Some(6));
        assert_eq!(lag(Some((3, 10)), None), Some(7));
        assert_eq!(lag(Some((3, 10)), Some(1)), Some(7), "records before the low watermark are gone");
        assert_eq!(lag(Some((0, 10)), Some(12)), Some(0));
        assert_eq!(lag(None, Some(1)), None);
    }
}

//! librdkafka client builders.
//!
//! Every client starts from [`KafkaArgs`]: the bootstrap servers, then Hookline's defaults for the
//! role, then the operator's `--kafka-property` pass-through, which wins over both so a deployment
//! can tune anything (SASL, SSL, timeouts) without a new flag.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaArgs;
use crate::{Error, Result};

/// Defaults for every producer: idempotent, acknowledged by all in-sync replicas, batched for a
/// few milliseconds so concurrent requests share a broker round trip.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("message.timeout.ms", "30000"),
];

/// Defaults for group consumers: offsets are stored by the application only after a record is
/// done (ACK or DLQ acknowledged) and committed from that store in the background.
///
/// Prefetch is bounded per partition: the consumer splits every partition's queue off, and with
/// split queues librdkafka applies `queued.max.messages.kbytes` to *each partition* (its default,
/// 64 MiB, is meant for one shared queue: 100 assigned partitions could hold 6.4 GB of records
/// fetched ahead). A partition's worker takes one record at a time, so a few MiB ahead keep it
/// busy; the bound is [`PREFETCH_KIB_PER_PARTITION`] (plus at most one fetch of
/// `fetch.message.max.bytes`).
const GROUP_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    ("queued.max.messages.kbytes", PREFETCH_KIB_PER_PARTITION),
];

/// Records fetched ahead per assigned partition, in KiB (librdkafka's
/// `queued.max.messages.kbytes`, which `--kafka-property` can override).
pub const PREFETCH_KIB_PER_PARTITION: &str = "8192";

fn base(kafka: &KafkaArgs, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers).set("client.id", client_id);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &kafka.kafka_properties {
        config.set(key, value);
    }
    config
}

/// Configuration for an idempotent, `acks=all` producer.
pub fn producer_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    base(kafka, client_id, PRODUCER_DEFAULTS)
}

/// Configuration for a consumer-group member with manual offset store and background commits.
pub fn group_consumer_config(kafka: &KafkaArgs, client_id: &str, group_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id, GROUP_CONSUMER_DEFAULTS);
    if !kafka.kafka_properties.iter().any(|(k, _)| k == "group.id") {
        config.set("group.id", group_id);
    }
    config
}

/// Defaults for readers: they never commit.
const READER_DEFAULTS: &[(&str, &str)] =
    &[("enable.auto.commit", "false"), ("enable.auto.offset.store", "false"), ("enable.partition.eof", "false")];

/// Configuration for a reader that assigns partitions itself and never commits (the customer
/// directory, DLQ inspection). librdkafka only allows `assign()` on a consumer with a `group.id`;
/// this one never joins its group (no `subscribe`) nor commits to it.
pub fn reader_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    reader_config_with(kafka, client_id, &[])
}

/// [`reader_config`] with `defaults` of the caller's own, which `--kafka-property` still
/// overrides like every default.
pub fn reader_config_with(kafka: &KafkaArgs, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let defaults: Vec<(&str, &str)> = READER_DEFAULTS.iter().chain(defaults).copied().collect();
    let mut config = base(kafka, client_id, &defaults);
    if !kafka.kafka_properties.iter().any(|(k, _)| k == "group.id") {
        config.set("group.id", READER_GROUP);
    }
    config
}

/// Group id of readers; nothing is ever committed under it.
pub const READER_GROUP: &str = "hookline-reader";

/// Configuration for admin clients and metadata look-ups.
pub fn admin_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    base(kafka, client_id, &[])
}

/// Partition ids of `topic`, or [`Error::MissingTopic`]. Blocking: call off the async runtime.
pub fn topic_partitions<C: Consumer>(consumer: &C, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::MissingTopic { topic: topic.to_owned() });
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(Error::MissingTopic { topic: topic.to_owned() });
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Where the records written since some moment begin in a partition, as the broker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSince {
    /// The first offset written at or after that moment.
    At(i64),
    /// Nothing was written since.
    Nothing,
    /// The broker cannot say (it does not look offsets up by time).
    Unknown,
}

/// Per partition of `topic`, where the records written within `since` before now begin (one
/// `ListOffsets` by time for all of them). Blocking: call off the async runtime.
pub fn first_offsets_since(
    reader: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    since: Duration,
    timeout: Duration,
) -> HashMap<i32, FirstSince> {
    let unknown = || partitions.iter().map(|&partition| (partition, FirstSince::Unknown)).collect();
    let Some(start) = SystemTime::now().checked_sub(since) else { return unknown() };
    let since_ms = start.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        if query.add_partition_offset(topic, partition, Offset::Offset(since_ms)).is_err() {
            return unknown();
        }
    }
    let answer = match reader.offsets_for_times(query, timeout) {
        Ok(answer) => answer,
        Err(error) => {
            tracing::info!(%topic, %error, "the broker cannot look offsets up by time");
            return unknown();
        }
    };
    partitions
        .iter()
        .map(|&partition| {
            let first = match answer.find_partition(topic, partition).map(|found| found.offset()) {
                Some(Offset::Offset(offset)) => FirstSince::At(offset),
                Some(Offset::End) => FirstSince::Nothing,
                _ => FirstSince::Unknown,
            };
            (partition, first)
        })
        .collect()
}

/// Creates a group-less reader (see [`reader_config`]).
pub fn reader(kafka: &KafkaArgs, client_id: &str) -> Result<BaseConsumer> {
    Ok(reader_config(kafka, client_id).create()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_properties_override_defaults() {
        let args =
            KafkaArgs::new("b:9092").with_property("linger.ms", "50").with_property("security.protocol", "SASL_SSL");
        let config = producer_config(&args, "test");
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn group_consumers_store_offsets_manually() {
        let config = group_consumer_config(&KafkaArgs::new("b:9092"), "c", "hookline");
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("hookline"));
    }

    #[test]
    fn group_consumers_fetch_ahead_a_bounded_amount_per_partition() {
        let config = group_consumer_config(&KafkaArgs::new("b:9092"), "c", "hookline");
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("8192"), "not librdkafka's 64 MiB per partition");
        let tuned = KafkaArgs::new("b:9092").with_property("queued.max.messages.kbytes", "1024");
        assert_eq!(group_consumer_config(&tuned, "c", "hookline").get("queued.max.messages.kbytes"), Some("1024"));
    }
}

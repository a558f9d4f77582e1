//! librdkafka client builders.
//!
//! Every client starts from [`KafkaArgs`]: the bootstrap servers, then Hookline's defaults for the
//! role, then the operator's `--kafka-property` pass-through, which wins over both so a deployment
//! can tune anything (SASL, SSL, timeouts) without a new flag.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

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

/// Configuration for a reader that assigns partitions itself and never commits (the customer
/// directory, DLQ inspection). librdkafka only allows `assign()` on a consumer with a `group.id`;
/// this one never joins its group (no `subscribe`) nor commits to it.
pub fn reader_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = base(
        kafka,
        client_id,
        &[("enable.auto.commit", "false"), ("enable.auto.offset.store", "false"), ("enable.partition.eof", "false")],
    );
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

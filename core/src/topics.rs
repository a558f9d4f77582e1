//! Creating and checking Hookline's topics.
//!
//! Used by `hookline-setup topics create`, the demo and the tests, so that all of them lay the
//! topics out the same way: the delivery topic, the DLQ and the delivery ledger with the same
//! partition count (all keyed by customer id; the ledger's partition `p` records what was delivered
//! from the delivery topic's partition `p`), the customers topic compacted with a single partition
//! (it is small and read whole by every process), the idempotency topic with a single
//! partition (every publisher follows all of it), and the retry topic and parking state
//! co-partitioned with the delivery topic (partition `p` of each holds the parked customers of
//! the delivery topic's partition `p`; the parking state is compacted), and the delivery log
//! (the attempts topic, keyed by customer id, with the delivery topic's partition count so that
//! it spreads like the deliveries). The ledger, the idempotency topic, the retry topic and the
//! delivery log keep records for [`STATE_RETENTION`]: the de-duplication and idempotency windows,
//! a parked record's whole retry schedule, and a week of delivery history must fit.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaArgs, TopicArgs};
use crate::{Error, Result, kafka};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Partitions of the customers topic.
pub const CUSTOMERS_PARTITIONS: i32 = 1;
/// Partitions of the idempotency topic.
pub const IDEMPOTENCY_PARTITIONS: i32 = 1;
/// `retention.ms` of the delivery ledger and the idempotency topic: 7 days, Kafka's default,
/// written out so that a broker configured with a shorter default cannot silently shorten the
/// de-duplication and idempotency windows.
pub const STATE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `cleanup.policy`.
    pub cleanup_policy: &'static str,
    /// `retention.ms`, when Hookline sets it.
    pub retention: Option<Duration>,
}

/// What `ensure_topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    /// Already there, as specified.
    Exists,
    /// Already there, but not as specified; each string says how.
    Differs(Vec<String>),
}

/// Every topic for `topics`, with `partitions` for the delivery topic and those co-partitioned
/// with it (the DLQ, the ledger, the retry topic and the parking state).
pub fn specs(topics: &TopicArgs, partitions: i32, replication_factor: i32) -> Vec<TopicSpec> {
    let spec = |name: &str, partitions, cleanup_policy, retention| TopicSpec {
        name: name.to_owned(),
        partitions,
        replication_factor,
        cleanup_policy,
        retention,
    };
    vec![
        spec(&topics.deliveries, partitions, "delete", None),
        spec(&topics.dlq, partitions, "delete", None),
        spec(&topics.customers, CUSTOMERS_PARTITIONS, "compact", None),
        spec(&topics.delivered, partitions, "delete", Some(STATE_RETENTION)),
        spec(&topics.idempotency, IDEMPOTENCY_PARTITIONS, "delete", Some(STATE_RETENTION)),
        spec(&topics.retry, partitions, "delete", Some(STATE_RETENTION)),
        spec(&topics.parking, partitions, "compact", None),
        spec(&topics.attempts, partitions, "delete", Some(STATE_RETENTION)),
    ]
}

/// Creates every topic in `specs` that does not exist and reports how existing ones differ.
/// Idempotent: running it twice changes nothing the second time.
pub async fn ensure_topics(kafka: &KafkaArgs, specs: &[TopicSpec]) -> Result<Vec<(TopicSpec, TopicOutcome)>> {
    for spec in specs {
        if spec.partitions < 1 {
            return Err(Error::Invalid { field: "partitions", reason: "must be at least 1".into() });
        }
        if spec.replication_factor < 1 {
            return Err(Error::Invalid { field: "replication-factor", reason: "must be at least 1".into() });
        }
    }
    let admin: AdminClient<DefaultClientContext> = kafka::admin_config(kafka, "hookline-setup").create()?;
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)).request_timeout(Some(ADMIN_TIMEOUT));
    // NewTopic borrows its config values, so they are rendered first.
    let retention_ms: Vec<Option<String>> =
        specs.iter().map(|s| s.retention.map(|r| r.as_millis().to_string())).collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention_ms)
        .map(|(s, retention_ms)| {
            let topic = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication_factor))
                .set("cleanup.policy", s.cleanup_policy);
            match retention_ms {
                Some(ms) => topic.set("retention.ms", ms),
                None => topic,
            }
        })
        .collect();
    let results = admin.create_topics(&new_topics, &options).await?;

    let mut outcomes = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        let outcome = match result {
            Ok(_) => TopicOutcome::Created,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let differences = differences(kafka, &admin, &options, spec).await?;
                if differences.is_empty() { TopicOutcome::Exists } else { TopicOutcome::Differs(differences) }
            }
            Err((name, code)) => {
                return Err(Error::Invalid { field: "topic", reason: format!("cannot create `{name}`: {code}") });
            }
        };
        outcomes.push((spec.clone(), outcome));
    }
    Ok(outcomes)
}

/// How an existing topic differs from `spec`. The cleanup policy is compared only when the
/// broker answers `DescribeConfigs`.
async fn differences(
    kafka: &KafkaArgs,
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    spec: &TopicSpec,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let partitions = describe_partitions(kafka, &spec.name).await?;
    if partitions.len() != usize::try_from(spec.partitions).unwrap_or_default() {
        found.push(format!("has {} partitions, expected {}", partitions.len(), spec.partitions));
    }
    if let Ok(results) = admin.describe_configs([&ResourceSpecifier::Topic(&spec.name)], options).await
        && let Some(Ok(resource)) = results.into_iter().next()
        && let Some(entry) = resource.entry_map().get("cleanup.policy")
        && let Some(policy) = entry.value.as_deref()
        && policy != spec.cleanup_policy
    {
        found.push(format!("has cleanup.policy={policy}, expected {}", spec.cleanup_policy));
    }
    Ok(found)
}

/// Partition ids of `topic` (or [`Error::MissingTopic`]).
pub async fn describe_partitions(kafka: &KafkaArgs, topic: &str) -> Result<Vec<i32>> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = kafka::reader(&kafka, "hookline-setup")?;
        let partitions = kafka::topic_partitions(&reader, &topic, ADMIN_TIMEOUT);
        drop(reader);
        partitions
    })
    .await
    .map_err(|_| Error::Timeout(ADMIN_TIMEOUT, "a metadata request"))?
}

/// Low and high watermarks of every partition of `topic`, by partition id.
pub async fn watermarks(kafka: &KafkaArgs, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = kafka::reader(&kafka, "hookline-setup")?;
        let mut found = Vec::new();
        for partition in kafka::topic_partitions(&reader, &topic, ADMIN_TIMEOUT)? {
            let (low, high) = reader.fetch_watermarks(&topic, partition, ADMIN_TIMEOUT)?;
            found.push((partition, low, high));
        }
        Ok(found)
    })
    .await
    .map_err(|_| Error::Timeout(ADMIN_TIMEOUT, "a watermark request"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_topic_is_compacted_with_one_partition() {
        let specs = specs(&TopicArgs::with_prefix("t"), 6, 3);
        assert_eq!(specs.len(), 8);
        assert_eq!((specs[0].name.as_str(), specs[0].partitions, specs[0].cleanup_policy), ("t", 6, "delete"));
        assert_eq!((specs[1].name.as_str(), specs[1].partitions), ("t.dlq", 6));
        assert_eq!(
            (specs[2].name.as_str(), specs[2].partitions, specs[2].cleanup_policy),
            ("t.customers", 1, "compact")
        );
        assert_eq!(
            (specs[3].name.as_str(), specs[3].partitions, specs[3].retention),
            ("t.delivered", 6, Some(STATE_RETENTION)),
            "the ledger is co-partitioned with the delivery topic"
        );
        assert_eq!((specs[4].name.as_str(), specs[4].partitions), ("t.idempotency", 1));
        assert_eq!(
            (specs[5].name.as_str(), specs[5].partitions, specs[5].cleanup_policy, specs[5].retention),
            ("t.retry", 6, "delete", Some(STATE_RETENTION)),
            "the retry topic is co-partitioned with the delivery topic"
        );
        assert_eq!(
            (specs[6].name.as_str(), specs[6].partitions, specs[6].cleanup_policy),
            ("t.parking", 6, "compact"),
            "the parking state is co-partitioned and compacted"
        );
        assert_eq!(
            (specs[7].name.as_str(), specs[7].partitions, specs[7].cleanup_policy, specs[7].retention),
            ("t.attempts", 6, "delete", Some(STATE_RETENTION)),
            "the delivery log is time-retained"
        );
        assert!(specs.iter().all(|s| s.replication_factor == 3));
    }
}

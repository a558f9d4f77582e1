//! `topics create` and `topics describe`.

use std::io::Write;
use std::time::Duration;

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::topics::{self, TopicOutcome};

use crate::broker::{bounded, check_reachable};
use crate::{CreateTopics, Error, Result, cluster};

/// Creates the missing topics and reports each one; fails if any existing topic differs.
pub async fn create<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    create: &CreateTopics,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    let specs = topics::specs(names, create.partitions, create.replication_factor);
    check_reachable(kafka, timeout).await?;
    let outcomes = bounded(timeout, "the topics to be created", topics::ensure_topics(kafka, &specs)).await?;

    let mut differing = Vec::new();
    for (spec, outcome) in outcomes {
        let layout = format!("({}, cleanup.policy={})", partitions(spec.partitions.into()), spec.cleanup_policy);
        match outcome {
            TopicOutcome::Created => writeln!(out, "created {} {layout}", spec.name)?,
            // Padded so that names line up under "created"/"differs".
            TopicOutcome::Exists => writeln!(out, "exists  {} {layout}", spec.name)?,
            TopicOutcome::Differs(how) => {
                writeln!(out, "differs {}: {}", spec.name, how.join("; "))?;
                differing.push(spec.name);
            }
        }
    }
    out.flush()?;
    if differing.is_empty() { Ok(()) } else { Err(Error::TopicsDiffer(differing)) }
}

/// Prints each topic's partitions (leader, replicas, in-sync replicas, watermarks) and, for the
/// delivery topic, `group`'s committed offset and lag; fails if any topic is missing.
pub async fn describe<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    group: &str,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    let snapshot = cluster::snapshot(kafka, names, Some(group), timeout).await?;
    let mut missing = Vec::new();
    for (index, topic) in snapshot.topics.iter().enumerate() {
        let (name, role) = (&topic.name, topic.role);
        let Some(found) = &topic.partitions else {
            writeln!(out, "{name} ({role}): MISSING")?;
            missing.push(name.clone());
            continue;
        };
        // For the compacted customers topic this counts offsets, not live records.
        let records: i64 = found.iter().filter_map(|p| p.watermarks).map(|(low, high)| high - low).sum();
        writeln!(
            out,
            "{name} ({role}): {}, {records} records",
            partitions(i64::try_from(found.len()).unwrap_or(i64::MAX))
        )?;
        // Only the delivery topic is consumed by the group.
        let committed = match (index, &snapshot.committed) {
            (0, Some(Ok(committed))) => Some(committed),
            (0, Some(Err(reason))) => {
                writeln!(out, "  group {group}: committed offsets unavailable ({reason})")?;
                None
            }
            _ => None,
        };
        if index == 0 && committed.is_some() {
            let total: i64 = found
                .iter()
                .filter_map(|p| cluster::lag(p.watermarks, committed.and_then(|c| c.get(&p.id).copied())))
                .sum();
            writeln!(out, "  group {group}: lag {total}")?;
        }
        for partition in found {
            let (low, high) = partition
                .watermarks
                .map_or_else(|| ("?".to_owned(), "?".to_owned()), |(low, high)| (low.to_string(), high.to_string()));
            write!(
                out,
                "  partition {:>3}  leader {:>3}  replicas {}  isr {}  low {low:>10}  high {high:>10}",
                partition.id,
                partition.leader,
                ids(&partition.replicas),
                ids(&partition.isr)
            )?;
            if let Some(committed) = committed {
                let offset = committed.get(&partition.id).copied();
                let lag = cluster::lag(partition.watermarks, offset).map_or_else(|| "?".to_owned(), |l| l.to_string());
                let offset = offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
                write!(out, "  committed {offset:>10}  lag {lag:>10}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    if missing.is_empty() { Ok(()) } else { Err(Error::MissingTopics(missing)) }
}

/// Broker ids as kafka-topics prints them: `1,2,3`.
fn ids(ids: &[i32]) -> String {
    if ids.is_empty() { "-".to_owned() } else { ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",") }
}

pub(crate) fn partitions(count: i64) -> String {
    if count == 1 { "1 partition".to_owned() } else { format!("{count} partitions") }
}

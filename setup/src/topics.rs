//! `topics create` and `topics describe`.

use std::io::Write;
use std::time::Duration;

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::topics::{self, TopicOutcome};

use crate::broker::{bounded, check_reachable};
use crate::{CreateTopics, Error, Result};

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

/// Prints each topic's partitions with their watermarks; fails if any topic is missing.
pub async fn describe<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    check_reachable(kafka, timeout).await?;
    let mut missing = Vec::new();
    for (role, name) in [
        ("deliveries", &names.deliveries),
        ("dead letters", &names.dlq),
        ("customers", &names.customers),
        ("delivery ledger", &names.delivered),
        ("idempotency", &names.idempotency),
    ] {
        match bounded(timeout, "partition watermarks", topics::watermarks(kafka, name)).await {
            Ok(found) => {
                // For the compacted customers topic this counts offsets, not live records.
                let records: i64 = found.iter().map(|(_, low, high)| high - low).sum();
                writeln!(
                    out,
                    "{name} ({role}): {}, {records} records",
                    partitions(i64::try_from(found.len()).unwrap_or(i64::MAX))
                )?;
                for (partition, low, high) in found {
                    writeln!(out, "  partition {partition:>3}  low {low:>10}  high {high:>10}")?;
                }
            }
            Err(Error::Core(hookline_core::Error::MissingTopic { .. })) => {
                writeln!(out, "{name} ({role}): MISSING")?;
                missing.push(name.clone());
            }
            Err(other) => return Err(other),
        }
    }
    out.flush()?;
    if missing.is_empty() { Ok(()) } else { Err(Error::MissingTopics(missing)) }
}

fn partitions(count: i64) -> String {
    if count == 1 { "1 partition".to_owned() } else { format!("{count} partitions") }
}

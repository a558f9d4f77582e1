//! `dlq purge --before TIME`: deletes old dead letters with Kafka's DeleteRecords.
//!
//! Per partition, the first offset whose record timestamp is at or after the time is found with
//! ListOffsets by timestamp (`offsets_for_times`; the consumer writes dead letters with the time
//! of the DLQ write), and everything before it is deleted: the partition's log start moves up, so
//! nothing newer than the time is touched and records are removed in offset order, never one by
//! one. Brokers that do not implement DeleteRecords (tansu 0.6) are reported as such.

use std::io::Write;
use std::time::{Duration, SystemTime};

use hookline_core::config::KafkaArgs;
use hookline_core::kafka;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::unix_millis;
use crate::broker::check_reachable;
use crate::{Error, PurgeDeadLetters, Result};

/// Extra time over `--timeout` before a DeleteRecords request without an answer is given up.
const SLACK: Duration = Duration::from_secs(5);

/// One partition's part of a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    partition: i32,
    low: i64,
    /// The first offset to keep.
    keep_from: i64,
}

impl Cut {
    fn records(&self) -> i64 {
        (self.keep_from - self.low).max(0)
    }
}

/// Runs `dlq purge`.
pub async fn run<W: Write + Send>(
    kafka: &KafkaArgs,
    dlq: &str,
    timeout: Duration,
    purge: PurgeDeadLetters,
    out: &mut W,
) -> Result<()> {
    check_reachable(kafka, timeout).await?;
    let before = humantime::format_rfc3339_seconds(purge.before).to_string();
    let cuts = find_cuts(kafka, dlq, purge.before, timeout).await?;
    let total: i64 = cuts.iter().map(Cut::records).sum();
    if total == 0 {
        writeln!(out, "nothing to purge: no dead letters in {dlq} before {before}")?;
        out.flush()?;
        return Ok(());
    }
    for cut in cuts.iter().filter(|c| c.records() > 0) {
        writeln!(
            out,
            "partition {:>3}: {} dead letter(s) before {before} (offsets {}..{})",
            cut.partition,
            cut.records(),
            cut.low,
            cut.keep_from - 1
        )?;
    }
    if purge.dry_run {
        writeln!(out, "dry run: would delete {total} dead letter(s) from {dlq}; nothing deleted")?;
        out.flush()?;
        return Ok(());
    }

    let mut offsets = TopicPartitionList::new();
    for cut in cuts.iter().filter(|c| c.records() > 0) {
        offsets
            .add_partition_offset(dlq, cut.partition, Offset::Offset(cut.keep_from))
            .map_err(hookline_core::Error::from)?;
    }
    let refused = |reason: String| Error::Purge { topic: dlq.to_owned(), reason };
    let admin: AdminClient<DefaultClientContext> =
        kafka::admin_config(kafka, "hookline-setup").create().map_err(hookline_core::Error::from)?;
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let deleted = match tokio::time::timeout(timeout + SLACK, admin.delete_records(&offsets, &options)).await {
        Err(_elapsed) => return Err(refused(format!("no answer to DeleteRecords within {timeout:?}"))),
        Ok(Err(error)) => return Err(refused(error.to_string())),
        Ok(Ok(deleted)) => deleted,
    };
    let mut errors = Vec::new();
    for element in deleted.elements() {
        match element.error() {
            Ok(()) => {
                let low = match element.offset() {
                    Offset::Offset(low) => low.to_string(),
                    other => format!("{other:?}"),
                };
                writeln!(out, "partition {:>3}: now starts at offset {low}", element.partition())?;
            }
            Err(error) => errors.push(format!("partition {}: {error}", element.partition())),
        }
    }
    if !errors.is_empty() {
        return Err(refused(errors.join("; ")));
    }
    writeln!(out, "deleted {total} dead letter(s) from {dlq}")?;
    out.flush()?;
    Ok(())
}

/// Per partition, the offsets to delete: from the low watermark up to the first record at or
/// after `before` (the high watermark when every record is older).
async fn find_cuts(kafka: &KafkaArgs, dlq: &str, before: SystemTime, timeout: Duration) -> Result<Vec<Cut>> {
    let (kafka, dlq) = (kafka.clone(), dlq.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Vec<Cut>> {
        let reader: BaseConsumer = kafka::reader(&kafka, "hookline-setup")?;
        let mut watermarks = Vec::new();
        let mut query = TopicPartitionList::new();
        for partition in kafka::topic_partitions(&reader, &dlq, timeout)? {
            let (low, high) = reader.fetch_watermarks(&dlq, partition, timeout).map_err(hookline_core::Error::from)?;
            watermarks.push((partition, low, high));
            query
                .add_partition_offset(&dlq, partition, Offset::Offset(unix_millis(before)))
                .map_err(hookline_core::Error::from)?;
        }
        let found = reader.offsets_for_times(query, timeout).map_err(hookline_core::Error::from)?;
        let mut cuts = Vec::new();
        for (partition, low, high) in watermarks {
            let first_kept = found.find_partition(&dlq, partition).map(|e| e.offset());
            cuts.push(cut(partition, low, high, first_kept));
        }
        Ok(cuts)
    })
    .await
    .map_err(|_| Error::Timeout(timeout, "the DLQ's offsets"))?
}

/// Where to cut a partition, given the offset ListOffsets answered for the time.
fn cut(partition: i32, low: i64, high: i64, first_kept: Option<Offset>) -> Cut {
    let keep_from = match first_kept {
        Some(Offset::Offset(offset)) => offset.clamp(low, high),
        // No record at or after the time: all of them are older.
        Some(Offset::End) => high,
        // No answer for the partition: delete nothing there.
        _ => low,
    };
    Cut { partition, low, keep_from }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_reach_past_the_time_or_the_log() {
        assert_eq!(cut(0, 10, 50, Some(Offset::Offset(30))).records(), 20);
        assert_eq!(cut(0, 10, 50, Some(Offset::End)).records(), 40, "every record is older");
        assert_eq!(cut(0, 10, 50, Some(Offset::Offset(5))).records(), 0, "already deleted");
        assert_eq!(cut(0, 10, 50, Some(Offset::Offset(80))).keep_from, 50);
        assert_eq!(cut(0, 10, 50, None).records(), 0);
        assert_eq!(cut(0, 10, 50, Some(Offset::Invalid)).records(), 0);
    }
}

//! Follows the delivery log into the index: reads every partition of the attempts topic from
//! the position the index reached (the topic's start for a new index), applies what it reads in
//! batches (one transaction each, with the positions reached), and once a minute deletes what is
//! past the retention and looks for partitions added to the topic.
//!
//! It runs on a thread of its own (librdkafka and SQLite both block), until `stop`. A topic that
//! does not exist yet is waited for (logged once), so a publisher started before
//! `hookline-setup topics create` serves the log as soon as it exists.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hookline_core::attempts::AttemptRecord;
use hookline_core::config::KafkaArgs;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::index::{Index, LogEntry};

/// Most log records applied in one transaction.
const MAX_BATCH: usize = 1_000;
/// How long one poll waits for a record.
const POLL: Duration = Duration::from_millis(100);
/// How often the index forgets what is past the retention and the topic's partitions are
/// counted again.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How long a metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the follower has done, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Log records applied to the index.
    pub indexed: AtomicU64,
    /// Records on the topic that are not attempt records (skipped).
    pub invalid: AtomicU64,
}

/// Starts following `topic` into `index` on a thread of its own; it ends at `stop`.
pub(crate) fn spawn(
    kafka_args: KafkaArgs,
    topic: String,
    index: Index,
    retention: Duration,
    counts: Arc<Counts>,
    stop: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("delivery-log".into())
        .spawn(move || {
            if let Err(error) = follow(&kafka_args, &topic, &index, retention, &counts, &stop) {
                tracing::error!(%error, topic, "the delivery log is no longer followed; the deliveries API answers from what it has");
            }
        })
        .expect("a thread for the delivery log")
}

fn follow(
    kafka_args: &KafkaArgs,
    topic: &str,
    index: &Index,
    retention: Duration,
    counts: &Counts,
    stop: &CancellationToken,
) -> crate::Result<()> {
    // A position the topic no longer holds (expired, or a topic made anew) starts from what it
    // holds: the index loses nothing the topic still has.
    let reader: BaseConsumer =
        kafka::reader_config_with(kafka_args, "hookline-publisher-delivery-log", &[("auto.offset.reset", "earliest")])
            .create()?;
    let mut assigned = 0;
    let mut warned = false;
    let mut housekeeping = Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while !stop.is_cancelled() {
        if assigned == 0 || housekeeping.elapsed() >= HOUSEKEEPING {
            housekeeping = Instant::now();
            match kafka::topic_partitions(&reader, topic, METADATA_TIMEOUT) {
                Ok(partitions) if partitions.len() > assigned => {
                    assign(&reader, topic, &partitions, index)?;
                    assigned = partitions.len();
                    tracing::info!(topic, partitions = assigned, "following the delivery log");
                }
                Ok(_) => {}
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!(%error, topic, "the delivery log's topic is not there yet; waiting for it");
                }
                Err(_) => {}
            }
            let cutoff = hookline_core::parking::unix_ms(SystemTime::now()).saturating_sub(millis(retention));
            index.expire(cutoff)?;
            if assigned == 0 {
                // Interruptible: the publisher's shutdown does not wait for the next look.
                let _ = stop_within(stop, Duration::from_secs(1));
                housekeeping = Instant::now() - HOUSEKEEPING;
                continue;
            }
        }
        batch.clear();
        while batch.len() < MAX_BATCH {
            match reader.poll(if batch.is_empty() { POLL } else { Duration::ZERO }) {
                Some(Ok(message)) => {
                    let record = message.payload().and_then(AttemptRecord::from_value);
                    if record.is_none() {
                        counts.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    batch.push(LogEntry { partition: message.partition(), offset: message.offset(), record });
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, topic, "delivery log read error");
                    break;
                }
                None => break,
            }
        }
        if !batch.is_empty() {
            index.apply(&batch)?;
            counts.indexed.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Assigns every partition of `topic`, each from the position the index reached.
fn assign(reader: &BaseConsumer, topic: &str, partitions: &[i32], index: &Index) -> crate::Result<()> {
    let positions: HashMap<i32, i64> = index.positions()?.into_iter().collect();
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        let offset = positions.get(&partition).map_or(Offset::Beginning, |&next| Offset::Offset(next));
        list.add_partition_offset(topic, partition, offset)?;
    }
    reader.assign(&list)?;
    Ok(())
}

/// Waits up to `wait` unless `stop` comes first (then `true`).
fn stop_within(stop: &CancellationToken, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if stop.is_cancelled() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.is_cancelled()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

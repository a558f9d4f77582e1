//! The per-partition worker: reads the partition's delivery ledger back, then takes the
//! partition's records one at a time, in offset order, and stores each commit position once the
//! record is done.
//!
//! The worker is the only place that decides what is committed, through an [`OffsetTracker`]. A
//! record is done when it was dead-lettered (the DLQ acknowledged it), skipped as already
//! delivered, or delivered *and* recorded in the ledger. Ledger writes are not awaited before the
//! next record is taken: they are acknowledged in the background while the worker goes on, and
//! the tracker releases a commit position only below the oldest record not yet done. Records are
//! processed strictly sequentially today (a customer's events keep their order, and a failing
//! endpoint blocks only its own partition); a key-ordered mode would run one lane per customer
//! inside this worker and keep the same tracker and commit rule.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::context::{Assignment, HooklineConsumer};
use crate::ledger::DeliveredSet;
use crate::offsets::OffsetTracker;
use crate::pipeline::{Outcome, Pipeline};

/// How long a revoked partition's worker waits for its ledger writes in flight, so that they
/// are on the topic when the partition's next owner reads it back.
const REVOKED_LEDGER_DRAIN: Duration = Duration::from_secs(10);
/// Pause before reading the ledger again after a failed read.
const RESTORE_RETRY: Duration = Duration::from_secs(1);

/// Stop signals shared by every worker of a consumer.
#[derive(Debug, Clone)]
pub struct Stops {
    /// Shutdown requested: take no new record, do not start a new wait.
    pub stopping: CancellationToken,
    /// The shutdown grace period is over: abandon whatever is in flight.
    pub hard_stop: CancellationToken,
}

/// Where a partition's finished records are turned into stored commit positions.
struct Committer<'a> {
    consumer: &'a HooklineConsumer,
    pipeline: &'a Pipeline,
    topic: &'a str,
    partition: i32,
    tracker: OffsetTracker,
}

impl Committer<'_> {
    /// The record at `offset` is done: store the commit position if it moved.
    fn done(&mut self, offset: i64) {
        if let Some(position) = self.tracker.complete(offset) {
            store(self.consumer, self.pipeline, self.topic, self.partition, position);
        }
    }
}

/// Runs one assigned partition until it is revoked or the consumer stops.
pub async fn run_partition(
    assignment: Assignment,
    consumer: Arc<HooklineConsumer>,
    pipeline: Arc<Pipeline>,
    stops: Stops,
) {
    let Assignment { topic, partition, queue, revoked } = assignment;
    tracing::debug!(topic, partition, "partition worker started");
    let mut delivered = match restore(&pipeline, &topic, partition, &revoked, &stops.stopping).await {
        Restored::Ledger(set) => Some(set),
        Restored::Off => None,
        Restored::Stopped => return,
    };
    let mut committer = Committer {
        consumer: &consumer,
        pipeline: &pipeline,
        topic: &topic,
        partition,
        tracker: OffsetTracker::default(),
    };
    // Ledger writes in flight, each resolving to the offset of the record it completes.
    let mut recording: FuturesUnordered<BoxFuture<'static, i64>> = FuturesUnordered::new();
    loop {
        let received = tokio::select! {
            biased;
            () = revoked.cancelled() => break,
            () = stops.stopping.cancelled() => break,
            Some(offset) = recording.next(), if !recording.is_empty() => {
                committer.done(offset);
                continue;
            }
            received = queue.recv() => received.map(|m| m.detach()),
        };
        let record = match received {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(topic, partition, %error, "consume error");
                continue;
            }
        };
        let offset = record.offset();
        committer.tracker.begin(offset);
        pipeline.metrics.clocks.started(partition, record.timestamp().to_millis());
        let outcome = {
            let mut processing = pin!(pipeline.process(&record, delivered.as_ref(), &stops.stopping));
            loop {
                tokio::select! {
                    biased;
                    () = revoked.cancelled() => break None,
                    () = stops.hard_stop.cancelled() => break None,
                    Some(done) = recording.next(), if !recording.is_empty() => committer.done(done),
                    outcome = &mut processing => break Some(outcome),
                }
            }
        };
        pipeline.metrics.clocks.finished(partition);
        match outcome {
            Some(Outcome::Delivered { receipt, .. }) => match (&pipeline.ledger, delivered.as_mut()) {
                (Some(ledger), Some(set)) => {
                    // Remembered at once, so a duplicate right behind it is skipped even before
                    // the ledger acknowledges.
                    set.insert(&receipt);
                    recording.push(ledger.record(partition, receipt, offset).map(move |()| offset).boxed());
                }
                _ => committer.done(offset),
            },
            Some(Outcome::DeadLettered(_) | Outcome::Duplicate) => committer.done(offset),
            Some(Outcome::Abandoned) | None => {
                committer.tracker.abandon(offset);
                if outcome.is_none() {
                    let cause = if revoked.is_cancelled() { "revoked" } else { "shutdown" };
                    pipeline.metrics.abandoned.with_label_values(&[cause]).inc();
                }
                tracing::info!(topic, partition, offset, "record left unfinished; it will be redelivered");
                break;
            }
        }
    }
    pipeline.metrics.clocks.released(partition);
    finish_recording(&mut committer, &mut recording, &revoked, &stops).await;
    tracing::debug!(topic, partition, "partition worker stopped");
}

/// Waits for the ledger writes still in flight and stores what they complete. On shutdown they
/// may take until the grace period ends (the final commit follows); on revocation a short while,
/// so that the next owner finds them when it reads the ledger.
async fn finish_recording(
    committer: &mut Committer<'_>,
    recording: &mut FuturesUnordered<BoxFuture<'static, i64>>,
    revoked: &CancellationToken,
    stops: &Stops,
) {
    if recording.is_empty() {
        return;
    }
    let deadline = tokio::time::sleep(if revoked.is_cancelled() { REVOKED_LEDGER_DRAIN } else { Duration::MAX });
    let mut deadline = pin!(deadline);
    loop {
        tokio::select! {
            biased;
            () = stops.hard_stop.cancelled() => break,
            () = &mut deadline => break,
            done = recording.next() => match done {
                Some(offset) => committer.done(offset),
                None => return,
            },
        }
    }
    tracing::warn!(
        topic = committer.topic,
        partition = committer.partition,
        pending = recording.len(),
        "ledger writes unacknowledged at stop; their records will be redelivered (and may be sent again)"
    );
}

enum Restored {
    Ledger(DeliveredSet),
    /// De-duplication is off (`--dedup-window off`).
    Off,
    Stopped,
}

/// Reads the partition's ledger back, retrying until it succeeds or the partition is revoked or
/// the consumer stops: records are not taken before the ledger is known, or a redelivered record
/// would be sent twice.
async fn restore(
    pipeline: &Pipeline,
    topic: &str,
    partition: i32,
    revoked: &CancellationToken,
    stopping: &CancellationToken,
) -> Restored {
    let Some(ledger) = &pipeline.ledger else { return Restored::Off };
    loop {
        let error = tokio::select! {
            () = revoked.cancelled() => return Restored::Stopped,
            () = stopping.cancelled() => return Restored::Stopped,
            restored = ledger.restore(partition) => match restored {
                Ok(set) => return Restored::Ledger(set),
                Err(error) => error,
            },
        };
        tracing::warn!(topic, partition, %error, retry_in = ?RESTORE_RETRY, "cannot read the delivery ledger; retrying");
        tokio::select! {
            () = revoked.cancelled() => return Restored::Stopped,
            () = stopping.cancelled() => return Restored::Stopped,
            () = tokio::time::sleep(RESTORE_RETRY) => {}
        }
    }
}

/// Hands a commit position to librdkafka's background committer.
fn store(consumer: &HooklineConsumer, pipeline: &Pipeline, topic: &str, partition: i32, position: i64) {
    let mut offsets = TopicPartitionList::new();
    if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(position)) {
        tracing::error!(topic, partition, position, %error, "cannot build the offset to store");
        return;
    }
    match consumer.store_offsets(&offsets) {
        Ok(()) => {
            pipeline.metrics.offsets_stored.inc();
            tracing::trace!(topic, partition, position, "offset stored");
        }
        // The partition was revoked meanwhile; its next owner redelivers from the last commit.
        Err(error) => tracing::debug!(topic, partition, position, %error, "offset not stored"),
    }
}

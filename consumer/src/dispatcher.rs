//! The per-partition worker: reads the partition's delivery ledger back, then takes the
//! partition's records one at a time, in offset order, and stores each commit position once the
//! record is done.
//!
//! The worker is the only place that decides what is committed, through an [`OffsetTracker`]. A
//! record is done when it was dead-lettered (the DLQ acknowledged it), skipped as already
//! delivered, or delivered *and* recorded in the ledger. Ledger writes are not awaited before the
//! next record is taken: they are acknowledged in the background while the worker goes on, and
//! the tracker releases a commit position only below the oldest record not yet done. At most
//! `--ledger-max-in-flight` of them await the broker at once: at that many the worker takes no
//! further record (it keeps collecting acknowledgements and watching for revocation and shutdown,
//! and the main task keeps polling, so the member stays in its group), so a slow ledger holds
//! back its partitions instead of piling up writes. When the partition is revoked, the worker
//! hands its delivered set to the ledger, to be continued if the partition comes back. Records are
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
use crate::ledger::Restored;
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::pipeline::{Outcome, Pipeline};

/// How long a revoked partition's worker waits for its ledger writes in flight, so that they
/// are on the topic when the partition's next owner reads it back.
const REVOKED_LEDGER_DRAIN: Duration = Duration::from_secs(10);
/// Pause before reading the ledger again after a failed read.
const RESTORE_RETRY: Duration = Duration::from_secs(1);
/// How long a restore waits for the group coordinator to say where the partition is committed.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A partition's ledger writes in flight, each resolving to the offsets of the record it
/// completes and of its own entry in the ledger.
struct Recording<'a> {
    writes: FuturesUnordered<BoxFuture<'static, (i64, i64)>>,
    /// The ledger offset the partition's delivered set is complete up to: past what the restore
    /// read and past every write acknowledged since.
    next: i64,
    metrics: &'a Metrics,
}

impl Recording<'_> {
    fn push(&mut self, write: BoxFuture<'static, (i64, i64)>) {
        self.metrics.ledger_in_flight.inc();
        self.writes.push(write);
    }

    /// A write was acknowledged: returns the offset of the record it completes.
    fn acknowledged(&mut self, (offset, ledger_offset): (i64, i64)) -> i64 {
        self.metrics.ledger_in_flight.dec();
        self.next = self.next.max(ledger_offset + 1);
        offset
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        // Writes still unacknowledged when the worker stops are given up here (their records are
        // not committed, so they are redelivered).
        self.metrics.ledger_in_flight.sub(i64::try_from(self.writes.len()).unwrap_or(i64::MAX));
    }
}

/// Whether the partition may take its next record: not while `cap` ledger writes await the
/// broker. Keeps `hookline_partitions_waiting_on_ledger` and `hookline_ledger_waits_total`.
struct LedgerGate<'a> {
    cap: usize,
    waiting: bool,
    metrics: &'a Metrics,
}

impl<'a> LedgerGate<'a> {
    fn new(cap: usize, metrics: &'a Metrics) -> Self {
        Self { cap, waiting: false, metrics }
    }

    /// Whether a record may be taken with `in_flight` ledger writes awaiting the broker.
    fn open(&mut self, in_flight: usize) -> bool {
        let open = in_flight < self.cap;
        if open == self.waiting {
            self.waiting = !open;
            if open {
                self.metrics.waiting_on_ledger.dec();
            } else {
                self.metrics.waiting_on_ledger.inc();
                self.metrics.ledger_waits.inc();
            }
        }
        open
    }
}

impl Drop for LedgerGate<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.metrics.waiting_on_ledger.dec();
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
    let (mut delivered, ledger_next) = match restore(&pipeline, &consumer, &topic, partition, &revoked, &stops).await {
        Restore::Ledger(Restored { set, next, .. }) => (Some(set), next),
        Restore::Off => (None, 0),
        Restore::Stopped => return,
    };
    let mut committer = Committer {
        consumer: &consumer,
        pipeline: &pipeline,
        topic: &topic,
        partition,
        tracker: OffsetTracker::default(),
    };
    let metrics = &pipeline.metrics;
    let mut recording = Recording { writes: FuturesUnordered::new(), next: ledger_next, metrics };
    let cap = pipeline.ledger.as_ref().map_or(usize::MAX, |ledger| ledger.max_in_flight());
    let mut gate = LedgerGate::new(cap, metrics);
    loop {
        let open = gate.open(recording.writes.len());
        let received = tokio::select! {
            biased;
            () = revoked.cancelled() => break,
            () = stops.stopping.cancelled() => break,
            Some(done) = recording.writes.next(), if !recording.writes.is_empty() => {
                committer.done(recording.acknowledged(done));
                continue;
            }
            received = queue.recv(), if open => received.map(|m| m.detach()),
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
                    Some(done) = recording.writes.next(), if !recording.writes.is_empty() => {
                        committer.done(recording.acknowledged(done));
                    }
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
                    recording.push(ledger.record(partition, receipt, offset).map(move |at| (offset, at)).boxed());
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
    drop(gate);
    pipeline.metrics.clocks.released(partition);
    finish_recording(&mut committer, &mut recording, &revoked, &stops).await;
    // Revoked, not stopping: the set may serve this partition again if it comes back here.
    if let (Some(ledger), Some(set)) = (&pipeline.ledger, delivered)
        && revoked.is_cancelled()
        && !stops.stopping.is_cancelled()
    {
        ledger.keep(partition, set, recording.next);
    }
    tracing::debug!(topic, partition, "partition worker stopped");
}

/// Waits for the ledger writes still in flight and stores what they complete. On shutdown they
/// may take until the grace period ends (the final commit follows); on revocation a short while,
/// so that the next owner finds them when it reads the ledger.
async fn finish_recording(
    committer: &mut Committer<'_>,
    recording: &mut Recording<'_>,
    revoked: &CancellationToken,
    stops: &Stops,
) {
    if recording.writes.is_empty() {
        return;
    }
    let deadline = tokio::time::sleep(if revoked.is_cancelled() { REVOKED_LEDGER_DRAIN } else { Duration::MAX });
    let mut deadline = pin!(deadline);
    loop {
        tokio::select! {
            biased;
            () = stops.hard_stop.cancelled() => break,
            () = &mut deadline => break,
            done = recording.writes.next() => match done {
                Some(done) => committer.done(recording.acknowledged(done)),
                None => return,
            },
        }
    }
    tracing::warn!(
        topic = committer.topic,
        partition = committer.partition,
        pending = recording.writes.len(),
        "ledger writes unacknowledged at stop; their records will be redelivered (and may be sent again)"
    );
}

enum Restore {
    Ledger(Restored),
    /// De-duplication is off (`--dedup-window off`).
    Off,
    Stopped,
}

/// Reads the partition's ledger back, retrying until it succeeds or the partition is revoked or
/// the consumer stops: records are not taken before the ledger is known, or a redelivered record
/// would be sent twice.
async fn restore(
    pipeline: &Pipeline,
    consumer: &Arc<HooklineConsumer>,
    topic: &str,
    partition: i32,
    revoked: &CancellationToken,
    stops: &Stops,
) -> Restore {
    let Some(ledger) = &pipeline.ledger else { return Restore::Off };
    let committed = committed_offset(consumer, topic, partition).await;
    loop {
        let error = tokio::select! {
            () = revoked.cancelled() => return Restore::Stopped,
            () = stops.stopping.cancelled() => return Restore::Stopped,
            restored = ledger.restore(partition, committed) => match restored {
                Ok(restored) => return Restore::Ledger(restored),
                Err(error) => error,
            },
        };
        tracing::warn!(topic, partition, %error, retry_in = ?RESTORE_RETRY, "cannot read the delivery ledger; retrying");
        tokio::select! {
            () = revoked.cancelled() => return Restore::Stopped,
            () = stops.stopping.cancelled() => return Restore::Stopped,
            () = tokio::time::sleep(RESTORE_RETRY) => {}
        }
    }
}

/// Where the group committed `partition`, if the coordinator answers within
/// [`COMMITTED_TIMEOUT`]: the records a crash or rebalance re-reads start there. Bounded, and not
/// cancelled by a revocation (the call cannot be abandoned half-way); unknown is harmless (the
/// restore only reports on the tail with it).
async fn committed_offset(consumer: &Arc<HooklineConsumer>, topic: &str, partition: i32) -> Option<i64> {
    let consumer = Arc::clone(consumer);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&topic, partition);
        let committed = consumer.committed_offsets(partitions, COMMITTED_TIMEOUT).ok()?;
        match committed.find_partition(&topic, partition)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_closes_at_the_cap_and_counts_each_wait_once() {
        let metrics = Metrics::new().unwrap();
        let mut gate = LedgerGate::new(3, &metrics);
        assert!(gate.open(0) && gate.open(2));
        assert_eq!(metrics.waiting_on_ledger.get(), 0);
        assert!(!gate.open(3));
        assert!(!gate.open(3), "still at the cap");
        assert_eq!((metrics.waiting_on_ledger.get(), metrics.ledger_waits.get()), (1, 1));
        assert!(gate.open(2), "an acknowledgement reopens it");
        assert_eq!(metrics.waiting_on_ledger.get(), 0);
        assert!(!gate.open(3));
        assert_eq!(metrics.ledger_waits.get(), 2);
        drop(gate);
        assert_eq!(metrics.waiting_on_ledger.get(), 0, "a stopped worker is not waiting");
    }

    #[test]
    fn acknowledged_writes_move_the_ledger_offset_the_set_is_complete_up_to() {
        let metrics = Metrics::new().unwrap();
        let mut recording = Recording { writes: FuturesUnordered::new(), next: 40, metrics: &metrics };
        recording.push(futures::future::ready((7, 41)).boxed());
        recording.push(futures::future::ready((8, 42)).boxed());
        assert_eq!(metrics.ledger_in_flight.get(), 2);
        let mut completed = vec![];
        while let Some(Some(done)) = recording.writes.next().now_or_never() {
            completed.push(recording.acknowledged(done));
        }
        completed.sort_unstable();
        assert_eq!(completed, [7, 8]);
        assert_eq!(recording.next, 43);
        assert_eq!(metrics.ledger_in_flight.get(), 0);
        recording.push(futures::future::pending().boxed());
        assert_eq!(metrics.ledger_in_flight.get(), 1);
        drop(recording);
        assert_eq!(metrics.ledger_in_flight.get(), 0, "given up when the worker stops");
    }
}

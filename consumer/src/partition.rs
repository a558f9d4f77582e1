//! The partition worker: restores the partition's de-duplication (its delivery ledger read
//! back), then takes the partition's records in offset order and hands each to the delivery of
//! one record ([`crate::delivery`]) through the partition's lanes ([`Lanes`]), and stores each
//! commit position once the records before it are done.
//!
//! In partition mode there is one lane with room for one record: records are delivered strictly
//! one after another, and a failing endpoint holds back every customer of the partition. In key
//! mode there is one lane per record key (customer or inbound source): a key's records are
//! delivered one at a time in offset order, different keys at once, up to `--max-in-flight`
//! records and `--max-in-flight-bytes` held per partition (and `--max-concurrency` HTTP attempts
//! per process, in [`Deliverer`]). At those bounds the worker stops taking records; the main task
//! keeps polling, so the member stays in its group.
//!
//! The worker is the only place that decides what is committed, through an [`OffsetTracker`]. A
//! record is done when it was dead-lettered (the DLQ acknowledged it), skipped as already
//! delivered, or delivered *and* recorded in the ledger; the tracker releases a commit position
//! only below the oldest record not yet done, so records done beyond it are read again after a
//! restart and skipped by the ledger. That is why key mode needs the ledger, and why the worker
//! also stops taking records while the offsets past the commit position reach half the ledger's
//! `--dedup-capacity` (the ledger must still hold every delivery past it). The worker owns the
//! partition's de-duplication ([`Dedup`]): its ledger writes are acknowledged in the background,
//! at most `--ledger-max-in-flight` at once.
//!
//! Revocation and shutdown wind the worker down the same way ([`crate::rebalance`]): on `revoked`
//! (a child of shutdown's `stopping`) it takes no new record and starts none waiting in a lane,
//! and records waiting to retry are given up unstored; attempts and DLQ writes in flight finish
//! and their outcomes are acted on; the ledger writes in flight are awaited and their offsets
//! stored; only `abandon` (the drain timeout, or shutdown's grace period) cuts that short. Then
//! the worker drops its lease, which tells a revocation it may commit. When the partition is
//! revoked, the worker hands its delivered set back to the ledger, to be continued if the
//! partition comes back.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dedup::{Dedup, Recorded};
use crate::delivery::{Deliverer, Outcome};
use crate::lanes::Lanes;
use crate::ledger::Ledger;
use crate::offsets::OffsetTracker;
use crate::rebalance::{Assignment, HooklineConsumer};

/// Stop signals shared by every worker of a consumer.
#[derive(Debug, Clone)]
pub struct Stops {
    /// Shutdown requested: take no new record, do not start a new wait.
    pub stopping: CancellationToken,
    /// The shutdown grace period is over: abandon whatever is in flight.
    pub hard_stop: CancellationToken,
}

/// How much a partition worker takes in flight; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Whether records have one lane per key (key mode) or a single lane (partition mode).
    pub by_key: bool,
    /// Records held in lanes (1 in partition mode); in key mode also records taken and not done
    /// (`--max-in-flight`: those in lanes and those awaiting their ledger entry).
    pub max_records: usize,
    /// Bytes of record values held in lanes.
    pub max_bytes: usize,
    /// Offsets past the commit position.
    pub max_uncommitted: u64,
}

/// Where a partition's finished records are turned into stored commit positions.
struct Committer<'a> {
    consumer: &'a HooklineConsumer,
    deliverer: &'a Deliverer,
    topic: &'a str,
    partition: i32,
    tracker: OffsetTracker,
}

impl Committer<'_> {
    /// The record at `offset` is done: store the commit position if it moved.
    fn done(&mut self, offset: i64) {
        if let Some(position) = self.tracker.complete(offset) {
            store(self.consumer, self.deliverer, self.topic, self.partition, position);
        }
    }
}

/// A record whose delivery ended, with what its lane needs to go on.
struct Finished {
    key: Vec<u8>,
    offset: i64,
    size: usize,
    outcome: Outcome,
}

/// Runs one assigned partition until it is revoked or the consumer stops. `ledger` is the
/// delivery ledger, `None` with `--dedup-window off`.
pub async fn run(
    assignment: Assignment,
    consumer: Arc<HooklineConsumer>,
    deliverer: Arc<Deliverer>,
    ledger: Option<Ledger>,
    stops: Stops,
    bounds: Bounds,
) {
    let Assignment { topic, partition, queue, revoked, abandon, lease } = assignment;
    tracing::debug!(topic, partition, by_key = bounds.by_key, "partition worker started");
    let restored =
        Dedup::restore(ledger.as_ref(), &deliverer.metrics, &consumer, &topic, partition, &revoked, &stops).await;
    let Some(mut dedup) = restored else { return };
    // Records are taken from now on, so a revocation waits for this worker: the lease is held to
    // the end and its drop says the worker has drained. (Before, a revocation has nothing to
    // wait for; one that came meanwhile is seen below before any record is taken.)
    lease.start();
    let mut committer = Committer {
        consumer: &consumer,
        deliverer: &deliverer,
        topic: &topic,
        partition,
        tracker: OffsetTracker::default(),
    };
    let stats = &deliverer.metrics.partitions;
    let seen = dedup.seen();
    let mut lanes = Lanes::new(bounds.max_records, bounds.max_bytes);
    let mut running: FuturesUnordered<BoxFuture<'static, Finished>> = FuturesUnordered::new();
    // Revoked or stopping: no new attempt or wait, but those in flight may finish.
    let start = |record: OwnedMessage, key: Vec<u8>| -> BoxFuture<'static, Finished> {
        let (deliverer, seen, revoked) = (Arc::clone(&deliverer), seen.clone(), revoked.clone());
        async move {
            let outcome = deliverer.process(&record, &seen, &revoked).await;
            Finished { key, offset: record.offset(), size: size_of(&record), outcome }
        }
        .boxed()
    };
    // Set once no record may be started any more: revoked, stopping, or a record given up.
    let mut winding_down = false;
    loop {
        if winding_down && running.is_empty() {
            break;
        }
        let open = !winding_down
            && lanes.may_take()
            // Key mode: a record delivered leaves its lane but is not done until the ledger
            // acknowledges it; it still counts against `--max-in-flight`. (Partition mode keeps
            // one record in its lane and pipelines the ledger writes, bounded by the ledger.)
            && (!bounds.by_key || committer.tracker.in_flight() < bounds.max_records)
            && committer.tracker.uncommitted() < bounds.max_uncommitted
            && dedup.may_take();
        tokio::select! {
            biased;
            () = abandon.cancelled() => break,
            () = revoked.cancelled(), if !winding_down => winding_down = true,
            Some(done) = dedup.acknowledged(), if dedup.writing() => committer.done(done),
            Some(finished) = running.next(), if !running.is_empty() => {
                let Finished { key, offset, size, outcome } = finished;
                stats.finished(partition, offset);
                match outcome {
                    Outcome::Delivered { receipt, .. } => {
                        if dedup.record(receipt, offset) == Recorded::Done {
                            committer.done(offset);
                        }
                    }
                    Outcome::DeadLettered(_) | Outcome::Duplicate => committer.done(offset),
                    Outcome::Abandoned => {
                        committer.tracker.abandon(offset);
                        winding_down = true;
                    }
                }
                // Once winding down, the lane's next record stays unstarted (and uncommitted).
                if let Some(next) = lanes.finished(&key, size)
                    && !winding_down
                {
                    running.push(start(next, key));
                }
            }
            received = queue.recv(), if open => match received {
                Ok(message) => {
                    let record = message.detach();
                    committer.tracker.begin(record.offset(), record.timestamp().to_millis());
                    let key = if bounds.by_key { record.key().unwrap_or_default().to_vec() } else { Vec::new() };
                    if let Some(record) = lanes.push(&key, size_of(&record), record) {
                        running.push(start(record, key));
                    }
                }
                Err(error) => tracing::warn!(topic, partition, %error, "consume error"),
            },
        }
        stats.tracked(partition, &committer.tracker);
    }
    // Deliveries still running here were cut short by `abandon`; they are dropped unfinished.
    drop(running);
    drop(seen);
    dedup.finish(&topic, &abandon, |offset| committer.done(offset)).await;
    let left = committer.tracker.in_flight();
    if left > 0 {
        let cause = if stops.stopping.is_cancelled() { "shutdown" } else { "revoked" };
        deliverer.metrics.abandoned.with_label_values(&[cause]).inc_by(left as u64);
        let from = committer.tracker.oldest().map(|(offset, _)| offset);
        tracing::info!(topic, partition, records = left, from, "records left unfinished; they will be redelivered");
    }
    stats.released(partition);
    // Revoked, not stopping: the set may serve this partition again if it comes back here.
    dedup.release(revoked.is_cancelled() && !stops.stopping.is_cancelled());
    tracing::debug!(topic, partition, "partition worker stopped");
    drop(lease);
}

/// What a record weighs against `--max-in-flight-bytes`.
fn size_of(record: &OwnedMessage) -> usize {
    record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len)
}

/// Hands a commit position to librdkafka's background committer.
fn store(consumer: &HooklineConsumer, deliverer: &Deliverer, topic: &str, partition: i32, position: i64) {
    let mut offsets = TopicPartitionList::new();
    if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(position)) {
        tracing::error!(topic, partition, position, %error, "cannot build the offset to store");
        return;
    }
    match consumer.store_offsets(&offsets) {
        Ok(()) => {
            deliverer.metrics.offsets_stored.inc();
            tracing::trace!(topic, partition, position, "offset stored");
        }
        // The partition was revoked meanwhile; its next owner redelivers from the last commit.
        Err(error) => tracing::debug!(topic, partition, position, %error, "offset not stored"),
    }
}

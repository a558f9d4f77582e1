//! The partition worker: restores the partition's de-duplication (its delivery ledger read
//! back), then takes the partition's records one at a time, in offset order, hands each to the
//! delivery of one record ([`crate::delivery`]), and stores each commit position once the record
//! is done.
//!
//! The worker is the only place that decides what is committed, through an [`OffsetTracker`]. A
//! record is done when it was dead-lettered (the DLQ acknowledged it), skipped as already
//! delivered, or delivered *and* recorded in the ledger. The worker owns the partition's
//! de-duplication ([`Dedup`]): its ledger writes are acknowledged in the background while the
//! worker goes on, and the tracker releases a commit position only below the oldest record not
//! yet done. While `--ledger-max-in-flight` writes await the broker the worker takes no further
//! record (it keeps collecting acknowledgements and watching for revocation and shutdown, and the
//! main task keeps polling, so the member stays in its group).
//!
//! Revocation and shutdown wind the worker down the same way ([`crate::rebalance`]): on `revoked`
//! (a child of shutdown's `stopping`) it takes no new record and a record waiting to retry is
//! given up unstored; an attempt or DLQ write in flight finishes and its outcome is acted on; the
//! ledger writes in flight are awaited and their offsets stored; only `abandon` (the drain
//! timeout, or shutdown's grace period) cuts that short. Then the worker drops its lease, which
//! tells a revocation it may commit. When the partition is revoked, the worker hands its
//! delivered set back to the ledger, to be continued if the partition comes back.
//!
//! Records are processed strictly sequentially today (a customer's events keep their order, and
//! a failing endpoint blocks only its own partition); a key-ordered mode would run one lane per
//! customer inside this worker and keep the same tracker, commit rule and wind-down.

use std::pin::pin;
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dedup::{Dedup, Recorded};
use crate::delivery::{Deliverer, Outcome};
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

/// Runs one assigned partition until it is revoked or the consumer stops. `ledger` is the
/// delivery ledger, `None` with `--dedup-window off`.
pub async fn run(
    assignment: Assignment,
    consumer: Arc<HooklineConsumer>,
    deliverer: Arc<Deliverer>,
    ledger: Option<Ledger>,
    stops: Stops,
) {
    let Assignment { topic, partition, queue, revoked, abandon, lease } = assignment;
    tracing::debug!(topic, partition, "partition worker started");
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
    let seen = dedup.seen();
    loop {
        let open = dedup.may_take();
        let received = tokio::select! {
            biased;
            () = revoked.cancelled() => break,
            Some(done) = dedup.acknowledged(), if dedup.writing() => {
                committer.done(done);
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
        deliverer.metrics.clocks.started(partition, record.timestamp().to_millis());
        let outcome = {
            // Revoked or stopping: no new attempt or wait, but the one in flight may finish.
            let mut processing = pin!(deliverer.process(&record, &seen, &revoked));
            loop {
                tokio::select! {
                    biased;
                    () = abandon.cancelled() => break None,
                    Some(done) = dedup.acknowledged(), if dedup.writing() => committer.done(done),
                    outcome = &mut processing => break Some(outcome),
                }
            }
        };
        deliverer.metrics.clocks.finished(partition);
        match outcome {
            Some(Outcome::Delivered { receipt, .. }) => {
                if dedup.record(receipt, offset) == Recorded::Done {
                    committer.done(offset);
                }
            }
            Some(Outcome::DeadLettered(_) | Outcome::Duplicate) => committer.done(offset),
            Some(Outcome::Abandoned) | None => {
                committer.tracker.abandon(offset);
                let cause = if stops.stopping.is_cancelled() { "shutdown" } else { "revoked" };
                deliverer.metrics.abandoned.with_label_values(&[cause]).inc();
                tracing::info!(topic, partition, offset, "record left unfinished; it will be redelivered");
                break;
            }
        }
    }
    drop(seen);
    deliverer.metrics.clocks.released(partition);
    dedup.finish(&topic, &abandon, |offset| committer.done(offset)).await;
    // Revoked, not stopping: the set may serve this partition again if it comes back here.
    dedup.release(revoked.is_cancelled() && !stops.stopping.is_cancelled());
    tracing::debug!(topic, partition, "partition worker stopped");
    drop(lease);
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

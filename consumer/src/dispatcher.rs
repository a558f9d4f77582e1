//! The per-partition worker: takes a partition's records one at a time, in offset order, and
//! stores each commit position once the record is done.
//!
//! The worker is the only place that decides what is committed, through an [`OffsetTracker`].
//! Records are processed strictly sequentially today (a customer's events keep their order, and
//! a failing endpoint blocks only its own partition); a key-ordered mode would run one lane per
//! customer inside this worker and keep the same tracker and commit rule.

use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::context::{Assignment, HooklineConsumer};
use crate::offsets::OffsetTracker;
use crate::pipeline::{Outcome, Pipeline};

/// Stop signals shared by every worker of a consumer.
#[derive(Debug, Clone)]
pub struct Stops {
    /// Shutdown requested: take no new record, do not start a new wait.
    pub stopping: CancellationToken,
    /// The shutdown grace period is over: abandon whatever is in flight.
    pub hard_stop: CancellationToken,
}

/// Runs one assigned partition until it is revoked or the consumer stops.
pub async fn run_partition(
    assignment: Assignment,
    consumer: Arc<HooklineConsumer>,
    pipeline: Arc<Pipeline>,
    stops: Stops,
) {
    let Assignment { topic, partition, queue, revoked } = assignment;
    let mut tracker = OffsetTracker::default();
    tracing::debug!(topic, partition, "partition worker started");
    loop {
        let received = tokio::select! {
            biased;
            () = revoked.cancelled() => break,
            () = stops.stopping.cancelled() => break,
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
        tracker.begin(offset);
        let outcome = tokio::select! {
            biased;
            () = revoked.cancelled() => None,
            () = stops.hard_stop.cancelled() => None,
            outcome = pipeline.process(&record, &stops.stopping) => Some(outcome),
        };
        match outcome {
            Some(Outcome::Delivered { .. } | Outcome::DeadLettered(_)) => {
                if let Some(position) = tracker.complete(offset) {
                    store(&consumer, &pipeline, &topic, partition, position);
                }
            }
            Some(Outcome::Abandoned) | None => {
                tracker.abandon(offset);
                if outcome.is_none() {
                    let cause = if revoked.is_cancelled() { "revoked" } else { "shutdown" };
                    pipeline.metrics.abandoned.with_label_values(&[cause]).inc();
                }
                tracing::info!(topic, partition, offset, "record left unfinished; it will be redelivered");
                break;
            }
        }
    }
    tracing::debug!(topic, partition, "partition worker stopped");
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

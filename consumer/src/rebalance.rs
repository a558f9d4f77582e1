//! Rebalance handling: the consumer context, which reacts to rebalances and commit results.
//!
//! On assignment, each new partition's queue is split off the consumer *before* librdkafka
//! starts fetching it, so its records go only to that partition's worker, and the worker is
//! handed over with its stop tokens and a [`Lease`].
//!
//! On revocation the partition does not move until its worker has drained: the callback cancels
//! the worker's `revoked` token (it takes no new record and starts no new attempt; a record
//! waiting to retry is given up without storing its offset; an HTTP attempt or DLQ write in
//! flight finishes, and an ACK is recorded in the ledger and its offset stored), waits for the
//! worker to let go of its lease, then commits the stored offsets synchronously before librdkafka
//! hands the partition over. So the next owner never sends again a delivery whose ACK this member
//! received. The wait is bounded by the drain timeout (below `session.timeout.ms`, so the member
//! stays in its group); when it fires the workers are told to abandon what is in flight (their
//! records are redelivered, and may be sent again). Shutdown uses the same tokens: its
//! `stopping` and `hard_stop` are the parents of every worker's `revoked` and `abandon`.
//!
//! The callback runs on the task polling the consumer; it blocks its thread with
//! `tokio::task::block_in_place` (the runtime is multi-threaded), so the workers it waits for
//! keep running on the other threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::metrics::Metrics;
use crate::partition::Stops;

/// The consumer type the worker runs.
pub type HooklineConsumer = StreamConsumer<HooklineContext>;

/// A partition newly assigned to this member, ready for a worker.
pub struct Assignment {
    pub topic: String,
    pub partition: i32,
    pub queue: StreamPartitionQueue<HooklineContext>,
    /// Cancelled when the partition is revoked or the consumer stops: take no new record, start
    /// no new attempt or wait; finish what is in flight.
    pub revoked: CancellationToken,
    /// Cancelled when the revocation's drain timeout or the shutdown grace period is over:
    /// abandon what is in flight.
    pub abandon: CancellationToken,
    /// Held by the worker while it runs ([`Lease::start`]); dropping it tells the revocation the
    /// worker has drained.
    pub lease: Lease,
}

/// The worker's side of a revocation's wait.
#[derive(Debug)]
pub struct Lease {
    started: Arc<AtomicBool>,
    _drained: DropGuard,
}

impl Lease {
    /// The worker takes records from now on: a revocation waits for this lease to be dropped.
    /// Before (the assignment still queued, the worker waiting for the partition's previous one
    /// or reading the ledger back) no record was taken, so a revocation has nothing to wait for;
    /// the worker checks `revoked` after this call and before taking a record.
    pub fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
    }
}

/// What the context holds of a partition it handed to a worker.
struct Owned {
    revoked: CancellationToken,
    abandon: CancellationToken,
    started: Arc<AtomicBool>,
    drained: CancellationToken,
}

impl std::fmt::Debug for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assignment").field("topic", &self.topic).field("partition", &self.partition).finish()
    }
}

/// Rebalance and commit callbacks of the group consumer.
pub struct HooklineContext {
    consumer: OnceLock<Weak<HooklineConsumer>>,
    /// The delivery topic, whose lag the statistics report.
    topic: String,
    assignments: mpsc::UnboundedSender<Assignment>,
    owned: Mutex<HashMap<(String, i32), Owned>>,
    /// The consumer's shutdown tokens, parents of each worker's.
    stops: Stops,
    /// `--revoke-drain-timeout`.
    drain_timeout: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for HooklineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooklineContext").finish_non_exhaustive()
    }
}

impl HooklineContext {
    pub fn new(
        topic: &str,
        assignments: mpsc::UnboundedSender<Assignment>,
        stops: Stops,
        drain_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            consumer: OnceLock::new(),
            topic: topic.to_owned(),
            assignments,
            owned: Mutex::default(),
            stops,
            drain_timeout,
            metrics,
        }
    }

    /// Gives the context a handle on its consumer, needed to split partition queues. Must be
    /// called before subscribing.
    pub fn attach(&self, consumer: &Arc<HooklineConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Cancels every owned partition (shutdown, once the workers have stopped).
    pub fn revoke_all(&self) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, owned) in owned.drain() {
            owned.revoked.cancel();
        }
        self.metrics.assigned_partitions.set(0);
    }

    fn assign(&self, partitions: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            // The consumer is being dropped; nothing will consume these partitions here.
            return;
        };
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for element in partitions.elements() {
            let (topic, partition) = (element.topic().to_owned(), element.partition());
            let Some(queue) = consumer.split_partition_queue(&topic, partition) else {
                tracing::error!(topic, partition, "cannot split the partition's queue");
                continue;
            };
            let revoked = self.stops.stopping.child_token();
            let abandon = self.stops.hard_stop.child_token();
            let (started, drained) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
            let lease = Lease { started: Arc::clone(&started), _drained: drained.clone().drop_guard() };
            let entry = Owned { revoked: revoked.clone(), abandon: abandon.clone(), started, drained };
            if let Some(previous) = owned.insert((topic.clone(), partition), entry) {
                previous.revoked.cancel();
            }
            if self.assignments.send(Assignment { topic, partition, queue, revoked, abandon, lease }).is_err() {
                // The supervisor is gone (shutting down): the queue is dropped, nothing stored.
                return;
            }
        }
        self.metrics.assigned_partitions.set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
    }

    /// Stops the revoked partitions' workers, waits (at most the drain timeout) until they have
    /// drained, then commits what they stored, before librdkafka lets the partitions go.
    fn revoke(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let mut draining = Vec::new();
        {
            let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
            for element in partitions.elements() {
                if let Some(entry) = owned.remove(&(element.topic().to_owned(), element.partition())) {
                    entry.revoked.cancel();
                    draining.push(entry);
                }
                let _ = self.metrics.consumer_lag.remove_label_values(&[&element.partition().to_string()]);
            }
            self.metrics.assigned_partitions.set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
        }
        if draining.is_empty() {
            return;
        }
        let began = Instant::now();
        if !self.wait_drained(&draining) {
            self.metrics.revoke_drain_timeouts.inc();
            tracing::warn!(
                partitions = %describe(partitions),
                timeout = ?self.drain_timeout,
                "revoked partitions not drained within --revoke-drain-timeout; abandoning their deliveries in \
                 flight (their records will be redelivered by the next owner, and may be sent again)"
            );
            for entry in &draining {
                entry.abandon.cancel();
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                tracing::info!(partitions = %describe(partitions), "revoked partitions drained and committed");
            }
            Err(error) => tracing::warn!(
                %error,
                "commit on revocation failed; records since the last commit will be redelivered (the ledger \
                 keeps them from being sent again)"
            ),
        }
        self.metrics.revoke_drain.observe(began.elapsed().as_secs_f64());
    }

    /// Blocks until every started worker in `draining` has dropped its lease, at most the drain
    /// timeout; `false` if it fired. The caller is the task polling the consumer: its thread is
    /// handed over to the blocking section so the runtime's other threads keep running the
    /// workers. Outside a multi-threaded runtime nothing can be waited for without deadlocking.
    fn wait_drained(&self, draining: &[Owned]) -> bool {
        let all = async {
            for entry in draining {
                if entry.started.load(Ordering::SeqCst) {
                    entry.drained.cancelled().await;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(self.drain_timeout, all))).is_ok()
            }
            _ => {
                tracing::warn!("revocation outside a multi-threaded runtime: not waiting for the partition workers");
                false
            }
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let mut ids: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
    ids.sort_unstable();
    format!("{ids:?}")
}

impl ClientContext for HooklineContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag of each partition this
    /// member consumes. A lag of -1 (not known yet) is not exported.
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        let owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for (partition, stats) in &topic.partitions {
            if *partition >= 0 && stats.consumer_lag >= 0 && owned.contains_key(&(self.topic.clone(), *partition)) {
                self.metrics.consumer_lag.with_label_values(&[&partition.to_string()]).set(stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for HooklineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
                self.assign(partitions);
            }
            Rebalance::Revoke(partitions) => {
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                tracing::info!(
                    partitions = %describe(partitions),
                    "partitions revoked; draining their workers (records waiting to retry are left for their next owner)"
                );
                self.revoke(consumer, partitions);
            }
            Rebalance::Error(error) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(%error, "rebalance error");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.metrics.commits.with_label_values(&["ok"]).inc();
                let committed: Vec<String> = offsets
                    .elements()
                    .iter()
                    .filter_map(|e| e.offset().to_raw().map(|o| format!("{}:{o}", e.partition())))
                    .collect();
                tracing::debug!(offsets = ?committed, "offsets committed");
            }
            // Nothing was stored since the last commit: not a failure.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // Routine while members join or leave: the offsets stay stored and the commit made on
            // revocation (or the next one) carries them.
            Err(error @ rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress)) => {
                self.metrics.commits.with_label_values(&["error"]).inc();
                tracing::info!(%error, "offset commit deferred by a rebalance");
            }
            Err(error) => {
                self.metrics.commits.with_label_values(&["error"]).inc();
                tracing::warn!(%error, "offset commit failed; it is retried with the next commit");
            }
        }
    }
}

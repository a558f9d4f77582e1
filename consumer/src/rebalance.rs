//! Rebalance handling: the consumer context, which reacts to rebalances and commit results.
//!
//! On assignment, each new partition's queue is split off the consumer *before* librdkafka
//! starts fetching it, so its records go only to that partition's worker, and the worker is
//! handed over with a fresh cancellation token. On revocation the token is cancelled: a worker
//! that is waiting to retry gives up at once without storing the record's offset, so the next
//! owner redelivers it (a revoked partition is never committed past an unfinished record).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The consumer type the worker runs.
pub type HooklineConsumer = StreamConsumer<HooklineContext>;

/// A partition newly assigned to this member, ready for a worker.
pub struct Assignment {
    pub topic: String,
    pub partition: i32,
    pub queue: StreamPartitionQueue<HooklineContext>,
    /// Cancelled when the partition is revoked.
    pub revoked: CancellationToken,
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
    owned: Mutex<HashMap<(String, i32), CancellationToken>>,
    metrics: Metrics,
}

impl std::fmt::Debug for HooklineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooklineContext").finish_non_exhaustive()
    }
}

impl HooklineContext {
    pub fn new(topic: &str, assignments: mpsc::UnboundedSender<Assignment>, metrics: Metrics) -> Self {
        Self { consumer: OnceLock::new(), topic: topic.to_owned(), assignments, owned: Mutex::default(), metrics }
    }

    /// Gives the context a handle on its consumer, needed to split partition queues. Must be
    /// called before subscribing.
    pub fn attach(&self, consumer: &Arc<HooklineConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Cancels every owned partition (shutdown).
    pub fn revoke_all(&self) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, token) in owned.drain() {
            token.cancel();
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
            let revoked = CancellationToken::new();
            if let Some(previous) = owned.insert((topic.clone(), partition), revoked.clone()) {
                previous.cancel();
            }
            if self.assignments.send(Assignment { topic, partition, queue, revoked }).is_err() {
                // The supervisor is gone (shutting down): the queue is dropped, nothing stored.
                return;
            }
        }
        self.metrics.assigned_partitions.set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
    }

    fn revoke(&self, partitions: &TopicPartitionList) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for element in partitions.elements() {
            if let Some(token) = owned.remove(&(element.topic().to_owned(), element.partition())) {
                token.cancel();
            }
            let _ = self.metrics.consumer_lag.remove_label_values(&[&element.partition().to_string()]);
        }
        self.metrics.assigned_partitions.set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
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
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
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
                    "partitions revoked; unfinished records there are left for their next owner"
                );
                self.revoke(partitions);
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

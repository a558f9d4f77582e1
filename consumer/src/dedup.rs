//! De-duplication of one partition, owned by its worker: [`Dedup`] restores what the partition
//! delivered when it is assigned, answers whether a record was delivered already (through the
//! [`Seen`] handle the delivery of a record asks), remembers each ACK at once, records it in the
//! delivery ledger ([`crate::ledger`]) and says when the broker acknowledged it, and hands its set
//! back to the ledger when the partition is revoked.
//!
//! Ledger writes are not awaited before the next record is taken: they are acknowledged in the
//! background while the worker goes on, and a record is done (its offset may be committed) only
//! once its entry is acknowledged. At most `--ledger-max-in-flight` of them await the broker at
//! once: at that many [`Dedup::may_take`] says no, so a slow ledger holds back its partition
//! instead of piling up writes. With `--dedup-window off` nothing is remembered and a delivered
//! record is done at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use crate::ledger::Receipt;
use crate::ledger::{DeliveredSet, Ledger, Restored};
use crate::metrics::Metrics;
use crate::partition::Stops;
use crate::rebalance::HooklineConsumer;

/// Pause before reading the ledger again after a failed read.
const RESTORE_RETRY: Duration = Duration::from_secs(1);
/// How long a restore waits for the group coordinator to say where the partition is committed.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// What the delivery of a record asks: was this event delivered to this customer already? A
/// cheap handle on the partition's delivered set, shared with its [`Dedup`].
#[derive(Debug, Clone, Default)]
pub struct Seen(Option<Arc<Mutex<DeliveredSet>>>);

impl Seen {
    /// Whether `event_id` was delivered to `customer` (always false with de-duplication off).
    pub fn contains(&self, customer: &str, event_id: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|set| set.lock().unwrap_or_else(PoisonError::into_inner).contains(customer, event_id))
    }

    fn remember(&self, receipt: &Receipt) {
        if let Some(set) = &self.0 {
            set.lock().unwrap_or_else(PoisonError::into_inner).insert(receipt);
        }
    }
}

/// What [`Dedup::acknowledged`] says of a parked record's delivery ([`Dedup::record_parked`]):
/// no record of the delivery topic to complete.
pub const NO_OFFSET: i64 = -1;

/// What [`Dedup::record`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its ledger entry is on its way: the record is done when [`Dedup::acknowledged`] says so.
    Pending,
    /// No ledger (`--dedup-window off`): the record is done now.
    Done,
}

/// The de-duplication of one partition; see the module documentation.
#[derive(Debug)]
pub struct Dedup {
    partition: i32,
    /// `None` with `--dedup-window off`.
    ledger: Option<Ledger>,
    seen: Seen,
    recording: Recording,
    gate: LedgerGate,
}

impl Dedup {
    /// Reads partition `partition`'s ledger back (when de-duplication is on), retrying until it
    /// succeeds; `None` if the partition is revoked or the consumer stops first. Records are not
    /// taken before the ledger is known, or a redelivered record would be sent twice.
    pub async fn restore(
        ledger: Option<&Ledger>,
        metrics: &Metrics,
        consumer: &Arc<HooklineConsumer>,
        topic: &str,
        partition: i32,
        revoked: &CancellationToken,
        stops: &Stops,
    ) -> Option<Self> {
        let (seen, next) = match ledger {
            None => (Seen::default(), 0),
            Some(ledger) => {
                let Restored { set, next, .. } = restore(ledger, consumer, topic, partition, revoked, stops).await?;
                (Seen(Some(Arc::new(Mutex::new(set)))), next)
            }
        };
        let cap = ledger.map_or(usize::MAX, Ledger::max_in_flight);
        Some(Self {
            partition,
            ledger: ledger.cloned(),
            seen,
            recording: Recording { writes: FuturesUnordered::new(), next, metrics: metrics.clone() },
            gate: LedgerGate::new(cap, metrics.clone()),
        })
    }

    /// The handle the delivery of a record asks.
    pub fn seen(&self) -> Seen {
        self.seen.clone()
    }

    /// Whether the worker may take its next record: not while `--ledger-max-in-flight` ledger
    /// writes await the broker.
    pub fn may_take(&mut self) -> bool {
        self.gate.open(self.recording.writes.len())
    }

    /// Whether ledger writes await the broker.
    pub fn writing(&self) -> bool {
        !self.recording.writes.is_empty()
    }

    /// The next ledger write acknowledged: the offset of the record it completes (`None` when
    /// none is in flight). Cancel-safe.
    pub async fn acknowledged(&mut self) -> Option<i64> {
        let done = self.recording.writes.next().await?;
        Some(self.recording.acknowledged(done))
    }

    /// The record at `offset` was delivered: remembered at once (so a duplicate right behind it
    /// is skipped even before the ledger acknowledges), and recorded in the ledger.
    pub fn record(&mut self, receipt: Receipt, offset: i64) -> Recorded {
        let Some(ledger) = &self.ledger else { return Recorded::Done };
        self.seen.remember(&receipt);
        self.recording.push(ledger.record(self.partition, receipt, offset).map(move |at| (offset, at)).boxed());
        Recorded::Pending
    }

    /// A parked record of the retry topic was delivered: remembered and recorded like any
    /// delivery, but it completes no record of the delivery topic (its offset there was committed
    /// when it was parked), so its acknowledgement says [`NO_OFFSET`].
    pub fn record_parked(&mut self, receipt: Receipt) {
        let Some(ledger) = &self.ledger else { return };
        self.seen.remember(&receipt);
        self.recording.push(ledger.record(self.partition, receipt, NO_OFFSET).map(|at| (NO_OFFSET, at)).boxed());
    }

    /// The worker takes no more records: waits for the ledger writes still in flight and calls
    /// `done` with the offset of each record they complete, so that the next owner finds them
    /// when it reads the ledger and the commit that follows covers them. They may take until
    /// `abandon` (the revocation's drain timeout, or shutdown's grace period).
    pub async fn finish(&mut self, topic: &str, abandon: &CancellationToken, mut done: impl FnMut(i64)) {
        self.gate.stop();
        if self.recording.writes.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                biased;
                () = abandon.cancelled() => break,
                acknowledged = self.acknowledged() => match acknowledged {
                    Some(offset) => done(offset),
                    None => return,
                },
            }
        }
        tracing::warn!(
            topic,
            partition = self.partition,
            pending = self.recording.writes.len(),
            "ledger writes unacknowledged at stop; their records will be redelivered (and may be sent again)"
        );
    }

    /// Lets go of the partition. `keep` (revoked, not stopping): the set goes back to the
    /// ledger, to be continued if the partition comes back to this member.
    pub fn release(self, keep: bool) {
        let Self { partition, ledger, seen, recording, .. } = self;
        let (Some(ledger), Some(set)) = (ledger, seen.0) else { return };
        if !keep {
            return;
        }
        // Every delivery that asked it has ended with the worker's loop.
        match Arc::try_unwrap(set) {
            Ok(set) => ledger.keep(partition, set.into_inner().unwrap_or_else(PoisonError::into_inner), recording.next),
            Err(_) => tracing::debug!(partition, "delivered set still shared at release; not kept"),
        }
    }
}

/// A partition's ledger writes in flight, each resolving to the offsets of the record it
/// completes and of its own entry in the ledger.
struct Recording {
    writes: FuturesUnordered<BoxFuture<'static, (i64, i64)>>,
    /// The ledger offset the partition's delivered set is complete up to: past what the restore
    /// read and past every write acknowledged since.
    next: i64,
    metrics: Metrics,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("in_flight", &self.writes.len()).field("next", &self.next).finish()
    }
}

impl Recording {
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

impl Drop for Recording {
    fn drop(&mut self) {
        // Writes still unacknowledged when the worker stops are given up here (their records are
        // not committed, so they are redelivered).
        self.metrics.ledger_in_flight.sub(i64::try_from(self.writes.len()).unwrap_or(i64::MAX));
    }
}

/// Whether the partition may take its next record: not while `cap` ledger writes await the
/// broker. Keeps `hookline_partitions_waiting_on_ledger` and `hookline_ledger_waits_total`.
#[derive(Debug)]
struct LedgerGate {
    cap: usize,
    waiting: bool,
    metrics: Metrics,
}

impl LedgerGate {
    fn new(cap: usize, metrics: Metrics) -> Self {
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

    /// The worker takes no more records: it is not waiting.
    fn stop(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.metrics.waiting_on_ledger.dec();
        }
    }
}

impl Drop for LedgerGate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the partition's ledger back, retrying until it succeeds or the partition is revoked or
/// the consumer stops (`None`).
async fn restore(
    ledger: &Ledger,
    consumer: &Arc<HooklineConsumer>,
    topic: &str,
    partition: i32,
    revoked: &CancellationToken,
    stops: &Stops,
) -> Option<Restored> {
    let committed = committed_offset(consumer, topic, partition).await;
    loop {
        let error = tokio::select! {
            () = revoked.cancelled() => return None,
            () = stops.stopping.cancelled() => return None,
            restored = ledger.restore(partition, committed) => match restored {
                Ok(restored) => return Some(restored),
                Err(error) => error,
            },
        };
        tracing::warn!(topic, partition, %error, retry_in = ?RESTORE_RETRY, "cannot read the delivery ledger; retrying");
        tokio::select! {
            () = revoked.cancelled() => return None,
            () = stops.stopping.cancelled() => return None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_closes_at_the_cap_and_counts_each_wait_once() {
        let metrics = Metrics::new().unwrap();
        let mut gate = LedgerGate::new(3, metrics.clone());
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
        let mut recording = Recording { writes: FuturesUnordered::new(), next: 40, metrics: metrics.clone() };
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

    #[test]
    fn without_a_ledger_a_delivery_is_done_at_once_and_nothing_is_remembered() {
        let metrics = Metrics::new().unwrap();
        let mut dedup = Dedup {
            partition: 0,
            ledger: None,
            seen: Seen::default(),
            recording: Recording { writes: FuturesUnordered::new(), next: 0, metrics: metrics.clone() },
            gate: LedgerGate::new(usize::MAX, metrics.clone()),
        };
        let receipt = Receipt { customer: "acme".into(), event_id: "evt_1".into() };
        assert_eq!(dedup.record(receipt, 5), Recorded::Done);
        assert!(!dedup.writing());
        assert!(dedup.may_take());
        assert!(!dedup.seen().contains("acme", "evt_1"));
        assert_eq!(metrics.ledger_in_flight.get(), 0);
    }

    #[test]
    fn every_handle_asks_the_one_set_the_worker_remembers_into() {
        let seen = Seen(Some(Arc::new(Mutex::new(DeliveredSet::new(Duration::from_secs(3600), 100)))));
        let asked = seen.clone();
        assert!(!asked.contains("acme", "evt_2"));
        seen.remember(&Receipt { customer: "acme".into(), event_id: "evt_2".into() });
        assert!(asked.contains("acme", "evt_2"));
        assert!(!asked.contains("globex", "evt_2"), "per customer");
    }
}

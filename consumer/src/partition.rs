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
//! With `--park-after`, the worker also parks failing customers ([`crate::parking`],
//! [`crate::parked`]): a record whose attempts ran out is written to the retry topic (its offset
//! done once acknowledged, and, for the customer's first, once its parking state is), a record of a
//! parked customer is written there without an attempt, and each parked customer's oldest parked
//! record is tried when due, at most [`MAX_TRIES_IN_FLIGHT`] customers at once. The parking state
//! is read back before the first record is taken.
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
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hookline_core::attempts::AttemptOutcome;
use hookline_core::deadletter::{DeadLetter, DlqReason};
use hookline_core::notices::EndpointNotice;
use hookline_core::parking::{ParkState, Parking as ParkingInfo, from_unix_ms, unix_ms};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dedup::{Dedup, NO_OFFSET, Recorded};
use crate::delivery::{Deliverer, Outcome, logged};
use crate::lanes::Lanes;
use crate::ledger::Ledger;
use crate::offsets::OffsetTracker;
use crate::parked::{ParkedStore, RetryReader};
use crate::parking::{AfterFailure, Parked, Parking, Phase, after_failure, millis, outlived, resume};
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

/// What one of the worker's futures ended with.
enum Step {
    /// A live record's delivery ended; `lane` is its lane's key.
    Finished { lane: Vec<u8>, record: OwnedMessage, size: usize, outcome: Outcome },
    /// A live record was written to the retry topic (`Ok`: at that offset), or refused there for
    /// good. `first`: the record parked its customer, whose state is written with it.
    Parked { lane: Vec<u8>, record: OwnedMessage, size: usize, written: Result<i64, String>, first: Option<ParkState> },
    /// A try of a parked customer's oldest record ended.
    Tried { key: Vec<u8>, tried: Tried },
    /// A parking state was acknowledged; `unparked` when it was the customer's tombstone.
    StateWritten { key: Vec<u8>, unparked: bool },
    /// The customer's endpoint was disabled in the customer directory (`false`: the write failed).
    Disabled { key: Vec<u8>, written: bool },
}

/// How a try of a parked customer's oldest record ended.
enum Tried {
    /// The customer has no parked record at or after its head.
    Empty,
    /// The retry topic could not be read (logged): try again later.
    Unreadable,
    /// The head, parked at `parked_ms` behind records of its failing customer, is not due yet.
    Later { parked_ms: u64 },
    /// Revoked or stopping before the head was read.
    Stopped,
    /// The record, parked at `parked_ms`, and its outcome; `probe` when it had one attempt.
    Done { record: OwnedMessage, parked_ms: u64, probe: bool, outcome: Outcome },
}

/// At most this many parked customers of a partition are tried at once.
const MAX_TRIES_IN_FLIGHT: usize = 16;
/// After a failed read of the retry topic, or while parks of a customer that seems drained are
/// still being written, its next try waits this long.
const TRY_AGAIN: Duration = Duration::from_millis(200);

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
    let mut parking = match &deliverer.parked {
        None => Parking::default(),
        Some(store) => match restore_parking(store, partition, &revoked, &stops).await {
            Some(parking) => parking,
            None => return,
        },
    };
    let metrics = &deliverer.metrics;
    metrics.parked_customers.add(parking.len() as i64);
    metrics.partitions.parked_since(partition, parking.oldest_since_ms());
    if parking.len() > 0 {
        tracing::info!(topic, partition, customers = parking.len(), "parked customers restored");
    }
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
    let stats = &metrics.partitions;
    let seen = dedup.seen();
    let mut lanes = Lanes::new(bounds.max_records, bounds.max_bytes);
    let mut running: FuturesUnordered<BoxFuture<'static, Step>> = FuturesUnordered::new();
    // The retry topic's reader, once a parked customer is tried.
    let mut reader: Option<Arc<RetryReader>> = None;
    // Live records of customers being unparked: started once the tombstone is acknowledged.
    let mut held: Vec<(OwnedMessage, Vec<u8>)> = Vec::new();
    let live = deliverer.policy.clone();
    let probe = live.probe();
    // Revoked or stopping: no new attempt or wait, but those in flight may finish.
    let deliver = |record: OwnedMessage, lane: Vec<u8>| -> BoxFuture<'static, Step> {
        let (deliverer, seen, revoked, live) = (Arc::clone(&deliverer), seen.clone(), revoked.clone(), live.clone());
        async move {
            let outcome = deliverer.process(&record, &seen, &revoked, &live).await;
            Step::Finished { lane, size: size_of(&record), record, outcome }
        }
        .boxed()
    };
    let park = |record: OwnedMessage, lane: Vec<u8>, what: ParkingInfo, first: bool| -> BoxFuture<'static, Step> {
        let deliverer = Arc::clone(&deliverer);
        async move {
            let size = size_of(&record);
            let Some(store) = &deliverer.parked else {
                return Step::Parked { lane, record, size, written: Err("parking is off".into()), first: None };
            };
            let written = store.park(&record, &what).await.map_err(|e| e.to_string());
            let mut state = None;
            if let Ok(head) = written {
                deliverer.metrics.parked_records.inc();
                // The log points at the parked copy: that is where the record lives from now on.
                let mut entry = logged(&record, AttemptOutcome::Parked, None, what.attempts);
                entry.status = what.last_status;
                entry.error.clone_from(&what.last_error);
                entry.topic.clone_from(&store.retry_topic);
                entry.offset = head;
                deliverer.log.record(&entry);
                if first {
                    // The state is acknowledged before the record is done (its offset committed):
                    // a parked record is always found again after a crash.
                    let now = unix_ms(what.at);
                    let due_ms = match after_failure(&deliverer.retry_schedule, None, now) {
                        AfterFailure::Retry { due_ms, .. } => due_ms,
                        AfterFailure::Exhausted => now,
                    };
                    let parked = ParkState {
                        head,
                        step: 0,
                        due_ms,
                        since_ms: now,
                        last_status: what.last_status,
                        last_error: what.last_error.clone(),
                    };
                    store.write_state(record.partition(), record.key().unwrap_or_default(), Some(&parked)).await;
                    state = Some(parked);
                }
            }
            Step::Parked { lane, record, size, written, first: state }
        }
        .boxed()
    };
    let write_state = |key: Vec<u8>, state: Option<ParkState>| -> BoxFuture<'static, Step> {
        let deliverer = Arc::clone(&deliverer);
        async move {
            if let Some(store) = &deliverer.parked {
                store.write_state(partition, &key, state.as_ref()).await;
            }
            Step::StateWritten { unparked: state.is_none(), key }
        }
        .boxed()
    };
    // A live record to start: delivered, parked behind its customer's parked records, or held
    // while its customer is being unparked.
    let start = |record: OwnedMessage,
                 lane: Vec<u8>,
                 parking: &mut Parking,
                 held: &mut Vec<(OwnedMessage, Vec<u8>)>,
                 running: &mut FuturesUnordered<BoxFuture<'static, Step>>| {
        match parking.get_mut(record.key().unwrap_or_default()) {
            None => running.push(deliver(record, lane)),
            Some(parked) if parked.phase == Phase::Unparking => held.push((record, lane)),
            Some(parked) => {
                parked.parks_in_flight += 1;
                let what = ParkingInfo {
                    at: SystemTime::now(),
                    attempts: 0,
                    last_status: None,
                    last_error: Some("parked behind an earlier record of its customer".into()),
                };
                running.push(park(record, lane, what, false));
            }
        }
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
        let next_due = parking.next_due_ms().filter(|_| !winding_down && parking.busy() < MAX_TRIES_IN_FLIGHT);
        let parked_before = parking.len();
        tokio::select! {
            biased;
            () = abandon.cancelled() => break,
            () = revoked.cancelled(), if !winding_down => winding_down = true,
            Some(done) = dedup.acknowledged(), if dedup.writing() => {
                if done != NO_OFFSET {
                    committer.done(done);
                }
            }
            Some(step) = running.next(), if !running.is_empty() => match step {
                Step::Finished { lane, record, size, outcome } => {
                    let offset = record.offset();
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
                        Outcome::Failing { attempts, last_status, error } => {
                            // The lane stays busy until the record is parked.
                            let customer = record.key().unwrap_or_default();
                            let first = match parking.get_mut(customer) {
                                Some(parked) => {
                                    parked.parks_in_flight += 1;
                                    false
                                }
                                None => true,
                            };
                            let what = ParkingInfo { at: SystemTime::now(), attempts, last_status, last_error: Some(error) };
                            running.push(park(record, lane, what, first));
                            continue;
                        }
                    }
                    // Once winding down, the lane's next record stays unstarted (and uncommitted).
                    if let Some(next) = lanes.finished(&lane, size)
                        && !winding_down
                    {
                        start(next, lane, &mut parking, &mut held, &mut running);
                    }
                }
                Step::Parked { lane, record, size, written, first } => {
                    let offset = record.offset();
                    let customer = record.key().unwrap_or_default().to_vec();
                    match written {
                        Ok(at) => {
                            tracing::debug!(topic, partition, offset, retry_offset = at, "record parked");
                            match first {
                                Some(state) => {
                                    metrics.parked_customers.inc();
                                    metrics.parking_transitions.with_label_values(&["parked"]).inc();
                                    tracing::warn!(
                                        topic, partition, offset,
                                        customer = %String::from_utf8_lossy(&customer),
                                        error = state.last_error.as_deref().unwrap_or_default(),
                                        retry_in = ?Duration::from_millis(state.due_ms.saturating_sub(state.since_ms)),
                                        "customer parked: its records go to the retry topic until its endpoint recovers"
                                    );
                                    deliverer.notify(EndpointNotice::parked(
                                        &String::from_utf8_lossy(&customer),
                                        SystemTime::now(),
                                        from_unix_ms(state.since_ms),
                                        state.last_status,
                                        state.last_error.as_deref(),
                                        from_unix_ms(state.due_ms),
                                    ));
                                    parking.park(customer, state);
                                }
                                None => {
                                    if let Some(parked) = parking.get_mut(&customer) {
                                        parked.parks_in_flight = parked.parks_in_flight.saturating_sub(1);
                                    }
                                }
                            }
                            stats.finished(partition, offset);
                            committer.done(offset);
                        }
                        Err(error) => {
                            if let Some(parked) = parking.get_mut(&customer) {
                                parked.parks_in_flight = parked.parks_in_flight.saturating_sub(1);
                            }
                            // Refused for good by the retry topic (it took it on the delivery
                            // topic): the DLQ says why, and the lane goes on once it is written.
                            tracing::error!(topic, partition, offset, %error, "the retry topic refused the record for good; dead-lettering it");
                            let deliverer = Arc::clone(&deliverer);
                            let why = format!("cannot be parked: {error}");
                            running.push(
                                async move {
                                    let letter = DeadLetter { reason: DlqReason::MaxAttempts, error: why, attempts: 0, last_status: None };
                                    let outcome = deliverer.dead_letter_as(&record, letter).await;
                                    Step::Finished { lane, record, size, outcome }
                                }
                                .boxed(),
                            );
                            continue;
                        }
                    }
                    if let Some(next) = lanes.finished(&lane, size)
                        && !winding_down
                    {
                        start(next, lane, &mut parking, &mut held, &mut running);
                    }
                }
                Step::Tried { key, tried } => {
                    if let Some(follow) = tried_parked(&deliverer, &mut parking, &mut dedup, &key, tried, &topic, partition) {
                        match follow {
                            Follow::Write(state) => running.push(write_state(key, state)),
                            Follow::Disable { reason } => {
                                let deliverer = Arc::clone(&deliverer);
                                running.push(
                                    async move {
                                        let Some(tenants) = &deliverer.tenants else {
                                            return Step::Disabled { key, written: false };
                                        };
                                        let customer = String::from_utf8_lossy(&key).into_owned();
                                        let written = match tenants.disable(&customer, &reason).await {
                                            Ok(_) => true,
                                            Err(error) => {
                                                tracing::error!(partition, customer, %error, "cannot disable the endpoint");
                                                false
                                            }
                                        };
                                        Step::Disabled { key, written }
                                    }
                                    .boxed(),
                                );
                            }
                            Follow::DeadLetter { record, parked_ms, letter } => {
                                let deliverer = Arc::clone(&deliverer);
                                running.push(
                                    async move {
                                        let outcome = deliverer.dead_letter_as(&record, letter).await;
                                        Step::Tried { key, tried: Tried::Done { record, parked_ms, probe: false, outcome } }
                                    }
                                    .boxed(),
                                );
                            }
                        }
                    }
                }
                Step::Disabled { key, written } => {
                    if let Some(parked) = parking.get_mut(&key) {
                        parked.phase = Phase::Waiting;
                        let now = unix_ms(SystemTime::now());
                        if written {
                            metrics.parking_transitions.with_label_values(&["disabled"]).inc();
                            tracing::warn!(topic, partition, customer = %String::from_utf8_lossy(&key), "endpoint disabled: its records go to the DLQ until it is enabled again");
                            // Its parked records go to the DLQ now, one after another.
                            parked.state.due_ms = now;
                        } else {
                            parked.state.due_ms = now + millis(TRY_AGAIN * 5);
                        }
                    }
                }
                Step::StateWritten { key, unparked } => {
                    if unparked && parking.unpark(&key).is_some() {
                        metrics.parked_customers.dec();
                        metrics.parking_transitions.with_label_values(&["unparked"]).inc();
                        tracing::info!(topic, partition, customer = %String::from_utf8_lossy(&key), "customer unparked: its records flow directly again");
                        let (released, kept): (Vec<_>, Vec<_>) =
                            std::mem::take(&mut held).into_iter().partition(|(record, _)| record.key().unwrap_or_default() == key.as_slice());
                        held = kept;
                        for (record, lane) in released {
                            if winding_down {
                                break;
                            }
                            start(record, lane, &mut parking, &mut held, &mut running);
                        }
                    }
                }
            },
            () = sleep_until_ms(next_due.unwrap_or(u64::MAX)), if next_due.is_some() => {
                let now = unix_ms(SystemTime::now());
                let room = MAX_TRIES_IN_FLIGHT.saturating_sub(parking.busy());
                for key in parking.take_due(now, room) {
                    let Some(parked) = parking.get(&key) else { continue };
                    let Some(store) = &deliverer.parked else { continue };
                    let reader = Arc::clone(reader.get_or_insert_with(|| Arc::new(store.reader(partition))));
                    let (head, draining, behind) = (parked.state.head, parked.draining, parked.behind);
                    let policy = if draining { live.clone() } else { probe.clone() };
                    let (deliverer, seen, revoked) = (Arc::clone(&deliverer), seen.clone(), revoked.clone());
                    running.push(
                        async move {
                            let read = tokio::select! {
                                biased;
                                () = revoked.cancelled() => return Step::Tried { key, tried: Tried::Stopped },
                                read = reader.next(&key, head) => read,
                            };
                            let tried = match read {
                                Ok(None) => Tried::Empty,
                                Err(error) => {
                                    tracing::warn!(partition, %error, "cannot read the retry topic; trying again");
                                    Tried::Unreadable
                                }
                                Ok(Some(record)) => {
                                    let parked_ms = hookline_core::parking::parse(&record).at.map_or(now, unix_ms);
                                    // A disabled endpoint's records go to the DLQ at once, whatever their schedule.
                                    let disabled = std::str::from_utf8(&key)
                                        .ok()
                                        .and_then(|customer| deliverer.directory.get(customer))
                                        .is_some_and(|customer| customer.disabled.is_some());
                                    if behind && !disabled {
                                        if !outlived(&deliverer.retry_schedule, parked_ms, now) {
                                            // Its customer is failing: it waits for its own
                                            // schedule's next step.
                                            return Step::Tried { key, tried: Tried::Later { parked_ms } };
                                        }
                                        // It waited its whole schedule behind earlier records of
                                        // its failing customer: no try of its own (a backlog of
                                        // them would otherwise drain one probe at a time).
                                        let error = "retry schedule exhausted while parked behind earlier records of its customer".to_owned();
                                        deliverer.metrics.parking_transitions.with_label_values(&["retries_exhausted"]).inc();
                                        let letter = DeadLetter { reason: DlqReason::RetriesExhausted, error, attempts: 0, last_status: None };
                                        let outcome = deliverer.dead_letter_as(&record, letter).await;
                                        return Step::Tried { key, tried: Tried::Done { record, parked_ms, probe: true, outcome } };
                                    }
                                    let outcome = deliverer.process(&record, &seen, &revoked, &policy).await;
                                    Tried::Done { record, parked_ms, probe: !draining, outcome }
                                }
                            };
                            Step::Tried { key, tried }
                        }
                        .boxed(),
                    );
                }
            }
            received = queue.recv(), if open => match received {
                Ok(message) => {
                    let record = message.detach();
                    committer.tracker.begin(record.offset(), record.timestamp().to_millis());
                    let lane = if bounds.by_key { record.key().unwrap_or_default().to_vec() } else { Vec::new() };
                    if let Some(record) = lanes.push(&lane, size_of(&record), record) {
                        start(record, lane, &mut parking, &mut held, &mut running);
                    }
                }
                Err(error) => tracing::warn!(topic, partition, %error, "consume error"),
            },
        }
        stats.tracked(partition, &committer.tracker);
        if parking.len() != parked_before {
            stats.parked_since(partition, parking.oldest_since_ms());
        }
    }
    // Deliveries still running here were cut short by `abandon`; they are dropped unfinished.
    drop(running);
    drop(reader);
    drop(seen);
    dedup
        .finish(&topic, &abandon, |offset| {
            if offset != NO_OFFSET {
                committer.done(offset);
            }
        })
        .await;
    metrics.parked_customers.sub(parking.len() as i64);
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

/// What the worker does after a try of a parked customer: write its new state (`None`: the
/// tombstone that unparks it), or dead-letter its record whose schedule ran out.
enum Follow {
    Write(Option<ParkState>),
    /// Disable the customer's endpoint (`--disable-after`), saying why.
    Disable {
        reason: String,
    },
    DeadLetter {
        record: OwnedMessage,
        parked_ms: u64,
        letter: DeadLetter,
    },
}

/// Applies the end of a try of parked customer `key` to its bookkeeping; what to do next.
fn tried_parked(
    deliverer: &Deliverer,
    parking: &mut Parking,
    dedup: &mut Dedup,
    key: &[u8],
    tried: Tried,
    topic: &str,
    partition: i32,
) -> Option<Follow> {
    let metrics = &deliverer.metrics;
    let customer = String::from_utf8_lossy(key).into_owned();
    let parked = parking.get_mut(key)?;
    let now = unix_ms(SystemTime::now());
    parked.phase = Phase::Waiting;
    match tried {
        Tried::Empty if parked.parks_in_flight > 0 => {
            parked.state.due_ms = now + millis(TRY_AGAIN);
            None
        }
        Tried::Empty => {
            parked.phase = Phase::Unparking;
            Some(Follow::Write(None))
        }
        Tried::Unreadable => {
            parked.state.due_ms = now + millis(TRY_AGAIN);
            None
        }
        Tried::Stopped => None,
        Tried::Later { parked_ms } => {
            parked.behind = false;
            // Not outlived when read; should it be by now, its next try is its last.
            let (step, due_ms) = resume(&deliverer.retry_schedule, parked_ms, now)
                .unwrap_or((u32::try_from(deliverer.retry_schedule.len().saturating_sub(1)).unwrap_or(0), now));
            parked.state.step = step;
            parked.state.due_ms = due_ms;
            Some(Follow::Write(Some(parked.state.clone())))
        }
        Tried::Done { record, parked_ms, probe, outcome } => {
            let offset = record.offset();
            match outcome {
                Outcome::Abandoned => None,
                Outcome::Delivered { receipt, .. } => {
                    dedup.record_parked(receipt);
                    // A success ends the failure streak --disable-after counts.
                    parked.state.since_ms = now;
                    if !parked.draining {
                        metrics.parking_transitions.with_label_values(&["recovered"]).inc();
                        tracing::info!(
                            topic,
                            partition,
                            customer,
                            "parked customer recovered: its parked records drain"
                        );
                        deliverer.notify(EndpointNotice::recovered(&customer, SystemTime::now()));
                    }
                    parked.draining = true;
                    Some(Follow::Write(Some(advance(parked, offset, now))))
                }
                Outcome::Duplicate | Outcome::DeadLettered(_) => {
                    Some(Follow::Write(Some(advance(parked, offset, now))))
                }
                Outcome::Failing { last_status, error, .. } => {
                    parked.draining = false;
                    parked.behind = false;
                    let failing_for = Duration::from_millis(now.saturating_sub(parked.state.since_ms));
                    if deliverer.tenants.is_some() && deliverer.disable_after.is_some_and(|after| failing_for >= after)
                    {
                        // Failing continuously for --disable-after: the circuit opens for good,
                        // until someone enables it again.
                        parked.phase = Phase::Busy;
                        let since = humantime::format_rfc3339_seconds(from_unix_ms(parked.state.since_ms));
                        let reason = format!("failing continuously since {since}; last error: {error}");
                        return Some(Follow::Disable { reason });
                    }
                    let tried = if probe { Some(parked.state.step) } else { None };
                    match after_failure(&deliverer.retry_schedule, tried, now) {
                        AfterFailure::Retry { step, due_ms } => {
                            metrics.parking_transitions.with_label_values(&["probe_failed"]).inc();
                            tracing::info!(
                                topic, partition, customer, %error, step,
                                retry_in = ?Duration::from_millis(due_ms.saturating_sub(now)),
                                "parked customer still failing"
                            );
                            parked.state.step = step;
                            parked.state.due_ms = due_ms;
                            parked.state.last_status = last_status;
                            parked.state.last_error = Some(error);
                            Some(Follow::Write(Some(parked.state.clone())))
                        }
                        AfterFailure::Exhausted => {
                            metrics.parking_transitions.with_label_values(&["retries_exhausted"]).inc();
                            tracing::warn!(topic, partition, customer, %error, "retry schedule exhausted; dead-lettering the parked record");
                            parked.phase = Phase::Busy;
                            // Its attempts in place before it was parked, and one per step.
                            let in_place = hookline_core::parking::parse(&record).attempts.unwrap_or(0);
                            let letter = DeadLetter {
                                reason: DlqReason::RetriesExhausted,
                                error: format!("{error}; retry schedule exhausted"),
                                attempts: in_place + parked.state.step + 1,
                                last_status,
                            };
                            Some(Follow::DeadLetter { record, parked_ms, letter })
                        }
                    }
                }
            }
        }
    }
}

/// The customer's head record at `offset` is done: its next parked record is due at once.
fn advance(parked: &mut Parked, offset: i64, now: u64) -> ParkState {
    parked.behind = !parked.draining;
    parked.state.head = offset + 1;
    parked.state.step = 0;
    parked.state.due_ms = now;
    parked.state.clone()
}

/// Sleeps until `due_ms` (milliseconds since the Unix epoch; at once if past).
async fn sleep_until_ms(due_ms: u64) {
    let now = unix_ms(SystemTime::now());
    tokio::time::sleep(Duration::from_millis(due_ms.saturating_sub(now))).await;
}

/// Reads the partition's parking state back, retrying until it succeeds; `None` if the partition
/// is revoked or the consumer stops first. No record is taken before: one of a parked customer
/// must be parked behind the others, never delivered ahead of them.
async fn restore_parking(
    store: &ParkedStore,
    partition: i32,
    revoked: &CancellationToken,
    stops: &Stops,
) -> Option<Parking> {
    loop {
        let error = tokio::select! {
            () = revoked.cancelled() => return None,
            () = stops.stopping.cancelled() => return None,
            loaded = store.load(partition) => match loaded {
                Ok(states) => return Some(Parking::restore(states)),
                Err(error) => error,
            },
        };
        tracing::warn!(topic = %store.parking_topic, partition, %error, "cannot read the parking state; retrying");
        tokio::select! {
            () = revoked.cancelled() => return None,
            () = stops.stopping.cancelled() => return None,
            () = tokio::time::sleep(TRY_AGAIN * 5) => {}
        }
    }
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

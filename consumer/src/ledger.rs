//! The delivery ledger: which (event, customer) pairs this consumer group has delivered, so that
//! a record seen again is not sent again.
//!
//! Duplicates of a delivery record come from producer retries, a publisher retrying a request, a
//! replay of an event that was in fact delivered, and above all from re-reading the uncommitted
//! tail of a partition after a crash or a rebalance. Offsets alone cannot tell these apart, so
//! every ACK is recorded in the ledger topic (`webhooks.delivered`), which is co-partitioned with
//! the delivery topic: what was delivered from delivery partition `p` is recorded in ledger
//! partition `p`, with the delivery record's offset. A worker reads its partition's ledger back
//! before it takes its first record, keeps what it read in a [`DeliveredSet`], adds each ACK to it
//! at once, and skips a record whose (event id, customer) is in it.
//!
//! A record's offset is stored for commit only after its ledger entry is acknowledged, so a
//! committed offset always implies a recorded delivery. What remains is one window: the endpoint
//! ACKed, and the consumer died (or lost the partition) before the ledger acknowledged the entry.
//! The next owner does not know of that delivery and sends it again, with the same `webhook-id`;
//! receivers close the window by de-duplicating on `webhook-id`.
//!
//! # Bounded, in which direction it errs
//!
//! A "delivered" answer for a record that was not delivered would skip it: a lost webhook. A "not
//! delivered" answer for a delivered record sends it again: a duplicate, which at-least-once
//! delivery allows (receivers de-duplicate on `webhook-id`). So the set may forget, never invent:
//! it is exact (no Bloom filter, no partial fingerprints) and bounded by forgetting the oldest.
//! It holds the newest `--dedup-capacity` deliveries of the partition that are within
//! `--dedup-window`: 16 bytes each in one ring buffer, plus 4-byte index slots (at least two per
//! entry), no per-entry allocation ([`DeliveredSet::max_bytes`]).
//!
//! *Exact for what can be re-read.* A crash or a rebalance re-reads the partition from its
//! committed offset, and every delivery of that tail was recorded after the deliveries before it
//! (each owner records in offset order, and commits only what the ledger acknowledged), so the
//! tail is the newest part of the ledger: the last `capacity` entries hold it whole unless it is
//! longer than the capacity (commits failing for a long time), which the restore logs.
//!
//! *Restore reads at most `capacity` entries* (plus the broker's last batch), never the whole
//! window: from `max(window start, end - capacity)` to the end. Its time is bounded by the
//! capacity, not by the rate or the window (measured by `make bench`, scenario `ledger`).
//!
//! *Kept across a revoke and reassignment.* A revoked worker hands its set to the ledger, with
//! the ledger offset it is complete up to (its own writes included, as the broker acknowledged
//! them); if the same member gets the partition back, it reads only the ledger written since (what
//! another owner recorded meanwhile). At most `--dedup-kept-partitions` revoked sets are kept (the
//! oldest revoked goes first), and a kept set further behind the ledger than `capacity` entries is
//! dropped for a fresh read, which would be no longer.
//!
//! Entries are identified by 128 bits of SHA-256 over the customer id and the event id: a
//! collision would make the consumer skip a delivery, and at 128 bits the odds stay far below
//! any hardware failure rate for any number of entries a window can hold.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookline_core::config::KafkaArgs;
use hookline_core::kafka::{self, Backoff, FirstSince};
use prometheus::IntGauge;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{Error, Result};

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF: Backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(10) };
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// After the high watermark is reached, how long a poll may stay empty before the read is over.
/// Records fetched together arrive at once; this only bounds the wait for a fetch already made.
const TAIL_POLL: Duration = Duration::from_millis(200);
/// Fetch buffer of a restore's reader (librdkafka's `queued.max.messages.kbytes`, 64 MiB by
/// default), unless set with `--kafka-property`: every assigned partition restores at once, so
/// this bounds their read buffers together. Larger buffers did not read faster.
const RESTORE_QUEUE_KBYTES: &str = "16384";

/// Slots a set starts with; it doubles up to its capacity as deliveries come.
const INITIAL_SLOTS: usize = 1024;
/// How finely a set tells the age of its entries: entries delivered within one window / `MARKS`
/// share one time mark (the newest of them), so they are remembered up to that much longer than
/// the window, never shorter, and a set keeps at most about `MARKS` marks.
const MARKS: i64 = 4096;

/// One delivered (event, customer): what a ledger record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub customer: String,
    pub event_id: String,
}

/// The value of a ledger record (JSON); the key is the customer id.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerValue<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    /// The delivery record's offset: tells a restore which entries a re-read tail would meet.
    #[serde(default)]
    offset: i64,
}

/// The value of the ledger record saying `event_id` was delivered from the delivery record at
/// `offset` (its key is the customer id). The ledger's writer and its benchmark share it.
pub fn entry_value(event_id: &str, offset: i64) -> Vec<u8> {
    serde_json::to_vec(&LedgerValue { event_id: Cow::Borrowed(event_id), offset }).unwrap_or_default()
}

type Fingerprint = [u8; 16];

fn fingerprint(customer: &str, event_id: &str) -> Fingerprint {
    let digest = Sha256::new().chain_update(customer).chain_update([0]).chain_update(event_id).finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Entries from sequence number `seq` on (up to the next mark) were delivered at or before `at_ms`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    seq: u64,
    at_ms: i64,
}

/// The deliveries of one partition: the newest `capacity` within the window, exactly.
///
/// A ring buffer of fingerprints in delivery order (the oldest is forgotten first), an
/// open-addressing index into it (linear probing, at most half full, so a look-up probes about
/// two slots), and coarse time marks for the window. Both grow by doubling up to the capacity,
/// so a quiet partition holds little.
pub struct DeliveredSet {
    window_ms: i64,
    /// Time resolution of the marks.
    grain_ms: i64,
    capacity: usize,
    /// Fingerprints, a circular buffer: the oldest at `first`, `len` of them.
    ring: Vec<Fingerprint>,
    first: usize,
    len: usize,
    /// Ring slot + 1 of each entry, at its hash (0: empty). A power of two, at least twice the
    /// ring.
    index: Vec<u32>,
    /// Time marks in sequence order; their times increase strictly.
    marks: VecDeque<Mark>,
    /// Sequence number of the next entry (the oldest held is `next_seq - len`).
    next_seq: u64,
    newest_ms: i64,
    /// `hookline_ledger_memory_bytes`, which this set's bytes are part of while it lives.
    memory: Option<IntGauge>,
    accounted: i64,
}

impl std::fmt::Debug for DeliveredSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveredSet")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("window_ms", &self.window_ms)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl DeliveredSet {
    /// An empty set remembering up to `capacity` deliveries made within `window`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Self {
            window_ms,
            grain_ms: (window_ms / MARKS).max(1),
            capacity: capacity.clamp(1, u32::MAX as usize / 2),
            ring: Vec::new(),
            first: 0,
            len: 0,
            index: Vec::new(),
            marks: VecDeque::new(),
            next_seq: 0,
            newest_ms: i64::MIN,
            memory: None,
            accounted: 0,
        }
    }

    /// The same set, its bytes counted in `gauge` while it lives.
    pub fn counted_in(mut self, gauge: IntGauge) -> Self {
        self.memory = Some(gauge);
        self.account();
        self
    }

    /// The most a set of `capacity` entries holds in memory, in bytes: 16 per entry for the ring,
    /// 4 per index slot (a power of two, at least twice the entries), the time marks and the set
    /// itself.
    pub fn max_bytes(capacity: usize) -> usize {
        let capacity = capacity.max(1);
        std::mem::size_of::<Self>()
            + capacity * std::mem::size_of::<Fingerprint>()
            + (capacity * 2).next_power_of_two() * std::mem::size_of::<u32>()
            + (MARKS as usize + 2) * std::mem::size_of::<Mark>()
    }

    /// Whether `event_id` was delivered to `customer` within the window (as of now).
    pub fn contains(&self, customer: &str, event_id: &str) -> bool {
        self.contains_at(customer, event_id, unix_millis(SystemTime::now()))
    }

    /// Whether `event_id` was delivered to `customer` within the window as of `now_ms`.
    fn contains_at(&self, customer: &str, event_id: &str, now_ms: i64) -> bool {
        let horizon = now_ms.max(self.newest_ms).saturating_sub(self.window_ms);
        self.find(&fingerprint(customer, event_id)).is_some_and(|(_, slot)| self.time_of(self.seq_of(slot)) >= horizon)
    }

    /// Records a delivery made now.
    pub fn insert(&mut self, receipt: &Receipt) {
        self.insert_at(&receipt.customer, &receipt.event_id, unix_millis(SystemTime::now()));
    }

    /// Records a delivery made at `at_ms` (Unix milliseconds), forgetting what is older than the
    /// window by then, and the oldest delivery when the set is full. Returns false if the delivery
    /// itself is already outside the window.
    pub fn insert_at(&mut self, customer: &str, event_id: &str, at_ms: i64) -> bool {
        let horizon = at_ms.max(self.newest_ms).saturating_sub(self.window_ms);
        self.expire(horizon);
        if at_ms < horizon {
            return false;
        }
        self.newest_ms = self.newest_ms.max(at_ms);
        let id = fingerprint(customer, event_id);
        if self.find(&id).is_some() {
            return true;
        }
        if self.len == self.ring.len() {
            if self.ring.len() < self.capacity {
                self.grow();
            } else {
                self.forget_oldest();
            }
        }
        let slot = (self.first + self.len) % self.ring.len();
        self.ring[slot] = id;
        self.len += 1;
        self.index_insert(&id, slot);
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.marks.back_mut() {
            Some(mark) if at_ms.div_euclid(self.grain_ms) <= mark.at_ms.div_euclid(self.grain_ms) => {
                mark.at_ms = mark.at_ms.max(at_ms);
            }
            _ => {
                self.marks.push_back(Mark { seq, at_ms });
                self.account();
            }
        }
        true
    }

    /// Deliveries remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most deliveries it remembers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes it holds now (at most [`DeliveredSet::max_bytes`] of its capacity).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.ring.capacity() * std::mem::size_of::<Fingerprint>()
            + self.index.capacity() * std::mem::size_of::<u32>()
            + self.marks.capacity() * std::mem::size_of::<Mark>()
    }

    fn account(&mut self) {
        if let Some(gauge) = &self.memory {
            let bytes = i64::try_from(self.bytes()).unwrap_or(i64::MAX);
            gauge.add(bytes - self.accounted);
            self.accounted = bytes;
        }
    }

    fn home(&self, id: &Fingerprint) -> usize {
        // The fingerprint is a hash already.
        let [a, b, c, d, e, f, g, h, ..] = *id;
        (u64::from_le_bytes([a, b, c, d, e, f, g, h]) as usize) & (self.index.len() - 1)
    }

    /// The index position and ring slot of `id`, if held.
    fn find(&self, id: &Fingerprint) -> Option<(usize, usize)> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut at = self.home(id);
        loop {
            let slot = self.index[at].checked_sub(1)? as usize;
            if self.ring[slot] == *id {
                return Some((at, slot));
            }
            at = (at + 1) & mask;
        }
    }

    fn seq_of(&self, slot: usize) -> u64 {
        let age = (slot + self.ring.len() - self.first) % self.ring.len();
        self.next_seq - self.len as u64 + age as u64
    }

    fn time_of(&self, seq: u64) -> i64 {
        match self.marks.partition_point(|mark| mark.seq <= seq) {
            0 => i64::MIN,
            n => self.marks[n - 1].at_ms,
        }
    }

    fn index_insert(&mut self, id: &Fingerprint, slot: usize) {
        let mask = self.index.len() - 1;
        let mut at = self.home(id);
        while self.index[at] != 0 {
            at = (at + 1) & mask;
        }
        self.index[at] = u32::try_from(slot + 1).unwrap_or(u32::MAX);
    }

    /// Removes the index entry at `at`, moving later entries of its probe run back into the gap
    /// (deletion without tombstones, Knuth's algorithm R).
    fn index_remove(&mut self, mut at: usize) {
        let mask = self.index.len() - 1;
        let mut next = at;
        loop {
            next = (next + 1) & mask;
            let value = self.index[next];
            if value == 0 {
                break;
            }
            let home = self.home(&self.ring[value as usize - 1]);
            // The entry at `next` stays if its home lies cyclically in (at, next].
            let stays = if at <= next { at < home && home <= next } else { at < home || home <= next };
            if !stays {
                self.index[at] = value;
                at = next;
            }
        }
        self.index[at] = 0;
    }

    /// Forgets the oldest entry (its marks stay to [`DeliveredSet::forget_oldest`]'s caller).
    fn drop_oldest(&mut self) {
        let slot = self.first;
        let id = self.ring[slot];
        if let Some((at, found)) = self.find(&id) {
            debug_assert_eq!(found, slot);
            self.index_remove(at);
        }
        self.first = (self.first + 1) % self.ring.len();
        self.len -= 1;
    }

    /// Forgets the oldest entry to make room, and the marks no entry refers to any more.
    fn forget_oldest(&mut self) {
        self.drop_oldest();
        let oldest = self.next_seq - self.len as u64;
        while self.marks.len() > 1 && self.marks[1].seq <= oldest {
            self.marks.pop_front();
        }
    }

    /// Forgets the entries delivered before `horizon`: whole marks, oldest first.
    fn expire(&mut self, horizon: i64) {
        while let Some(&mark) = self.marks.front() {
            if mark.at_ms >= horizon {
                break;
            }
            let end = self.marks.get(1).map_or(self.next_seq, |next| next.seq);
            while self.len > 0 && self.next_seq - (self.len as u64) < end {
                self.drop_oldest();
            }
            self.marks.pop_front();
        }
    }

    /// Doubles the ring (up to the capacity) and rebuilds the index for it.
    fn grow(&mut self) {
        let size = (self.ring.len() * 2).max(INITIAL_SLOTS).min(self.capacity);
        let mut ring = vec![[0; 16]; size];
        for (age, id) in ring.iter_mut().take(self.len).enumerate() {
            *id = self.ring[(self.first + age) % self.ring.len()];
        }
        self.ring = ring;
        self.first = 0;
        self.index = vec![0; (size * 2).next_power_of_two()];
        for slot in 0..self.len {
            let id = self.ring[slot];
            self.index_insert(&id, slot);
        }
        self.account();
    }
}

impl Drop for DeliveredSet {
    fn drop(&mut self) {
        if let Some(gauge) = &self.memory {
            gauge.sub(self.accounted);
        }
    }
}

/// How the ledger is read and written.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// The ledger topic.
    pub topic: String,
    /// `--dedup-window`.
    pub window: Duration,
    /// `--dedup-capacity`: deliveries remembered per partition.
    pub capacity: usize,
    /// `--dedup-kept-partitions`: revoked partitions' sets kept for a reassignment.
    pub kept_partitions: usize,
    /// `--ledger-max-in-flight`: ledger writes a partition may await before it stops taking
    /// records.
    pub max_in_flight: usize,
}

/// A partition's set as its worker left it when the partition was revoked.
#[derive(Debug)]
struct Kept {
    partition: i32,
    set: DeliveredSet,
    /// Every ledger record below this offset is in `set`.
    next: i64,
}

/// What a restore produced.
#[derive(Debug)]
pub struct Restored {
    pub set: DeliveredSet,
    /// The ledger offset the set is complete up to (every record below it is in the set, or was
    /// left out as older than the window or the capacity).
    pub next: i64,
    /// Ledger records read.
    pub read: u64,
    /// Whether the set is the one kept from this member's last ownership of the partition.
    pub kept: bool,
}

/// Where a restore starts reading, and whether it continues a kept set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    start: i64,
    /// Continue the kept set.
    resume: bool,
    /// A fresh read that starts after the window's start, because of the capacity.
    cut: bool,
}

/// Decides where a restore of a ledger partition with watermarks `low..high` reads from: a set
/// kept up to `kept_next` is continued when it is at most `capacity` records behind; otherwise a
/// fresh set reads the last `capacity` records, or the window, whichever is shorter.
fn plan(low: i64, high: i64, window: FirstSince, capacity: usize, kept_next: Option<i64>) -> Plan {
    let capacity = i64::try_from(capacity).unwrap_or(i64::MAX);
    let lower = match window {
        FirstSince::At(first) => first.max(low),
        FirstSince::Nothing => high,
        FirstSince::Unknown => low,
    };
    match kept_next {
        Some(next) if high.saturating_sub(next) <= capacity => {
            Plan { start: next.max(lower), resume: true, cut: false }
        }
        _ => {
            let last = high.saturating_sub(capacity);
            Plan { start: lower.max(last), resume: false, cut: last > lower }
        }
    }
}

/// Revoked partitions' sets, the most recently revoked last.
#[derive(Debug, Default)]
struct KeptSets(Mutex<VecDeque<Kept>>);

impl KeptSets {
    fn keep(&self, kept: Kept, limit: usize) {
        let mut sets = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sets.retain(|k| k.partition != kept.partition);
        if limit == 0 {
            return;
        }
        while sets.len() >= limit {
            sets.pop_front();
        }
        sets.push_back(kept);
    }

    fn take(&self, partition: i32) -> Option<Kept> {
        let mut sets = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = sets.iter().position(|k| k.partition == partition)?;
        sets.remove(at)
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Reads and writes the ledger topic.
#[derive(Clone)]
pub struct Ledger {
    kafka: KafkaArgs,
    producer: FutureProducer,
    settings: LedgerSettings,
    metrics: Metrics,
    kept: Arc<KeptSets>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger as `settings` say, written with `producer`.
    pub fn new(kafka: KafkaArgs, producer: FutureProducer, settings: LedgerSettings, metrics: Metrics) -> Self {
        Self { kafka, producer, settings, metrics, kept: Arc::default() }
    }

    /// Ledger writes a partition may await before it stops taking records.
    pub fn max_in_flight(&self) -> usize {
        self.settings.max_in_flight
    }

    /// Keeps the set of a revoked partition, complete up to ledger offset `next`, for a
    /// reassignment to this member.
    pub fn keep(&self, partition: i32, set: DeliveredSet, next: i64) {
        self.kept.keep(Kept { partition, set, next }, self.settings.kept_partitions);
    }

    /// Drops every kept set (shutdown).
    pub fn forget_kept(&self) {
        self.kept.clear();
    }

    /// What partition `partition` delivered: the set kept from this member's last ownership
    /// brought up to date, or the newest `--dedup-capacity` deliveries within the window read
    /// back. `committed` is the delivery partition's committed offset, when known: the ledger
    /// entries from there on describe the records a re-read would meet. Dropping the future stops
    /// the read (the reader thread notices within a poll).
    pub async fn restore(&self, partition: i32, committed: Option<i64>) -> Result<Restored> {
        let ledger = self.clone();
        let kept = self.kept.take(partition);
        let abandon = CancellationToken::new();
        let abandoned = abandon.clone();
        let _abandon_if_dropped = abandon.drop_guard();
        let started = Instant::now();
        let restored =
            tokio::task::spawn_blocking(move || ledger.read_partition(partition, committed, kept, &abandoned))
                .await
                .map_err(|_| Error::LedgerRead("the reader task failed".into()))??;
        let took = started.elapsed();
        let kind = if restored.kept { "kept" } else { "read" };
        self.metrics.ledger_restore_duration.observe(took.as_secs_f64());
        self.metrics.ledger_restored.inc_by(restored.read);
        self.metrics.ledger_restores.with_label_values(&[kind]).inc();
        tracing::info!(
            topic = %self.settings.topic,
            partition,
            kind,
            read = restored.read,
            deliveries = restored.set.len(),
            bytes = restored.set.bytes(),
            ?took,
            "delivery ledger restored"
        );
        Ok(restored)
    }

    fn reader(&self) -> Result<BaseConsumer> {
        let defaults = [("queued.max.messages.kbytes", RESTORE_QUEUE_KBYTES)];
        Ok(kafka::reader_config_with(&self.kafka, "hookline-ledger", &defaults).create()?)
    }

    fn read_partition(
        &self,
        partition: i32,
        committed: Option<i64>,
        kept: Option<Kept>,
        abandoned: &CancellationToken,
    ) -> Result<Restored> {
        let topic = &self.settings.topic;
        let reader = self.reader()?;
        let (low, high) = reader.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        let window = kafka::first_offsets_since(&reader, topic, &[partition], self.settings.window, METADATA_TIMEOUT)
            .remove(&partition)
            .unwrap_or(FirstSince::Unknown);
        let plan = plan(low, high, window, self.settings.capacity, kept.as_ref().map(|k| k.next));
        let mut set = match kept {
            Some(kept) if plan.resume => kept.set,
            _ => DeliveredSet::new(self.settings.window, self.settings.capacity)
                .counted_in(self.metrics.ledger_memory.clone()),
        };
        let (mut next, mut read) = (plan.start, 0);
        // The delivery offset of the first entry read: a read cut short by the capacity that
        // starts inside the re-readable tail did not see all of it.
        let mut first_delivery_offset = None;
        // Entries read but older than the window as of the newest read (not held).
        let mut outside = 0_u64;
        if high > low {
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(topic, partition, Offset::Offset(plan.start))?;
            reader.assign(&assignment)?;
            loop {
                if abandoned.is_cancelled() {
                    return Err(Error::LedgerRead("abandoned".into()));
                }
                // Below the high watermark, wait as long as it takes; at it, only drain what a
                // fetch already brought (tansu reports a high watermark inside the last batch).
                let timeout = if next < high { Duration::from_millis(500) } else { TAIL_POLL };
                match reader.poll(timeout) {
                    Some(Ok(message)) => {
                        next = message.offset() + 1;
                        read += 1;
                        let customer = message.key().and_then(|k| std::str::from_utf8(k).ok());
                        let value = message.payload().and_then(|v| serde_json::from_slice::<LedgerValue<'_>>(v).ok());
                        match (customer, value, message.timestamp().to_millis()) {
                            (Some(customer), Some(value), Some(at)) => {
                                first_delivery_offset.get_or_insert(value.offset);
                                if !set.insert_at(customer, &value.event_id, at) {
                                    outside += 1;
                                }
                            }
                            _ => {
                                tracing::warn!(topic = %topic, partition, offset = message.offset(), "ignoring an unreadable ledger record")
                            }
                        }
                    }
                    Some(Err(error)) => return Err(error.into()),
                    None if next >= high => break,
                    None => {}
                }
            }
        }
        if plan.cut && first_delivery_offset.zip(committed).is_some_and(|(first, committed)| first >= committed) {
            tracing::warn!(
                topic = %topic,
                partition,
                capacity = self.settings.capacity,
                "the partition's uncommitted tail holds more deliveries than --dedup-capacity: the oldest of them are \
                 not remembered and are sent again if re-read"
            );
        }
        if outside > 0 {
            tracing::debug!(topic = %topic, partition, outside, "ledger entries older than the window were not held");
        }
        Ok(Restored { set, next, read, kept: plan.resume })
    }

    /// Writes the ledger entry for `receipt` (delivered from delivery partition `partition` at
    /// `offset`) and resolves, with the entry's offset in the ledger, once the broker acknowledged
    /// it, retrying failed writes with backoff. The future owns its data; dropping it stops the
    /// retries.
    pub fn record(&self, partition: i32, receipt: Receipt, offset: i64) -> impl Future<Output = i64> + Send + 'static {
        let ledger = self.clone();
        async move {
            let value = entry_value(&receipt.event_id, offset);
            let (producer, topic) = (&ledger.producer, &ledger.settings.topic);
            let (customer, value) = (&receipt.customer, &value);
            let send = || async move {
                let record = FutureRecord::to(topic).partition(partition).key(customer).payload(value);
                producer.send(record, PRODUCE_TIMEOUT).await.map(|delivery| delivery.offset).map_err(|(error, _)| error)
            };
            // A ledger entry is a few dozen bytes: no failure is about the record itself, and
            // the entry must be written before the offset may be committed.
            let never_permanent = |_: &KafkaError| false;
            let written = kafka::produce_until_acknowledged(send, BACKOFF, never_permanent, |error, retry_in| {
                ledger.metrics.ledger_write_errors.inc();
                if let Some(retry_in) = retry_in {
                    tracing::warn!(topic = %topic, partition, %error, ?retry_in, "ledger write failed; retrying");
                }
            });
            // With no error permanent the loop ends only acknowledged; `Err` cannot come, and
            // would end as nothing written: the record stays undone (uncommitted), never lost.
            let Ok(offset) = written.await else { return std::future::pending().await };
            ledger.metrics.ledger_records.inc();
            offset
        }
    }
}

/// Checks that the ledger topic `ledger` exists and is co-partitioned with `deliveries`: a
/// ledger with another partition count would record a customer's deliveries where its next owner
/// never looks. Blocking: call off the async runtime.
pub fn check_layout(reader: &BaseConsumer, ledger: &str, deliveries: &str) -> Result<()> {
    match kafka::partition_count_mismatch(reader, ledger, deliveries, METADATA_TIMEOUT)? {
        Some((partitions, expected)) => Err(Error::LedgerLayout {
            topic: ledger.to_owned(),
            partitions,
            deliveries: deliveries.to_owned(),
            expected,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn event(n: u64) -> String {
        format!("evt_{n}")
    }

    #[test]
    fn remembers_deliveries_per_customer_and_event() {
        let mut set = DeliveredSet::new(MINUTE, 100);
        set.insert(&Receipt { customer: "acme".into(), event_id: "evt_1".into() });
        assert!(set.contains("acme", "evt_1"));
        assert!(!set.contains("globex", "evt_1"), "the same event for another customer is another delivery");
        assert!(!set.contains("acme", "evt_2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }

    #[test]
    fn forgets_what_is_older_than_the_window() {
        let mut set = DeliveredSet::new(Duration::from_secs(10), 100);
        assert!(set.insert_at("c", "old", 1_000));
        assert!(set.insert_at("c", "mid", 6_000));
        assert!(set.contains_at("c", "old", 6_000));
        assert!(!set.contains_at("c", "old", 11_500), "10.5 s old when asked: outside a 10 s window");
        assert!(set.insert_at("c", "new", 12_000));
        assert!(!set.contains_at("c", "old", 12_000), "11 s old: outside a 10 s window");
        assert!(set.contains_at("c", "mid", 12_000) && set.contains_at("c", "new", 12_000));
        assert_eq!(set.len(), 2);
        // A record older than the window at the time of the newest one is not remembered.
        assert!(!set.insert_at("c", "ancient", 500));
        assert!(!set.contains_at("c", "ancient", 12_000));
        // Inserting twice keeps one entry.
        assert!(set.insert_at("c", "new", 12_500));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn holds_the_newest_deliveries_up_to_its_capacity_exactly() {
        // Not a power of two, and more than the first allocation: the set grows, then forgets.
        let capacity = 3_000;
        let mut set = DeliveredSet::new(MINUTE, capacity);
        for n in 0..10_000 {
            assert!(set.insert_at("c", &event(n), 1_000));
            assert!(set.len() <= capacity);
        }
        assert_eq!(set.len(), capacity);
        for n in 0..10_000 {
            let newest = n >= 10_000 - capacity as u64;
            assert_eq!(set.contains_at("c", &event(n), 1_000), newest, "evt_{n}");
        }
        assert!(
            set.bytes() <= DeliveredSet::max_bytes(capacity),
            "{} > {}",
            set.bytes(),
            DeliveredSet::max_bytes(capacity)
        );
    }

    /// A small xorshift generator: the same sequence on every run.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }
    }

    #[test]
    fn answers_like_a_plain_set_of_the_newest_entries() {
        // Inserts with repeats (a repeat is not a new delivery), forgetting by capacity and by
        // the window; every answer checked against a model: never "delivered" for an entry that
        // is not among the newest held, never "not delivered" for one that is.
        let capacity = 700;
        let mut set = DeliveredSet::new(Duration::from_secs(5), capacity);
        let mut model: VecDeque<(u64, i64)> = VecDeque::new();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut now = 1_000_000;
        for _ in 0..40_000 {
            now += i64::try_from(random.below(3)).unwrap();
            let n = random.below(2_000);
            let horizon = now - 5_000;
            model.retain(|(_, at)| *at >= horizon);
            if !model.iter().any(|(m, _)| *m == n) {
                if model.len() == capacity {
                    model.pop_front();
                }
                model.push_back((n, now));
            }
            assert!(set.insert_at("c", &event(n), now));
            let probe = random.below(2_000);
            let expected = model.iter().any(|(m, _)| *m == probe);
            assert_eq!(set.contains_at("c", &event(probe), now), expected, "evt_{probe} at {now}");
        }
        let held: HashSet<u64> = model.iter().map(|(n, _)| *n).collect();
        assert_eq!(set.len(), held.len());
        for n in 0..2_000 {
            assert_eq!(set.contains_at("c", &event(n), now), held.contains(&n), "evt_{n}");
        }
    }

    #[test]
    fn memory_is_bounded_by_the_capacity_and_small_for_a_quiet_partition() {
        let gauge = IntGauge::new("test_ledger_memory_bytes", "test").unwrap();
        let capacity = 100_000;
        let mut quiet = DeliveredSet::new(Duration::from_secs(3600), capacity).counted_in(gauge.clone());
        for n in 0..10 {
            quiet.insert_at("c", &event(n), 1_000 + i64::try_from(n).unwrap());
        }
        assert!(quiet.bytes() < 64 * 1024, "{}", quiet.bytes());
        assert_eq!(gauge.get(), i64::try_from(quiet.bytes()).unwrap());
        let mut busy = DeliveredSet::new(Duration::from_secs(3600), capacity).counted_in(gauge.clone());
        // One delivery per millisecond for far longer than the capacity: time marks stay bounded.
        for n in 0..400_000 {
            busy.insert_at("c", &event(n), 1_000 + i64::try_from(n).unwrap());
        }
        assert_eq!(busy.len(), capacity);
        assert!(busy.marks.len() <= MARKS as usize + 2, "{} marks", busy.marks.len());
        assert!(busy.bytes() <= DeliveredSet::max_bytes(capacity));
        // 16 bytes per entry, plus an index of 4 bytes per slot at most half full.
        assert!(DeliveredSet::max_bytes(1_000_000) < 25 * 1024 * 1024);
        assert_eq!(gauge.get(), i64::try_from(quiet.bytes() + busy.bytes()).unwrap());
        drop(quiet);
        drop(busy);
        assert_eq!(gauge.get(), 0, "a dropped set's bytes leave the gauge");
    }

    #[test]
    fn a_restore_reads_the_last_capacity_entries_of_the_window() {
        // The window holds less than the capacity: all of it.
        assert_eq!(plan(0, 500, FirstSince::At(100), 1_000, None), Plan { start: 100, resume: false, cut: false });
        // More: only the last `capacity`, whatever the window holds.
        assert_eq!(
            plan(0, 5_000_000, FirstSince::At(0), 1_000, None),
            Plan { start: 4_999_000, resume: false, cut: true }
        );
        // Nothing within the window: nothing to read.
        assert_eq!(plan(10, 500, FirstSince::Nothing, 1_000, None), Plan { start: 500, resume: false, cut: false });
        // The broker cannot say where the window starts: from the log start, still bounded.
        assert_eq!(plan(10, 500, FirstSince::Unknown, 1_000, None), Plan { start: 10, resume: false, cut: false });
        assert_eq!(plan(10, 5_000, FirstSince::Unknown, 1_000, None).start, 4_000);
    }

    #[test]
    fn a_kept_set_reads_only_what_was_written_since_unless_a_fresh_read_is_shorter() {
        assert_eq!(
            plan(0, 5_000, FirstSince::At(0), 1_000, Some(4_990)),
            Plan { start: 4_990, resume: true, cut: false }
        );
        // Nothing written since (or the broker's high watermark inside the last batch).
        assert_eq!(plan(0, 5_000, FirstSince::At(0), 1_000, Some(5_003)).start, 5_003);
        // Further behind than the capacity: a fresh read of the last `capacity` instead.
        assert_eq!(
            plan(0, 5_000, FirstSince::At(0), 1_000, Some(3_000)),
            Plan { start: 4_000, resume: false, cut: true }
        );
        // What left the window (or the log) since is not read.
        assert_eq!(plan(4_500, 5_000, FirstSince::At(4_800), 1_000, Some(4_100)).start, 4_800);
    }

    #[test]
    fn revoked_sets_are_kept_up_to_the_limit_oldest_dropped_first() {
        let kept = KeptSets::default();
        let set = || DeliveredSet::new(MINUTE, 10);
        for partition in 0..3 {
            kept.keep(Kept { partition, set: set(), next: i64::from(partition) }, 2);
        }
        assert!(kept.take(0).is_none(), "the oldest revoked went first");
        assert_eq!(kept.take(2).map(|k| k.next), Some(2));
        assert!(kept.take(2).is_none(), "taken once");
        kept.keep(Kept { partition: 1, set: set(), next: 7 }, 2);
        assert_eq!(kept.take(1).map(|k| k.next), Some(7), "a newer set of the same partition replaces it");
        kept.keep(Kept { partition: 4, set: set(), next: 0 }, 0);
        assert!(kept.take(4).is_none(), "a limit of 0 keeps nothing");
    }

    #[test]
    fn ledger_values_carry_the_event_and_the_delivery_offset() {
        let value = entry_value("evt_1", 42);
        let parsed: LedgerValue<'_> = serde_json::from_slice(&value).unwrap();
        assert_eq!((parsed.event_id.as_ref(), parsed.offset), ("evt_1", 42));
        // Entries written before the offset was read back still parse.
        let old: LedgerValue<'_> = serde_json::from_slice(br#"{"event_id":"evt_2"}"#).unwrap();
        assert_eq!((old.event_id.as_ref(), old.offset), ("evt_2", 0));
    }
}

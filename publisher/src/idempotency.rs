//! Idempotent publishing: a request repeated with the same `Idempotency-Key` within the window
//! gets the original answer (`event_id`, `deliveries`) and produces nothing new, whichever
//! publisher replica answers it and across restarts.
//!
//! Kafka is the only shared state. Every publisher follows the idempotency topic (one partition,
//! `cleanup.policy=delete`, so the whole history within retention is kept in order) into the same
//! view, applying the same deterministic rules to the same records in the same order. A request
//! with a key:
//!
//! 1. looks the key up, in the view caught up with the topic if the view knows the key: a
//!    finished request with the same body is answered from the record (a *replay*); the same key
//!    with another body is refused (422); a request still in progress elsewhere is refused with
//!    409 (retry shortly);
//! 2. otherwise *claims* the key by writing a `pending` record with a fresh event id (or, taking
//!    over a failed or abandoned claim, the event id that claim used) and reads up to the
//!    claim's own offset, which the broker's acknowledgement gives (no watermark round trip). The
//!    first claim in the log that may take the key wins: any claim of a free key, but of a failed
//!    or abandoned claim only one carrying that claim's event id. A request that lost goes back
//!    to step 1 (caught up) and answers from the winner's state instead of producing;
//! 3. the winner produces the copies with that event id and writes `done` with the result (or
//!    `failed`, so that the client's retry can take over at once).
//!
//! A key the view does not know is claimed without catching up first, so that a new key costs
//! one produce and one fetch round trip before its copies are produced, not a watermark round
//! trip and a read more. That is safe because the read-back shows every record before the
//! claim: a view that was behind can only make the claim lose (to a claim it had not seen, or to
//! a failed or abandoned claim, whose event id its fresh one is not), and the next round, caught
//! up, sees the winner and answers as above.
//!
//! A claim whose owner died is taken over once its lease (the produce timeout and some) has run
//! out. The takeover reuses the event id, so copies the dead owner managed to write and those
//! written again carry the same `webhook-id`, and the consumer's delivery ledger sends each
//! customer the event once. Records carry the writer's clock (`at_ms`) and the claim's own lease
//! and expiry, so every replica decides alike whatever its own settings.
//!
//! # Bounds
//!
//! The view holds the keys within their window, and at most `--idempotency-max-keys` of them:
//! every record expires, in expiry order, the keys whose expiry is before the record's own clock
//! (`at_ms`; never the local clock, so replicas agree), and a claim that brings the view over the
//! cap evicts the keys closest to expiry (counted in `hookline_idempotency_evictions_total`,
//! logged). A retry of an evicted key within its window is not recognised: it is published again
//! under a *new* event id, which the consumer's delivery ledger cannot match with the first, so
//! its customers receive the event twice. Size the cap for the peak rate of keyed requests times
//! the window.
//!
//! At start-up the view reads only the records written within the window (looked up by time when
//! the broker can), and never more than the last [`RECORDS_PER_KEY`] × cap records, so the time to
//! load is bounded by the cap, not by the traffic or the topic's retention.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookline_core::config::KafkaArgs;
use hookline_core::follower::{Apply, Follower, StartAt};
use hookline_wire::hex;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::metrics::IdempotencyMetrics;
use crate::{Error, Result};

/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a request waits for the view to catch up with the topic.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a request re-reads the view after losing a claim race before answering 409.
const CLAIM_ROUNDS: usize = 3;
/// Records a keyed request writes (its claim and its outcome): at start-up the view reads at
/// most this many records per key of the cap.
pub const RECORDS_PER_KEY: u64 = 2;
/// Read this much before the window at start-up: a key is live while its writer's `at_ms` is
/// within the window, and its record's timestamp is that writer's clock (Kafka's default
/// `CreateTime`), so the window's records are the live keys; the margin covers ordinary clock
/// differences (a broker stamping `LogAppendTime`, a writer's clock ahead of this publisher's).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(2);
/// Evictions are logged at most this often (with the count since the last log line).
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The one rule for an idempotency key, whichever path it comes by (the HTTP `Idempotency-Key`
/// header, gRPC's `idempotency_key`, an inbound sender's delivery id): 1 to 255 printable ASCII
/// characters, space included (0x20 to 0x7E). `field` names where it came from in the error.
pub fn validate_key(key: &str, field: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Error::InvalidRequest(format!(
            "invalid {field}: must be 1 to {MAX_KEY_LEN} printable ASCII characters (space included)"
        )));
    }
    Ok(())
}

/// What identifies a request's content, so that a key reused for another request is caught:
/// SHA-256 over the parts.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut hash = Sha256::new();
    for part in parts {
        // Length-prefixed, so that moving bytes between parts changes the fingerprint.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    Fingerprint(hash.finalize().into())
}

/// A request fingerprint as held in the view: the 32 bytes, not their 64 hex digits. Records
/// carry it in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 32]);

impl Fingerprint {
    fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text)?.try_into().ok().map(Self)
    }

    /// The 64 lower-case hex digits.
    pub(crate) fn to_hex(self) -> String {
        hex::encode(&self.0)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("a fingerprint is 64 hex digits"))
    }
}

/// A record of the idempotency topic (JSON), keyed by the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// A claim: `owner` is about to produce the event `event_id`.
    Pending { event_id: String, fingerprint: Fingerprint, owner: String, at_ms: i64, lease_ms: i64, expires_at_ms: i64 },
    /// The claim's copies are on the topic.
    Done { event_id: String, owner: String, deliveries: usize, at_ms: i64 },
    /// The claim's producing failed; the next request with the key takes over.
    Failed { event_id: String, owner: String, at_ms: i64 },
}

impl Record {
    /// The writer's clock when it wrote the record.
    fn at_ms(&self) -> i64 {
        match self {
            Self::Pending { at_ms, .. } | Self::Done { at_ms, .. } | Self::Failed { at_ms, .. } => *at_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done { deliveries: usize },
    Failed,
}

/// The answer to an accepted publish request, which a repeat with the same key gets again (the
/// publish paths build it; this view keeps it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Accepted {
    /// The event's id, the same in every copy.
    pub event_id: String,
    /// How many customers it goes to (the copies written).
    pub deliveries: usize,
    /// Answered from an earlier request with the same `Idempotency-Key`.
    #[serde(skip)]
    pub replayed: bool,
}

/// What the view knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    state: State,
    event_id: Box<str>,
    fingerprint: Fingerprint,
    owner: Box<str>,
    claimed_at_ms: i64,
    lease_ms: i64,
    expires_at_ms: i64,
    /// Its place among entries expiring at the same time (the order their claims were applied).
    seq: u64,
}

/// What applying a record changed beside its own key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Applied {
    /// Keys forgotten because their window ended before the record's clock.
    expired: usize,
    /// Keys forgotten before their time because the view was at the cap.
    evicted: usize,
}

/// The keys within their window, as the topic says, at most `max_keys` of them.
#[derive(Debug)]
struct Keys {
    entries: HashMap<Arc<str>, Entry>,
    /// The same keys by `(expires_at_ms, seq)`: the next to expire first.
    by_expiry: BTreeMap<(i64, u64), Arc<str>>,
    seq: u64,
    max_keys: usize,
}

impl Keys {
    fn new(max_keys: usize) -> Self {
        Self { entries: HashMap::new(), by_expiry: BTreeMap::new(), seq: 0, max_keys }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The rules every replica applies alike: a function of the records in topic order only
    /// (each record's own clock, never the local one). Work per record: the keys it expires or
    /// evicts, each O(log n).
    fn apply(&mut self, key: &str, record: Record) -> Applied {
        let expired = self.expire_before(record.at_ms());
        let mut evicted = 0;
        match record {
            Record::Pending { event_id, fingerprint, owner, at_ms, lease_ms, expires_at_ms } => {
                // An expired entry is gone already. A failed or abandoned claim is taken over only
                // by a claim that carries its event id: one written from a view that had not seen
                // it (with a new event id) loses, so that the copies the failed claim's owner may
                // have written are never published again under another id.
                let claimable = match self.entries.get(key) {
                    None => true,
                    Some(entry) => match entry.state {
                        State::Failed => *entry.event_id == *event_id,
                        State::Pending => {
                            at_ms.saturating_sub(entry.claimed_at_ms) > entry.lease_ms && *entry.event_id == *event_id
                        }
                        State::Done { .. } => false,
                    },
                };
                if claimable {
                    let entry = Entry {
                        state: State::Pending,
                        event_id: event_id.into(),
                        fingerprint,
                        owner: owner.into(),
                        claimed_at_ms: at_ms,
                        lease_ms,
                        expires_at_ms,
                        seq: 0,
                    };
                    self.insert(key, entry);
                    evicted = self.evict_over_cap();
                }
            }
            Record::Done { event_id, owner, deliveries, .. } => {
                if let Some(entry) = self.pending_of(key, &event_id, &owner) {
                    entry.state = State::Done { deliveries };
                }
            }
            Record::Failed { event_id, owner, .. } => {
                if let Some(entry) = self.pending_of(key, &event_id, &owner) {
                    entry.state = State::Failed;
                }
            }
        }
        Applied { expired, evicted }
    }

    /// The entry of `key` if it is the pending claim of `owner` for `event_id`: only the claim's
    /// owner finishes it.
    fn pending_of(&mut self, key: &str, event_id: &str, owner: &str) -> Option<&mut Entry> {
        self.entries
            .get_mut(key)
            .filter(|entry| entry.state == State::Pending && &*entry.owner == owner && &*entry.event_id == event_id)
    }

    fn insert(&mut self, key: &str, mut entry: Entry) {
        let key = match self.entries.remove_entry(key) {
            Some((key, old)) => {
                self.by_expiry.remove(&(old.expires_at_ms, old.seq));
                key
            }
            None => Arc::from(key),
        };
        self.seq += 1;
        entry.seq = self.seq;
        self.by_expiry.insert((entry.expires_at_ms, entry.seq), Arc::clone(&key));
        self.entries.insert(key, entry);
    }

    /// Forgets the keys whose window ended before `now_ms`.
    fn expire_before(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        while let Some(next) = self.by_expiry.first_entry()
            && next.key().0 < now_ms
        {
            self.entries.remove(&next.remove());
            expired += 1;
        }
        expired
    }

    /// Over the cap, forgets the keys closest to expiry.
    fn evict_over_cap(&mut self) -> usize {
        let mut evicted = 0;
        while self.entries.len() > self.max_keys
            && let Some((_, key)) = self.by_expiry.pop_first()
        {
            self.entries.remove(&key);
            evicted += 1;
        }
        evicted
    }
}

/// The view of the idempotency topic.
#[derive(Debug)]
struct View {
    state: Mutex<ViewState>,
    metrics: IdempotencyMetrics,
}

#[derive(Debug)]
struct ViewState {
    keys: Keys,
    /// Evictions not logged yet, and when they last were.
    unlogged_evictions: usize,
    last_eviction_log: Option<Instant>,
}

impl View {
    fn new(max_keys: usize, metrics: IdempotencyMetrics) -> Self {
        let keys = Keys::new(max_keys);
        Self { state: Mutex::new(ViewState { keys, unlogged_evictions: 0, last_eviction_log: None }), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Option<Entry> {
        self.lock().keys.entries.get(key).cloned()
    }

    fn len(&self) -> usize {
        self.lock().keys.len()
    }
}

impl Apply for View {
    fn apply(&self, message: &BorrowedMessage<'_>) {
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
        let record = message.payload().and_then(|v| serde_json::from_slice::<Record>(v).ok());
        let (Some(key), Some(record)) = (key, record) else {
            tracing::warn!(offset = message.offset(), "ignoring an unreadable idempotency record");
            return;
        };
        let mut state = self.lock();
        let applied = state.keys.apply(key, record);
        self.metrics.keys.set(i64::try_from(state.keys.len()).unwrap_or(i64::MAX));
        if applied.evicted == 0 {
            return;
        }
        self.metrics.evictions.inc_by(applied.evicted as u64);
        state.unlogged_evictions += applied.evicted;
        if state.last_eviction_log.is_none_or(|at| at.elapsed() >= EVICTION_LOG_INTERVAL) {
            tracing::warn!(
                evicted = state.unlogged_evictions,
                max_keys = state.keys.max_keys,
                "idempotency keys evicted at the cap: a retry of an evicted key within its window is published \
                 again under a new event id; raise --idempotency-max-keys"
            );
            state.unlogged_evictions = 0;
            state.last_eviction_log = Some(Instant::now());
        }
    }
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The request was answered before: answer the same.
    Replay(Accepted),
    /// This request owns the key: produce with `event_id`, then [`Idempotency::finish`].
    Claimed(Claim),
}

/// A won claim.
#[derive(Debug)]
pub(crate) struct Claim {
    key: String,
    pub event_id: String,
    owner: String,
}

/// Idempotent publishing: the followed view and the producer that writes claims.
#[derive(Clone)]
pub struct Idempotency {
    follower: Follower<View>,
    producer: FutureProducer,
    window: Duration,
    lease: Duration,
    write_timeout: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("topic", &self.follower.topic())
            .field("window", &self.window)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How the idempotency view is kept (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a key is remembered.
    pub window: Duration,
    /// How long a claim holds before another request may take it over.
    pub lease: Duration,
    /// The most keys the view holds.
    pub max_keys: usize,
    /// How long the load at start-up may take.
    pub load_timeout: Duration,
}

impl Idempotency {
    /// Loads the view of `topic` and keeps following it until `stop` fires.
    pub async fn start(
        kafka: &KafkaArgs,
        topic: &str,
        producer: FutureProducer,
        settings: Settings,
        metrics: IdempotencyMetrics,
        stop: CancellationToken,
    ) -> Result<Self> {
        let Settings { window, lease, max_keys, load_timeout } = settings;
        let start_at = StartAt::Recent {
            since: window.saturating_add(CLOCK_MARGIN),
            max_records: RECORDS_PER_KEY.saturating_mul(max_keys as u64),
        };
        let view = View::new(max_keys, metrics.clone());
        let started = Instant::now();
        let follower =
            Follower::start(kafka, topic, start_at, view, load_timeout, "the idempotency keys to load", stop)
                .await
                .map_err(|source| Error::IdempotencyLoad { topic: topic.to_owned(), source })?;
        let took = started.elapsed();
        let records = follower.records_read();
        metrics.load_records.set(i64::try_from(records).unwrap_or(i64::MAX));
        metrics.load_seconds.set(took.as_secs_f64());
        tracing::info!(topic, keys = follower.view().len(), records, ?took, "idempotency keys loaded");
        Ok(Self { follower, producer, window, lease, write_timeout: lease })
    }

    /// Reads the catch-ups done so far (broker round trips, coalesced; the load included), for
    /// the metrics, without holding on to the producer.
    pub(crate) fn catchup_count(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let follower = self.follower.clone();
        move || follower.catchups()
    }

    /// Stops following the topic.
    pub async fn close(&self) {
        self.follower.close().await;
    }

    /// Looks `key` up and, unless the request was answered before, claims it.
    pub(crate) async fn begin(&self, key: &str, fingerprint: Fingerprint) -> Result<Begin> {
        for round in 0..CLAIM_ROUNDS {
            // A key the view does not know is claimed without catching up first: the claim's
            // read-back shows every record before it, so a view that was behind only makes the
            // claim lose, and the next round, which catches up, sees what won.
            let mut entry = self.follower.view().get(key);
            if round > 0 || entry.is_some() {
                self.sync().await?;
                entry = self.follower.view().get(key);
            }
            let now = now_ms();
            let event_id = match entry {
                None => hookline_core::envelope::new_event_id(),
                Some(entry) if now > entry.expires_at_ms => hookline_core::envelope::new_event_id(),
                Some(entry) if entry.fingerprint != fingerprint => return Err(Error::IdempotencyKeyReused),
                Some(Entry { state: State::Done { deliveries }, event_id, .. }) => {
                    return Ok(Begin::Replay(Accepted { event_id: event_id.into(), deliveries, replayed: true }));
                }
                Some(entry)
                    if entry.state == State::Pending && now.saturating_sub(entry.claimed_at_ms) <= entry.lease_ms =>
                {
                    return Err(Error::IdempotencyInProgress);
                }
                // A failed or abandoned claim: take it over with the same event id.
                Some(entry) => entry.event_id.into(),
            };
            let owner = uuid_like();
            let claim = Record::Pending {
                event_id: event_id.clone(),
                fingerprint,
                owner: owner.clone(),
                at_ms: now,
                lease_ms: millis(self.lease),
                expires_at_ms: now.saturating_add(millis(self.window)),
            };
            let (partition, offset) = self.write(key, &claim).await?;
            // Read up to the claim itself: whether it won depends on the records before it only.
            self.follower
                .sync_to_within(partition, offset, SYNC_TIMEOUT, "the idempotency keys to catch up")
                .await
                .map_err(Error::Idempotency)?;
            if self.follower.view().get(key).is_some_and(|entry| *entry.owner == *owner) {
                return Ok(Begin::Claimed(Claim { key: key.to_owned(), event_id, owner }));
            }
            // Another request claimed the key first: look again.
        }
        Err(Error::IdempotencyInProgress)
    }

    /// Records how a claimed request ended. A failure to record is logged, not returned: the
    /// copies are on the topic already, and a retry that takes the claim over reuses the event id.
    pub(crate) async fn finish(&self, claim: Claim, outcome: Option<&Accepted>) {
        let Claim { key, event_id, owner } = claim;
        let at_ms = now_ms();
        let record = match outcome {
            Some(accepted) => Record::Done { event_id, owner, deliveries: accepted.deliveries, at_ms },
            None => Record::Failed { event_id, owner, at_ms },
        };
        if let Err(error) = self.write(&key, &record).await {
            tracing::warn!(%error, "cannot record the outcome of an idempotent request; a retry takes the claim over after its lease");
        }
    }

    async fn sync(&self) -> Result<()> {
        self.follower.sync_within(SYNC_TIMEOUT, "the idempotency keys to catch up").await.map_err(Error::Idempotency)
    }

    /// Writes `record` and waits for its acknowledgement: its partition and offset.
    async fn write(&self, key: &str, record: &Record) -> Result<(i32, i64)> {
        let value = serde_json::to_vec(record).map_err(|e| Error::Idempotency(e.into()))?;
        let message = FutureRecord::to(self.follower.topic()).key(key).payload(&value);
        self.producer
            .send(message, self.write_timeout)
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(error, _)| Error::Idempotency(error.into()))
    }
}

/// A unique claim owner id.
fn uuid_like() -> String {
    hookline_core::envelope::new_event_id().replacen("evt_", "claim_", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT: &str = "5e6f2c0e4a8a5b8f2f4b6f3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e";

    fn pending_for(event_id: &str, owner: &str, at_ms: i64, window_ms: i64) -> Record {
        Record::Pending {
            event_id: event_id.into(),
            fingerprint: Fingerprint::from_hex(PRINT).unwrap(),
            owner: owner.into(),
            at_ms,
            lease_ms: 1_000,
            expires_at_ms: at_ms + window_ms,
        }
    }

    fn pending(event_id: &str, owner: &str, at_ms: i64) -> Record {
        pending_for(event_id, owner, at_ms, 60_000)
    }

    fn done(event_id: &str, owner: &str, at_ms: i64) -> Record {
        Record::Done { event_id: event_id.into(), owner: owner.into(), deliveries: 1, at_ms }
    }

    /// The expiry index holds exactly the entries.
    fn consistent(keys: &Keys) -> bool {
        keys.by_expiry.len() == keys.entries.len()
            && keys.by_expiry.iter().all(|((expires, seq), key)| {
                keys.entries.get(key).is_some_and(|e| e.expires_at_ms == *expires && e.seq == *seq)
            })
    }

    #[test]
    fn the_first_claim_wins_and_only_its_owner_finishes_it() {
        let mut keys = Keys::new(100);
        keys.apply("k", pending("evt_a", "a", 0));
        keys.apply("k", pending("evt_b", "b", 10));
        let entry = keys.entries["k"].clone();
        assert_eq!((&*entry.event_id, &*entry.owner), ("evt_a", "a"));
        keys.apply("k", Record::Done { event_id: "evt_b".into(), owner: "b".into(), deliveries: 9, at_ms: 20 });
        assert_eq!(keys.entries["k"].state, State::Pending, "the loser cannot finish the winner's claim");
        keys.apply("k", Record::Done { event_id: "evt_a".into(), owner: "a".into(), deliveries: 2, at_ms: 30 });
        assert_eq!(keys.entries["k"].state, State::Done { deliveries: 2 });
        // A finished key cannot be claimed again within its window, even after the lease.
        keys.apply("k", pending("evt_c", "c", 50_000));
        assert_eq!(&*keys.entries["k"].owner, "a");
        // After the window it can.
        keys.apply("k", pending("evt_d", "d", 60_001));
        assert_eq!((&*keys.entries["k"].owner, keys.entries["k"].state), ("d", State::Pending));
        assert!(consistent(&keys));
    }

    #[test]
    fn failed_and_abandoned_claims_can_be_taken_over() {
        let mut keys = Keys::new(100);
        keys.apply("k", pending("evt_a", "a", 0));
        keys.apply("k", Record::Failed { event_id: "evt_a".into(), owner: "a".into(), at_ms: 5 });
        assert_eq!(keys.entries["k"].state, State::Failed);
        keys.apply("k", pending("evt_a", "b", 6));
        assert_eq!((&*keys.entries["k"].owner, keys.entries["k"].state), ("b", State::Pending));
        // b's claim is fresh (lease 1 s): c cannot take it yet, but can once the lease ran out.
        keys.apply("k", pending("evt_a", "c", 900));
        assert_eq!(&*keys.entries["k"].owner, "b");
        keys.apply("k", pending("evt_a", "c", 1_007));
        assert_eq!(&*keys.entries["k"].owner, "c");
        assert!(consistent(&keys));
    }

    #[test]
    fn only_a_claim_with_its_event_id_takes_a_failed_or_abandoned_claim_over() {
        // A request whose view had not seen the key claims it with a new event id: it must lose
        // to a failed or abandoned claim, whose copies may be on the topic under the old id.
        let mut keys = Keys::new(100);
        keys.apply("failed", pending("evt_a", "a", 0));
        keys.apply("failed", Record::Failed { event_id: "evt_a".into(), owner: "a".into(), at_ms: 5 });
        keys.apply("failed", pending("evt_new", "b", 6));
        let entry = keys.entries["failed"].clone();
        assert_eq!((&*entry.event_id, &*entry.owner, entry.state), ("evt_a", "a", State::Failed));
        keys.apply("failed", pending("evt_a", "c", 7));
        assert_eq!((&*keys.entries["failed"].owner, keys.entries["failed"].state), ("c", State::Pending));

        keys.apply("abandoned", pending("evt_x", "a", 0));
        keys.apply("abandoned", pending("evt_new", "b", 2_000));
        assert_eq!(&*keys.entries["abandoned"].owner, "a", "past the lease, but another event id");
        keys.apply("abandoned", pending("evt_x", "c", 2_001));
        assert_eq!(&*keys.entries["abandoned"].owner, "c");

        // A free key (never claimed, or expired) goes to any claim.
        keys.apply("free", pending("evt_new", "b", 2_002));
        assert_eq!(&*keys.entries["free"].owner, "b");
        keys.apply("failed", Record::Failed { event_id: "evt_a".into(), owner: "c".into(), at_ms: 2_003 });
        keys.apply("failed", pending("evt_later", "d", 60_008));
        assert_eq!(&*keys.entries["failed"].event_id, "evt_later", "after its window the key is free");
        assert!(consistent(&keys));
    }

    #[test]
    fn one_request_at_a_time_keeps_the_view_within_the_window() {
        // A keyed request every 10 ms (claim, then outcome 5 ms later), with a 1 s window: the
        // view holds the last second's keys, however long it runs.
        let mut keys = Keys::new(1_000_000);
        let mut expired = 0;
        for i in 0..10_000 {
            let at_ms = i * 10;
            let (key, event_id) = (format!("order-{i}"), format!("evt_{i}"));
            expired += keys.apply(&key, pending_for(&event_id, "o", at_ms, 1_000)).expired;
            expired += keys.apply(&key, done(&event_id, "o", at_ms + 5)).expired;
            assert!(keys.len() <= 101, "{} keys after {} requests", keys.len(), i + 1);
        }
        assert_eq!(expired + keys.len(), 10_000, "every key is either held or expired");
        assert!(keys.entries.contains_key("order-9999") && !keys.entries.contains_key("order-9899"));
        assert!(consistent(&keys));
    }

    #[test]
    fn at_the_cap_the_keys_closest_to_expiry_are_evicted() {
        let mut keys = Keys::new(3);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            let applied = keys.apply(key, pending("evt", "o", i as i64));
            assert_eq!(applied, Applied::default());
        }
        // A fourth key evicts the one closest to expiry.
        assert_eq!(keys.apply("d", pending("evt", "o", 3)), Applied { expired: 0, evicted: 1 });
        assert!(!keys.entries.contains_key("a") && keys.len() == 3);
        // A claim taken over moves to the back: b, failed and claimed again, outlives c.
        keys.apply("b", Record::Failed { event_id: "evt".into(), owner: "o".into(), at_ms: 4 });
        keys.apply("b", pending("evt", "o2", 5));
        assert_eq!(keys.apply("e", pending("evt", "o", 6)).evicted, 1);
        assert!(!keys.entries.contains_key("c") && keys.entries.contains_key("b"));
        // Equal expiry: the claim applied first goes first, the same on every replica.
        let mut tied = Keys::new(1);
        tied.apply("x", pending("evt", "o", 7));
        tied.apply("y", pending_for("evt", "o", 6, 60_001));
        assert!(tied.entries.contains_key("y") && !tied.entries.contains_key("x"));
        // Records whose claim was evicted change nothing.
        keys.apply("a", done("evt", "o", 7));
        assert!(!keys.entries.contains_key("a"));
        assert!(consistent(&keys) && consistent(&tied));
    }

    #[test]
    fn keys_and_fingerprints() {
        let header = "`Idempotency-Key` header";
        assert!(validate_key("order-42/attempt", header).is_ok());
        assert!(validate_key("order 42", header).is_ok(), "space is printable ASCII");
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN), header).is_ok());
        assert!(validate_key("", header).is_err());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1), header).is_err());
        assert!(validate_key("new\nline", header).is_err());
        assert!(validate_key("tab\there", header).is_err());
        assert!(validate_key("caf\u{e9}", header).is_err());
        let refused = validate_key("", "`idempotency_key`").unwrap_err().to_string();
        assert!(refused.contains("invalid `idempotency_key`"), "{refused}");
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
        let print = fingerprint(&[b"x"]).to_hex();
        assert_eq!(print.len(), 64);
        assert_eq!(Fingerprint::from_hex(&print).map(Fingerprint::to_hex), Some(print));
        assert_eq!(Fingerprint::from_hex(&PRINT.to_uppercase()), Fingerprint::from_hex(PRINT));
        assert_eq!(Fingerprint::from_hex("abc"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn records_round_trip_as_tagged_json() {
        let record = pending("evt_a", "a", 7);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""state":"pending""#), "{text}");
        assert!(text.contains(&format!(r#""fingerprint":"{PRINT}""#)), "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        // A record whose fingerprint is not one is unreadable, not a key with a bad fingerprint.
        let bad = text.replace(PRINT, "f");
        assert!(serde_json::from_str::<Record>(&bad).is_err());
    }
}

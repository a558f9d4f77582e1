//! Idempotent publishing: a request repeated with the same `Idempotency-Key` within the window
//! gets the original answer (`event_id`, `deliveries`) and produces nothing new, whichever
//! publisher replica answers it and across restarts.
//!
//! Kafka is the only shared state. Every publisher follows the idempotency topic (one partition,
//! `cleanup.policy=delete`, so the whole history within retention is kept in order) into the same
//! view, applying the same deterministic rules to the same records in the same order. A request
//! with a key:
//!
//! 1. catches the view up with the topic and looks the key up: a finished request with the same
//!    body is answered from the record (a *replay*); the same key with another body is refused
//!    (422); a request still in progress elsewhere is refused with 409 (retry shortly);
//! 2. otherwise *claims* the key by writing a `pending` record with a fresh event id (or, taking
//!    over a failed or abandoned claim, the event id that claim used) and catches up again. The
//!    first pending record in the log wins; a replica that lost the race answers from the
//!    winner's state instead of producing;
//! 3. the winner produces the copies with that event id and writes `done` with the result (or
//!    `failed`, so that the client's retry can take over at once).
//!
//! A claim whose owner died is taken over once its lease (the produce timeout and some) has run
//! out. The takeover reuses the event id, so copies the dead owner managed to write and those
//! written again carry the same `webhook-id`, and the consumer's delivery ledger sends each
//! customer the event once. Records carry the writer's clock (`at_ms`) and the claim's own lease
//! and expiry, so every replica decides alike whatever its own settings.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookline_core::config::KafkaArgs;
use hookline_core::follower::{Apply, Follower};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::http::Accepted;
use crate::{Error, Result};

/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a request waits for the view to catch up with the topic.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a request re-reads the view after losing a claim race before answering 409.
const CLAIM_ROUNDS: usize = 3;
/// Forget expired keys after this many applied records.
const PRUNE_EVERY: u64 = 1024;

/// Checks an `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Error::InvalidRequest(format!(
            "invalid `Idempotency-Key` header: must be 1 to {MAX_KEY_LEN} printable ASCII characters"
        )));
    }
    Ok(())
}

/// What identifies a request's content, so that a key reused for another request is caught.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        // Length-prefixed, so that moving bytes between parts changes the fingerprint.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A record of the idempotency topic (JSON), keyed by the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// A claim: `owner` is about to produce the event `event_id`.
    Pending { event_id: String, fingerprint: String, owner: String, at_ms: i64, lease_ms: i64, expires_at_ms: i64 },
    /// The claim's copies are on the topic.
    Done { event_id: String, owner: String, deliveries: usize, at_ms: i64 },
    /// The claim's producing failed; the next request with the key takes over.
    Failed { event_id: String, owner: String, at_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done { deliveries: usize },
    Failed,
}

/// What the view knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    state: State,
    event_id: String,
    fingerprint: String,
    owner: String,
    claimed_at_ms: i64,
    lease_ms: i64,
    expires_at_ms: i64,
}

/// The keys within their window, as the topic says.
#[derive(Debug, Default)]
struct Keys {
    entries: HashMap<String, Entry>,
    applied: u64,
}

impl Keys {
    /// The rules every replica applies alike.
    fn apply(&mut self, key: &str, record: Record) {
        self.applied += 1;
        let current = self.entries.get(key);
        match record {
            Record::Pending { event_id, fingerprint, owner, at_ms, lease_ms, expires_at_ms } => {
                let claimable = match current {
                    None => true,
                    Some(entry) if at_ms > entry.expires_at_ms => true,
                    Some(entry) => match entry.state {
                        State::Failed => true,
                        State::Pending => at_ms.saturating_sub(entry.claimed_at_ms) > entry.lease_ms,
                        State::Done { .. } => false,
                    },
                };
                if claimable {
                    let state = State::Pending;
                    let entry =
                        Entry { state, event_id, fingerprint, owner, claimed_at_ms: at_ms, lease_ms, expires_at_ms };
                    self.entries.insert(key.to_owned(), entry);
                }
                if self.applied.is_multiple_of(PRUNE_EVERY) {
                    self.entries.retain(|_, entry| entry.expires_at_ms >= at_ms);
                }
            }
            Record::Done { event_id, owner, deliveries, .. } => {
                if let Some(entry) = self.entries.get_mut(key)
                    && entry.state == State::Pending
                    && entry.owner == owner
                    && entry.event_id == event_id
                {
                    entry.state = State::Done { deliveries };
                }
            }
            Record::Failed { event_id, owner, .. } => {
                if let Some(entry) = self.entries.get_mut(key)
                    && entry.state == State::Pending
                    && entry.owner == owner
                    && entry.event_id == event_id
                {
                    entry.state = State::Failed;
                }
            }
        }
    }
}

/// The view of the idempotency topic.
#[derive(Debug, Default)]
struct View {
    keys: Mutex<Keys>,
}

impl View {
    fn get(&self, key: &str) -> Option<Entry> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).entries.get(key).cloned()
    }
}

impl Apply for View {
    fn apply(&self, message: &BorrowedMessage<'_>) {
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
        let record = message.payload().and_then(|v| serde_json::from_slice::<Record>(v).ok());
        match (key, record) {
            (Some(key), Some(record)) => self.keys.lock().unwrap_or_else(PoisonError::into_inner).apply(key, record),
            _ => tracing::warn!(offset = message.offset(), "ignoring an unreadable idempotency record"),
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

impl Idempotency {
    /// Loads the view of `topic` and keeps following it until `stop` fires. Keys are remembered
    /// for `window`; a claim may be taken over once `lease` has passed without an outcome.
    pub async fn start(
        kafka: &KafkaArgs,
        topic: &str,
        producer: FutureProducer,
        window: Duration,
        lease: Duration,
        load_timeout: Duration,
        stop: CancellationToken,
    ) -> Result<Self> {
        let follower =
            Follower::start(kafka, topic, View::default(), load_timeout, "the idempotency keys to load", stop)
                .await
                .map_err(|source| Error::IdempotencyLoad { topic: topic.to_owned(), source })?;
        Ok(Self { follower, producer, window, lease, write_timeout: lease })
    }

    /// Stops following the topic.
    pub async fn close(&self) {
        self.follower.close().await;
    }

    /// Looks `key` up and, unless the request was answered before, claims it.
    pub(crate) async fn begin(&self, key: &str, fingerprint: &str) -> Result<Begin> {
        for _ in 0..CLAIM_ROUNDS {
            self.sync().await?;
            let now = now_ms();
            let event_id = match self.follower.view().get(key) {
                None => hookline_core::envelope::new_event_id(),
                Some(entry) if now > entry.expires_at_ms => hookline_core::envelope::new_event_id(),
                Some(entry) if entry.fingerprint != fingerprint => return Err(Error::IdempotencyKeyReused),
                Some(Entry { state: State::Done { deliveries }, event_id, .. }) => {
                    return Ok(Begin::Replay(Accepted { event_id, deliveries, replayed: true }));
                }
                Some(entry)
                    if entry.state == State::Pending && now.saturating_sub(entry.claimed_at_ms) <= entry.lease_ms =>
                {
                    return Err(Error::IdempotencyInProgress);
                }
                // A failed or abandoned claim: take it over with the same event id.
                Some(entry) => entry.event_id,
            };
            let owner = uuid_like();
            let claim = Record::Pending {
                event_id: event_id.clone(),
                fingerprint: fingerprint.to_owned(),
                owner: owner.clone(),
                at_ms: now,
                lease_ms: millis(self.lease),
                expires_at_ms: now.saturating_add(millis(self.window)),
            };
            self.write(key, &claim).await?;
            self.sync().await?;
            if self.follower.view().get(key).is_some_and(|entry| entry.owner == owner) {
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

    async fn write(&self, key: &str, record: &Record) -> Result<()> {
        let value = serde_json::to_vec(record).map_err(|e| Error::Idempotency(e.into()))?;
        let message = FutureRecord::to(self.follower.topic()).key(key).payload(&value);
        self.producer
            .send(message, self.write_timeout)
            .await
            .map(|_| ())
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

    fn pending(event_id: &str, owner: &str, at_ms: i64) -> Record {
        Record::Pending {
            event_id: event_id.into(),
            fingerprint: "f".into(),
            owner: owner.into(),
            at_ms,
            lease_ms: 1_000,
            expires_at_ms: at_ms + 60_000,
        }
    }

    #[test]
    fn the_first_claim_wins_and_only_its_owner_finishes_it() {
        let mut keys = Keys::default();
        keys.apply("k", pending("evt_a", "a", 0));
        keys.apply("k", pending("evt_b", "b", 10));
        let entry = keys.entries["k"].clone();
        assert_eq!((entry.event_id.as_str(), entry.owner.as_str()), ("evt_a", "a"));
        keys.apply("k", Record::Done { event_id: "evt_b".into(), owner: "b".into(), deliveries: 9, at_ms: 20 });
        assert_eq!(keys.entries["k"].state, State::Pending, "the loser cannot finish the winner's claim");
        keys.apply("k", Record::Done { event_id: "evt_a".into(), owner: "a".into(), deliveries: 2, at_ms: 30 });
        assert_eq!(keys.entries["k"].state, State::Done { deliveries: 2 });
        // A finished key cannot be claimed again within its window, even after the lease.
        keys.apply("k", pending("evt_c", "c", 50_000));
        assert_eq!(keys.entries["k"].owner, "a");
        // After the window it can.
        keys.apply("k", pending("evt_d", "d", 60_001));
        assert_eq!((keys.entries["k"].owner.as_str(), keys.entries["k"].state), ("d", State::Pending));
    }

    #[test]
    fn failed_and_abandoned_claims_can_be_taken_over() {
        let mut keys = Keys::default();
        keys.apply("k", pending("evt_a", "a", 0));
        keys.apply("k", Record::Failed { event_id: "evt_a".into(), owner: "a".into(), at_ms: 5 });
        assert_eq!(keys.entries["k"].state, State::Failed);
        keys.apply("k", pending("evt_a", "b", 6));
        assert_eq!((keys.entries["k"].owner.as_str(), keys.entries["k"].state), ("b", State::Pending));
        // b's claim is fresh (lease 1 s): c cannot take it yet, but can once the lease ran out.
        keys.apply("k", pending("evt_a", "c", 900));
        assert_eq!(keys.entries["k"].owner, "b");
        keys.apply("k", pending("evt_a", "c", 1_007));
        assert_eq!(keys.entries["k"].owner, "c");
    }

    #[test]
    fn keys_and_fingerprints() {
        assert!(validate_key("order-42/attempt").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(validate_key("new\nline").is_err());
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
    }

    #[test]
    fn records_round_trip_as_tagged_json() {
        let record = pending("evt_a", "a", 7);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""state":"pending""#), "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
    }
}

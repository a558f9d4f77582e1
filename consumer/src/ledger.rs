//! The delivery ledger: which (event, customer) pairs this consumer group has delivered, so that
//! a record seen again is not sent again.
//!
//! Duplicates of a delivery record come from producer retries, a publisher retrying a request, a
//! replay of an event that was in fact delivered, and above all from re-reading the uncommitted
//! tail of a partition after a crash or a rebalance. Offsets alone cannot tell these apart, so
//! every ACK is recorded in the ledger topic (`webhooks.delivered`), which is co-partitioned with
//! the delivery topic: what was delivered from delivery partition `p` is recorded in ledger
//! partition `p`. A worker reads its partition's ledger back (the last `--dedup-window` of it)
//! before it takes its first record, keeps the set in memory, adds each ACK to it at once, and
//! skips a record whose (event id, customer) is in it.
//!
//! A record's offset is stored for commit only after its ledger entry is acknowledged, so a
//! committed offset always implies a recorded delivery. What remains is one window: the endpoint
//! ACKed, and the consumer died (or lost the partition) before the ledger acknowledged the entry.
//! The next owner does not know of that delivery and sends it again, with the same `webhook-id`;
//! receivers close the window by de-duplicating on `webhook-id`.
//!
//! Entries are identified by 128 bits of SHA-256 over the customer id and the event id: a
//! collision would make the consumer skip a delivery, and at 128 bits the odds stay far below
//! any hardware failure rate for any number of entries a window can hold.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookline_core::config::KafkaArgs;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{Error, Result};

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// After the high watermark is reached, how long a poll may stay empty before the read is over.
/// Records fetched together arrive at once; this only bounds the wait for a fetch already made.
const TAIL_POLL: Duration = Duration::from_millis(200);

/// One delivered (event, customer): what a ledger record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub customer: String,
    pub event_id: String,
}

/// The value of a ledger record (JSON); the key is the customer id.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerValue {
    event_id: String,
    /// The delivery record's offset, for people reading the topic.
    #[serde(default)]
    offset: i64,
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

/// The deliveries of one partition within the window, in memory.
#[derive(Debug)]
pub struct DeliveredSet {
    window_ms: i64,
    entries: HashSet<Fingerprint>,
    /// Entries in the order they were delivered, to forget those older than the window.
    by_age: VecDeque<(i64, Fingerprint)>,
}

impl DeliveredSet {
    /// An empty set remembering deliveries for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            entries: HashSet::new(),
            by_age: VecDeque::new(),
        }
    }

    /// Whether `event_id` was delivered to `customer` within the window.
    pub fn contains(&self, customer: &str, event_id: &str) -> bool {
        self.entries.contains(&fingerprint(customer, event_id))
    }

    /// Records a delivery made now.
    pub fn insert(&mut self, receipt: &Receipt) {
        self.insert_at(&receipt.customer, &receipt.event_id, unix_millis(SystemTime::now()));
    }

    /// Records a delivery made at `at_ms` (Unix milliseconds), forgetting what is older than the
    /// window by then. Returns false if the delivery itself is already outside the window.
    fn insert_at(&mut self, customer: &str, event_id: &str, at_ms: i64) -> bool {
        let horizon =
            at_ms.max(self.by_age.back().map_or(i64::MIN, |(newest, _)| *newest)).saturating_sub(self.window_ms);
        while let Some((oldest, id)) = self.by_age.front().copied() {
            if oldest >= horizon {
                break;
            }
            self.by_age.pop_front();
            self.entries.remove(&id);
        }
        if at_ms < horizon {
            return false;
        }
        let id = fingerprint(customer, event_id);
        if self.entries.insert(id) {
            self.by_age.push_back((at_ms, id));
        }
        true
    }

    /// Deliveries remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads and writes the ledger topic.
#[derive(Clone)]
pub struct Ledger {
    kafka: KafkaArgs,
    producer: FutureProducer,
    topic: String,
    window: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("topic", &self.topic).field("window", &self.window).finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger on `topic` remembering deliveries for `window`, written with `producer`.
    pub fn new(kafka: KafkaArgs, producer: FutureProducer, topic: String, window: Duration, metrics: Metrics) -> Self {
        Self { kafka, producer, topic, window, metrics }
    }

    /// Checks that the ledger topic exists and is co-partitioned with `deliveries`: a ledger with
    /// another partition count would record a customer's deliveries where its next owner never
    /// looks. Blocking: call off the async runtime.
    pub fn check_layout(&self, deliveries: &str) -> Result<()> {
        let reader = kafka::reader(&self.kafka, "hookline-ledger")?;
        let expected = kafka::topic_partitions(&reader, deliveries, METADATA_TIMEOUT)?;
        let found = kafka::topic_partitions(&reader, &self.topic, METADATA_TIMEOUT)?;
        if found.len() != expected.len() {
            return Err(Error::LedgerLayout {
                topic: self.topic.clone(),
                partitions: found.len(),
                deliveries: deliveries.to_owned(),
                expected: expected.len(),
            });
        }
        Ok(())
    }

    /// Reads back what partition `partition` delivered within the window. Dropping the future
    /// stops the read (the reader thread notices within a poll).
    pub async fn restore(&self, partition: i32) -> Result<DeliveredSet> {
        let ledger = self.clone();
        let abandon = CancellationToken::new();
        let abandoned = abandon.clone();
        let _abandon_if_dropped = abandon.drop_guard();
        let started = Instant::now();
        let set = tokio::task::spawn_blocking(move || ledger.read_partition(partition, &abandoned))
            .await
            .map_err(|_| Error::LedgerRead("the reader task failed".into()))??;
        self.metrics.ledger_restore_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.ledger_restored.inc_by(set.len() as u64);
        tracing::info!(topic = %self.topic, partition, deliveries = set.len(), took = ?started.elapsed(), "delivery ledger restored");
        Ok(set)
    }

    fn read_partition(&self, partition: i32, abandoned: &CancellationToken) -> Result<DeliveredSet> {
        let reader: BaseConsumer = kafka::reader(&self.kafka, "hookline-ledger")?;
        let (low, high) = reader.fetch_watermarks(&self.topic, partition, METADATA_TIMEOUT)?;
        let mut set = DeliveredSet::new(self.window);
        if high <= low {
            return Ok(set);
        }
        let mut next = low;
        let start = match self.window_start(&reader, partition) {
            // Nothing was written within the window.
            Some(Offset::End) => return Ok(set),
            Some(Offset::Offset(first)) => {
                next = first;
                Offset::Offset(first)
            }
            _ => Offset::Beginning,
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, partition, start)?;
        reader.assign(&assignment)?;
        loop {
            if abandoned.is_cancelled() {
                return Err(Error::LedgerRead("abandoned".into()));
            }
            // Below the high watermark, wait as long as it takes; at it, only drain what a fetch
            // already brought (tansu reports a high watermark inside the last batch).
            let timeout = if next < high { Duration::from_millis(500) } else { TAIL_POLL };
            match reader.poll(timeout) {
                Some(Ok(message)) => {
                    next = message.offset() + 1;
                    let customer = message.key().and_then(|k| std::str::from_utf8(k).ok());
                    let value = message.payload().and_then(|v| serde_json::from_slice::<LedgerValue>(v).ok());
                    let at = message.timestamp().to_millis();
                    match (customer, value, at) {
                        (Some(customer), Some(value), Some(at)) => {
                            set.insert_at(customer, &value.event_id, at);
                        }
                        _ => {
                            tracing::warn!(topic = %self.topic, partition, offset = message.offset(), "ignoring an unreadable ledger record")
                        }
                    }
                }
                Some(Err(error)) => return Err(error.into()),
                None if next >= high => return Ok(set),
                None => {}
            }
        }
    }

    /// The first offset written within the window, if the broker can say.
    fn window_start(&self, reader: &BaseConsumer, partition: i32) -> Option<Offset> {
        let since = unix_millis(SystemTime::now().checked_sub(self.window)?);
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(&self.topic, partition, Offset::Offset(since)).ok()?;
        let found = reader.offsets_for_times(query, METADATA_TIMEOUT).ok()?;
        let offset = found.find_partition(&self.topic, partition)?.offset();
        match offset {
            Offset::Offset(_) => Some(offset),
            // Nothing written since then: the read starts at the end and finds nothing.
            Offset::End => Some(Offset::End),
            _ => None,
        }
    }

    /// Writes the ledger entry for `receipt` (delivered from delivery partition `partition` at
    /// `offset`) and resolves once the broker acknowledged it, retrying failed writes with
    /// backoff. The future owns its data; dropping it stops the retries.
    pub fn record(&self, partition: i32, receipt: Receipt, offset: i64) -> impl Future<Output = ()> + Send + 'static {
        let ledger = self.clone();
        async move {
            let value = serde_json::to_vec(&LedgerValue { event_id: receipt.event_id, offset }).unwrap_or_default();
            let mut delay = RETRY_MIN;
            loop {
                let record =
                    FutureRecord::to(&ledger.topic).partition(partition).key(&receipt.customer).payload(&value);
                match ledger.producer.send(record, PRODUCE_TIMEOUT).await {
                    Ok(_) => {
                        ledger.metrics.ledger_records.inc();
                        return;
                    }
                    Err((error, _)) => {
                        ledger.metrics.ledger_write_errors.inc();
                        tracing::warn!(topic = %ledger.topic, partition, %error, retry_in = ?delay, "ledger write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_deliveries_per_customer_and_event() {
        let mut set = DeliveredSet::new(Duration::from_secs(60));
        set.insert(&Receipt { customer: "acme".into(), event_id: "evt_1".into() });
        assert!(set.contains("acme", "evt_1"));
        assert!(!set.contains("globex", "evt_1"), "the same event for another customer is another delivery");
        assert!(!set.contains("acme", "evt_2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }

    #[test]
    fn forgets_what_is_older_than_the_window() {
        let mut set = DeliveredSet::new(Duration::from_secs(10));
        assert!(set.insert_at("c", "old", 1_000));
        assert!(set.insert_at("c", "mid", 6_000));
        assert!(set.contains("c", "old"));
        assert!(set.insert_at("c", "new", 12_000));
        assert!(!set.contains("c", "old"), "11 s old: outside a 10 s window");
        assert!(set.contains("c", "mid") && set.contains("c", "new"));
        assert_eq!(set.len(), 2);
        // A record older than the window at the time of the newest one is not remembered.
        assert!(!set.insert_at("c", "ancient", 500));
        assert!(!set.contains("c", "ancient"));
        // Inserting twice keeps one entry.
        assert!(set.insert_at("c", "new", 12_500));
        assert_eq!(set.len(), 2);
    }
}

//! The customer directory: an in-memory view of the compacted customers topic.
//!
//! A [`Follower`] thread reads every partition of the topic from the beginning, then keeps
//! following it, so the only infrastructure Hookline needs is Kafka. [`Directory::start`] returns once the
//! view has caught up with what the topic held at start-up. [`Directory::sync`] waits until the
//! view has caught up with what the topic holds *now*: the consumer calls it before declaring a
//! customer unknown, so a customer added a moment before its first event is not dead-lettered by
//! a lagging view.
//!
//! Catch-ups cost a broker round trip and are coalesced by the follower. Those that a caller
//! without credentials can trigger are also paced ([`Follower::sync_paced`]): an API key whose key
//! id is unknown ([`Directory::by_api_key_fresh`]; it may have been issued through another
//! replica a moment ago) and an unknown inbound source ([`Directory::get_fresh_paced`]). An API
//! key whose key id is known but whose secret does not match is refused without a catch-up: key
//! ids are random per key, so no other replica can have issued another key with that id.
//!
//! Records are decoded with the [`Codec`] given at start (Avro, with or without a schema
//! registry, or legacy JSON). While the schema registry is unreachable the follower waits and
//! retries the record rather than skip a customer.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use crate::codec::Codec;
use crate::config::KafkaArgs;
use crate::customer::Customer;
use crate::follower::{Apply, Follower, StartAt};
use crate::secrets::api_key_id;
use crate::{Error, Result, kafka};

/// Pause before decoding a record again while the schema registry is unreachable.
const REGISTRY_RETRY: Duration = Duration::from_secs(1);

/// Shared, cheaply cloneable handle on the directory.
#[derive(Debug, Clone)]
pub struct Directory {
    follower: Follower<View>,
}

/// The customers by id, and the API key index.
#[derive(Debug, Default)]
struct Customers {
    by_id: HashMap<String, Arc<Customer>>,
    /// API key id (the non-secret lookup handle inside a key) to customer id.
    by_api_key_id: HashMap<String, String>,
}

impl Customers {
    fn insert(&mut self, customer: Customer) {
        self.remove(&customer.id);
        if let Some(hash) = &customer.api_key {
            self.by_api_key_id.insert(hash.key_id.clone(), customer.id.clone());
        }
        self.by_id.insert(customer.id.clone(), Arc::new(customer));
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id)
            && let Some(hash) = &old.api_key
            && self.by_api_key_id.get(&hash.key_id).is_some_and(|owner| owner == id)
        {
            self.by_api_key_id.remove(&hash.key_id);
        }
    }

    fn by_api_key(&self, presented: &str) -> KeyLookup {
        let Some(key_id) = api_key_id(presented) else { return KeyLookup::Malformed };
        let Some(customer) = self.by_api_key_id.get(key_id).and_then(|id| self.by_id.get(id)) else {
            return KeyLookup::UnknownKeyId;
        };
        if customer.api_key.as_ref().is_some_and(|hash| hash.matches(presented)) {
            KeyLookup::Found(Arc::clone(customer))
        } else {
            KeyLookup::WrongSecret
        }
    }
}

/// What the view says of a presented API key.
#[derive(Debug)]
enum KeyLookup {
    Found(Arc<Customer>),
    /// Not an API key at all.
    Malformed,
    /// Well-formed, but no key with this key id is known (yet).
    UnknownKeyId,
    /// The key id is known, the secret part does not match: an invalid key.
    WrongSecret,
}

impl KeyLookup {
    fn found(self) -> Option<Arc<Customer>> {
        match self {
            Self::Found(customer) => Some(customer),
            _ => None,
        }
    }
}

/// The view the follower thread keeps up to date.
struct View {
    topic: String,
    customers: RwLock<Customers>,
    codec: Codec,
    /// The runtime registry look-ups run on (the follower is a plain thread).
    runtime: tokio::runtime::Handle,
    /// Stops the retries of a record while the registry is unreachable.
    stop: CancellationToken,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Apply for View {
    fn apply(&self, message: &BorrowedMessage<'_>) {
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            tracing::warn!(topic = %self.topic, "ignoring customer record without a UTF-8 key");
            return;
        };
        let Some(value) = message.payload() else {
            self.customers.write().unwrap_or_else(PoisonError::into_inner).remove(key);
            return;
        };
        let decoded = loop {
            match self.codec.decode_customer_blocking(&self.runtime, key, value) {
                Err(error) if error.is_transient() && !self.stop.is_cancelled() => {
                    tracing::warn!(topic = %self.topic, %error, "cannot decode a customer record yet; retrying");
                    std::thread::sleep(REGISTRY_RETRY);
                }
                decoded => break decoded,
            }
        };
        match decoded {
            Ok(customer) => self.customers.write().unwrap_or_else(PoisonError::into_inner).insert(customer),
            Err(error) => tracing::warn!(topic = %self.topic, %error, "ignoring invalid customer record"),
        }
    }
}

impl Directory {
    /// Starts following `topic` and returns once the view holds everything the topic held at
    /// start-up (or `load_timeout` passed). The follower stops when `stop` is cancelled. Records
    /// are decoded with `codec`.
    pub async fn start(
        kafka: &KafkaArgs,
        topic: &str,
        load_timeout: Duration,
        stop: CancellationToken,
        codec: Codec,
    ) -> Result<Self> {
        let view = View {
            topic: topic.to_owned(),
            customers: RwLock::default(),
            codec,
            runtime: tokio::runtime::Handle::current(),
            stop: stop.clone(),
        };
        let follower = Follower::start(
            kafka,
            topic,
            StartAt::Beginning,
            view,
            load_timeout,
            "the customer directory to load",
            stop,
        )
        .await?;
        let directory = Self { follower };
        tracing::info!(topic, customers = directory.len(), "customer directory loaded");
        Ok(directory)
    }

    /// The codec records of the customers topic are read (and written, see
    /// [`crate::tenants`]) with.
    pub fn codec(&self) -> &Codec {
        &self.follower.view().codec
    }

    /// The customer with this id, as last read.
    pub fn get(&self, id: &str) -> Option<Arc<Customer>> {
        self.read().by_id.get(id).cloned()
    }

    /// The customer whose API key this is, as last read. The key is checked against the stored
    /// hash in constant time; a malformed key costs no lookup.
    pub fn by_api_key(&self, presented: &str) -> Option<Arc<Customer>> {
        self.read().by_api_key(presented).found()
    }

    /// Like [`Directory::by_api_key`], after catching up with the topic if the key's key id is
    /// not known yet (a key issued a moment ago through another publisher replica). Anyone can
    /// present a key, so the catch-up is paced; a known key id with a wrong secret costs none.
    pub async fn by_api_key_fresh(&self, presented: &str, timeout: Duration) -> Result<Option<Arc<Customer>>> {
        match self.read().by_api_key(presented) {
            KeyLookup::Found(customer) => return Ok(Some(customer)),
            KeyLookup::Malformed | KeyLookup::WrongSecret => return Ok(None),
            KeyLookup::UnknownKeyId => {}
        }
        self.follower.sync_paced_within(timeout, "the customer directory to catch up").await?;
        Ok(self.by_api_key(presented))
    }

    /// The customer with this id, after catching up with the topic if it is not known yet.
    pub async fn get_fresh(&self, id: &str, timeout: Duration) -> Result<Option<Arc<Customer>>> {
        if let Some(customer) = self.get(id) {
            return Ok(Some(customer));
        }
        self.follower.sync_within(timeout, "the customer directory to catch up").await?;
        Ok(self.get(id))
    }

    /// Like [`Directory::get_fresh`], for ids that callers without credentials choose (the
    /// source of an inbound webhook): the catch-up is paced.
    pub async fn get_fresh_paced(&self, id: &str, timeout: Duration) -> Result<Option<Arc<Customer>>> {
        if let Some(customer) = self.get(id) {
            return Ok(Some(customer));
        }
        self.follower.sync_paced_within(timeout, "the customer directory to catch up").await?;
        Ok(self.get(id))
    }

    /// Catch-ups done so far (broker round trips, coalesced), the load included.
    pub fn catchups(&self) -> u64 {
        self.follower.catchups()
    }

    /// Customers subscribed to `event_type`, ordered by id.
    pub fn subscribers(&self, event_type: &str) -> Vec<Arc<Customer>> {
        let mut found: Vec<_> = self.read().by_id.values().filter(|c| c.subscribes_to(event_type)).cloned().collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Every customer, ordered by id.
    pub fn all(&self) -> Vec<Arc<Customer>> {
        let mut found: Vec<_> = self.read().by_id.values().cloned().collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Number of customers whose endpoint is disabled.
    pub fn disabled_count(&self) -> usize {
        self.read().by_id.values().filter(|c| c.disabled.is_some()).count()
    }

    /// Number of customers known.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no customer is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the view holds every record the topic holds now.
    pub async fn sync(&self) -> Result<()> {
        self.follower.sync().await
    }

    /// [`Directory::sync`] within `timeout`.
    pub async fn sync_within(&self, timeout: Duration) -> Result<()> {
        self.follower.sync_within(timeout, "the customer directory to catch up").await
    }

    /// Waits until the view holds the record the broker acknowledged at `offset` of
    /// `partition` (a writer reading its own write; see [`Follower::sync_to`]).
    pub async fn sync_to(&self, partition: i32, offset: i64) -> Result<()> {
        self.follower.sync_to(partition, offset).await
    }

    /// Stops following the topic and waits for the reader thread to end, so that its Kafka
    /// client is closed when this returns (the stop token given to [`Directory::start`] does the
    /// same without waiting).
    pub async fn close(&self) {
        self.follower.close().await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Customers> {
        self.follower.view().customers.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes (upserts) a customer to the customers topic, in Avro single-object encoding, and waits
/// for the broker's acknowledgement.
pub async fn put_customer(kafka: &KafkaArgs, topic: &str, customer: &Customer) -> Result<()> {
    put_customer_with(kafka, &Codec::single_object(), topic, customer).await
}

/// [`put_customer`] encoding with `codec` (e.g. through a schema registry).
pub async fn put_customer_with(kafka: &KafkaArgs, codec: &Codec, topic: &str, customer: &Customer) -> Result<()> {
    put_customers_with(kafka, codec, topic, std::slice::from_ref(customer)).await
}

/// Writes (upserts) several customers through one producer, in order, each acknowledged before
/// the next is written.
pub async fn put_customers_with(kafka: &KafkaArgs, codec: &Codec, topic: &str, customers: &[Customer]) -> Result<()> {
    let mut records = Vec::with_capacity(customers.len());
    for customer in customers {
        records.push((customer.id.as_str(), Some(codec.encode_customer(topic, customer).await?)));
    }
    write_customer_records(kafka, topic, &records).await
}

/// Removes a customer: writes a tombstone, which compaction turns into the key's removal.
pub async fn remove_customer(kafka: &KafkaArgs, topic: &str, id: &str) -> Result<()> {
    write_customer_records(kafka, topic, &[(id, None)]).await
}

/// Writes `(id, value)` records (`None`: a tombstone) one at a time, each in a batch of its own:
/// tansu 0.6's high watermark undercounts batches of several records, and the directory's
/// catch-up trusts the watermark.
async fn write_customer_records(kafka: &KafkaArgs, topic: &str, records: &[(&str, Option<Vec<u8>>)]) -> Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka::producer_config(kafka, "hookline-setup").create()?;
    let mut sent = Ok(());
    for (id, value) in records {
        let mut record: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(topic).key(id);
        if let Some(value) = value.as_ref() {
            record = record.payload(value);
        }
        if let Err((error, _)) = producer.send(record, Duration::from_secs(30)).await {
            sent = Err(Error::Kafka(error));
            break;
        }
    }
    // Dropping a producer flushes and may block; keep that off the async runtime.
    tokio::task::spawn_blocking(move || drop(producer)).await.ok();
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::ApiKey;

    #[test]
    fn api_keys_are_told_apart_without_the_topic() {
        let mut customers = Customers::default();
        let mut acme = Customer::new("acme", "https://acme.example/hook", vec!["*".into()]).unwrap();
        let key = acme.reissue_api_key();
        customers.insert(acme);

        assert!(matches!(customers.by_api_key(key.expose()), KeyLookup::Found(c) if c.id == "acme"));
        // The same key id with another secret part: invalid, and known to be, so no catch-up.
        let text = key.expose();
        let last = if text.ends_with('A') { "B" } else { "A" };
        let forged = format!("{}{last}", &text[..text.len() - 1]);
        assert!(matches!(customers.by_api_key(&forged), KeyLookup::WrongSecret));
        // Another key id: maybe issued a moment ago elsewhere; the caller catches up.
        let (other, _) = ApiKey::generate();
        assert!(matches!(customers.by_api_key(other.expose()), KeyLookup::UnknownKeyId));
        assert!(matches!(customers.by_api_key("not-a-key"), KeyLookup::Malformed));

        // A reissued key: the old key id is forgotten, the new one found.
        let mut acme = Customer::clone(&customers.by_id["acme"]);
        let reissued = acme.reissue_api_key();
        customers.insert(acme);
        assert!(matches!(customers.by_api_key(key.expose()), KeyLookup::UnknownKeyId));
        assert!(matches!(customers.by_api_key(reissued.expose()), KeyLookup::Found(_)));
    }
}

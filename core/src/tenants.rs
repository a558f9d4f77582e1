//! Tenant operations, shared by the publisher's onboarding API and the setup CLI, so that both
//! enforce the same rules: create a customer (issuing its API key and signing secret), change its
//! webhook URL (SSRF-checked), subscriptions or public key, rotate its signing secret, delete it;
//! and add, list and remove inbound sources (records with [`Customer::inbound`] set, which the
//! customer operations treat as unknown, so neither can be changed through the other's API).
//!
//! Every change is a read-modify-write of the customer's record in the compacted customers
//! topic: the [`Directory`] is caught up first (so a change made through another replica a
//! moment ago is not overwritten), the new record is written with the shared producer and
//! acknowledged, and the directory is caught up to the acknowledged offset before returning, so
//! that the caller reads its own write (no watermark round trip for that: the acknowledgement
//! says where the record is). Writes through one [`Tenants`] are serialized; two replicas changing the same
//! customer at the same instant are last-writer-wins (changes are rare, human-driven
//! operations).
//!
//! Creation takes a customer's whole configuration ([`NewCustomer`]: id, name, webhook URL,
//! subscriptions, public key), checked by [`Tenants::check`] (the SSRF guard included), and
//! writes it as one record. [`Tenants::create_batch`] creates many at once (`hookline-setup
//! customers import`): one catch-up, every record in flight on the producer together, the
//! acknowledgements awaited together, then each record read back through the directory by id.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookline_wire::signing::SigningSecret;
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Mutex;
use url::Url;
use zeroize::Zeroizing;

use crate::customer::{
    Customer, Issued, IssuedSource, SignatureScheme, StoredPublicKey, normalize_events, validate_id, validate_name,
    validate_webhook_url,
};
use crate::directory::Directory;
use crate::netguard::NetworkPolicy;
use crate::notices::{EndpointNotice, Notifier};
use crate::secrets::{ApiKey, ApiKeyHash, MasterKey};
use crate::{Error, Result};

/// How long a read waits for the directory to catch up with the topic.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Tenants::create_batch`] looks for its records in the directory while reading
/// them back.
const READ_BACK_POLL: Duration = Duration::from_millis(10);

/// The tenant service: a directory view plus what it takes to change it.
pub struct Tenants {
    directory: Directory,
    producer: FutureProducer,
    topic: String,
    master_key: MasterKey,
    network: NetworkPolicy,
    write_timeout: Duration,
    writes: Mutex<()>,
    /// Publishes `hookline.endpoint.disabled` and `…enabled` after those changes, when set.
    notifier: Option<Notifier>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("topic", &self.topic)
            .field("network", &self.network)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// The outcome of a signing-secret rotation.
#[derive(Debug)]
pub struct Rotated {
    pub customer: Arc<Customer>,
    /// The new secret, shown once.
    pub signing_secret: SigningSecret,
    /// When the previous secret stops signing (Unix seconds), if there was one.
    pub previous_expires_at: Option<i64>,
}

/// A customer to create, with its whole configuration: what the onboarding API, `hookline-setup
/// customers create` and each line of `customers import` give. Only `id` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCustomer {
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Where its events are POSTed (http/https, SSRF-checked by [`Tenants::check`]).
    pub webhook_url: Option<String>,
    /// Event types it receives (`*` = all); none until it subscribes.
    pub events: Vec<String>,
    /// PEM (SPKI or PKCS#1) of the RSA public key (at least 2048 bits) its deliveries are
    /// encrypted to.
    pub public_key: Option<String>,
}

impl NewCustomer {
    /// The checks that need no network: the id, name, webhook URL syntax, event types and public
    /// key. The error names the first field that is wrong.
    pub fn validate(&self) -> Result<()> {
        self.checked_offline().map(drop)
    }

    fn checked_offline(&self) -> Result<Checked> {
        validate_id(&self.id)?;
        Ok(Checked {
            id: self.id.clone(),
            name: self.name.as_deref().map(validate_name).transpose()?,
            webhook_url: self.webhook_url.as_deref().map(validate_webhook_url).transpose()?,
            events: normalize_events(self.events.clone())?,
            public_key: self.public_key.as_deref().map(StoredPublicKey::from_pem).transpose()?,
        })
    }
}

/// A [`NewCustomer`] that passed every check, the SSRF guard included, normalized (name trimmed,
/// event types de-duplicated, key in SPKI form). Only [`Tenants::check`] makes one.
#[derive(Debug, Clone)]
pub struct Checked {
    id: String,
    name: Option<String>,
    webhook_url: Option<Url>,
    events: Vec<String>,
    public_key: Option<StoredPublicKey>,
}

impl Checked {
    /// The customer id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fields given here whose value differs in `existing`, by name (`name`, `webhook_url`,
    /// `events`, `public_key`); fields not given are not compared.
    pub fn differences(&self, existing: &Customer) -> Vec<&'static str> {
        let mut differ = Vec::new();
        if self.name.is_some() && self.name != existing.name {
            differ.push("name");
        }
        if self.webhook_url.as_ref().is_some_and(|url| existing.webhook_url.as_deref() != Some(url.as_str())) {
            differ.push("webhook_url");
        }
        let sorted = |events: &[String]| {
            let mut events = events.to_vec();
            events.sort();
            events
        };
        if !self.events.is_empty() && sorted(&self.events) != sorted(&existing.events) {
            differ.push("events");
        }
        if self.public_key.as_ref().is_some_and(|key| existing.public_key.as_ref().map(|k| &k.kid) != Some(&key.kid)) {
            differ.push("public_key");
        }
        differ
    }

    /// The record to write, with fresh credentials.
    fn onboard(&self, master_key: &MasterKey) -> Result<Issued> {
        let mut issued = Customer::onboard(&self.id, self.name.as_deref(), master_key)?;
        issued.customer.webhook_url = self.webhook_url.as_ref().map(|url| url.as_str().to_owned());
        issued.customer.events.clone_from(&self.events);
        issued.customer.public_key.clone_from(&self.public_key);
        Ok(issued)
    }
}

/// What [`Tenants::create_batch`] did with one customer.
#[derive(Debug)]
pub enum Created {
    /// Written and acknowledged; the credentials are shown this once.
    Issued(Box<Issued>),
    /// A record with this id exists already (a customer or an inbound source): nothing written,
    /// no credentials issued.
    Exists(Arc<Customer>),
    /// Not written, or the broker did not acknowledge it: why. The id given twice in one batch
    /// is [`Error::CustomerExists`] for the second.
    Failed(Error),
}

/// The outcome of [`Tenants::create_batch`].
#[derive(Debug)]
pub struct Batch {
    /// One per customer given, in the order given.
    pub created: Vec<Created>,
    /// `Ok` once the directory holds every record written (read back by id); else why not. The
    /// records were acknowledged either way, so their credentials are valid.
    pub read_back: Result<()>,
}

impl Tenants {
    /// A tenant service writing to `topic` (the customers topic `directory` follows).
    pub fn new(
        directory: Directory,
        producer: FutureProducer,
        topic: impl Into<String>,
        master_key: MasterKey,
        network: NetworkPolicy,
        write_timeout: Duration,
    ) -> Self {
        Self {
            directory,
            producer,
            topic: topic.into(),
            master_key,
            network,
            write_timeout,
            writes: Mutex::new(()),
            notifier: None,
        }
    }

    /// Publishes an operational event after each disable and each enable ([`crate::notices`]).
    #[must_use]
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Publishes `notice` if this service has a notifier; the change it reports stands either way.
    async fn notify(&self, notice: EndpointNotice) {
        if let Some(notifier) = &self.notifier {
            notifier.publish(&notice).await;
        }
    }

    /// The directory view this service reads.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The network policy webhook URLs are checked against.
    pub fn network(&self) -> &NetworkPolicy {
        &self.network
    }

    /// Creates a customer with a fresh API key and signing secret, returned once.
    pub async fn create(&self, id: &str, name: Option<&str>) -> Result<Issued> {
        let new = NewCustomer { id: id.to_owned(), name: name.map(str::to_owned), ..NewCustomer::default() };
        self.create_customer(&new).await
    }

    /// Creates a customer with its whole configuration in one record, after every check of
    /// [`Tenants::check`]; its fresh API key and signing secret are returned once.
    pub async fn create_customer(&self, new: &NewCustomer) -> Result<Issued> {
        let checked = self.check(new).await?;
        let Batch { mut created, read_back } = self.create_batch(std::slice::from_ref(&checked)).await?;
        read_back?;
        match created.pop() {
            Some(Created::Issued(issued)) => Ok(*issued),
            Some(Created::Failed(error)) => Err(error),
            Some(Created::Exists(_)) | None => Err(Error::CustomerExists(new.id.clone())),
        }
    }

    /// Every check a new customer must pass: [`NewCustomer::validate`], then the SSRF guard on
    /// its webhook URL (which resolves the host: the URL must not reach a blocked network now;
    /// the consumer checks again at every delivery, since DNS can change).
    pub async fn check(&self, new: &NewCustomer) -> Result<Checked> {
        let checked = new.checked_offline()?;
        if let Some(url) = &checked.webhook_url {
            self.network.check_url(url).await?;
        }
        Ok(checked)
    }

    /// Creates the customers whose id is not taken, each with fresh credentials, in one go: the
    /// directory is caught up once, every record is handed to the producer at once and the
    /// acknowledgements are awaited together, then each record is read back through the
    /// directory by id (not by the topic's high watermark, which a broker may undercount after
    /// batched writes). A customer whose id exists is left alone ([`Created::Exists`]).
    ///
    /// `Err` only when nothing was written (the directory could not catch up); a record the
    /// broker refused is [`Created::Failed`], the others are created regardless.
    pub async fn create_batch(&self, customers: &[Checked]) -> Result<Batch> {
        let _write = self.writes.lock().await;
        self.sync().await?;
        let mut created = Vec::with_capacity(customers.len());
        let mut values = Vec::new();
        let mut ids = HashSet::new();
        for checked in customers {
            if let Some(existing) = self.directory.get(&checked.id) {
                created.push(Created::Exists(existing));
            } else if !ids.insert(checked.id.as_str()) {
                created.push(Created::Failed(Error::CustomerExists(checked.id.clone())));
            } else {
                let index = created.len();
                let encoded = match checked.onboard(&self.master_key) {
                    Ok(issued) => match self.encode(&issued.customer).await {
                        Ok(value) => Ok((issued, value)),
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                };
                created.push(match encoded {
                    Ok((issued, value)) => {
                        values.push((index, value));
                        Created::Issued(Box::new(issued))
                    }
                    Err(error) => Created::Failed(error),
                });
            }
        }
        let records: Vec<(&str, &[u8])> =
            values.iter().map(|(index, value)| (customers[*index].id.as_str(), value.as_slice())).collect();
        let acks = self.send_all(&records).await;
        for ((index, _), ack) in values.iter().zip(acks) {
            if let Err(error) = ack {
                created[*index] = Created::Failed(error);
            }
        }
        let written: Vec<(&str, &ApiKeyHash)> = created
            .iter()
            .filter_map(|c| match c {
                Created::Issued(issued) => Some((issued.customer.id.as_str(), issued.customer.api_key.as_ref()?)),
                _ => None,
            })
            .collect();
        let read_back = self.read_back(&written).await;
        if !written.is_empty() {
            tracing::info!(customers = written.len(), "customers created");
        }
        Ok(Batch { created, read_back })
    }

    /// The customer with this id, after catching up with the topic.
    pub async fn get(&self, id: &str) -> Result<Arc<Customer>> {
        validate_id(id)?;
        self.sync().await?;
        self.customer(id)
    }

    /// Every customer (inbound sources excepted), ordered by id, after catching up with the topic.
    pub async fn list(&self) -> Result<Vec<Arc<Customer>>> {
        self.sync().await?;
        Ok(self.directory.all().into_iter().filter(|c| !c.is_source()).collect())
    }

    /// Deletes a customer (a tombstone); its events still queued are dead-lettered.
    pub async fn delete(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let _write = self.writes.lock().await;
        self.sync().await?;
        self.customer(id)?;
        self.write(id, None).await?;
        tracing::info!(customer = id, "customer deleted");
        Ok(())
    }

    /// Adds an inbound source (see [`Customer::source`]); its secrets are returned once.
    pub async fn add_source(
        &self,
        id: &str,
        scheme: SignatureScheme,
        endpoint: &str,
        secret: Option<&str>,
    ) -> Result<IssuedSource> {
        let issued = Customer::source(id, scheme, endpoint, secret, &self.master_key)?;
        let _write = self.writes.lock().await;
        self.sync().await?;
        if self.directory.get(id).is_some() {
            return Err(Error::CustomerExists(id.to_owned()));
        }
        // The configured framing, like every other tenant write (a source written in
        // single-object framing under a schema registry was a record the registry never saw).
        let value = self.encode(&issued.source).await?;
        self.write(id, Some(value)).await?;
        tracing::info!(source = id, %scheme, "inbound source added");
        Ok(issued)
    }

    /// Every inbound source, ordered by id, after catching up with the topic.
    pub async fn sources(&self) -> Result<Vec<Arc<Customer>>> {
        self.sync().await?;
        Ok(self.directory.all().into_iter().filter(|c| c.is_source()).collect())
    }

    /// Removes an inbound source (a tombstone); its events still queued are dead-lettered.
    pub async fn remove_source(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let _write = self.writes.lock().await;
        self.sync().await?;
        if !self.directory.get(id).is_some_and(|c| c.is_source()) {
            return Err(Error::UnknownSource(id.to_owned()));
        }
        self.write(id, None).await?;
        tracing::info!(source = id, "inbound source removed");
        Ok(())
    }

    /// The sender's secret of an inbound source record, opened with the master key.
    pub fn inbound_secret(&self, source: &Customer) -> Result<Zeroizing<String>> {
        source.inbound_secret(&self.master_key)?.ok_or_else(|| Error::UnknownSource(source.id.clone()))
    }

    /// The customer `id` as last read; inbound sources are not customers.
    fn customer(&self, id: &str) -> Result<Arc<Customer>> {
        self.directory.get(id).filter(|c| !c.is_source()).ok_or_else(|| Error::UnknownCustomer(id.to_owned()))
    }

    /// The customer this API key belongs to, if any (constant-time hash comparison).
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<Arc<Customer>>> {
        self.directory.by_api_key_fresh(api_key, SYNC_TIMEOUT).await
    }

    /// Sets the webhook URL after the syntax and SSRF checks (the URL must not reach a blocked
    /// network now; the consumer checks again at every delivery, since DNS can change).
    pub async fn set_webhook_url(&self, id: &str, url: &str) -> Result<Arc<Customer>> {
        let parsed = validate_webhook_url(url)?;
        self.network.check_url(&parsed).await?;
        let (customer, enabled) = self
            .update(id, |customer| {
                let was_disabled = customer.disabled.is_some();
                customer.set_webhook_url(Some(parsed.as_str()))?;
                Ok(was_disabled)
            })
            .await?;
        if enabled {
            tracing::info!(customer = id, "endpoint enabled by a new webhook URL");
            self.notify(EndpointNotice::enabled(id, SystemTime::now())).await;
        }
        Ok(customer)
    }

    /// Disables the customer's endpoint for `reason` (its deliveries go to the DLQ without a
    /// request until it is enabled again); an endpoint disabled already is left as it is.
    /// Whether this call disabled it.
    pub async fn disable(&self, id: &str, reason: &str) -> Result<(Arc<Customer>, bool)> {
        let (customer, changed) =
            self.update(id, |customer| Ok(customer.disable(crate::customer::unix_now(), reason))).await?;
        if changed {
            tracing::warn!(customer = id, reason, "endpoint disabled");
            self.notify(EndpointNotice::disabled(id, SystemTime::now(), reason)).await;
        }
        Ok((customer, changed))
    }

    /// Enables the customer's endpoint again. Whether it was disabled.
    pub async fn enable(&self, id: &str) -> Result<(Arc<Customer>, bool)> {
        let (customer, changed) = self.update(id, |customer| Ok(customer.enable())).await?;
        if changed {
            tracing::info!(customer = id, "endpoint enabled");
            self.notify(EndpointNotice::enabled(id, SystemTime::now())).await;
        }
        Ok((customer, changed))
    }

    /// Sets (or, with `None`, removes) the most deliveries per second to the customer's endpoint.
    pub async fn set_rate_limit(&self, id: &str, per_second: Option<u32>) -> Result<Arc<Customer>> {
        let (customer, ()) = self.update(id, |customer| customer.set_rate_limit(per_second)).await?;
        tracing::info!(customer = id, ?per_second, "rate limit set");
        Ok(customer)
    }

    /// Replaces the subscriptions.
    pub async fn set_events(&self, id: &str, events: Vec<String>) -> Result<Arc<Customer>> {
        self.update(id, |customer| customer.set_events(events)).await.map(|(c, ())| c)
    }

    /// Sets the public key deliveries are encrypted to (PEM, SPKI or PKCS#1, RSA ≥ 2048 bits).
    pub async fn set_public_key(&self, id: &str, pem: &str) -> Result<Arc<Customer>> {
        // Parsed before taking the write lock: a bad key is the caller's error, not a write.
        let key = StoredPublicKey::from_pem(pem)?;
        self.update(id, |customer| {
            customer.set_public_key(key);
            Ok(())
        })
        .await
        .map(|(c, ())| c)
    }

    /// Removes the public key: deliveries are sent unencrypted from then on.
    pub async fn clear_public_key(&self, id: &str) -> Result<Arc<Customer>> {
        self.update(id, |customer| {
            customer.clear_public_key();
            Ok(())
        })
        .await
        .map(|(c, ())| c)
    }

    /// Adds a new signing secret; the previous ones keep signing for `grace`.
    pub async fn rotate_signing_secret(&self, id: &str, grace: Duration) -> Result<Rotated> {
        let master_key = &self.master_key;
        let (customer, (signing_secret, previous_expires_at)) =
            self.update(id, |customer| Ok(customer.rotate_signing_secret(master_key, grace))).await?;
        tracing::info!(customer = id, ?grace, "signing secret rotated");
        Ok(Rotated { customer, signing_secret, previous_expires_at })
    }

    /// Issues a new API key; the old one stops working at once.
    pub async fn reissue_api_key(&self, id: &str) -> Result<(Arc<Customer>, ApiKey)> {
        let result = self.update(id, |customer| Ok(customer.reissue_api_key())).await?;
        tracing::info!(customer = id, "API key reissued");
        Ok(result)
    }

    /// Applies `change` to the current record of customer `id` and writes the result.
    pub async fn update<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Customer) -> Result<T>,
    ) -> Result<(Arc<Customer>, T)> {
        validate_id(id)?;
        let _write = self.writes.lock().await;
        self.sync().await?;
        let current = self.customer(id)?;
        let mut customer = Customer::clone(&current);
        let outcome = change(&mut customer)?;
        let value = self.encode(&customer).await?;
        self.write(id, Some(value)).await?;
        let written = self.directory.get(id).ok_or_else(|| Error::UnknownCustomer(id.to_owned()))?;
        Ok((written, outcome))
    }

    async fn sync(&self) -> Result<()> {
        tokio::time::timeout(SYNC_TIMEOUT, self.directory.sync())
            .await
            .map_err(|_| Error::Timeout(SYNC_TIMEOUT, "the customer directory to catch up"))?
    }

    /// The record value, encoded with the directory's codec (Avro; through the schema registry
    /// when one is configured).
    async fn encode(&self, customer: &Customer) -> Result<Vec<u8>> {
        self.directory.codec().encode_customer(&self.topic, customer).await
    }

    /// Writes one record, waits for its acknowledgement, then for the directory to apply it.
    async fn write(&self, id: &str, value: Option<Vec<u8>>) -> Result<()> {
        let written = self.send(id, value.as_deref()).await?;
        tokio::time::timeout(SYNC_TIMEOUT, self.directory.sync_to(written.partition, written.offset))
            .await
            .map_err(|_| Error::Timeout(SYNC_TIMEOUT, "the customer directory to catch up"))?
    }

    /// Writes one record and waits for its acknowledgement: where the broker put it.
    async fn send(&self, id: &str, value: Option<&[u8]>) -> Result<Delivery> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(id);
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer.send(record, self.write_timeout).await.map_err(|(error, _)| Error::Kafka(error))
    }

    /// Writes `(id, value)` records and returns each one's acknowledgement, in order. All but the
    /// last are in flight together; the last is written alone once they are acknowledged, so
    /// the write ends with a batch of one record: a broker that counts its high watermark from
    /// the first record of the last batch (tansu 0.6 does) then still reports the true end, and
    /// the next process to load the directory up to that watermark sees every record.
    async fn send_all(&self, records: &[(&str, &[u8])]) -> Vec<Result<()>> {
        let Some(((last_id, last_value), together)) = records.split_last() else { return Vec::new() };
        let mut acks: Vec<Result<()>> = Vec::with_capacity(records.len());
        let mut in_flight: VecDeque<(usize, DeliveryFuture)> = VecDeque::with_capacity(together.len());
        for (index, (id, value)) in together.iter().enumerate() {
            acks.push(Ok(()));
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(*id).payload(*value);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push_back((index, delivery));
                        break;
                    }
                    // The producer's queue is full: wait for the oldest record, then try again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                        if !in_flight.is_empty() =>
                    {
                        if let Some((oldest, delivery)) = in_flight.pop_front() {
                            acks[oldest] = acknowledged(delivery).await;
                        }
                        record = returned;
                    }
                    Err((error, _)) => {
                        acks[index] = Err(Error::Kafka(error));
                        break;
                    }
                }
            }
        }
        for (index, delivery) in in_flight {
            acks[index] = acknowledged(delivery).await;
        }
        acks.push(self.send(last_id, Some(*last_value)).await.map(drop));
        acks
    }

    /// Waits until the directory holds each of these records (found by id, told apart from an
    /// older record of the id by the API key hash), within [`SYNC_TIMEOUT`].
    async fn read_back(&self, written: &[(&str, &ApiKeyHash)]) -> Result<()> {
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        let mut pending = written.to_vec();
        loop {
            pending.retain(|(id, hash)| self.directory.get(id).is_none_or(|c| c.api_key.as_ref() != Some(*hash)));
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(SYNC_TIMEOUT, "the new customers to appear in the customer directory"));
            }
            tokio::time::sleep(READ_BACK_POLL).await;
        }
    }
}

/// The broker's answer to one record.
async fn acknowledged(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(Error::Kafka(error)),
        Err(_canceled) => Err(Error::Kafka(KafkaError::Canceled)),
    }
}

#[cfg(test)]
mod tests {
    use hookline_wire::PrivateKey;

    use super::*;

    fn public_pem() -> String {
        PrivateKey::generate(2048).expect("a test key").public_key().to_spki_pem()
    }

    fn new_customer(id: &str) -> NewCustomer {
        NewCustomer { id: id.into(), ..NewCustomer::default() }
    }

    #[test]
    fn a_new_customer_is_checked_field_by_field() {
        let full = NewCustomer {
            id: "acme".into(),
            name: Some("  Acme  ".into()),
            webhook_url: Some("https://hooks.acme.example/in?token=t".into()),
            events: vec!["b".into(), " a".into(), "b".into()],
            public_key: Some(public_pem()),
        };
        let checked = full.checked_offline().expect("valid");
        assert_eq!(checked.id(), "acme");
        assert_eq!(checked.name.as_deref(), Some("Acme"));
        assert_eq!(checked.events, ["b", "a"]);
        assert!(new_customer("only-an-id").validate().is_ok());

        let bad = [
            (NewCustomer { id: "bad id".into(), ..full.clone() }, "id"),
            (NewCustomer { name: Some("\u{7}".into()), ..full.clone() }, "name"),
            (NewCustomer { webhook_url: Some("ftp://x/".into()), ..full.clone() }, "webhook_url"),
            (NewCustomer { events: vec!["bad type".into()], ..full.clone() }, "events"),
            (NewCustomer { public_key: Some("not a key".into()), ..full.clone() }, "public_key"),
        ];
        for (customer, expected) in bad {
            match customer.validate() {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, expected, "{customer:?}"),
                other => panic!("{customer:?}: expected invalid {expected}, got {other:?}"),
            }
        }
    }

    #[test]
    fn one_record_holds_the_whole_configuration_and_fresh_credentials() {
        let master = MasterKey::generate();
        let pem = public_pem();
        let checked = NewCustomer {
            id: "acme".into(),
            name: Some("Acme".into()),
            webhook_url: Some("https://hooks.acme.example/in".into()),
            events: vec!["order.created".into()],
            public_key: Some(pem.clone()),
        }
        .checked_offline()
        .expect("valid");
        let first = checked.onboard(&master).expect("onboard");
        let customer = &first.customer;
        assert_eq!(customer.webhook_url.as_deref(), Some("https://hooks.acme.example/in"));
        assert_eq!(customer.events, ["order.created"]);
        assert_eq!(customer.public_key, Some(StoredPublicKey::from_pem(&pem).expect("key")));
        assert!(customer.api_key.as_ref().is_some_and(|hash| hash.matches(first.api_key.expose())));
        let secrets = customer.active_signing_secrets(&master, crate::customer::unix_now()).expect("opens");
        assert_eq!(secrets[0].expose(), first.signing_secret.expose());
        let second = checked.onboard(&master).expect("onboard");
        assert_ne!(second.api_key.expose(), first.api_key.expose(), "every record gets its own credentials");
    }

    #[test]
    fn differences_name_the_given_fields_that_differ() {
        let master = MasterKey::generate();
        let given = NewCustomer {
            id: "acme".into(),
            name: Some("Acme".into()),
            webhook_url: Some("https://hooks.acme.example/in".into()),
            events: vec!["a".into(), "b".into()],
            public_key: None,
        }
        .checked_offline()
        .expect("valid");
        let mut stored = given.onboard(&master).expect("onboard").customer;
        assert!(given.differences(&stored).is_empty());
        stored.events = vec!["b".into(), "a".into()];
        assert!(given.differences(&stored).is_empty(), "order of subscriptions does not matter");
        stored.public_key = Some(StoredPublicKey::from_pem(&public_pem()).expect("key"));
        assert!(given.differences(&stored).is_empty(), "a field not given is not compared");
        stored.webhook_url = Some("https://elsewhere.example/".into());
        stored.events = vec!["a".into()];
        stored.name = None;
        assert_eq!(given.differences(&stored), ["name", "webhook_url", "events"]);
        let keyed = NewCustomer { public_key: Some(public_pem()), ..new_customer("acme") }.checked_offline().unwrap();
        assert_eq!(keyed.differences(&stored), ["public_key"]);
    }
}

//! Tenant operations, shared by the publisher's onboarding API and the setup CLI, so that both
//! enforce the same rules: create a customer (issuing its API key and signing secret), change its
//! webhook URL (SSRF-checked), subscriptions or public key, rotate its signing secret, delete it;
//! and add, list and remove inbound sources (records with [`Customer::inbound`] set, which the
//! customer operations treat as unknown, so neither can be changed through the other's API).
//!
//! Every change is a read-modify-write of the customer's record in the compacted customers
//! topic: the [`Directory`] is caught up first (so a change made through another replica a
//! moment ago is not overwritten), the new record is written with the shared producer and
//! acknowledged, and the directory is caught up again before returning, so that the caller reads
//! its own write. Writes through one [`Tenants`] are serialized; two replicas changing the same
//! customer at the same instant are last-writer-wins (changes are rare, human-driven
//! operations).

use std::sync::Arc;
use std::time::Duration;

use hookline_wire::signing::SigningSecret;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::Mutex;

use zeroize::Zeroizing;

use crate::customer::{
    Customer, Issued, IssuedSource, SignatureScheme, StoredPublicKey, validate_id, validate_webhook_url,
};
use crate::directory::Directory;
use crate::netguard::NetworkPolicy;
use crate::secrets::{ApiKey, MasterKey};
use crate::{Error, Result};

/// How long a read waits for the directory to catch up with the topic.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The tenant service: a directory view plus what it takes to change it.
pub struct Tenants {
    directory: Directory,
    producer: FutureProducer,
    topic: String,
    master_key: MasterKey,
    network: NetworkPolicy,
    write_timeout: Duration,
    writes: Mutex<()>,
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
        Self { directory, producer, topic: topic.into(), master_key, network, write_timeout, writes: Mutex::new(()) }
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
        let issued = Customer::onboard(id, name, &self.master_key)?;
        let _write = self.writes.lock().await;
        self.sync().await?;
        if self.directory.get(id).is_some() {
            return Err(Error::CustomerExists(id.to_owned()));
        }
        self.write(&issued.customer.id, Some(issued.customer.to_bytes())).await?;
        tracing::info!(customer = id, "customer created");
        Ok(issued)
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
        self.write(id, Some(issued.source.to_bytes())).await?;
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
        self.update(id, |customer| customer.set_webhook_url(Some(parsed.as_str()))).await.map(|(c, ())| c)
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
        self.write(id, Some(customer.to_bytes())).await?;
        let written = self.directory.get(id).ok_or_else(|| Error::UnknownCustomer(id.to_owned()))?;
        Ok((written, outcome))
    }

    async fn sync(&self) -> Result<()> {
        tokio::time::timeout(SYNC_TIMEOUT, self.directory.sync())
            .await
            .map_err(|_| Error::Timeout(SYNC_TIMEOUT, "the customer directory to catch up"))?
    }

    /// Writes one record, waits for its acknowledgement, then for the directory to apply it.
    async fn write(&self, id: &str, value: Option<Vec<u8>>) -> Result<()> {
        let mut record: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(&self.topic).key(id);
        if let Some(value) = value.as_ref() {
            record = record.payload(value);
        }
        self.producer.send(record, self.write_timeout).await.map_err(|(error, _)| Error::Kafka(error))?;
        self.sync().await
    }
}

//! Turns an event into the exact bytes of one attempt for one customer: the JSON envelope,
//! encrypted to the customer's RSA key as a JWE when it uploaded one, then signed (Standard
//! Webhooks) with every active signing secret.
//!
//! This runs before every attempt, not once per record, so a key uploaded or a secret rotated
//! while a record is being retried applies to its next attempt. It stays cheap: RSA runs once per
//! content key (see [`hookline_wire::jwe`]), not per message, so an attempt costs one AES-GCM
//! pass over the body and one HMAC per active secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use bytes::Bytes;
use hookline_core::customer::Customer;
use hookline_core::secrets::MasterKey;
use hookline_wire::jwe::{self, ContentKeyPolicy, Encryptor};
use hookline_wire::keys::PublicKey;
use hookline_wire::signing::{SigningSecret, signature_header};

/// Parsed public keys kept at most; beyond this the cache starts over (it only saves parsing).
const MAX_CACHED_KEYS: usize = 10_000;
/// Opened signing secrets kept at most; beyond this the cache starts over.
const MAX_CACHED_SECRETS: usize = 10_000;

/// A customer id and the SHA-256 of its stored public key PEM.
type KeyCacheKey = (String, [u8; 32]);

/// The wire form of one attempt.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub body: Bytes,
    pub content_type: &'static str,
    /// The full `webhook-signature` header value.
    pub signature: String,
    /// The `webhook-timestamp` the signature covers.
    pub timestamp: i64,
}

/// Why an attempt could not be prepared, with a message safe to log and to put in DLQ headers.
/// [`crate::decision::decide`] dead-letters such a record: it is never sent unsigned or
/// unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// No active signing secret, or the master key does not open it.
    Signing(String),
    /// The customer's stored public key is unusable, or encrypting to it failed.
    Encryption(String),
}

impl SealError {
    /// A bounded label for logs: `signing` or `encryption`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Signing(_) => "signing",
            Self::Encryption(_) => "encryption",
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        match self {
            Self::Signing(message) | Self::Encryption(message) => message,
        }
    }
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Encrypts and signs deliveries; shared by every partition worker.
#[derive(Debug)]
pub struct Sealer {
    master_key: MasterKey,
    encryptor: Encryptor,
    /// Public keys by customer and by a digest of the stored PEM, so that a key is parsed once,
    /// not per attempt. Never by the stored `kid`: that is a label on the record, and a record
    /// whose label names another key must still be encrypted to its own key (the kid sent is
    /// computed from the parsed key).
    keys: Mutex<HashMap<KeyCacheKey, Arc<PublicKey>>>,
    /// Opened signing secrets by customer and sealed text, so that a secret is opened (AES-GCM,
    /// then parsed) once, not per attempt: that was a twentieth of a delivery's CPU
    /// (BENCHMARKS.md). The customer is part of the key because opening is what checks that a
    /// sealed text belongs to its record (the customer id is its associated data): a sealed
    /// secret copied onto another customer's record must fail to open there, not be found in the
    /// cache. A rotation seals a new text, so an entry never goes stale. The secrets are wiped
    /// when dropped.
    secrets: Mutex<HashMap<(String, String), SigningSecret>>,
}

impl Sealer {
    /// A sealer opening signing secrets with `master_key`.
    pub fn new(master_key: MasterKey, policy: ContentKeyPolicy) -> Self {
        Self { master_key, encryptor: Encryptor::new(policy), keys: Mutex::default(), secrets: Mutex::default() }
    }

    /// The request body, content type and signature of an attempt at `timestamp` (Unix seconds)
    /// to deliver event `event_id` (the `webhook-id` the signature covers).
    pub fn seal(
        &self,
        customer: &Customer,
        event_id: &str,
        envelope: &[u8],
        timestamp: i64,
    ) -> Result<Sealed, SealError> {
        let secrets = self.signing_secrets(customer, timestamp)?;
        if secrets.is_empty() {
            return Err(SealError::Signing(format!("customer `{}` has no active signing secret", customer.id)));
        }
        let (body, content_type) = match &customer.public_key {
            None => (Bytes::copy_from_slice(envelope), "application/json"),
            Some(stored) => {
                let key = self.public_key(&customer.id, &stored.pem)?;
                let compact = self
                    .encryptor
                    .encrypt(&key, envelope)
                    .map_err(|error| SealError::Encryption(format!("cannot encrypt to key {}: {error}", key.kid())))?;
                (Bytes::from(compact), jwe::CONTENT_TYPE)
            }
        };
        let signature = signature_header(&secrets, event_id, timestamp, &body);
        Ok(Sealed { body, content_type, signature, timestamp })
    }

    /// The customer's signing secrets active at `now`, opened (from the cache when they were
    /// opened before).
    fn signing_secrets(&self, customer: &Customer, now: i64) -> Result<Vec<SigningSecret>, SealError> {
        let mut cache = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        customer
            .active_sealed_secrets(now)
            .map(|sealed| {
                let key = (customer.id.clone(), sealed.sealed.clone());
                if let Some(secret) = cache.get(&key) {
                    return Ok(secret.clone());
                }
                let secret = customer
                    .open_signing_secret(&self.master_key, sealed)
                    .map_err(|error| SealError::Signing(format!("cannot open the signing secret: {error}")))?;
                if cache.len() >= MAX_CACHED_SECRETS {
                    cache.clear();
                }
                cache.insert(key, secret.clone());
                Ok(secret)
            })
            .collect()
    }

    /// `customer`'s key, parsed from `pem`. Shared, not cloned: an RSA key is a few
    /// heap-allocated big integers.
    fn public_key(&self, customer: &str, pem: &str) -> Result<Arc<PublicKey>, SealError> {
        let cache_key = (customer.to_owned(), <[u8; 32]>::from(Sha256::digest(pem.as_bytes())));
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(&cache_key) {
            return Ok(Arc::clone(key));
        }
        let key = PublicKey::from_pem(pem)
            .map_err(|error| SealError::Encryption(format!("the customer's stored public key is unusable: {error}")))?;
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        let key = Arc::new(key);
        keys.insert(cache_key, Arc::clone(&key));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_the_secrets_active_at_the_time_even_when_opened_ones_are_cached() {
        let master = MasterKey::generate();
        let sealer = Sealer::new(master.clone(), ContentKeyPolicy::default());
        let mut customer = Customer::new("c-1", "https://example.com/hook", vec!["*".into()]).unwrap();
        let (first, _) = customer.rotate_signing_secret(&master, std::time::Duration::ZERO);
        let now = hookline_core::customer::unix_now();
        let sealed = sealer.seal(&customer, "evt_1", b"{}", now).unwrap();
        assert_eq!(sealed.signature, signature_header(std::slice::from_ref(&first), "evt_1", now, b"{}"));
        let again = sealer.seal(&customer, "evt_2", b"{}", now).unwrap();
        assert_eq!(again.signature, signature_header(std::slice::from_ref(&first), "evt_2", now, b"{}"));

        // A rotation with a grace period: both sign until the old one expires, then the new one.
        let (second, expires) = customer.rotate_signing_secret(&master, std::time::Duration::from_secs(60));
        let during = sealer.seal(&customer, "evt_3", b"{}", now).unwrap();
        assert_eq!(during.signature, signature_header(&[second.clone(), first], "evt_3", now, b"{}"));
        let after = expires.unwrap() + 1;
        let later = sealer.seal(&customer, "evt_4", b"{}", after).unwrap();
        assert_eq!(later.signature, signature_header(&[second], "evt_4", after, b"{}"));

        // A secret that cannot be opened is refused, cached or not.
        let other = Sealer::new(MasterKey::generate(), ContentKeyPolicy::default());
        let refused = other.seal(&customer, "evt_5", b"{}", now).unwrap_err();
        assert!(matches!(refused, SealError::Signing(_)), "{refused:?}");
    }

    #[test]
    fn a_sealed_secret_copied_onto_another_customer_does_not_sign_for_it() {
        let master = MasterKey::generate();
        let sealer = Sealer::new(master.clone(), ContentKeyPolicy::default());
        let mut acme = Customer::new("acme", "https://example.com/hook", vec!["*".into()]).unwrap();
        acme.rotate_signing_secret(&master, std::time::Duration::ZERO);
        let now = hookline_core::customer::unix_now();
        // Opened once for acme, so it is in the cache.
        sealer.seal(&acme, "evt_1", b"{}", now).unwrap();

        let mut mallory = Customer::new("mallory", "https://example.com/hook", vec!["*".into()]).unwrap();
        mallory.signing_secrets = acme.signing_secrets.clone();
        let refused = sealer.seal(&mallory, "evt_1", b"{}", now).unwrap_err();
        assert!(matches!(refused, SealError::Signing(_)), "{refused:?}");
    }

    #[test]
    fn encrypts_to_the_stored_key_whatever_kid_the_record_claims() {
        use hookline_core::customer::StoredPublicKey;
        use hookline_wire::jwe::Decryptor;
        use hookline_wire::keys::PrivateKey;

        let master = MasterKey::generate();
        let sealer = Sealer::new(master.clone(), ContentKeyPolicy::default());
        let (first, second) = (PrivateKey::generate(2048).unwrap(), PrivateKey::generate(2048).unwrap());
        let customer = |id: &str, key: &PrivateKey| {
            let mut customer = Customer::new(id, "https://example.com/hook", vec!["*".into()]).unwrap();
            customer.rotate_signing_secret(&master, std::time::Duration::ZERO);
            customer.set_public_key(StoredPublicKey::from_pem(&key.public_key().to_spki_pem()).unwrap());
            customer
        };
        let now = hookline_core::customer::unix_now();
        let acme = customer("acme", &first);
        sealer.seal(&acme, "evt_1", b"{}", now).unwrap();

        // A record holding the second key but labelled with the first key's kid.
        let mut relabelled = customer("globex", &second);
        relabelled.public_key.as_mut().unwrap().kid = first.kid().to_owned();
        let sealed = sealer.seal(&relabelled, "evt_2", b"{\"n\":2}", now).unwrap();
        let compact = std::str::from_utf8(&sealed.body).unwrap();
        assert_eq!(Decryptor::new(second).decrypt(compact).unwrap(), b"{\"n\":2}");
        assert!(Decryptor::new(first).decrypt(compact).is_err(), "must not be readable with the other key");
    }
}

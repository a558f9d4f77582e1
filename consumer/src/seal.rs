//! Turns an event into the exact bytes of one attempt for one customer: the JSON envelope,
//! encrypted to the customer's RSA key as a JWE when it uploaded one, then signed (Standard
//! Webhooks) with every active signing secret.
//!
//! This runs before every attempt, not once per record, so a key uploaded or a secret rotated
//! while a record is being retried applies to its next attempt. It stays cheap: RSA runs once per
//! content key (see [`hookline_wire::jwe`]), not per message, so an attempt costs one AES-GCM
//! pass over the body and one HMAC per active secret.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use hookline_core::customer::Customer;
use hookline_core::secrets::MasterKey;
use hookline_wire::jwe::{self, ContentKeyPolicy, Encryptor};
use hookline_wire::keys::PublicKey;
use hookline_wire::signing::signature_header;

use crate::dlq::DlqReason;

/// Parsed public keys kept at most; beyond this the cache starts over (it only saves parsing).
const MAX_CACHED_KEYS: usize = 10_000;

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

/// Why an attempt could not be prepared; such a record is dead-lettered, never sent unsigned or
/// unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealError {
    pub reason: DlqReason,
    pub error: String,
}

/// Encrypts and signs deliveries; shared by every partition worker.
#[derive(Debug)]
pub struct Sealer {
    master_key: MasterKey,
    encryptor: Encryptor,
    /// Public keys by kid, so that a key is parsed once, not per attempt.
    keys: Mutex<HashMap<String, PublicKey>>,
}

impl Sealer {
    /// A sealer opening signing secrets with `master_key`.
    pub fn new(master_key: MasterKey, policy: ContentKeyPolicy) -> Self {
        Self { master_key, encryptor: Encryptor::new(policy), keys: Mutex::default() }
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
        let secrets = customer.active_signing_secrets(&self.master_key, timestamp).map_err(|error| SealError {
            reason: DlqReason::SigningFailed,
            error: format!("cannot open the signing secret: {error}"),
        })?;
        if secrets.is_empty() {
            return Err(SealError {
                reason: DlqReason::SigningFailed,
                error: format!("customer `{}` has no active signing secret", customer.id),
            });
        }
        let (body, content_type) = match &customer.public_key {
            None => (Bytes::copy_from_slice(envelope), "application/json"),
            Some(stored) => {
                let key = self.public_key(&stored.kid, &stored.pem)?;
                let compact = self.encryptor.encrypt(&key, envelope).map_err(|error| SealError {
                    reason: DlqReason::EncryptionFailed,
                    error: format!("cannot encrypt to key {}: {error}", stored.kid),
                })?;
                (Bytes::from(compact), jwe::CONTENT_TYPE)
            }
        };
        let signature = signature_header(&secrets, event_id, timestamp, &body);
        Ok(Sealed { body, content_type, signature, timestamp })
    }

    fn public_key(&self, kid: &str, pem: &str) -> Result<PublicKey, SealError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(kid) {
            return Ok(key.clone());
        }
        let key = PublicKey::from_pem(pem).map_err(|error| SealError {
            reason: DlqReason::EncryptionFailed,
            error: format!("the customer's stored public key is unusable: {error}"),
        })?;
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(kid.to_owned(), key.clone());
        Ok(key)
    }
}

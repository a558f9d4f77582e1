//! Authenticating deliveries before anything in them is trusted.
//!
//! A [`Verifier`] gets the request headers and the raw body and returns the plaintext body to
//! parse, with how it arrived ([`Opened`]), or why the delivery is refused (answered 401). Two
//! exist:
//!
//! - [`DeliveryVerifier`], what a real endpoint does: it checks the Standard Webhooks signature
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature`; any of several secrets during a
//!   rotation; timestamp within a tolerance, 5 minutes by default; constant-time comparison)
//!   over the body *as received*, and only then, when the body is a JWE
//!   (`content-type: application/jose`), decrypts it with the receiver's private key. Nothing is
//!   decrypted or parsed before it is known to come from the holder of the signing secret.
//! - [`AcceptUnverified`], the demo's default: trusts everything.
//!
//! Plain JSON bodies are accepted by a receiver that has a private key, unless
//! [`DeliveryVerifier::require_encryption`] says otherwise: Hookline encrypts only for customers
//! who uploaded a public key, so a receiver must be able to start with its key before the upload
//! takes effect (and keep working if the key is withdrawn). The body is authentic either way;
//! requiring encryption is for endpoints whose data must never travel in clear text, once the
//! key is known to be in place.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use hookline_wire::{Decryptor, PrivateKey, SignatureVerifier};

use crate::error::VerifyError;

/// A delivery a [`Verifier`] let through: the body to parse, and how it arrived (what the
/// receiver counts in `/stats` and shows with `--print`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The plaintext body: decrypted when it arrived as a JWE, else as received.
    pub body: Bytes,
    /// Whether its signature was checked ([`AcceptUnverified`] checks nothing).
    pub verified: bool,
    /// The key id (`kid`, the RFC 7638 thumbprint) of the private key that decrypted it; `None`
    /// when it arrived in clear text.
    pub decrypted_with: Option<String>,
}

impl Opened {
    /// Whether the body arrived encrypted (and was decrypted).
    pub fn was_encrypted(&self) -> bool {
        self.decrypted_with.is_some()
    }
}

/// Authenticates one delivery and yields the body to parse.
pub trait Verifier: Send + Sync + std::fmt::Debug + 'static {
    /// The plaintext body and how it arrived, or why the delivery is not trusted. `headers`
    /// carry `webhook-id`, `webhook-timestamp` and `webhook-signature`, which together with the
    /// raw `body` are what a Standard Webhooks signature covers.
    fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<Opened, String>;
}

/// Trusts every delivery and passes the body through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptUnverified;

impl Verifier for AcceptUnverified {
    fn verify(&self, _headers: &HeaderMap, body: Bytes) -> Result<Opened, String> {
        Ok(Opened { body, verified: false, decrypted_with: None })
    }
}

/// Checks a delivery's signature, then decrypts its body if it is a JWE.
#[derive(Debug)]
pub struct DeliveryVerifier {
    signatures: SignatureVerifier,
    decryptor: Option<Decryptor>,
    require_encryption: bool,
}

impl DeliveryVerifier {
    /// Verifies signatures only; an encrypted body is refused ([`VerifyError::NoPrivateKey`]).
    pub fn new(signatures: SignatureVerifier) -> Self {
        Self { signatures, decryptor: None, require_encryption: false }
    }

    /// Also decrypts JWE bodies with `key` (unwrapped content keys are remembered, so the RSA
    /// decryption is paid once per content key, not per delivery).
    pub fn with_private_key(mut self, key: PrivateKey) -> Self {
        self.decryptor = Some(Decryptor::new(key));
        self
    }

    /// Whether a body that is not encrypted is refused ([`VerifyError::NotEncrypted`]). Off by
    /// default; see the module documentation.
    pub fn require_encryption(mut self, required: bool) -> Self {
        self.require_encryption = required;
        self
    }

    /// The plaintext body of an authentic delivery, checked at the current time.
    pub fn open(&self, headers: &HeaderMap, body: Bytes) -> Result<Opened, VerifyError> {
        self.open_at(headers, body, SystemTime::now())
    }

    /// Like [`DeliveryVerifier::open`], with the receiver's clock reading `now`.
    pub fn open_at(&self, headers: &HeaderMap, body: Bytes, now: SystemTime) -> Result<Opened, VerifyError> {
        // The signature covers the body as sent (the JWE when encrypted), so it is checked first.
        self.signatures.verify_at(headers, &body, now).map_err(VerifyError::Signature)?;
        if !is_encrypted(headers) {
            if self.require_encryption {
                return Err(VerifyError::NotEncrypted);
            }
            return Ok(Opened { body, verified: true, decrypted_with: None });
        }
        let decryptor = self.decryptor.as_ref().ok_or(VerifyError::NoPrivateKey)?;
        let compact = std::str::from_utf8(&body).map_err(|_| VerifyError::NotText)?;
        let plaintext = decryptor.decrypt(compact).map_err(VerifyError::Decrypt)?;
        // Only this key opens it (`decrypt` refuses a JWE naming another kid), so its kid is shown.
        Ok(Opened { body: Bytes::from(plaintext), verified: true, decrypted_with: Some(decryptor.kid().to_owned()) })
    }
}

impl Verifier for DeliveryVerifier {
    fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<Opened, String> {
        self.open(headers, body).map_err(|error| error.to_string())
    }
}

/// Whether `content-type` is `application/jose` (parameters and letter case ignored).
fn is_encrypted(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(hookline_wire::CONTENT_TYPE))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_jose_media_type_is_recognized_loosely() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_encrypted(&headers)
        };
        assert!(with("application/jose"));
        assert!(with("Application/JOSE; charset=us-ascii"));
        assert!(with(" application/jose "));
        assert!(!with("application/json"));
        assert!(!with("application/jose+json"));
        assert!(!is_encrypted(&HeaderMap::new()));
    }
}

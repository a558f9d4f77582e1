//! `hookline-wire`: Hookline's delivery wire format, shared by the sender (the consumer) and
//! receivers (customers' endpoints, `hookline-receiver`). It has no Kafka dependency, so a
//! customer's receiver can depend on it alone.
//!
//! A delivery is an HTTP `POST` whose body is the JSON envelope `{type, timestamp, data}` or,
//! for a customer that uploaded an RSA public key, that envelope encrypted as a JWE
//! (`content-type: application/jose`). Either way the body as sent is signed the Standard
//! Webhooks way: `webhook-id`, `webhook-timestamp` and `webhook-signature` headers. A receiver
//! therefore checks the signature first and decrypts second; nothing is decrypted, let alone
//! parsed, before it is known to come from Hookline.
//!
//! Both formats are standard, so customers may use any Standard Webhooks library and any JOSE
//! library instead of this crate; the interop tests (`tests/interop.rs`) check this against
//! the npm packages `standardwebhooks` and `jose`.
//!
//! # Layout
//! - [`signing`]: [`SigningSecret`], [`signature_header`] (sender) and [`SignatureVerifier`]
//!   (receiver): Standard Webhooks v1 signatures, with secret rotation and replay protection.
//! - [`keys`]: customers' RSA keys, [`PublicKey`] and [`PrivateKey`], read from PEM and named by
//!   their RFC 7638 thumbprint (`kid`).
//! - [`jwe`]: [`Encryptor`] (sender) and [`Decryptor`] (receiver): JWE with `RSA-OAEP-256` and
//!   `A256GCM`, caching content-encryption keys so that RSA is not paid per message.
//! - [`hex`]: lower-case hexadecimal, shared by every Hookline crate.
//! - [`error`]: the one error type; it never carries secret material.

pub mod error;
pub mod hex;
pub mod jwe;
pub mod keys;
pub mod signing;

pub use error::{Error, Result};
pub use jwe::{CONTENT_TYPE, ContentKeyPolicy, Decryptor, Encryptor};
pub use keys::{MIN_RSA_BITS, PrivateKey, PublicKey};
pub use signing::{SECRET_PREFIX, SignatureVerifier, SigningSecret, signature_header};

//! The extension point for authenticating deliveries.
//!
//! Hookline will sign deliveries (Standard Webhooks `webhook-signature`) and may encrypt bodies
//! (JWE). A receiver checks both before trusting a body: a [`Verifier`] gets the request headers
//! and the raw body, and returns the plaintext body to parse or a reason to refuse it (answered
//! 401). Only [`AcceptUnverified`] exists for now.

use axum::body::Bytes;
use axum::http::HeaderMap;

/// Authenticates one delivery and yields the body to parse.
pub trait Verifier: Send + Sync + std::fmt::Debug + 'static {
    /// The plaintext body, or why the delivery is not trusted. `headers` carry `webhook-id`,
    /// `webhook-timestamp` and (once Hookline signs) `webhook-signature`, which together with
    /// the raw `body` are what a Standard Webhooks signature covers.
    fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<Bytes, String>;
}

/// Trusts every delivery and passes the body through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptUnverified;

impl Verifier for AcceptUnverified {
    fn verify(&self, _headers: &HeaderMap, body: Bytes) -> Result<Bytes, String> {
        Ok(body)
    }
}

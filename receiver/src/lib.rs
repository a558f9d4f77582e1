//! `hookline-receiver`: the customer side of a webhook, for demos, end-to-end tests, and as an
//! example of what a customer's endpoint must do.
//!
//! It accepts Standard Webhooks deliveries on `POST /webhook` (headers `webhook-id`,
//! `webhook-timestamp`, `webhook-signature`; JSON body `{type, timestamp, data}`, or that body
//! encrypted as a JWE with `content-type: application/jose`), logs each event, and
//! de-duplicates by `webhook-id` the way a customer should: Hookline delivers at least once, so
//! the same id can arrive again and must be acknowledged without being processed twice.
//! `GET /stats` reports requests `received`, ids accepted (`unique`), repeated deliveries of
//! accepted ids (`duplicates`), simulated failures (`failed`), refused requests (`rejected`) and
//! deliveries that arrived encrypted and were decrypted (`encrypted`).
//!
//! With `--print` ([`ReceiverConfig::print`]) every delivery accepted for the first time is also
//! written to stdout as one JSON line: its id and timestamp, whether it was verified and
//! encrypted (and the key id that decrypted it), and the envelope as the customer's code gets it.
//!
//! Authentication ([`DeliveryVerifier`], configured by [`VerifyConfig`]) comes before anything
//! else: the signature is checked over the body as received (secrets can be rotated: any of
//! several is accepted; deliveries older than the tolerance, 5 minutes by default, are refused
//! as replays), then an encrypted body is decrypted with the receiver's RSA private key. Without
//! a signing secret every delivery is accepted unverified ([`AcceptUnverified`]), as the demo
//! does; the binary warns loudly about it.
//!
//! To exercise the sender's retries it can misbehave on purpose: `--fail-first N` answers 503 to
//! the first N attempts of every id, `--fail-rate R` answers 503 to a random share R of them.
//!
//! Answers: 200 `{"received": true}` when accepted (or already accepted); 503 `{"error": ...}`
//! for a simulated failure; 401 `{"error": ...}` when the delivery is not authentic (or cannot
//! be decrypted); 400 `{"error": ...}` naming the missing or malformed header or body field.
//!
//! The demo runs several receivers in one process with [`Receiver::start`] (or
//! [`Receiver::bind`]) and reads their counters with [`ReceiverHandle::stats`]; the binary uses
//! [`serve_with_verifier`].
//!
//! The crate depends on `hookline-wire` but not on Kafka, like a customer's endpoint would.
//!
//! # Layout
//! - [`ReceiverConfig`]: listen address, failure simulation, name, `--print` (clap flags);
//!   [`VerifyConfig`]: signing secrets, private key, timestamp tolerance (clap flags).
//! - [`Receiver`], [`ReceiverHandle`], [`serve`], [`serve_with_verifier`]: the HTTP server and
//!   the `--print` lines.
//! - [`Stats`]: the counters; the de-duplication and failure rules live beside them in `ledger`.
//! - [`verify`]: [`Verifier`], with [`DeliveryVerifier`] (signature, then decryption) and
//!   [`AcceptUnverified`]; what they let through is [`Opened`].
//! - [`error`]: why the receiver stops ([`Error`], with exit codes) and why a delivery is refused
//!   ([`VerifyError`]).

mod config;
pub mod error;
mod ledger;
mod server;
pub mod verify;

pub use config::{ReceiverConfig, VerifyConfig, parse_rate};
pub use error::{EXIT_FAILURE, EXIT_USAGE, Error, Result, VerifyError};
pub use ledger::Stats;
pub use server::{Receiver, ReceiverHandle, serve, serve_with_verifier};
pub use verify::{AcceptUnverified, DeliveryVerifier, Opened, Verifier};

//! `hookline-receiver`: the customer side of a webhook, for demos and end-to-end tests.
//!
//! It accepts Standard Webhooks deliveries on `POST /webhook` (headers `webhook-id` and
//! `webhook-timestamp`, JSON body `{type, timestamp, data}`), logs each event, and
//! de-duplicates by `webhook-id` the way a customer should: Hookline delivers at least once, so
//! the same id can arrive again and must be acknowledged without being processed twice.
//! `GET /stats` reports requests `received`, ids accepted (`unique`), repeated deliveries of
//! accepted ids (`duplicates`), simulated failures (`failed`) and refused requests (`rejected`).
//!
//! To exercise the sender's retries it can misbehave on purpose: `--fail-first N` answers 503 to
//! the first N attempts of every id, `--fail-rate R` answers 503 to a random share R of them.
//!
//! Answers: 200 `{"received": true}` when accepted (or already accepted); 503 `{"error": ...}`
//! for a simulated failure; 400 `{"error": ...}` naming the missing or malformed header or body
//! field; 401 when a [`Verifier`] refuses the delivery.
//!
//! The demo runs several receivers in one process with [`Receiver::start`] (or
//! [`Receiver::bind`]) and reads their counters with [`ReceiverHandle::stats`]; the binary uses
//! [`serve`].
//!
//! # Layout
//! - [`ReceiverConfig`]: listen address, failure simulation, name (clap flags).
//! - [`Receiver`], [`ReceiverHandle`], [`serve`]: the HTTP server.
//! - [`Stats`]: the counters; the de-duplication and failure rules live beside them in `ledger`.
//! - [`verify`]: where signature checking and body decryption will plug in ([`Verifier`]).
//! - [`error`]: this crate's error type.

mod config;
pub mod error;
mod ledger;
mod server;
pub mod verify;

pub use config::{ReceiverConfig, parse_rate};
pub use error::{Error, Result};
pub use ledger::Stats;
pub use server::{Receiver, ReceiverHandle, serve};
pub use verify::{AcceptUnverified, Verifier};

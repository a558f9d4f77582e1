//! Shared core of Hookline: what the publisher, the consumer and the setup CLI must agree on.
//!
//! # Layout
//! - [`config`]: command-line/env settings every binary shares (brokers, librdkafka pass-through
//!   properties, topic names) and the duration parser.
//! - [`kafka`]: builders for librdkafka clients from those settings, so every binary talks to
//!   Kafka the same way (idempotent producers, manual offset store for consumers).
//! - [`envelope`]: the record carried on the delivery topic and the webhook body built from it.
//! - [`customer`]: a customer's delivery configuration as stored in the compacted customers topic.
//! - [`directory`]: the in-memory view of the customers topic (read from the start, then followed).
//! - [`shutdown`]: one cancellation token fired by SIGINT/SIGTERM.
//! - [`telemetry`]: logging set-up.
//! - [`topics`]: creating and checking the three topics.
//! - [`error`]: this crate's error type.

pub mod config;
pub mod customer;
pub mod directory;
pub mod envelope;
pub mod error;
pub mod kafka;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

pub use error::{Error, Result};

//! Shared core of Hookline: what the publisher, the consumer and the setup CLI must agree on.
//!
//! # Layout
//! By concern (the modules are flat; this is how they group):
//!
//! **Model: what the records mean**
//! - [`customer`]: a customer (tenant) as stored in the compacted customers topic: delivery
//!   configuration, subscriptions, rate limit, disabled state, hashed API key, sealed signing
//!   secrets, public key; and its Avro mapping.
//! - [`envelope`]: the record carried on the delivery topic, its Avro mapping, and the webhook
//!   body built from it.
//! - [`deadletter`]: the dead-letter record contract: reasons, header names, the builders of a
//!   dead letter's headers (whole and body-less) and of a replayed record's, and their parser.
//! - [`parking`]: the parking contract: the headers of a record parked on the retry topic and the
//!   parking state of a customer, with their builders and parsers.
//! - [`notices`]: operational events (`hookline.endpoint.*`): their types, payload, who receives
//!   them (subscribers by name only) and the notifier that publishes them on the delivery topic.
//! - [`attempts`]: the delivery log contract: one record per delivery attempt and per parking,
//!   dead-letter or skip decision, on the attempts topic (what the deliveries API shows).
//! - [`limits`]: the largest record value Hookline produces, derived from `message.max.bytes`
//!   with room for every header a record gets up to its dead letter (publisher and consumer agree).
//!
//! **Encoding**
//! - [`codec`]: record values in Avro (single-object encoding, or the Confluent Schema Registry
//!   wire format), the compiled-in schemas and their history, schema resolution and the legacy
//!   JSON records. Inside: `catalog` (schemas, history, fingerprints, subjects), `registry` (the
//!   registry client), `framing` (the three framings, single-object reads) and `mapping` (the
//!   [`codec::AvroRecord`] trait, which `customer` and `envelope` implement for their records).
//!
//! **Kafka plumbing**
//! - [`kafka`]: builders for librdkafka clients from the shared settings, so every binary talks
//!   to Kafka the same way (idempotent producers, manual offset store for consumers), and the one
//!   "produce until acknowledged" loop; the record-header helpers the dead-letter and parking
//!   contracts share.
//! - [`topics`]: creating and checking the eight topics.
//!
//! **State followers and tenant operations**
//! - [`follower`]: follows a state topic into an in-memory view (from the beginning, or only its
//!   recent records) that can be caught up on demand; catch-ups are coalesced, and paced for
//!   callers without credentials.
//! - [`directory`]: the in-memory view of the customers topic (read from the start, then followed),
//!   with the API key index.
//! - [`tenants`]: tenant operations (create, configure, rate-limit, disable/enable, rotate,
//!   delete) shared by the onboarding API, the setup CLI and the consumer.
//!
//! **Security**
//! - [`secrets`]: the operator's master key that seals signing secrets at rest, API keys (stored
//!   hashed) and operator bearer tokens, all compared in constant time.
//! - [`netguard`]: the SSRF guard on webhook destinations.
//! - [`quote`]: how input appears in messages: clipped, URLs without credentials.
//!
//! **Process setup**
//! - [`config`]: command-line/env settings every binary shares (brokers, librdkafka pass-through
//!   properties, topic names) and the duration parser.
//! - [`telemetry`]: logging and OpenTelemetry tracing set-up, W3C trace-context propagation
//!   through Kafka record headers.
//! - [`error`]: this crate's error type.

pub mod attempts;
pub mod codec;
pub mod config;
pub mod customer;
pub mod deadletter;
pub mod directory;
pub mod envelope;
pub mod error;
pub mod follower;
pub mod kafka;
pub mod limits;
pub mod netguard;
pub mod notices;
pub mod parking;
pub mod quote;
pub mod secrets;
pub mod telemetry;
pub mod tenants;
pub mod topics;

pub use error::{Error, Result};

//! Test support shared by the integration tests of every Hookline crate.
//!
//! Nothing here is a mock of Kafka: [`Broker`] runs the real `tansu` broker as a child process on
//! a free loopback port. [`Endpoint`] is a real HTTP server on `127.0.0.1:0` that records what it
//! receives and answers as a test scripts it.
//!
//! # Layout
//! - [`Broker`]: start/stop tansu (memory or SQLite storage), killed when dropped.
//! - [`Endpoint`]: a recording webhook endpoint with a scripted response per request.
//! - [`interop`]: run the Node.js and Python scripts of `interop/` (off-the-shelf implementations).
//! - [`kafka`]: produce events, read a topic back, read a group's committed offsets.
//! - [`avro`]: a "v2" of a compiled-in schema and records written with it (schema evolution).
//! - [`SchemaRegistry`]: an in-memory test double of the Confluent Schema Registry REST API (the
//!   real one cannot run here).
//! - [`tenants`]: the tests' master key, the loopback allow-list, customers with signing secrets.
//! - [`unique_name`]: topic prefixes and group ids unique per test.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping.

pub mod avro;
mod broker;
mod endpoint;
pub mod interop;
pub mod kafka;
mod schema_registry;
pub mod tenants;

pub use broker::{Broker, tansu_binary};
pub use endpoint::{Endpoint, Received, Respond};
pub use schema_registry::{Refusal, SchemaRegistry};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A name unique to this process and call: `<base>-<pid>-<n>`, safe as a topic prefix.
pub fn unique_name(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{base}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `deadline`.
pub async fn wait_until<F: FnMut() -> bool>(deadline: Duration, what: &str, mut condition: F) {
    let until = tokio::time::Instant::now() + deadline;
    while !condition() {
        assert!(tokio::time::Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Installs a test log subscriber once (honours `RUST_LOG`; quiet by default).
pub fn init_test_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            hookline_core::telemetry::init_logging();
        }
    });
}

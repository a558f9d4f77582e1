//! What the publisher writes to its log about refused requests, read back from a capturing
//! subscriber (this binary's only test, so the global subscriber is its own).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use common::Harness;
use hookline_core::customer::{Customer, SignatureScheme};
use hookline_core::directory::put_customer;
use hookline_testkit::tenants;

/// Every log line, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_inbound_source_ids_are_not_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");

    let harness = Harness::start(&[], |_| {}).await;
    let issued = Customer::source(
        "known-source",
        SignatureScheme::HubSignature256,
        "http://10.0.0.1/in",
        Some("s3cret-value-long-enough"),
        &tenants::master_key(),
    )
    .expect("valid source");
    put_customer(&harness.kafka, &harness.topics.customers, &issued.source).await.expect("put source");

    let post = |source: &str| {
        harness
            .client
            .post(format!("{}/inbound/{source}", harness.base))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", "sha256=00")
            .body("{}")
            .send()
    };
    // A valid id nobody registered (a token pasted in the wrong place, say), and an invalid one.
    for unknown in ["tok-7f3a9c1e2b5d", "not%20an%20id-9q8w7e"] {
        assert_eq!(post(unknown).await.expect("request").status(), 404);
    }
    // A known source with a wrong signature is logged with its id: the capture works.
    assert_eq!(post("known-source").await.expect("request").status(), 401);
    harness.stop().await;

    let logs = captured.text();
    assert!(logs.contains("inbound webhook refused: unknown source"), "{logs}");
    assert!(logs.contains("known-source"), "{logs}");
    for secret in ["7f3a9c1e2b5d", "9q8w7e", "s3cret-value"] {
        assert!(!logs.contains(secret), "`{secret}` was logged:\n{logs}");
    }
}

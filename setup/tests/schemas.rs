//! `hookline-setup schemas ...` against the Confluent Schema Registry test double
//! ([`SchemaRegistry`]; the real registry cannot run here). These commands need no broker.

mod common;

use common::{args_without_master_key, assert_exit, binary, in_process, stderr, stdout};
use hookline_core::codec::RecordType;
use hookline_setup::{EXIT_USAGE, Error};
use hookline_testkit::{SchemaRegistry, unique_name};

/// The arguments for `command` on topics `prefix*` and the registry at `url`.
fn with_registry(prefix: &str, url: &str, command: &[&str]) -> Vec<String> {
    let mut all = args_without_master_key("127.0.0.1:1", prefix, command);
    all.extend(["--schema-registry-url".to_owned(), url.to_owned()]);
    all
}

#[tokio::test]
async fn register_reports_ids_and_versions_then_an_incompatible_change_exits_1() {
    let registry = SchemaRegistry::start().await;
    let prefix = unique_name("schemas");
    let subjects = [format!("{prefix}-value"), format!("{prefix}.dlq-value"), format!("{prefix}.customers-value")];

    let before = binary(&with_registry(&prefix, &registry.url(), &["schemas", "check"])).await;
    assert_exit(&before, 1);
    assert!(stdout(&before).contains(&format!("{}: not registered", subjects[0])), "{}", stdout(&before));
    assert!(stderr(&before).contains("hookline-setup schemas register"), "{}", stderr(&before));

    for _ in 0..2 {
        // Registering again is a no-op: same ids, same versions.
        let output = binary(&with_registry(&prefix, &registry.url(), &["schemas", "register"])).await;
        assert_exit(&output, 0);
        let report = stdout(&output);
        for subject in &subjects {
            let (id, version) = registry.latest(subject).expect("registered");
            assert_eq!(version, 1);
            assert!(
                report.contains(&format!("{subject}: ")) && report.contains(&format!("id {id} version 1")),
                "{report}"
            );
        }
    }
    assert_eq!(registry.subjects(), {
        let mut sorted = subjects.to_vec();
        sorted.sort();
        sorted
    });
    // The DLQ carries delivery records unchanged: one schema, one id.
    assert_eq!(registry.latest(&subjects[0]).map(|(id, _)| id), registry.latest(&subjects[1]).map(|(id, _)| id));
    assert_eq!(
        registry.schema(registry.latest(&subjects[2]).expect("customers").0).as_deref(),
        Some(RecordType::Customer.registered_form())
    );
    assert_exit(&binary(&with_registry(&prefix, &registry.url(), &["schemas", "check"])).await, 0);

    // Another deployment's customers subject holds a schema ours cannot read (its `id` field has
    // no default there to fall back on): the registry refuses, and the operator is told why.
    let other = unique_name("schemas");
    let incompatible =
        r#"{"type":"record","name":"Customer","namespace":"dev.hookline","fields":[{"name":"key","type":"string"}]}"#;
    registry.register(&format!("{other}.customers-value"), incompatible).expect("seed");
    let refused = binary(&with_registry(&other, &registry.url(), &["schemas", "register"])).await;
    assert_exit(&refused, 1);
    let message = stderr(&refused);
    assert!(message.contains(&format!("{other}.customers-value")), "{message}");
    assert!(message.contains("incompatible with an earlier schema") && message.contains("409"), "{message}");

    // `check` of a deployment whose subjects are missing (or refused) is a schema error, exit 1;
    // a trailing slash on the URL does not matter.
    let (result, _) = in_process(&with_registry(&other, &format!("{}/", registry.url()), &["schemas", "check"])).await;
    match result {
        Err(error @ Error::Schema { .. }) => assert_eq!(error.exit_code(), 1, "{error}"),
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_registry_url_register_exits_2_and_show_needs_none() {
    let prefix = unique_name("schemas");
    let output = binary(&args_without_master_key("127.0.0.1:1", &prefix, &["schemas", "register"])).await;
    assert_exit(&output, i32::from(EXIT_USAGE));
    assert!(stderr(&output).contains("--schema-registry-url"), "{}", stderr(&output));

    let output = binary(&args_without_master_key("127.0.0.1:1", &prefix, &["schemas", "show"])).await;
    assert_exit(&output, 0);
    let shown = stdout(&output);
    let hex: String = RecordType::Delivery.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
    assert!(shown.contains(&hex) && shown.contains("dev.hookline.Customer"), "{shown}");
    assert!(shown.contains(&format!("{prefix}-value, {prefix}.dlq-value")), "{shown}");
}

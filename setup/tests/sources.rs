//! `sources ...` against a real broker: registering, listing and removing inbound sources.

mod common;

use common::{args, args_without_master_key, assert_exit, binary, field, in_process, stderr, stdout};
use hookline_core::customer::{Customer, SignatureScheme, SourceView};
use hookline_setup::EXIT_USAGE;
use hookline_testkit::kafka::read_topic;
use hookline_testkit::{Broker, SchemaRegistry, init_test_logging, tenants, unique_name};
use rdkafka::message::Message;

/// `sources add` of a Standard Webhooks source `billing` with a generated secret.
const ADD_BILLING: &[&str] =
    &["sources", "add", "--id", "billing", "--scheme", "standard-webhooks", "--endpoint", "http://10.0.0.7/billing"];

#[tokio::test]
async fn add_list_remove_round_trip() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-sources");
    let command = |extra: &[&str]| args(&brokers, &prefix, extra);
    let (result, out) = in_process(&command(&["topics", "create", "--partitions", "2"])).await;
    result.unwrap_or_else(|e| panic!("topics create failed: {e}\n{out}"));

    let (result, out) = in_process(&command(&["sources", "list"])).await;
    result.expect("list with no sources");
    assert_eq!(out, "no sources\n");

    // A generated secret is printed once, with our signing secret.
    let (result, added) = in_process(&command(ADD_BILLING)).await;
    result.expect("sources add");
    let sender_secret = field(&added, "secret:");
    let signing_secret = field(&added, "signing_secret:");
    assert!(sender_secret.starts_with("whsec_") && signing_secret.starts_with("whsec_"), "{added}");
    assert_ne!(sender_secret, signing_secret);
    assert!(added.contains("POST /inbound/billing"), "{added}");

    // A given secret is not echoed back; --json for scripts.
    let github = binary(&command(&[
        "sources",
        "add",
        "--id",
        "github",
        "--scheme",
        "hub-signature-256",
        "--endpoint",
        "http://10.0.0.8/github",
        "--secret",
        "a-github-webhook-secret",
        "--json",
    ]))
    .await;
    assert_exit(&github, 0);
    let shown: serde_json::Value = serde_json::from_str(stdout(&github).trim()).expect("one JSON object");
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(!stdout(&github).contains("a-github-webhook-secret"));
    assert_eq!(shown["source"]["scheme"], "hub-signature-256");

    // Stored sealed; opens with the master key.
    let records = hookline_testkit::kafka::read_topic(&broker.kafka_args(), &format!("{prefix}.customers")).await;
    let record = records.iter().rev().find(|r| r.key() == Some(b"github".as_slice())).expect("github's record");
    let stored = Customer::from_record("github", record.payload().expect("a value")).expect("decodes");
    let raw = String::from_utf8_lossy(record.payload().expect("a value")).into_owned();
    assert!(!raw.contains("a-github-webhook-secret"), "{raw}");
    let opened = stored.inbound_secret(&tenants::master_key()).expect("opens").expect("a source");
    assert_eq!(opened.as_str(), "a-github-webhook-secret");

    // Sources and customers are listed apart, and neither command touches the other kind.
    let (result, out) = in_process(&command(&["customers", "create", "--id", "acme"])).await;
    result.unwrap_or_else(|e| panic!("customers create: {e}\n{out}"));
    let (result, table) = in_process(&command(&["sources", "list"])).await;
    result.expect("sources list");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with("billing ") && lines[1].contains("standard-webhooks"), "{table}");
    assert!(lines[2].starts_with("github ") && lines[2].ends_with("http://10.0.0.8/github"), "{table}");
    let (result, json_lines) = in_process(&command(&["sources", "list", "--json"])).await;
    result.expect("sources list --json");
    let views: Vec<SourceView> = json_lines.lines().map(|l| serde_json::from_str(l).expect("a source view")).collect();
    assert_eq!(
        views.iter().map(|v| v.scheme).collect::<Vec<_>>(),
        [SignatureScheme::StandardWebhooks, SignatureScheme::HubSignature256]
    );
    assert!(!json_lines.contains("sealed") && !json_lines.contains("whsec_"), "{json_lines}");
    let (result, customers) = in_process(&command(&["customers", "list"])).await;
    result.expect("customers list");
    assert!(customers.contains("acme") && !customers.contains("billing"), "{customers}");
    let wrong_kind = binary(&command(&["customers", "remove", "billing"])).await;
    assert_exit(&wrong_kind, 1);
    let wrong_kind = binary(&command(&["sources", "remove", "acme"])).await;
    assert_exit(&wrong_kind, 1);
    assert!(stderr(&wrong_kind).contains("unknown inbound source"), "{}", stderr(&wrong_kind));

    // Bad input: exit 2, before touching Kafka.
    for bad in [
        &["sources", "add", "--id", "x", "--scheme", "md5", "--endpoint", "http://i/"][..],
        &["sources", "add", "--id", "bad id", "--scheme", "hub-signature-256", "--endpoint", "http://i/"],
        &["sources", "add", "--id", "x", "--scheme", "hub-signature-256", "--endpoint", "ftp://i/"],
        &[
            "sources",
            "add",
            "--id",
            "x",
            "--scheme",
            "standard-webhooks",
            "--endpoint",
            "http://i/",
            "--secret",
            "nope",
        ],
    ] {
        let output = binary(&command(bad)).await;
        assert_exit(&output, i32::from(EXIT_USAGE));
    }
    let keyless = binary(&args_without_master_key(
        &brokers,
        &prefix,
        &["sources", "add", "--id", "x", "--scheme", "hub-signature-256", "--endpoint", "http://i/"],
    ))
    .await;
    assert_exit(&keyless, i32::from(EXIT_USAGE));
    let again = binary(&command(&[
        "sources",
        "add",
        "--id",
        "github",
        "--scheme",
        "hub-signature-256",
        "--endpoint",
        "http://i/",
    ]))
    .await;
    assert_exit(&again, 1);

    let (result, out) = in_process(&command(&["sources", "remove", "billing"])).await;
    result.expect("sources remove");
    assert_eq!(out, "removed billing\n");
    let (result, table) = in_process(&command(&["sources", "list"])).await;
    result.expect("sources list");
    assert!(!table.contains("billing") && table.contains("github"), "{table}");
}

/// With a schema registry configured, every tenant write uses its framing (Confluent: magic byte
/// 0, then the registered schema's id), inbound sources included: a source used to be written in
/// single-object framing whatever the configuration.
#[tokio::test]
async fn with_a_schema_registry_customers_and_sources_are_written_in_confluent_framing() {
    init_test_logging();
    let broker = Broker::start();
    let registry = SchemaRegistry::start().await;
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-framing");
    let command = |extra: &[&str]| {
        let mut all = args(&brokers, &prefix, extra);
        all.extend(["--schema-registry-url".to_owned(), registry.url()]);
        all
    };
    for step in [
        &["topics", "create", "--partitions", "1"][..],
        &["schemas", "register"],
        &["customers", "create", "--id", "acme"],
        ADD_BILLING,
    ] {
        let (result, out) = in_process(&command(step)).await;
        result.unwrap_or_else(|e| panic!("{step:?} failed: {e}\n{out}"));
    }
    let subject = format!("{prefix}.customers-value");
    let (schema_id, _) = registry.latest(&subject).expect("the customer schema is registered");
    let records = read_topic(&broker.kafka_args(), &format!("{prefix}.customers")).await;
    let keys: Vec<&[u8]> = records.iter().filter_map(Message::key).collect();
    assert_eq!(keys, [b"acme".as_slice(), b"billing".as_slice()]);
    for record in &records {
        let value = record.payload().expect("a value");
        let key = String::from_utf8_lossy(record.key().unwrap_or_default());
        assert_eq!(value.first(), Some(&0), "{key}: Confluent framing starts with the magic byte 0");
        let id = value.get(1..5).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        assert_eq!(id, Some(schema_id), "{key}: framed with the registered customer schema");
    }
}

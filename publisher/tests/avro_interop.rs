//! Independent decoding: the records the publisher (and the tenant API) write are read back from
//! the topics and decoded by npm `avsc`, an Avro implementation Hookline does not use, through
//! `interop/decode-avro.mjs`, which checks the single-object fingerprint with its own CRC-64-AVRO
//! (or strips the Confluent header and reports the schema id).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN_TOKEN, Harness};
use hookline_core::codec::{self, CUSTOMER_SCHEMA, DELIVERY_SCHEMA, RecordType};
use hookline_core::config::{KafkaArgs, SchemaRegistryArgs, TopicArgs};
use hookline_testkit::kafka::read_topic;
use hookline_testkit::{Broker, SchemaRegistry, interop, tenants, unique_name};
use rdkafka::message::Message;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Every record value on `topic`, base64.
async fn values(kafka: &KafkaArgs, topic: &str) -> Vec<String> {
    read_topic(kafka, topic).await.iter().map(|m| STANDARD.encode(m.payload().expect("a value"))).collect()
}

fn avsc(schema: &str, records: Vec<String>, encoding: &str) -> Value {
    interop::node("decode-avro.mjs", &json!({ "schema": schema, "records": records, "encoding": encoding }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Publishes two events and returns `(event_id, payload)` of each.
async fn publish_two(harness: &Harness) -> Vec<(String, Value)> {
    let mut published = Vec::new();
    for payload in [json!({"order": 1, "note": "déjà vu ✓", "nested": [null, true, 1.5]}), json!("just a string")] {
        let (status, answer) = harness.publish(json!({"type": "order.created", "payload": payload})).await;
        assert_eq!(status, 202, "{answer}");
        published.push((answer["event_id"].as_str().expect("event id").to_owned(), payload));
    }
    published
}

fn assert_events(decoded: &Value, published: &[(String, Value)]) {
    let records = decoded["records"].as_array().expect("records");
    assert_eq!(records.len(), published.len());
    for (record, (event_id, payload)) in records.iter().zip(published) {
        let value = &record["value"];
        assert_eq!(value["event_id"], event_id.as_str());
        assert_eq!(value["type"], "order.created");
        assert!(value["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{value}");
        let text = value["payload"].as_str().expect("payload is a string");
        assert_eq!(serde_json::from_str::<Value>(text).expect("payload is JSON text"), *payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_records_decode_with_avsc() {
    let harness = Harness::start(&[("acme", &["*"])], |_| {}).await;
    let published = publish_two(&harness).await;

    let decoded = avsc(DELIVERY_SCHEMA, values(&harness.kafka, &harness.topics.deliveries).await, "single-object");
    assert_eq!(decoded["fingerprint"], hex(&RecordType::Delivery.fingerprint()), "both compute the same CRC-64-AVRO");
    assert_eq!(decoded["canonical"], RecordType::Delivery.schema().canonical_form(), "the same canonical form");
    assert_events(&decoded, &published);

    let customers = avsc(CUSTOMER_SCHEMA, values(&harness.kafka, &harness.topics.customers).await, "single-object");
    let customer = &customers["records"][0]["value"];
    assert_eq!(customer["id"], "acme");
    assert_eq!(customer["events"], json!(["*"]));
    assert_eq!(customer["webhook_url"], "http://127.0.0.1:9/webhook");
    assert_eq!(customer["public_key"], Value::Null);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_registry_records_decode_with_avsc() {
    let registry = SchemaRegistry::start().await;
    let registry_args = SchemaRegistryArgs::with_url(registry.url());
    let harness = Harness::start(&[("acme", &["*"])], |config| {
        config.schema_registry = registry_args.clone();
        for (subject, record) in codec::subjects(&config.topics) {
            registry.register(&subject, record.registered_form()).expect("register");
        }
    })
    .await;
    let published = publish_two(&harness).await;
    let (status, created) = harness
        .call(
            reqwest::Method::POST,
            "/v1/customers",
            Some(ADMIN_TOKEN),
            Some(json!({"id": "globex", "name": "Globex"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    let (delivery_id, _) = registry.latest(&format!("{}-value", harness.topics.deliveries)).expect("registered");
    let decoded = avsc(DELIVERY_SCHEMA, values(&harness.kafka, &harness.topics.deliveries).await, "confluent");
    assert!(decoded["records"].as_array().expect("records").iter().all(|r| r["schemaId"] == delivery_id));
    assert_events(&decoded, &published);

    // The tenant API writes through the registry too (the harness's own customer is single-object).
    let (customer_id, _) = registry.latest(&format!("{}-value", harness.topics.customers)).expect("registered");
    let raw = read_topic(&harness.kafka, &harness.topics.customers).await;
    let globex: Vec<String> = raw
        .iter()
        .filter(|m| m.key() == Some(b"globex".as_slice()))
        .map(|m| STANDARD.encode(m.payload().expect("value")))
        .collect();
    let customers = avsc(CUSTOMER_SCHEMA, globex, "confluent");
    let customer = &customers["records"][0];
    assert_eq!(customer["schemaId"], customer_id);
    assert_eq!(customer["value"]["id"], "globex");
    assert_eq!(customer["value"]["name"], "Globex");
    assert!(customer["value"]["api_key"]["sha256"].as_str().is_some_and(|h| h.len() == 64), "{customer}");
    assert_eq!(customer["value"]["signing_secrets"].as_array().map(Vec::len), Some(1));
    harness.stop().await;
}

/// A publisher pointed at a registry that does not hold its schemas refuses to start, saying how
/// to fix it (writers never register schemas themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_schema_fails_the_start_with_a_clear_error() {
    let broker = Broker::start();
    let registry = SchemaRegistry::start().await;
    let mut config =
        hookline_publisher::Config::new(broker.kafka_args(), TopicArgs::with_prefix(&unique_name("unreg")));
    config.master_key = tenants::master_key_args();
    config.schema_registry = SchemaRegistryArgs::with_url(registry.url());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let served = tokio::time::timeout(
        Duration::from_secs(30),
        hookline_publisher::serve(config, listener, CancellationToken::new()),
    )
    .await
    .expect("the start fails at once");
    let error = served.expect_err("no schema registered").to_string();
    assert!(error.contains("is not registered") && error.contains("hookline-setup schemas register"), "{error}");
    assert!(registry.subjects().is_empty(), "nothing was registered behind the operator's back");
}

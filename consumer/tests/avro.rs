//! Avro records end to end on a real broker (tansu): through the Confluent Schema Registry (its
//! test double, [`SchemaRegistry`]) and without one (single-object encoding), schema evolution
//! (a v2 writer, v1 readers) and the legacy JSON records, all delivered by the real consumer.

mod common;

use std::time::Duration;

use common::Env;
use hookline_core::codec::{self, Codec, RecordType};
use hookline_core::config::SchemaRegistryArgs;
use hookline_core::deadletter::headers;
use hookline_core::directory::put_customer_with;
use hookline_core::envelope::EventRecord;
use hookline_testkit::avro::{Evolved, confluent};
use hookline_testkit::kafka::{header, produce_raw, read_topic};
use hookline_testkit::{Endpoint, SchemaRegistry, tenants, wait_until};
use hookline_wire::signing::SignatureVerifier;
use rdkafka::message::Message;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn event(payload: serde_json::Value) -> EventRecord {
    EventRecord::new("test.event", serde_json::value::to_raw_value(&payload).expect("payload"))
}

/// Publisher → record in the Confluent wire format with the registry's id → consumer (fetching
/// the schema by id) → endpoint; customers written through the registry too; a v2 record
/// (registered, compatible) delivered by the v1 consumer; an unknown schema id dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_registry_path_end_to_end() {
    let env = Env::new(2).await;
    let registry = SchemaRegistry::start().await;
    let registry_args = SchemaRegistryArgs::with_url(registry.url());
    let codec = Codec::new(&registry_args).expect("codec");
    // What `hookline-setup schemas register` does.
    for (subject, record) in codec::subjects(&env.topics) {
        codec.register(&subject, record).await.expect("register");
    }
    let deliveries_subject = format!("{}-value", env.topics.deliveries);
    let (delivery_id, _) = registry.latest(&deliveries_subject).expect("registered");
    assert_eq!(registry.latest(&format!("{}-value", env.topics.dlq)).map(|(id, _)| id), Some(delivery_id));

    let endpoint = Endpoint::ok().await;
    let (customer, secret) = tenants::signed_customer("sr-customer", &endpoint.url(), &["*"]);
    put_customer_with(&env.kafka, &codec, &env.topics.customers, &customer).await.expect("put customer");
    let customers = read_topic(&env.kafka, &env.topics.customers).await;
    let (customer_id, _) = registry.latest(&format!("{}-value", env.topics.customers)).expect("registered");
    assert_eq!(customers[0].payload().expect("value")[..5], confluent(customer_id, &[])[..]);

    let publisher = env.start_publisher_with(|config| config.schema_registry = registry_args.clone()).await;
    let mut config = env.config();
    config.schema_registry = registry_args.clone();
    let consumer = env.start(config);

    let accepted = publisher.publish(json!({"type": "order.created", "payload": {"n": 1, "s": "é"}})).await;
    let first_id = accepted["event_id"].as_str().expect("event id").to_owned();
    wait_until(WAIT, "the published event", || endpoint.distinct_ids().contains(&first_id)).await;
    let records = read_topic(&env.kafka, &env.topics.deliveries).await;
    assert_eq!(records.len(), 1);
    let value = records[0].payload().expect("value");
    assert_eq!(value[..5], confluent(delivery_id, &[])[..], "0x00 + the registry's schema id");
    assert_eq!(codec.decode_delivery(value).await.expect("decodes").event_id, first_id);

    // A newer writer registers v2 (v1 + an optional field): compatible, a new id. The running v1
    // consumer fetches v2 by id and resolves it.
    let v2 = Evolved::with_optional_field(RecordType::Delivery, "trace_id");
    let v2_id = registry.register(&deliveries_subject, &v2.schema_json).expect("v2 is backward compatible");
    assert_ne!(v2_id, delivery_id);
    let newer = event(json!({"written_by": "v2"}));
    let datum = v2.datum(RecordType::Delivery, &newer.to_bytes(), "trace-1");
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"sr-customer"), &confluent(v2_id, &datum)).await;
    wait_until(WAIT, "the v2 record", || endpoint.distinct_ids().contains(&newer.event_id)).await;

    // An id the registry never gave: dead-lettered as undecodable, counted by reason.
    let unknown = confluent(9999, &datum);
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"sr-customer"), &unknown).await;
    wait_until(WAIT, "the unknown schema id dead-lettered", || {
        consumer.counter("hookline_dlq_records_total", &[("reason", "undecodable")]) == 1
    })
    .await;
    assert_eq!(consumer.counter("hookline_decode_errors_total", &[("reason", "unknown_schema")]), 1);

    let verifier = SignatureVerifier::new(vec![secret]);
    for request in endpoint.received() {
        verifier.verify(&request.header_map(), &request.body).expect("signed");
        let data = &request.json()["data"];
        assert!(data == &json!({"n": 1, "s": "é"}) || data == &json!({"written_by": "v2"}), "{data}");
    }
    assert_eq!(endpoint.distinct_ids().len(), 2);
    let dlq = read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].payload(), Some(&unknown[..]), "the DLQ carries the record unchanged");
    assert!(header(&dlq[0], headers::DLQ_ERROR).is_some_and(|e| e.contains("9999")));

    consumer.stop().await;
    publisher.stop().await;
}

/// No registry: single-object records by default; a record and a customer written with a v2
/// schema the readers have never seen (appended optional field) and legacy JSON records are all
/// decoded by the real directory and consumer and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_path_with_a_newer_writer_and_legacy_json() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;

    // The customer record itself is written by a "v2" writer.
    let (customer, secret) = tenants::signed_customer("so-customer", &endpoint.url(), &["*"]);
    let customer_v2 = Evolved::with_optional_field(RecordType::Customer, "inbound_source");
    let datum = customer_v2.datum(RecordType::Customer, &customer.to_bytes(), "github");
    produce_raw(&env.producer, &env.topics.customers, Some(b"so-customer"), &customer_v2.single_object(&datum)).await;
    // And one written as JSON, before Avro.
    let (legacy_customer, legacy_secret) = tenants::signed_customer("json-customer", &endpoint.url(), &["*"]);
    let legacy_json = serde_json::to_vec(&legacy_customer).expect("json");
    produce_raw(&env.producer, &env.topics.customers, Some(b"json-customer"), &legacy_json).await;

    let publisher = env.start_publisher().await;
    let consumer = env.start(env.config());

    let accepted = publisher.publish(json!({"type": "a.b", "payload": [1, 2], "target": "so-customer"})).await;
    let published = accepted["event_id"].as_str().expect("event id").to_owned();
    let records = read_topic(&env.kafka, &env.topics.deliveries).await;
    let value = records[0].payload().expect("value");
    assert_eq!(value[..2], codec::SINGLE_OBJECT_MAGIC);
    assert_eq!(value[2..10], RecordType::Delivery.fingerprint());

    let v2 = Evolved::with_optional_field(RecordType::Delivery, "trace_id");
    let newer = event(json!({"written_by": "v2"}));
    let datum = v2.datum(RecordType::Delivery, &newer.to_bytes(), "trace-1");
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"so-customer"), &v2.single_object(&datum)).await;
    let legacy = event(json!({"written_by": "json"}));
    let legacy_value = serde_json::to_vec(&legacy).expect("json");
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"json-customer"), &legacy_value).await;

    let expected = [published, newer.event_id.clone(), legacy.event_id.clone()];
    wait_until(WAIT, "all three records delivered", || {
        let ids = endpoint.distinct_ids();
        expected.iter().all(|id| ids.contains(id))
    })
    .await;
    let verifiers = [SignatureVerifier::new(vec![secret]), SignatureVerifier::new(vec![legacy_secret])];
    for request in endpoint.received() {
        assert!(verifiers.iter().any(|v| v.verify(&request.header_map(), &request.body).is_ok()));
        if request.webhook_id() == newer.event_id {
            assert_eq!(request.json()["data"], json!({"written_by": "v2"}));
        }
    }
    assert_eq!(consumer.counter("hookline_dlq_records_total", &[]), 0);
    assert_eq!(consumer.counter("hookline_decode_errors_total", &[]), 0);

    consumer.stop().await;
    publisher.stop().await;
}

/// While the registry is unreachable a Confluent record is not given up (the registry, not the
/// record, is the problem): the partition waits and retries, nothing is dead-lettered or
/// committed, and the failures are counted as `registry_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_holds_the_record_instead_of_dead_lettering_it() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    env.customer("waiting", &endpoint.url()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("address"));
    drop(dead);
    let record = event(json!({"n": 1}));
    let datum = &record.to_bytes()[10..];
    produce_raw(&env.producer, &env.topics.deliveries, Some(b"waiting"), &confluent(1, datum)).await;

    let mut config = env.config();
    config.schema_registry = SchemaRegistryArgs::with_url(dead_url);
    let consumer = env.start(config);
    wait_until(WAIT, "two failed schema fetches", || {
        consumer.counter("hookline_decode_errors_total", &[("reason", "registry_unavailable")]) >= 2
    })
    .await;
    assert_eq!(consumer.counter("hookline_dlq_records_total", &[]), 0);
    assert_eq!(endpoint.count(), 0);
    consumer.stop().await;
    let committed = hookline_testkit::kafka::committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert!(committed.values().all(|offset| *offset == 0), "nothing committed past the held record: {committed:?}");
}

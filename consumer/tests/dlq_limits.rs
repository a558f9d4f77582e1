//! Dead letters at the size limit, against a real broker (tansu): the publisher's largest event
//! is dead-lettered whole, and a record too large for the DLQ ends as a dead letter without its
//! body (with its coordinates) instead of a write retried forever, so the partition moves on.

mod common;

use std::time::Duration;

use common::{Env, PRODUCER_TOKEN};
use hookline_core::deadletter::headers as dlq_headers;
use hookline_core::envelope::{EventRecord, headers};
use hookline_core::limits;
use hookline_testkit::kafka::{committed_offsets, header, produce_record, read_topic};
use hookline_testkit::{Endpoint, wait_until};
use rdkafka::message::Message;
use serde_json::json;
use serde_json::value::RawValue;

const WAIT: Duration = Duration::from_secs(60);

/// A JSON string of exactly `len` bytes.
fn payload_of(len: usize) -> Box<RawValue> {
    RawValue::from_string(format!("\"{}\"", "x".repeat(len - 2))).expect("JSON")
}

/// An event whose record value (single-object Avro) is exactly `value_len` bytes.
fn event_of_value_len(event_type: &str, value_len: usize) -> EventRecord {
    let value_of = |len: usize| EventRecord::new(event_type, payload_of(len)).to_bytes().len();
    // The envelope's size does not change with the payload's within the same varint width.
    let probe = value_len - 1000;
    let event = EventRecord::new(event_type, payload_of(value_len - (value_of(probe) - probe)));
    assert_eq!(event.to_bytes().len(), value_len);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_dlq_is_dead_lettered_without_its_body_and_the_partition_moves_on() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::ok().await;
    env.customer("healthy", &endpoint.url()).await;
    // Keyed by a customer that does not exist, so it is dead-lettered at once. Its record fits
    // librdkafka's default message.max.bytes (1,000,000) with 100 bytes to spare, so it can be
    // produced, but not with the DLQ headers on top: that DLQ write can never succeed.
    let key = "ghost";
    let header_sizes = |event: &EventRecord| {
        [(headers::EVENT_ID, event.event_id.len()), (headers::EVENT_TYPE, event.event_type.len())]
    };
    let probe = EventRecord::new("test.event", payload_of(10));
    let room = limits::DEFAULT_MESSAGE_MAX_BYTES - 100 - limits::record_size(key.len(), 0, header_sizes(&probe));
    let big = event_of_value_len("test.event", room);
    produce_record(&env.producer, &env.topics.deliveries, key, &big).await;
    let after = env.publish("healthy", json!({"n": 1})).await;

    let consumer = env.start(env.config());
    wait_until(WAIT, "the next record delivered", || endpoint.distinct_ids().contains(&after)).await;
    wait_until(WAIT, "the dead letter counted", || consumer.counter("hookline_dlq_records_total", &[]) == 1).await;
    assert_eq!(consumer.counter("hookline_dlq_bodies_dropped_total", &[]), 1);
    assert_eq!(consumer.counter("hookline_dlq_unwritable_total", &[]), 0);
    assert_eq!(consumer.counter("hookline_dlq_records_total", &[("reason", "unknown_customer")]), 1);
    assert_eq!(consumer.counter("hookline_deliveries_total", &[("outcome", "dead_lettered")]), 1);
    assert_eq!(consumer.counter("hookline_deliveries_total", &[("outcome", "delivered")]), 1);
    consumer.stop().await;

    let dlq = read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dlq.len(), 1);
    let letter = &dlq[0];
    assert_eq!(letter.payload(), None, "the body is dropped");
    assert_eq!(letter.key(), Some(key.as_bytes()));
    assert_eq!(header(letter, headers::EVENT_ID).as_deref(), Some(big.event_id.as_str()));
    assert_eq!(header(letter, headers::EVENT_TYPE).as_deref(), Some("test.event"));
    assert_eq!(header(letter, dlq_headers::DLQ_REASON).as_deref(), Some("unknown_customer"));
    assert_eq!(header(letter, dlq_headers::ORIGINAL_TOPIC).as_deref(), Some(env.topics.deliveries.as_str()));
    assert_eq!(header(letter, dlq_headers::ORIGINAL_PARTITION).as_deref(), Some("0"));
    assert_eq!(header(letter, dlq_headers::ORIGINAL_OFFSET).as_deref(), Some("0"));
    let dropped = header(letter, dlq_headers::DLQ_BODY_DROPPED).expect("the body-dropped header");
    assert!(dropped.contains(&room.to_string()) && dropped.contains("MessageSizeTooLarge"), "{dropped}");
    // The original is still where the coordinates say.
    let originals = read_topic(&env.kafka, &env.topics.deliveries).await;
    assert_eq!(originals[0].payload().map(<[u8]>::len), Some(room));
    // Both records are done, so the commits cover both.
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_event_the_publisher_accepts_is_dead_lettered_whole() {
    let env = Env::new(1).await;
    // A customer without a webhook URL: its records are dead-lettered at once.
    let (mut customer, _secret) =
        hookline_testkit::tenants::signed_customer("unreachable", "http://127.0.0.1:9/webhook", &["*"]);
    customer.webhook_url = None;
    env.put(&customer).await;
    let publisher = env.start_publisher().await;
    let limit = limits::max_record_value(limits::DEFAULT_MESSAGE_MAX_BYTES).expect("limit");
    let largest = event_of_value_len("test.event", limit);
    let body = json!({"type": "test.event", "payload": largest.payload, "target": "unreachable"});
    let (status, answer) = publisher.call(reqwest::Method::POST, "/publish", PRODUCER_TOKEN, Some(body)).await;
    assert_eq!(status, 202, "{answer}");
    publisher.stop().await;

    let consumer = env.start(env.config());
    wait_until(WAIT, "the dead letter", || consumer.counter("hookline_dlq_records_total", &[]) == 1).await;
    assert_eq!(consumer.counter("hookline_dlq_bodies_dropped_total", &[]), 0);
    consumer.stop().await;

    let original = read_topic(&env.kafka, &env.topics.deliveries).await;
    assert_eq!(original.len(), 1);
    assert_eq!(original[0].payload().map(<[u8]>::len), Some(limit), "the record is at the limit");
    let dlq = read_topic(&env.kafka, &env.topics.dlq).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].payload(), original[0].payload(), "dead-lettered whole");
    assert_eq!(header(&dlq[0], dlq_headers::DLQ_REASON).as_deref(), Some("no_webhook_url"));
    assert_eq!(header(&dlq[0], dlq_headers::DLQ_BODY_DROPPED), None);
    assert_eq!(committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await.get(&0), Some(&1));
}

//! Kafka helpers for tests: produce events, read a topic back, read a group's commits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookline_core::config::KafkaArgs;
use hookline_core::envelope::EventRecord;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A producer for tests (same settings as Hookline's).
pub fn producer(kafka: &KafkaArgs) -> FutureProducer {
    kafka::producer_config(kafka, "hookline-test").create().expect("create producer")
}

/// Produces one event for `customer` to `topic` and returns its event id.
pub async fn produce_event(
    producer: &FutureProducer,
    topic: &str,
    customer: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> String {
    let raw = serde_json::value::to_raw_value(&payload).expect("payload");
    let event = EventRecord::new(event_type, raw);
    produce_record(producer, topic, customer, &event).await;
    event.event_id
}

/// Produces `event` for `customer` to `topic`, as the publisher does (a duplicate or a replay when
/// the event was produced before).
pub async fn produce_record(producer: &FutureProducer, topic: &str, customer: &str, event: &EventRecord) {
    let value = event.to_bytes();
    producer
        .send(FutureRecord::to(topic).key(customer).payload(&value).headers(event.record_headers()), TIMEOUT)
        .await
        .map_err(|(e, _)| e)
        .expect("produce event");
}

/// Produces raw bytes (poison records).
pub async fn produce_raw(producer: &FutureProducer, topic: &str, key: Option<&[u8]>, value: &[u8]) {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer.send(record, TIMEOUT).await.map_err(|(e, _)| e).expect("produce raw");
}

/// Flushes and drops a producer off the runtime.
pub async fn close_producer(producer: FutureProducer) {
    tokio::task::spawn_blocking(move || {
        let _ = producer.flush(TIMEOUT);
    })
    .await
    .expect("flush");
}

/// Every record currently in `topic`, partition by partition in offset order.
///
/// Reads up to the high watermarks, then on until nothing arrives for a second: tansu 0.6
/// reports a high watermark one past the *first* record of the last batch, which undercounts
/// when records were produced in batches.
pub async fn read_topic(kafka: &KafkaArgs, topic: &str) -> Vec<OwnedMessage> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = kafka::reader(&kafka, "hookline-test-reader").expect("reader");
        let partitions = kafka::topic_partitions(&reader, &topic, TIMEOUT).expect("partitions");
        let mut wanted = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let (low, high) = reader.fetch_watermarks(&topic, partition, TIMEOUT).expect("watermarks");
            if high > low {
                wanted.insert(partition, high);
                assignment.add_partition_offset(&topic, partition, Offset::Offset(low)).expect("assign");
            }
        }
        let mut found: Vec<OwnedMessage> = Vec::new();
        if wanted.is_empty() {
            return found;
        }
        reader.assign(&assignment).expect("assign");
        let deadline = Instant::now() + TIMEOUT;
        let mut quiet_since = Instant::now();
        while !wanted.is_empty() || quiet_since.elapsed() < Duration::from_secs(1) {
            assert!(Instant::now() < deadline, "timed out reading {topic}");
            if let Some(message) = reader.poll(Duration::from_millis(100)) {
                let message = message.expect("read");
                if wanted.get(&message.partition()).is_some_and(|high| message.offset() + 1 >= *high) {
                    wanted.remove(&message.partition());
                }
                found.push(message.detach());
                quiet_since = Instant::now();
            }
        }
        found.sort_by_key(|m| (m.partition(), m.offset()));
        found
    })
    .await
    .expect("reader task")
}

/// The offsets `group` committed on `topic`, by partition (partitions without a commit omitted).
pub async fn committed_offsets(kafka: &KafkaArgs, group: &str, topic: &str) -> HashMap<i32, i64> {
    let kafka = kafka.clone();
    let group = group.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            kafka::group_consumer_config(&kafka, "hookline-test-offsets", &group).create().expect("consumer");
        let partitions = kafka::topic_partitions(&consumer, &topic, TIMEOUT).expect("partitions");
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&topic, partition);
        }
        let committed = consumer.committed_offsets(list, TIMEOUT).expect("committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("offsets task")
}

/// A header of `message` as UTF-8.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

//! The retry topic and the parking state, as one partition worker uses them: parking a record
//! (unchanged, with [`hookline_core::parking`]'s headers, to the same partition of the retry
//! topic), writing and deleting a customer's parking state, reading the state back on
//! assignment, and reading a parked customer's records back in order ([`RetryReader`]).
//!
//! Writes go through one idempotent producer (the DLQ's), so the writes of one partition land in
//! the order they were sent; a park is retried until the broker acknowledges it
//! ([`kafka::produce_until_acknowledged`]), since the record's offset is committed only then.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use hookline_core::config::KafkaArgs;
use hookline_core::kafka::{self, Backoff};
use hookline_core::parking::{self, ParkState, Parking};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF: Backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(10) };
/// How long a metadata or watermark request of a reader may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll of a reader.
const POLL: Duration = Duration::from_millis(100);
/// At the high watermark, how long a poll may stay empty before the read is over: records
/// fetched together arrive at once, so this only bounds the wait for a fetch already made.
const TAIL_POLL: Duration = Duration::from_millis(50);
/// A reader's fetches answer within this: a parked customer's next record is wanted now, and a
/// broker may hold a fetch until its deadline.
const READER_DEFAULTS: &[(&str, &str)] = &[("fetch.wait.max.ms", "10"), ("auto.offset.reset", "earliest")];

/// Where parked records and parking states are written.
#[derive(Clone)]
pub struct ParkedStore {
    pub producer: FutureProducer,
    pub kafka: KafkaArgs,
    pub retry_topic: String,
    pub parking_topic: String,
    pub metrics: Metrics,
}

impl std::fmt::Debug for ParkedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedStore").field("retry_topic", &self.retry_topic).finish_non_exhaustive()
    }
}

impl ParkedStore {
    /// Writes `record` to the retry topic's partition of the same number, and returns its offset
    /// there once acknowledged. `Err` only when the broker refuses it for good
    /// ([`kafka::is_permanent`]).
    pub async fn park(&self, record: &OwnedMessage, what: &Parking) -> Result<i64, KafkaError> {
        let headers = parking::parked_headers(record, what);
        let (producer, topic, partition) = (&self.producer, &self.retry_topic, record.partition());
        let send = || {
            let mut out = FutureRecord::to(topic).partition(partition).headers(headers.clone());
            if let Some(key) = record.key() {
                out = out.key(key);
            }
            if let Some(value) = record.payload() {
                out = out.payload(value);
            }
            async move { producer.send(out, PRODUCE_TIMEOUT).await.map(|d| d.offset).map_err(|(error, _)| error) }
        };
        kafka::produce_until_acknowledged(send, BACKOFF, kafka::is_permanent, |error, retry_in| {
            self.metrics.parking_write_errors.inc();
            tracing::warn!(topic = %topic, partition, %error, ?retry_in, "writing a record to the retry topic failed");
        })
        .await
    }

    /// Writes `state` (or, with `None`, the tombstone) of customer `key` on `partition` of the
    /// parking-state topic, and returns once acknowledged (a state is a few dozen bytes: no
    /// failure is about the record, so it is retried until it passes).
    pub async fn write_state(&self, partition: i32, key: &[u8], state: Option<&ParkState>) {
        let value = state.map(ParkState::to_value);
        let (producer, topic) = (&self.producer, &self.parking_topic);
        let value = value.as_deref();
        let send = || {
            let mut out = FutureRecord::<[u8], [u8]>::to(topic).partition(partition).key(key);
            if let Some(value) = value {
                out = out.payload(value);
            }
            async move { producer.send(out, PRODUCE_TIMEOUT).await.map(|_| ()).map_err(|(error, _)| error) }
        };
        let never_permanent = |_: &KafkaError| false;
        let _ = kafka::produce_until_acknowledged(send, BACKOFF, never_permanent, |error, retry_in| {
            self.metrics.parking_write_errors.inc();
            tracing::warn!(topic = %topic, partition, %error, ?retry_in, "writing a parking state failed");
        })
        .await;
    }

    /// The parking states of `partition` (its customers parked), read to the partition's end.
    pub async fn load(&self, partition: i32) -> Result<HashMap<Vec<u8>, ParkState>, String> {
        let (kafka, topic) = (self.kafka.clone(), self.parking_topic.clone());
        tokio::task::spawn_blocking(move || load(&kafka, &topic, partition).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }

    /// A reader of `partition` of the retry topic.
    pub fn reader(&self, partition: i32) -> RetryReader {
        RetryReader::start(self.kafka.clone(), self.retry_topic.clone(), partition)
    }
}

/// Checks that `topic` (the retry topic or the parking state) has as many partitions as the
/// delivery topic: partition `p` of each holds what partition `p` of the delivery topic parked.
pub fn check_layout(reader: &BaseConsumer, topic: &str, deliveries: &str) -> crate::Result<()> {
    match kafka::partition_count_mismatch(reader, topic, deliveries, READ_TIMEOUT)? {
        Some((partitions, expected)) => Err(crate::Error::ParkingLayout {
            topic: topic.to_owned(),
            partitions,
            deliveries: deliveries.to_owned(),
            expected,
        }),
        None => Ok(()),
    }
}

fn load(kafka: &KafkaArgs, topic: &str, partition: i32) -> Result<HashMap<Vec<u8>, ParkState>, KafkaError> {
    let reader: BaseConsumer =
        kafka::reader_config_with(kafka, "hookline-consumer-parking", READER_DEFAULTS).create()?;
    let (_, high) = reader.fetch_watermarks(topic, partition, READ_TIMEOUT)?;
    let mut states = HashMap::new();
    if high <= 0 {
        return Ok(states);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    reader.assign(&assignment)?;
    let deadline = std::time::Instant::now() + READ_TIMEOUT * 3;
    let mut next = 0;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut));
        }
        // Below the high watermark, wait as long as it takes; at it, only drain what a fetch
        // already brought (a broker may report a high watermark inside the last batch).
        let Some(message) = reader.poll(if next < high { POLL } else { TAIL_POLL }) else {
            if next >= high {
                break;
            }
            continue;
        };
        let message = message?;
        next = message.offset() + 1;
        let Some(key) = message.key() else { continue };
        match message.payload() {
            None => {
                states.remove(key);
            }
            Some(value) => match ParkState::from_value(value) {
                Some(state) => {
                    states.insert(key.to_vec(), state);
                }
                None => {
                    tracing::warn!(topic, partition, offset = message.offset(), "ignoring an unreadable parking state")
                }
            },
        }
    }
    Ok(states)
}

/// Reads a parked customer's records back from one partition of the retry topic, in order: one
/// thread with its own reader, started when the partition first needs it and stopped with its
/// handle. Requests are served one at a time; consecutive reads of one customer continue where
/// the last one stopped.
#[derive(Debug)]
pub struct RetryReader {
    requests: mpsc::Sender<Request>,
}

struct Request {
    key: Vec<u8>,
    from: i64,
    answer: oneshot::Sender<Result<Option<OwnedMessage>, String>>,
}

impl RetryReader {
    fn start(kafka: KafkaArgs, topic: String, partition: i32) -> Self {
        let (requests, incoming) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name(format!("hookline-retry-reader-{partition}"))
            .spawn(move || serve(&kafka, &topic, partition, &incoming));
        if let Err(error) = spawned {
            tracing::error!(partition, %error, "cannot start the retry topic's reader");
        }
        Self { requests }
    }

    /// The first record keyed `key` at or after offset `from`; `None` when there is none up to the
    /// partition's end.
    pub async fn next(&self, key: &[u8], from: i64) -> Result<Option<OwnedMessage>, String> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Request { key: key.to_vec(), from, answer })
            .map_err(|_| "the retry topic's reader stopped".to_owned())?;
        answered.await.map_err(|_| "the retry topic's reader stopped".to_owned())?
    }
}

fn serve(kafka: &KafkaArgs, topic: &str, partition: i32, requests: &mpsc::Receiver<Request>) {
    let reader: BaseConsumer =
        match kafka::reader_config_with(kafka, "hookline-consumer-retry", READER_DEFAULTS).create() {
            Ok(reader) => reader,
            Err(error) => {
                for request in requests {
                    let _ = request.answer.send(Err(format!("cannot create the retry topic's reader: {error}")));
                }
                return;
            }
        };
    // The offset the reader's next message has, once assigned.
    let mut position: Option<i64> = None;
    let mut high = 0;
    for request in requests {
        let found = find(&reader, topic, partition, &request, &mut position, &mut high);
        if found.is_err() {
            position = None;
        }
        let _ = request.answer.send(found.map_err(|e| e.to_string()));
    }
}

/// Points `reader` at `offset`: the first time by assigning the partition, then by seeking (an
/// assignment of a partition already assigned does not move its fetch position).
fn move_to(reader: &BaseConsumer, topic: &str, partition: i32, offset: i64, assigned: bool) -> Result<(), KafkaError> {
    if assigned {
        return reader.seek(topic, partition, Offset::Offset(offset), READ_TIMEOUT);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    reader.assign(&assignment)
}

fn find(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    request: &Request,
    position: &mut Option<i64>,
    high: &mut i64,
) -> Result<Option<OwnedMessage>, KafkaError> {
    if *position != Some(request.from) {
        move_to(reader, topic, partition, request.from, position.is_some())?;
        *position = Some(request.from);
    }
    loop {
        if request.answer.is_closed() {
            *position = None;
            return Ok(None);
        }
        let at = position.unwrap_or(request.from);
        let mut at_end = false;
        if at >= *high {
            let (low, latest) = reader.fetch_watermarks(topic, partition, READ_TIMEOUT)?;
            *high = latest;
            at_end = at >= latest;
            if at < low {
                // Nothing below `low` exists any more: read on from it.
                move_to(reader, topic, partition, low, true)?;
                *position = Some(low);
                tracing::error!(
                    topic,
                    partition,
                    from = at,
                    low,
                    "parked records were removed by the retry topic's retention before they were delivered: they \
                     are LOST; raise the retry topic's retention.ms above --retry-schedule's total"
                );
            }
        }
        // At the high watermark, only what a fetch already brought is drained (a broker may
        // report a high watermark inside the last batch): then there is no record of the key.
        let Some(message) = reader.poll(if at_end { TAIL_POLL } else { POLL }) else {
            if at_end {
                return Ok(None);
            }
            continue;
        };
        let message = message?;
        // The retry topic is never compacted nor written in transactions: its offsets follow
        // each other. One below the position was fetched before the reader was moved.
        let expected = position.unwrap_or(request.from);
        if message.offset() < expected {
            continue;
        }
        if message.offset() > expected {
            tracing::error!(
                topic,
                partition,
                expected,
                got = message.offset(),
                "the broker answered a fetch of the retry topic from a later offset than asked: the parked records \
                 in between are skipped"
            );
        }
        *position = Some(message.offset() + 1);
        if message.key() == Some(request.key.as_slice()) {
            return Ok(Some(message.detach()));
        }
    }
}

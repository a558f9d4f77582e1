//! librdkafka client builders.
//!
//! Every client starts from [`KafkaArgs`]: the bootstrap servers, then Hookline's defaults for the
//! role, then the operator's `--kafka-property` pass-through, which wins over both so a deployment
//! can tune anything (SASL, SSL, timeouts) without a new flag. The `client.id` the binaries give
//! their clients comes from [`client_id`] (a `--kafka-property client.id=...` still wins).
//!
//! [`produce_until_acknowledged`] is the one retry loop of the writes an offset waits for (the
//! dead letter, the ledger entry): retried with backoff until the broker acknowledges them. The
//! record-header helpers at the end are shared by the dead-letter and parking contracts.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaArgs;
use crate::{Error, Result};

/// Defaults for every producer: idempotent, acknowledged by all in-sync replicas, batched for a
/// few milliseconds so concurrent requests share a broker round trip.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("message.timeout.ms", "30000"),
];

/// Defaults for group consumers: offsets are stored by the application only after a record is
/// done (ACK or DLQ acknowledged) and committed from that store in the background.
///
/// Prefetch is bounded per partition: the consumer splits every partition's queue off, and with
/// split queues librdkafka applies `queued.max.messages.kbytes` to *each partition* (its default,
/// 64 MiB, is meant for one shared queue: 100 assigned partitions could hold 6.4 GB of records
/// fetched ahead). A partition's worker takes one record at a time, so a few MiB ahead keep it
/// busy; the bound is [`PREFETCH_KIB_PER_PARTITION`] (plus at most one fetch of
/// `fetch.message.max.bytes`).
const GROUP_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    ("queued.max.messages.kbytes", PREFETCH_KIB_PER_PARTITION),
];

/// Records fetched ahead per assigned partition, in KiB (librdkafka's
/// `queued.max.messages.kbytes`, which `--kafka-property` can override).
pub const PREFETCH_KIB_PER_PARTITION: &str = "8192";

/// The `client.id` of a process's Kafka clients: `<role>-<host>-<pid>` (e.g.
/// `hookline-consumer-web-3-4711`), so that a group member, a broker's request log or a quota
/// names the process it came from. `--kafka-property client.id=...` overrides it, like any
/// default. The host is `/proc/sys/kernel/hostname` (Linux), else `HOSTNAME`, else `unknown`.
pub fn client_id(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    client_id_for(role, &host, std::process::id())
}

/// [`client_id`] for this host name and process id. Characters other than ASCII letters, digits,
/// `.`, `_` and `-` become `-` (client ids end up in metric names and logs); no host: `unknown`.
fn client_id_for(role: &str, host: &str, pid: u32) -> String {
    let host: String = host
        .trim()
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .collect();
    let host = if host.is_empty() { "unknown" } else { &host };
    format!("{role}-{host}-{pid}")
}

fn base(kafka: &KafkaArgs, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers).set("client.id", client_id);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &kafka.kafka_properties {
        config.set(key, value);
    }
    config
}

/// Configuration for an idempotent, `acks=all` producer. Pass-through properties of group
/// membership ([`GROUP_MEMBERSHIP_PROPERTIES`]) are left out.
pub fn producer_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id, PRODUCER_DEFAULTS);
    for key in GROUP_MEMBERSHIP_PROPERTIES {
        config.remove(key);
    }
    config
}

/// Configuration for a producer whose writer waits for each acknowledgement before its next
/// write (a partition parking its records one after another): like [`producer_config`], without
/// the linger, which would only delay every write by itself. A `--kafka-property linger.ms`
/// still wins.
pub fn unbatched_producer_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = producer_config(kafka, client_id);
    if !kafka.kafka_properties.iter().any(|(key, _)| key == "linger.ms") {
        config.set("linger.ms", "0");
    }
    config
}

/// librdkafka's consumer-group properties other than `group.id`. A consumer builds its group
/// member and its producer from the same [`KafkaArgs`], so a `--kafka-property
/// session.timeout.ms=...` meant for the member reached the producer too, which ignores it and
/// warns so (`CONFWARN`) at every start; a producer is not given them.
const GROUP_MEMBERSHIP_PROPERTIES: &[&str] = &[
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
];

/// Configuration for a consumer-group member with manual offset store and background commits.
pub fn group_consumer_config(kafka: &KafkaArgs, client_id: &str, group_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id, GROUP_CONSUMER_DEFAULTS);
    if !kafka.kafka_properties.iter().any(|(k, _)| k == "group.id") {
        config.set("group.id", group_id);
    }
    config
}

/// Defaults for readers: they never commit.
const READER_DEFAULTS: &[(&str, &str)] =
    &[("enable.auto.commit", "false"), ("enable.auto.offset.store", "false"), ("enable.partition.eof", "false")];

/// Configuration for a reader that assigns partitions itself and never commits (the customer
/// directory, DLQ inspection). librdkafka only allows `assign()` on a consumer with a `group.id`;
/// this one never joins its group (no `subscribe`) nor commits to it.
pub fn reader_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    reader_config_with(kafka, client_id, &[])
}

/// [`reader_config`] with `defaults` of the caller's own, which `--kafka-property` still
/// overrides like every default.
pub fn reader_config_with(kafka: &KafkaArgs, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let defaults: Vec<(&str, &str)> = READER_DEFAULTS.iter().chain(defaults).copied().collect();
    let mut config = base(kafka, client_id, &defaults);
    if !kafka.kafka_properties.iter().any(|(k, _)| k == "group.id") {
        config.set("group.id", READER_GROUP);
    }
    config
}

/// Group id of readers; nothing is ever committed under it.
pub const READER_GROUP: &str = "hookline-reader";

/// Configuration for admin clients and metadata look-ups.
pub fn admin_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    base(kafka, client_id, &[])
}

/// `error`, as [`Error::Unreachable`] naming `kafka.brokers` when it says that no broker could be
/// reached (transport failure, all brokers down, an unresolvable name, no answer in time); any
/// other error unchanged. librdkafka's own text names neither the address nor the setting.
pub fn name_brokers(error: Error, kafka: &KafkaArgs) -> Error {
    match error {
        Error::Kafka(source) if is_unreachable(&source) => {
            Error::Unreachable { brokers: kafka.brokers.clone(), source: Box::new(source) }
        }
        other => other,
    }
}

fn is_unreachable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
        )
    )
}

/// Partition ids of `topic`, or [`Error::MissingTopic`]. Blocking: call off the async runtime.
pub fn topic_partitions<C: Consumer>(consumer: &C, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::MissingTopic { topic: topic.to_owned() });
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(Error::MissingTopic { topic: topic.to_owned() });
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The partition counts of `topic` and of `deliveries`, when they differ: a topic co-partitioned
/// with the delivery topic (partition `p` of each about the same customers) must have as many.
/// Either missing is [`Error::MissingTopic`]. Blocking: call off the async runtime.
pub fn partition_count_mismatch<C: Consumer>(
    consumer: &C,
    topic: &str,
    deliveries: &str,
    timeout: Duration,
) -> Result<Option<(usize, usize)>> {
    let expected = topic_partitions(consumer, deliveries, timeout)?.len();
    let found = topic_partitions(consumer, topic, timeout)?.len();
    Ok((found != expected).then_some((found, expected)))
}

/// Where the records written since some moment begin in a partition, as the broker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSince {
    /// The first offset written at or after that moment.
    At(i64),
    /// Nothing was written since.
    Nothing,
    /// The broker cannot say (it does not look offsets up by time).
    Unknown,
}

/// Per partition of `topic`, where the records written within `since` before now begin (one
/// `ListOffsets` by time for all of them). Blocking: call off the async runtime.
pub fn first_offsets_since(
    reader: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    since: Duration,
    timeout: Duration,
) -> HashMap<i32, FirstSince> {
    let unknown = || partitions.iter().map(|&partition| (partition, FirstSince::Unknown)).collect();
    let Some(start) = SystemTime::now().checked_sub(since) else { return unknown() };
    let since_ms = start.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        if query.add_partition_offset(topic, partition, Offset::Offset(since_ms)).is_err() {
            return unknown();
        }
    }
    let answer = match reader.offsets_for_times(query, timeout) {
        Ok(answer) => answer,
        Err(error) => {
            tracing::info!(%topic, %error, "the broker cannot look offsets up by time");
            return unknown();
        }
    };
    partitions
        .iter()
        .map(|&partition| {
            let first = match answer.find_partition(topic, partition).map(|found| found.offset()) {
                Some(Offset::Offset(offset)) => FirstSince::At(offset),
                Some(Offset::End) => FirstSince::Nothing,
                _ => FirstSince::Unknown,
            };
            (partition, first)
        })
        .collect()
}

/// How [`produce_until_acknowledged`] waits after a failed attempt: `first`, doubled after each
/// further failure up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Produces with `send` until the broker acknowledges the record, and returns what `send`
/// returned then. A failed attempt is reported to `failed` (for the caller's metrics and logs)
/// with the wait before the next attempt, then retried after it ([`Backoff`]); an error
/// `is_permanent` calls permanent is reported with no wait and returned: the same record would be
/// refused again whatever the wait. Cancel by dropping the future (a revoked partition, shutdown).
///
/// `send` makes one attempt: it builds the record anew each time (a `FutureRecord` is consumed by
/// the send) and maps the send's error to the [`KafkaError`].
pub async fn produce_until_acknowledged<T, S, F>(
    mut send: S,
    backoff: Backoff,
    is_permanent: impl Fn(&KafkaError) -> bool,
    mut failed: impl FnMut(&KafkaError, Option<Duration>),
) -> std::result::Result<T, KafkaError>
where
    S: FnMut() -> F,
    F: Future<Output = std::result::Result<T, KafkaError>>,
{
    let mut delay = backoff.first;
    loop {
        let error = match send().await {
            Ok(acknowledged) => return Ok(acknowledged),
            Err(error) => error,
        };
        if is_permanent(&error) {
            failed(&error, None);
            return Err(error);
        }
        failed(&error, Some(delay));
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(backoff.max);
    }
}

/// Whether a failed produce would fail again with the same record, whatever the wait: it is too
/// large for the producer or the topic, or the broker rejects it as invalid. Anything else
/// (timeouts, broker or leader unavailable, authorization, a missing topic an operator can
/// create) may pass.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Creates a group-less reader (see [`reader_config`]).
pub fn reader(kafka: &KafkaArgs, client_id: &str) -> Result<BaseConsumer> {
    Ok(reader_config(kafka, client_id).create()?)
}

// --- Record headers (shared by the dead-letter and parking contracts) ---------------------------

/// Every header of `original`, in order.
pub(crate) fn original_headers<M: Message>(original: &M) -> impl Iterator<Item = Header<'_, &[u8]>> {
    original.headers().into_iter().flat_map(|existing| existing.iter())
}

/// `kept` as owned headers.
pub(crate) fn owned_headers<'a>(kept: impl Iterator<Item = Header<'a, &'a [u8]>>) -> OwnedHeaders {
    kept.fold(OwnedHeaders::new(), |out, header| out.insert(Header { key: header.key, value: header.value }))
}

/// `out` with the text headers `added` appended.
pub(crate) fn append_text_headers(out: OwnedHeaders, added: Vec<(&str, &str)>) -> OwnedHeaders {
    added.into_iter().fold(out, |out, (key, value)| out.insert(Header { key, value: Some(value) }))
}

/// The headers of `message` whose value is UTF-8 text, in order.
pub(crate) fn text_headers<M: Message>(message: &M) -> impl Iterator<Item = (&str, &str)> {
    original_headers(message)
        .filter_map(|header| Some((header.key, header.value.and_then(|v| std::str::from_utf8(v).ok())?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_properties_override_defaults() {
        let args =
            KafkaArgs::new("b:9092").with_property("linger.ms", "50").with_property("security.protocol", "SASL_SSL");
        let config = producer_config(&args, "test");
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn an_unbatched_producer_does_not_linger_unless_told_to() {
        let plain = KafkaArgs::new("b:9092").with_property("security.protocol", "SASL_SSL");
        let config = unbatched_producer_config(&plain, "p");
        assert_eq!((config.get("linger.ms"), config.get("enable.idempotence")), (Some("0"), Some("true")));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        let told = plain.with_property("linger.ms", "7");
        assert_eq!(unbatched_producer_config(&told, "p").get("linger.ms"), Some("7"));
    }

    #[test]
    fn group_membership_properties_reach_group_members_but_not_producers() {
        let args = KafkaArgs::new("b:9092")
            .with_property("session.timeout.ms", "6000")
            .with_property("heartbeat.interval.ms", "500")
            .with_property("linger.ms", "50");
        let producer = producer_config(&args, "p");
        assert_eq!((producer.get("session.timeout.ms"), producer.get("heartbeat.interval.ms")), (None, None));
        assert_eq!(producer.get("linger.ms"), Some("50"));
        let member = group_consumer_config(&args, "c", "g");
        assert_eq!(member.get("session.timeout.ms"), Some("6000"));
        assert_eq!(member.get("heartbeat.interval.ms"), Some("500"));
    }

    #[test]
    fn client_ids_name_the_role_host_and_process_unless_the_operator_sets_one() {
        assert_eq!(client_id_for("hookline-consumer", "web-3\n", 4711), "hookline-consumer-web-3-4711");
        assert_eq!(client_id_for("hookline-publisher", "", 1), "hookline-publisher-unknown-1");
        assert_eq!(client_id_for("r", "a b/ü.example", 2), "r-a-b--.example-2");
        assert_eq!(client_id_for("r", &"h".repeat(300), 3).len(), "r--3".len() + 64, "bounded");
        let ours = client_id("hookline-consumer");
        assert!(
            ours.starts_with("hookline-consumer-") && ours.ends_with(&format!("-{}", std::process::id())),
            "{ours}"
        );

        let defaults = KafkaArgs::new("b:9092");
        assert_eq!(group_consumer_config(&defaults, &ours, "g").get("client.id"), Some(ours.as_str()));
        assert_eq!(producer_config(&defaults, &ours).get("client.id"), Some(ours.as_str()));
        let operator = KafkaArgs::new("b:9092").with_property("client.id", "billing-consumer");
        assert_eq!(group_consumer_config(&operator, &ours, "g").get("client.id"), Some("billing-consumer"));
        assert_eq!(producer_config(&operator, &ours).get("client.id"), Some("billing-consumer"));
        assert_eq!(reader_config(&operator, &ours).get("client.id"), Some("billing-consumer"));
    }

    #[test]
    fn unreachable_brokers_are_named_with_the_setting() {
        let kafka = KafkaArgs::new("127.0.0.1:1,b:9092");
        let transport = Error::Kafka(KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure));
        let named = name_brokers(transport, &kafka);
        assert!(matches!(named, Error::Unreachable { ref brokers, .. } if brokers == "127.0.0.1:1,b:9092"), "{named}");
        let text = named.to_string();
        assert!(
            text.starts_with("cannot reach Kafka at 127.0.0.1:1,b:9092 (") && text.contains("BrokerTransportFailure"),
            "{text}"
        );
        assert!(text.contains("--brokers / KAFKA_BROKERS"), "{text}");

        let timed_out = Error::Kafka(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut));
        assert!(matches!(name_brokers(timed_out, &kafka), Error::Unreachable { .. }));
        // Answers from a reachable broker keep their own message.
        let missing = Error::MissingTopic { topic: "t".into() };
        assert!(matches!(name_brokers(missing, &kafka), Error::MissingTopic { .. }));
        let refused = Error::Kafka(KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(matches!(name_brokers(refused, &kafka), Error::Kafka(_)));
    }

    #[test]
    fn group_consumers_store_offsets_manually() {
        let config = group_consumer_config(&KafkaArgs::new("b:9092"), "c", "hookline");
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("hookline"));
    }

    #[test]
    fn group_consumers_fetch_ahead_a_bounded_amount_per_partition() {
        let config = group_consumer_config(&KafkaArgs::new("b:9092"), "c", "hookline");
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("8192"), "not librdkafka's 64 MiB per partition");
        let tuned = KafkaArgs::new("b:9092").with_property("queued.max.messages.kbytes", "1024");
        assert_eq!(group_consumer_config(&tuned, "c", "hookline").get("queued.max.messages.kbytes"), Some("1024"));
    }

    #[test]
    fn only_errors_about_the_record_itself_are_permanent() {
        use RDKafkaErrorCode as Code;
        for code in
            [Code::MessageSizeTooLarge, Code::InvalidMessageSize, Code::MessageBatchTooLarge, Code::InvalidRecord]
        {
            assert!(is_permanent(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        for code in [
            Code::MessageTimedOut,
            Code::QueueFull,
            Code::BrokerTransportFailure,
            Code::NotLeaderForPartition,
            Code::UnknownTopicOrPartition,
            Code::TopicAuthorizationFailed,
            Code::RequestTimedOut,
        ] {
            assert!(!is_permanent(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(!is_permanent(&KafkaError::Canceled));
    }

    const BACKOFF: Backoff = Backoff { first: Duration::from_millis(500), max: Duration::from_secs(2) };

    /// Attempts failing with `errors` in turn, then acknowledged with the attempt's number.
    fn attempts(
        errors: Vec<RDKafkaErrorCode>,
    ) -> impl FnMut() -> std::future::Ready<std::result::Result<usize, KafkaError>> {
        let mut errors = errors.into_iter();
        let mut made = 0;
        move || {
            made += 1;
            std::future::ready(errors.next().map_or(Ok(made), |code| Err(KafkaError::MessageProduction(code))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn passing_failures_are_retried_with_capped_backoff_until_acknowledged() {
        let start = tokio::time::Instant::now();
        let mut reported = Vec::new();
        let transient = vec![RDKafkaErrorCode::MessageTimedOut; 4];
        let acknowledged = produce_until_acknowledged(attempts(transient), BACKOFF, is_permanent, |error, retry_in| {
            reported.push((error.rdkafka_error_code(), retry_in));
        })
        .await;
        assert_eq!(acknowledged.unwrap(), 5, "the fifth attempt");
        let waits: Vec<_> = reported.iter().map(|(_, wait)| wait.unwrap().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 2000], "doubling, capped");
        assert!(reported.iter().all(|(code, _)| *code == Some(RDKafkaErrorCode::MessageTimedOut)));
        assert_eq!(start.elapsed(), Duration::from_millis(5500), "the waits are slept (paused clock)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_ends_the_loop_reported_without_a_wait() {
        let mut reported = Vec::new();
        let errors = vec![RDKafkaErrorCode::QueueFull, RDKafkaErrorCode::MessageSizeTooLarge];
        let refused = produce_until_acknowledged(attempts(errors), BACKOFF, is_permanent, |error, retry_in| {
            reported.push((error.rdkafka_error_code(), retry_in));
        })
        .await;
        assert_eq!(refused.unwrap_err().rdkafka_error_code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
        assert_eq!(
            reported,
            [
                (Some(RDKafkaErrorCode::QueueFull), Some(Duration::from_millis(500))),
                (Some(RDKafkaErrorCode::MessageSizeTooLarge), None)
            ]
        );
        // A caller that calls nothing permanent retries that too.
        let errors = vec![RDKafkaErrorCode::MessageSizeTooLarge; 2];
        let mut failures = 0;
        let acknowledged = produce_until_acknowledged(attempts(errors), BACKOFF, |_| false, |_, _| failures += 1).await;
        assert_eq!((acknowledged.unwrap(), failures), (3, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn passing_failures_are_retried_until_the_caller_drops_the_future() {
        let mut made = 0;
        let never = || {
            made += 1;
            std::future::ready(Err::<(), _>(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))
        };
        let looping = produce_until_acknowledged(never, BACKOFF, is_permanent, |_, _| {});
        assert!(tokio::time::timeout(Duration::from_secs(60), looping).await.is_err(), "it never gives up by itself");
        // Attempts at 0, 0.5 and 1.5 s, then every 2 s from 3.5 to 59.5 s.
        assert_eq!(made, 32);
    }
}

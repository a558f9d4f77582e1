//! Hookline's delivery worker.
//!
//! A member of a Kafka consumer group on the delivery topic. Each assigned partition gets its own
//! worker that handles records in offset order: POST to the customer's webhook, retry with
//! exponential backoff on failure, dead-letter after the last attempt. In partition mode (the
//! default) a partition's records go one at a time, so retries block the whole partition; in key
//! mode (`--ordering key`) each record key has its own lane, so they block only their key. With
//! `--park-after`, a customer still failing after that many attempts is parked: its records go
//! to the retry topic, in order, and are tried again on `--retry-schedule`. A record's offset is
//! stored for commit only after the endpoint's ACK, the DLQ's or the retry topic's
//! acknowledgement, so a crash at any point means redelivery, never loss.
//!
//! The main task keeps polling the consumer while workers wait on slow endpoints, so long retries
//! never exceed `max.poll.interval.ms`, and rebalance callbacks run promptly: a revoked
//! partition's worker gives up the record it was waiting to retry (unstored) but finishes an
//! attempt in flight, and the revocation waits for it, its ledger writes and a commit (bounded by
//! `--revoke-drain-timeout`) before the partition moves.
//!
//! # Layout
//! Public (used by the binary, tests, the demo and the bench): [`config`], [`ledger`],
//! [`metrics`]; the rest is internal.
//! - [`config`]: flags and environment variables.
//! - `rebalance`: rebalance and commit callbacks; splits each assigned partition's queue, and
//!   on revocation waits for the partition's worker to drain, then commits.
//! - `partition`: the partition worker: takes its records in offset order, runs them through its
//!   `lanes` (one per key in key mode, a single one in partition mode), and applies the commit
//!   rule (`offsets`).
//! - `lanes`: the key-ordered lanes of one partition and their bounds (pure).
//! - `parking`: the parked customers of one partition and the rules of the retry schedule
//!   (pure); `parked`: the retry topic and the parking state as a worker writes and reads them.
//! - `dedup`: a partition's de-duplication, owned by its worker: restored on assignment, asked
//!   before a record is sent, recording each ACK in the ledger (at most `--ledger-max-in-flight`
//!   writes awaiting the broker), kept on revocation.
//! - [`ledger`]: the delivery ledger (what was delivered, read back on assignment, bounded per
//!   partition, kept across a revoke and reassignment) that keeps a record seen again from being
//!   sent again.
//! - `offsets`: the commit watermark of a partition.
//! - `delivery`: the delivery of one record (decoding with `hookline_core::codec`, look-up,
//!   attempts, retries, DLQ): gathers the facts of each step and acts on `decision`'s answer.
//! - `decision`: the pure decision after each step: ACK, retry after a delay, dead-letter with a
//!   reason, or wait for the infrastructure.
//! - `seal`: the bytes of one attempt: JWE-encrypted when the customer has a key, signed.
//! - `webhook`: one HTTP attempt, behind the SSRF guard.
//! - `retry`: the backoff schedule and `Retry-After` parsing.
//! - `pacing`: per-customer rate limits: when a customer's next attempt may start (pure).
//! - `attempt_log`: the delivery log (`hookline_core::attempts`): a record per attempt and per
//!   parking, dead-letter or skip decision, handed to a batching producer without waiting, dropped
//!   and counted when its bounded queue is full.
//! - `dlq`: writing dead letters (their headers are `hookline_core::deadletter`'s), and their
//!   body-less form when the whole record is refused for good.
//! - [`metrics`]: Prometheus metrics and `/metrics`.
//! - `error`: this crate's error type ([`Error`]).

pub(crate) mod attempt_log;
pub mod config;
pub(crate) mod decision;
pub(crate) mod dedup;
pub(crate) mod delivery;
pub(crate) mod dlq;
pub(crate) mod error;
pub(crate) mod lanes;
pub mod ledger;
pub mod metrics;
pub(crate) mod offsets;
pub(crate) mod pacing;
pub(crate) mod parked;
pub(crate) mod parking;
pub(crate) mod partition;
pub(crate) mod rebalance;
pub(crate) mod retry;
pub(crate) mod seal;
pub(crate) mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::codec::Codec;
use hookline_core::directory::Directory;
use hookline_core::kafka;
use hookline_core::notices::Notifier;
use hookline_wire::jwe::ContentKeyPolicy;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};
pub use metrics::Metrics;

use delivery::Deliverer;
use ledger::{Ledger, LedgerSettings};
use partition::Stops;
use rebalance::{HooklineConsumer, HooklineContext};

/// How often the main task polls the consumer even when nothing arrives on its queue: each poll
/// tells librdkafka the application is alive (`max.poll.interval.ms`) and serves callbacks.
const KEEPALIVE_POLL: Duration = Duration::from_millis(500);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the start-up check of the topics waits for the broker's metadata.
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long disabling an endpoint may wait for its record to be written.
const TENANT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long publishing one operational event may take (all its copies acknowledged).
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka's statistics period, unless set with `--kafka-property`.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Runs the consumer until `shutdown` is cancelled, then drains and commits.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new()?;
    if let Some(address) = config.metrics_listen.0 {
        metrics::serve(address, metrics.clone(), shutdown.clone()).await?;
    }
    run_with_metrics(config, shutdown, metrics).await
}

/// [`run`] with metrics the caller holds (tests, the in-process demo).
pub async fn run_with_metrics(config: Config, shutdown: CancellationToken, metrics: Metrics) -> Result<()> {
    // Checked first: without it nothing can be signed, so there is no point joining the group.
    let master_key = config.master_key.require()?;
    config.validate().map_err(Error::Settings)?;
    let drain_timeout = config.revoke_drain().map_err(Error::Settings)?;
    if config.delivery.request_timeout > drain_timeout {
        tracing::warn!(
            request_timeout = ?config.delivery.request_timeout,
            revoke_drain_timeout = ?drain_timeout,
            "--request-timeout is above the revocation's drain timeout: an attempt still running when a rebalance's \
             drain timeout ends is abandoned, and its record may be sent again by the next owner"
        );
    }
    let codec = Codec::new(&config.schema_registry)?;
    let directory_stop = CancellationToken::new();
    let _stop_directory = directory_stop.clone().drop_guard();
    let directory = Directory::start(
        &config.kafka,
        &config.topics.customers,
        config.directory_load_timeout,
        directory_stop,
        codec.clone(),
    )
    .await
    .map_err(|error| kafka::name_brokers(error, &config.kafka))?;

    static INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let client_id = client_id(INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let producer: FutureProducer = kafka::producer_config(&config.kafka, &client_id).create()?;
    check_topics(&config).await?;
    let ledger = match config.dedup_window.0 {
        Some(window) => {
            let settings = LedgerSettings {
                topic: config.topics.delivered.clone(),
                window,
                capacity: usize::try_from(config.dedup.capacity).unwrap_or(usize::MAX),
                kept_partitions: usize::try_from(config.dedup.kept_partitions).unwrap_or(usize::MAX),
                max_in_flight: usize::try_from(config.dedup.max_in_flight).unwrap_or(usize::MAX),
            };
            Some(Ledger::new(config.kafka.clone(), producer.clone(), settings, metrics.clone()))
        }
        None => {
            tracing::warn!("de-duplication is off (--dedup-window off): records seen again are sent again");
            None
        }
    };
    // Parking writes wait for each acknowledgement before a partition's next one (that keeps a
    // customer's parked records in order), so their producer does not linger.
    let parked = config
        .park_after()
        .map(|_| -> Result<parked::ParkedStore> {
            Ok(parked::ParkedStore {
                producer: kafka::unbatched_producer_config(&config.kafka, &format!("{client_id}-parking")).create()?,
                kafka: config.kafka.clone(),
                retry_topic: config.topics.retry.clone(),
                parking_topic: config.topics.parking.clone(),
                metrics: metrics.clone(),
            })
        })
        .transpose()?;
    // Operational events go out on the delivery topic, like any event, to their subscribers.
    let notifier = config.park_after().map(|_| {
        let counted = metrics.clone();
        Notifier::new(producer.clone(), config.topics.deliveries.clone(), directory.clone(), NOTICE_TIMEOUT).observed(
            Arc::new(move |event, outcome| {
                counted.notices.with_label_values(&[event.label(), outcome.label()]).inc();
            }),
        )
    });
    metrics.watch_directory(directory.clone());
    // Disabling an endpoint is a tenant operation like any other: the same read-modify-write
    // of its record as the onboarding API's.
    let tenants = match (config.park_after(), config.parking.disable_after.0, &notifier) {
        (Some(_), Some(_), Some(notifier)) => Some(
            hookline_core::tenants::Tenants::new(
                directory.clone(),
                producer.clone(),
                config.topics.customers.clone(),
                master_key.clone(),
                config.network.policy(),
                TENANT_WRITE_TIMEOUT,
            )
            .with_notifier(notifier.clone()),
        ),
        _ => None,
    };
    let log = match config.delivery_log {
        config::Switch::On => attempt_log::AttemptLog::start(
            &config.kafka,
            &client_id,
            &config.topics.attempts,
            metrics.attempt_log.clone(),
        )?,
        config::Switch::Off => attempt_log::AttemptLog::off(metrics.attempt_log.clone()),
    };
    let deliverer = Arc::new(Deliverer {
        tenants,
        disable_after: config.parking.disable_after.0,
        notifier,
        notices_room: Arc::new(tokio::sync::Semaphore::new(delivery::MAX_NOTICES_IN_FLIGHT)),
        pacer: pacing::Pacer::default(),
        log,
        directory,
        codec,
        client: webhook::WebhookClient::new(config.delivery.request_timeout, config.network.policy())?,
        dlq: dlq::DlqWriter::new(producer, config.topics.dlq.clone(), metrics.clone()),
        policy: retry::RetryPolicy::from(&config.delivery).parking_after(config.park_after()),
        parked,
        retry_schedule: config.parking.retry_schedule.0.clone(),
        sealer: seal::Sealer::new(master_key, ContentKeyPolicy::default()),
        metrics: metrics.clone(),
        concurrency: tokio::sync::Semaphore::new(
            usize::try_from(config.ordering.max_concurrency).unwrap_or(usize::MAX),
        ),
    });
    let bounds = bounds(&config);

    let stops = Stops { stopping: shutdown.clone(), hard_stop: CancellationToken::new() };
    let (assignments_tx, mut assignments) = mpsc::unbounded_channel();
    let context =
        HooklineContext::new(&config.topics.deliveries, assignments_tx, stops.clone(), drain_timeout, metrics.clone());
    let consumer: Arc<HooklineConsumer> = Arc::new(member_config(&config, &client_id).create_with_context(context)?);
    consumer.context().attach(&consumer);
    consumer.subscribe(&[&config.topics.deliveries])?;
    tracing::info!(group = %config.group, topic = %config.topics.deliveries, "consumer started");
    metrics.readiness.set_started(true);

    let mut workers: HashMap<i32, JoinHandle<()>> = HashMap::new();
    let mut failure = None;

    while !shutdown.is_cancelled() {
        tokio::select! {
            () = shutdown.cancelled() => {}
            Some(assignment) = assignments.recv() => {
                let partition = assignment.partition;
                let previous = workers.remove(&partition);
                let worker = partition::run(
                    assignment,
                    Arc::clone(&consumer),
                    Arc::clone(&deliverer),
                    ledger.clone(),
                    stops.clone(),
                    bounds,
                );
                let partition_handle = tokio::spawn(async move {
                    // A partition revoked and assigned again quickly must not be worked on twice at
                    // once: the new worker starts when the cancelled one has let go.
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    worker.await;
                });
                workers.retain(|_, handle| !handle.is_finished());
                workers.insert(partition, partition_handle);
            }
            polled = tokio::time::timeout(KEEPALIVE_POLL, consumer.recv()) => match polled {
                Err(_elapsed) => {}
                Ok(Ok(message)) => {
                    failure = Some(Error::UnsplitPartition { topic: message.topic().to_owned(), partition: message.partition() });
                    break;
                }
                Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
            },
        }
    }

    metrics.readiness.set_started(false);
    drain(&consumer, workers, stops, config.shutdown_grace).await;
    if let Some(ledger) = &ledger {
        ledger.forget_kept();
    }
    drop(assignments);
    let directory = deliverer.directory.clone();
    close(consumer, deliverer).await;
    directory.close().await;
    failure.map_or(Ok(()), Err)
}

/// How much each partition worker takes in flight ([`partition::Bounds`]).
fn bounds(config: &Config) -> partition::Bounds {
    let by_key = config.ordering.ordering == config::Ordering::Key;
    let max_uncommitted = match config.dedup_window.0 {
        // The ledger keeps the newest `--dedup-capacity` deliveries of a partition; every delivery
        // past the commit position must still be among them after a restart. Those written since
        // the oldest one still needed are at most twice the offsets past the position.
        Some(_) => (config.dedup.capacity / 2).max(1),
        None => u64::MAX,
    };
    partition::Bounds {
        by_key,
        max_records: if by_key { usize::try_from(config.ordering.max_in_flight).unwrap_or(usize::MAX) } else { 1 },
        max_bytes: usize::try_from(config.ordering.max_in_flight_bytes).unwrap_or(usize::MAX),
        max_uncommitted,
    }
}

/// The `client.id` of the `instance`-th consumer this process starts ([`kafka::client_id`]):
/// the binary runs one, `hookline-consumer-<host>-<pid>`; several in one process (the demo,
/// tests) are told apart by a suffix.
fn client_id(instance: u32) -> String {
    let id = kafka::client_id("hookline-consumer");
    if instance == 0 { id } else { format!("{id}-{instance}") }
}

/// The group member's settings: Hookline's group defaults under `client_id` (which
/// `--kafka-property client.id=...` overrides), and librdkafka statistics for the lag gauge.
fn member_config(config: &Config, client_id: &str) -> rdkafka::ClientConfig {
    let mut member = kafka::group_consumer_config(&config.kafka, client_id, &config.group);
    if !config.kafka.kafka_properties.iter().any(|(key, _)| key == "statistics.interval.ms") {
        // Feeds `hookline_consumer_lag`.
        member.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    member
}

/// Checks, with one reader, the topics the consumer writes to before it joins the group:
/// - the DLQ topic exists. Without it every record that must be dead-lettered would be retried
///   forever, uncommitted, holding its partition back for every customer there: a stall nobody
///   sees. (librdkafka does not create topics for a producer unless the broker does, and Hookline
///   never relies on auto-creation.)
/// - with de-duplication on, the delivery ledger is co-partitioned with the delivery topic
///   ([`ledger::check_layout`]).
async fn check_topics(config: &Config) -> Result<()> {
    let (kafka, topics, dedup) = (config.kafka.clone(), config.topics.clone(), config.dedup_window.0.is_some());
    let parking = config.park_after().is_some();
    let log = config.delivery_log == config::Switch::On;
    tokio::task::spawn_blocking(move || {
        let reader = kafka::reader(&kafka, "hookline-consumer-check")?;
        kafka::topic_partitions(&reader, &topics.dlq, TOPIC_CHECK_TIMEOUT)?;
        if log {
            kafka::topic_partitions(&reader, &topics.attempts, TOPIC_CHECK_TIMEOUT)?;
        }
        if dedup {
            ledger::check_layout(&reader, &topics.delivered, &topics.deliveries)?;
        }
        if parking {
            for topic in [&topics.retry, &topics.parking] {
                parked::check_layout(&reader, topic, &topics.deliveries)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| Error::StartupTask("topic check"))?
}

/// Lets workers finish what is in flight within `grace`, while still polling the consumer so
/// callbacks (commits, rebalances) are served. The workers wind down as on a revocation
/// (`stopping` and `hard_stop` are the parents of each worker's `revoked` and `abandon`).
async fn drain(consumer: &Arc<HooklineConsumer>, workers: HashMap<i32, JoinHandle<()>>, stops: Stops, grace: Duration) {
    stops.stopping.cancel();
    let in_flight = workers.len();
    tracing::info!(partitions = in_flight, ?grace, "stopping: finishing deliveries in flight");
    let hard_stop = stops.hard_stop.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        tracing::warn!("shutdown grace period over; abandoning deliveries in flight");
        hard_stop.cancel();
    });
    let mut all = std::pin::pin!(join_all(workers.into_values().collect()));
    loop {
        tokio::select! {
            () = &mut all => break,
            _ = tokio::time::timeout(KEEPALIVE_POLL, consumer.recv()) => {}
        }
    }
    timer.abort();
}

async fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        if let Err(error) = handle.await
            && error.is_panic()
        {
            tracing::error!(%error, "a partition worker panicked");
        }
    }
}

/// Commits what was stored, leaves the group and flushes the DLQ producer. librdkafka's close
/// and flush block, so they run off the async runtime. A failed final commit is not a failed
/// shutdown (typically a rebalance in progress as other members stop too): the records past the
/// last commit are redelivered to the next owner (at-least-once).
async fn close(consumer: Arc<HooklineConsumer>, deliverer: Arc<Deliverer>) {
    consumer.context().revoke_all();
    let closed = tokio::task::spawn_blocking(move || {
        let committed = match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                Ok(())
            }
            Err(error) => Err(error),
        };
        // Dropping the last handle closes the consumer: it leaves the group at once instead of
        // making the others wait for the session timeout.
        drop(consumer);
        let _ = deliverer.dlq.producer().flush(FLUSH_TIMEOUT);
        deliverer.log.flush(FLUSH_TIMEOUT);
        drop(deliverer);
        committed
    })
    .await;
    match closed {
        Ok(Ok(())) => tracing::info!("offsets committed; consumer closed"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "final commit failed; records since the last commit will be redelivered");
        }
        Err(error) => tracing::warn!(%error, "consumer close task failed"),
    }
}

#[cfg(test)]
mod tests {
    use hookline_core::config::{KafkaArgs, TopicArgs};

    use super::*;

    #[test]
    fn the_group_member_is_named_after_its_host_and_process_unless_the_operator_names_it() {
        let config = Config::new(KafkaArgs::new("b:9092"), TopicArgs::default(), "hookline");
        let ours = kafka::client_id("hookline-consumer");
        assert!(ours.ends_with(&format!("-{}", std::process::id())), "{ours}");
        assert_eq!(member_config(&config, &client_id(0)).get("client.id"), Some(ours.as_str()));
        assert_eq!(client_id(2), format!("{ours}-2"));
        assert_eq!(member_config(&config, &ours).get("group.id"), Some("hookline"));
        assert_eq!(member_config(&config, &ours).get("statistics.interval.ms"), Some(STATISTICS_INTERVAL_MS));

        let named = Config::new(
            KafkaArgs::new("b:9092")
                .with_property("client.id", "billing-7")
                .with_property("statistics.interval.ms", "0"),
            TopicArgs::default(),
            "hookline",
        );
        assert_eq!(member_config(&named, &client_id(0)).get("client.id"), Some("billing-7"));
        assert_eq!(member_config(&named, &client_id(0)).get("statistics.interval.ms"), Some("0"));
    }
}

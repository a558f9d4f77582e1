//! Prometheus metrics of the delivery worker, and the `/metrics` endpoint.
//!
//! Labels are bounded: outcomes, status classes, DLQ reasons, rebalance kinds and partition
//! numbers; nothing per event or per customer.
//!
//! The per-partition gauges (records in flight, records done beyond the commit watermark, how old
//! the oldest record not done is, how long its retries have held the watermark) are set when
//! scraped, from the state the partition workers keep in [`PartitionStats`]; what would be per
//! key (keys waiting to retry) is a count, not a label.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookline_core::directory::Directory;
use prometheus::{
    Counter, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Every metric the consumer exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `hookline_delivery_attempts_total{outcome, status_class}`.
    pub attempts: IntCounterVec,
    /// `hookline_delivery_attempt_duration_seconds`.
    pub attempt_duration: Histogram,
    /// `hookline_deliveries_total{outcome}`: final outcome per record (`delivered`, `dead_lettered`,
    /// `skipped`: in no DLQ, see `dlq_unwritable`).
    pub deliveries: IntCounterVec,
    /// `hookline_retries_total`: retries scheduled.
    pub retries: IntCounter,
    /// `hookline_keys_in_backoff`: records (one per key at most: in partition mode, one per
    /// partition) currently waiting to retry.
    pub keys_in_backoff: IntGauge,
    /// `hookline_attempts_in_flight`: HTTP attempts under way in this process (at most
    /// `--max-concurrency`).
    pub attempts_in_flight: IntGauge,
    /// `hookline_dlq_records_total{reason}`: records acknowledged by the DLQ topic.
    pub dlq_records: IntCounterVec,
    /// `hookline_dlq_write_errors_total`: failed DLQ produce attempts (retried unless refused for
    /// good: see [`crate::dlq`]).
    pub dlq_write_errors: IntCounter,
    /// `hookline_dlq_bodies_dropped_total`: dead letters written without the record's value,
    /// because the DLQ refused the whole record for good (too large).
    pub dlq_bodies_dropped: IntCounter,
    /// `hookline_dlq_unwritable_total`: records committed without any dead letter, because the DLQ
    /// refused even the body-less one for good.
    pub dlq_unwritable: IntCounter,
    /// `hookline_abandoned_records_total{cause}`: records left for redelivery (revoked, shutdown).
    pub abandoned: IntCounterVec,
    /// `hookline_offsets_stored_total`: commit positions handed to the background committer.
    pub offsets_stored: IntCounter,
    /// `hookline_offset_commits_total{result}`: commit requests answered by the broker.
    pub commits: IntCounterVec,
    /// `hookline_rebalances_total{kind}`.
    pub rebalances: IntCounterVec,
    /// `hookline_revoke_drain_seconds`: how long a revocation waited for its workers to stop,
    /// their ledger writes to be acknowledged and their positions to be committed.
    pub revoke_drain: Histogram,
    /// `hookline_revoke_drain_timeouts_total`: revocations that gave up waiting at
    /// `--revoke-drain-timeout` (their unfinished records may be sent again by the next owner).
    pub revoke_drain_timeouts: IntCounter,
    /// `hookline_assigned_partitions`.
    pub assigned_partitions: IntGauge,
    /// `hookline_duplicates_skipped_total`: records not sent because the ledger says their
    /// (event, customer) was already delivered.
    pub duplicates_skipped: IntCounter,
    /// `hookline_ledger_records_total`: deliveries recorded in the ledger (acknowledged).
    pub ledger_records: IntCounter,
    /// `hookline_ledger_write_errors_total`: failed ledger writes (retried).
    pub ledger_write_errors: IntCounter,
    /// `hookline_ledger_restored_entries_total`: ledger records read back when a partition was
    /// assigned (for a kept set, only those written since it was kept).
    pub ledger_restored: IntCounter,
    /// `hookline_ledger_restore_duration_seconds`: how long reading a partition's ledger took.
    pub ledger_restore_duration: Histogram,
    /// `hookline_ledger_restores_total{kind}`: partitions' ledgers restored, `read` (read back,
    /// at most `--dedup-capacity` entries) or `kept` (this member's set from before the partition
    /// was revoked, brought up to date).
    pub ledger_restores: IntCounterVec,
    /// `hookline_ledger_memory_bytes`: bytes held by the delivered sets of assigned partitions and
    /// of the revoked partitions kept for a reassignment.
    pub ledger_memory: IntGauge,
    /// `hookline_ledger_writes_in_flight`: ledger writes awaiting the broker's acknowledgement.
    pub ledger_in_flight: IntGauge,
    /// `hookline_partitions_waiting_on_ledger`: partitions not taking records because they await
    /// `--ledger-max-in-flight` ledger writes.
    pub waiting_on_ledger: IntGauge,
    /// `hookline_ledger_waits_total`: times a partition stopped taking records at that cap.
    pub ledger_waits: IntCounter,
    /// `hookline_delivery_latency_seconds`: from the event's acceptance by the publisher to the
    /// endpoint's ACK.
    pub delivery_latency: Histogram,
    /// `hookline_consumer_lag{partition}`: records of the delivery topic not yet consumed, per
    /// assigned partition (librdkafka statistics, every `statistics.interval.ms`).
    pub consumer_lag: IntGaugeVec,
    /// `hookline_records_in_flight{partition}`, `hookline_records_done_beyond_watermark{partition}`,
    /// `hookline_oldest_undelivered_age_seconds{partition}` and
    /// `hookline_partition_blocked_seconds{partition}`, set at scrape time.
    pub partitions: PartitionStats,
    /// What `/readyz` answers.
    pub readiness: Readiness,
    /// `hookline_parked_customers`: customers parked on the partitions this process holds.
    pub parked_customers: IntGauge,
    /// `hookline_parked_records_total`: records written to the retry topic (acknowledged).
    pub parked_records: IntCounter,
    /// `hookline_parking_transitions_total{kind}`: `parked` (a customer parked), `probe_failed`
    /// (a try of a parked customer's oldest record failed), `recovered` (a try succeeded; its
    /// records drain), `unparked` (every parked record done; live records flow directly again),
    /// `retries_exhausted` (a parked record's schedule ran out: dead-lettered).
    pub parking_transitions: IntCounterVec,
    /// `hookline_parking_write_errors_total`: failed writes to the retry topic or the parking
    /// state (retried).
    pub parking_write_errors: IntCounter,
    /// `hookline_notices_total{type,outcome}`: operational events (`type`: `parked`,
    /// `recovered`, `disabled`; `outcome`: `published`, `no_subscriber`, `failed`, `dropped`).
    pub notices: IntCounterVec,
    /// `hookline_throttled_attempts_total`: attempts that waited for their customer's rate limit.
    pub throttled_attempts: IntCounter,
    /// `hookline_throttle_wait_seconds_total`: time attempts waited for their customer's rate
    /// limit.
    pub throttle_wait: Counter,
    /// `hookline_disabled_endpoints`: customers whose endpoint is disabled, in this process's
    /// view of the customer directory (set at scrape time).
    pub disabled_endpoints: IntGauge,
    /// Delivery log records by outcome: `written` (acknowledged), `failed` (the broker refused
    /// them), `dropped` (the log's queue was full).
    pub attempt_log: IntCounterVec,
    /// The directory `hookline_disabled_endpoints` counts in, once the consumer has one.
    directory: Arc<OnceLock<Directory>>,
    /// `hookline_decode_errors_total{reason}`: record values that could not be decoded
    /// (dead-lettered as `undecodable`, except `registry_unavailable`, which is retried).
    pub decode_errors: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in a new registry.
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let attempt_duration = Histogram::with_opts(
            HistogramOpts::new("hookline_delivery_attempt_duration_seconds", "Duration of one HTTP delivery attempt.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(attempt_duration.clone()))?;
        let ledger_restore_duration = Histogram::with_opts(
            HistogramOpts::new(
                "hookline_ledger_restore_duration_seconds",
                "Time to read a newly assigned partition's delivery ledger back.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        registry.register(Box::new(ledger_restore_duration.clone()))?;
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "hookline_delivery_latency_seconds",
                "From the publisher accepting the event to the endpoint's ACK (retries included).",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]),
        )?;
        registry.register(Box::new(delivery_latency.clone()))?;
        let revoke_drain = Histogram::with_opts(
            HistogramOpts::new(
                "hookline_revoke_drain_seconds",
                "Time a revocation waited for its partition workers to stop, their ledger writes and the commit.",
            )
            .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0]),
        )?;
        registry.register(Box::new(revoke_drain.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "hookline_consumer_lag",
                "Records of the delivery topic not consumed yet, per assigned partition.",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let partitions = PartitionStats::new(&registry)?;
        Ok(Self {
            delivery_latency,
            consumer_lag,
            partitions,
            readiness: Readiness::default(),
            parked_customers: gauge(
                "hookline_parked_customers",
                "Customers parked on the retry topic, over the partitions this process holds.",
            )?,
            parked_records: counter(
                "hookline_parked_records_total",
                "Records written to the retry topic and acknowledged.",
            )?,
            parking_transitions: counter_vec(
                "hookline_parking_transitions_total",
                "Parking state changes by kind (parked, probe_failed, recovered, unparked, retries_exhausted).",
                &["kind"],
            )?,
            parking_write_errors: counter(
                "hookline_parking_write_errors_total",
                "Failed writes to the retry topic or the parking state (retried).",
            )?,
            notices: counter_vec(
                "hookline_notices_total",
                "Operational events (hookline.endpoint.*) by type and outcome (published, no_subscriber, failed, dropped).",
                &["type", "outcome"],
            )?,
            throttled_attempts: counter(
                "hookline_throttled_attempts_total",
                "Delivery attempts that waited for their customer's rate limit.",
            )?,
            throttle_wait: {
                let metric = Counter::new(
                    "hookline_throttle_wait_seconds_total",
                    "Time delivery attempts waited for their customer's rate limit.",
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            attempt_log: counter_vec(
                "hookline_attempt_log_records_total",
                "Delivery log records by outcome (written, failed, dropped).",
                &["outcome"],
            )?,
            disabled_endpoints: gauge(
                "hookline_disabled_endpoints",
                "Customers whose endpoint is disabled, in this process's view of the customer directory.",
            )?,
            attempts: counter_vec(
                "hookline_delivery_attempts_total",
                "HTTP delivery attempts by outcome (ack, failed) and status class (2xx..5xx, timeout, connect, other).",
                &["outcome", "status_class"],
            )?,
            attempt_duration,
            deliveries: counter_vec(
                "hookline_deliveries_total",
                "Records finished, by final outcome (delivered, dead_lettered, skipped: committed in no DLQ).",
                &["outcome"],
            )?,
            retries: counter("hookline_retries_total", "Retries scheduled after a failed attempt.")?,
            keys_in_backoff: gauge(
                "hookline_keys_in_backoff",
                "Records waiting to retry (at most one per key; in partition ordering, one per partition).",
            )?,
            attempts_in_flight: gauge(
                "hookline_attempts_in_flight",
                "HTTP delivery attempts under way in this process (at most --max-concurrency).",
            )?,
            dlq_records: counter_vec(
                "hookline_dlq_records_total",
                "Records written to the DLQ topic and acknowledged, by reason.",
                &["reason"],
            )?,
            dlq_write_errors: counter(
                "hookline_dlq_write_errors_total",
                "Failed DLQ writes (retried, unless refused for good).",
            )?,
            dlq_bodies_dropped: counter(
                "hookline_dlq_bodies_dropped_total",
                "Dead letters written without the record's value because the DLQ refused the whole record for good.",
            )?,
            dlq_unwritable: counter(
                "hookline_dlq_unwritable_total",
                "Records committed without a dead letter because the DLQ refused even the body-less one for good.",
            )?,
            abandoned: counter_vec(
                "hookline_abandoned_records_total",
                "Records left unfinished for redelivery, by cause (revoked, shutdown).",
                &["cause"],
            )?,
            offsets_stored: counter(
                "hookline_offsets_stored_total",
                "Commit positions stored after an ACK or an acknowledged DLQ write.",
            )?,
            commits: counter_vec(
                "hookline_offset_commits_total",
                "Offset commits answered by the broker, by result (ok, error).",
                &["result"],
            )?,
            rebalances: counter_vec(
                "hookline_rebalances_total",
                "Rebalance events seen by this member, by kind (assign, revoke, error).",
                &["kind"],
            )?,
            revoke_drain,
            revoke_drain_timeouts: counter(
                "hookline_revoke_drain_timeouts_total",
                "Revocations that stopped waiting for their partition workers at --revoke-drain-timeout.",
            )?,
            duplicates_skipped: counter(
                "hookline_duplicates_skipped_total",
                "Records not sent again because their event was already delivered to the customer.",
            )?,
            ledger_records: counter(
                "hookline_ledger_records_total",
                "Deliveries recorded in the delivery ledger and acknowledged.",
            )?,
            ledger_write_errors: counter("hookline_ledger_write_errors_total", "Failed ledger writes (retried).")?,
            ledger_restored: counter(
                "hookline_ledger_restored_entries_total",
                "Ledger records read back when partitions were assigned.",
            )?,
            ledger_restore_duration,
            ledger_restores: counter_vec(
                "hookline_ledger_restores_total",
                "Partition ledgers restored on assignment, by kind (read: read back from the ledger; kept: this \
                 member's set from before a revocation, brought up to date).",
                &["kind"],
            )?,
            ledger_memory: gauge(
                "hookline_ledger_memory_bytes",
                "Bytes held by the delivered sets of assigned partitions and of revoked partitions kept for a \
                 reassignment.",
            )?,
            ledger_in_flight: gauge(
                "hookline_ledger_writes_in_flight",
                "Ledger writes awaiting the broker's acknowledgement.",
            )?,
            waiting_on_ledger: gauge(
                "hookline_partitions_waiting_on_ledger",
                "Partitions not taking records because their ledger writes in flight are at --ledger-max-in-flight.",
            )?,
            ledger_waits: counter(
                "hookline_ledger_waits_total",
                "Times a partition stopped taking records because its ledger writes in flight reached \
                 --ledger-max-in-flight.",
            )?,
            decode_errors: counter_vec(
                "hookline_decode_errors_total",
                "Record values that could not be decoded, by reason (unknown_format, invalid_json, invalid_avro, \
                 invalid_record, unknown_schema, wrong_record_type, no_registry, registry_unavailable).",
                &["reason"],
            )?,
            assigned_partitions: gauge(
                "hookline_assigned_partitions",
                "Partitions currently assigned to this member.",
            )?,
            registry,
            directory: Arc::new(OnceLock::new()),
        })
    }

    /// Counts disabled endpoints in `directory` at each scrape.
    pub fn watch_directory(&self, directory: Directory) {
        // Set once per process; a second run in the same process counts the same topic.
        let _ = self.directory.set(directory);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.partitions.refresh();
        if let Some(directory) = self.directory.get() {
            self.disabled_endpoints.set(i64::try_from(directory.disabled_count()).unwrap_or(i64::MAX));
        }
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// What each assigned partition's worker has in flight, as its offset tracker sees it, and since
/// when its records in flight have been failing.
#[derive(Debug, Clone)]
pub struct PartitionStats {
    states: Arc<Mutex<HashMap<i32, PartitionState>>>,
    in_flight: IntGaugeVec,
    done_beyond: IntGaugeVec,
    oldest_age: GaugeVec,
    blocked: GaugeVec,
    parked_age: GaugeVec,
}

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: usize,
    done_beyond: u64,
    /// The oldest record not done: its offset and timestamp (Unix milliseconds).
    oldest: Option<(i64, Option<i64>)>,
    /// Since when each record in flight that failed has been failing, by offset (at most one
    /// entry per record in flight).
    failing: HashMap<i64, Instant>,
    /// When the longest-parked customer of the partition began failing (Unix milliseconds).
    parked_since: Option<u64>,
}

impl PartitionStats {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "hookline_records_in_flight",
                "Records of the partition taken and not done (waiting in a lane, being delivered, or awaiting their \
                 ledger entry's acknowledgement).",
            ),
            &["partition"],
        )?;
        let done_beyond = IntGaugeVec::new(
            Opts::new(
                "hookline_records_done_beyond_watermark",
                "Offsets of the partition past its commit watermark that are done: what a restart reads again and \
                 the ledger skips.",
            ),
            &["partition"],
        )?;
        let oldest_age = GaugeVec::new(
            Opts::new(
                "hookline_oldest_undelivered_age_seconds",
                "Age of the oldest record of the partition not yet done (the one holding the commit watermark).",
            ),
            &["partition"],
        )?;
        let blocked = GaugeVec::new(
            Opts::new(
                "hookline_partition_blocked_seconds",
                "How long the partition's oldest record not done has been failing (0 when it has not failed): how \
                 long its retries have held the commit watermark.",
            ),
            &["partition"],
        )?;
        for metric in [&in_flight, &done_beyond] {
            registry.register(Box::new(metric.clone()))?;
        }
        registry.register(Box::new(oldest_age.clone()))?;
        registry.register(Box::new(blocked.clone()))?;
        let parked_age = GaugeVec::new(
            Opts::new(
                "hookline_oldest_parked_age_seconds",
                "How long the partition's longest-parked customer has been failing (0 when none is parked).",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(parked_age.clone()))?;
        Ok(Self { states: Arc::default(), in_flight, done_beyond, oldest_age, blocked, parked_age })
    }

    fn with(&self, partition: i32, change: impl FnOnce(&mut PartitionState)) {
        change(self.states.lock().unwrap_or_else(PoisonError::into_inner).entry(partition).or_default());
    }

    /// The partition's offset tracker changed.
    pub(crate) fn tracked(&self, partition: i32, tracker: &crate::offsets::OffsetTracker) {
        self.with(partition, |state| {
            state.in_flight = tracker.in_flight();
            state.done_beyond = tracker.done_beyond_watermark();
            state.oldest = tracker.oldest();
        });
    }

    /// The record at `offset` failed and waits to retry.
    pub fn failing(&self, partition: i32, offset: i64) {
        self.with(partition, |state| {
            state.failing.entry(offset).or_insert_with(Instant::now);
        });
    }

    /// The record at `offset` is no longer being delivered (done, or left for redelivery).
    pub fn finished(&self, partition: i32, offset: i64) {
        self.with(partition, |state| {
            state.failing.remove(&offset);
        });
    }

    /// `partition` is no longer worked on here: its series go away.
    pub fn released(&self, partition: i32) {
        self.states.lock().unwrap_or_else(PoisonError::into_inner).remove(&partition);
        let label = partition.to_string();
        let _ = self.in_flight.remove_label_values(&[&label]);
        let _ = self.done_beyond.remove_label_values(&[&label]);
        let _ = self.oldest_age.remove_label_values(&[&label]);
        let _ = self.blocked.remove_label_values(&[&label]);
        let _ = self.parked_age.remove_label_values(&[&label]);
    }

    /// Sets the gauges from the partitions' states, as of now.
    pub fn refresh(&self) {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        for (partition, state) in self.states.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let label = partition.to_string();
            self.in_flight.with_label_values(&[&label]).set(i64::try_from(state.in_flight).unwrap_or(i64::MAX));
            self.done_beyond.with_label_values(&[&label]).set(i64::try_from(state.done_beyond).unwrap_or(i64::MAX));
            let age = state.oldest.and_then(|(_, ms)| ms).map_or(0.0, |ms| ((now_ms - ms as f64) / 1000.0).max(0.0));
            self.oldest_age.with_label_values(&[&label]).set(age);
            let blocked = state
                .oldest
                .and_then(|(offset, _)| state.failing.get(&offset))
                .map_or(0.0, |since| since.elapsed().as_secs_f64());
            self.blocked.with_label_values(&[&label]).set(blocked);
            let parked = state.parked_since.map_or(0.0, |ms| ((now_ms - ms as f64) / 1000.0).max(0.0));
            self.parked_age.with_label_values(&[&label]).set(parked);
        }
    }

    /// When the longest-parked customer of `partition` began failing (`None`: none is parked).
    pub fn parked_since(&self, partition: i32, since_ms: Option<u64>) {
        self.with(partition, |state| state.parked_since = since_ms);
    }
}

/// What `/readyz` checks: the customer directory loaded and the member subscribed (set by
/// [`crate::run`]), and at least one partition assigned.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    started: Arc<AtomicBool>,
}

impl Readiness {
    /// The directory is loaded and the consumer subscribed.
    pub fn set_started(&self, started: bool) {
        self.started.store(started, Ordering::SeqCst);
    }

    fn waiting_for(&self, metrics: &Metrics) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        if !self.started.load(Ordering::SeqCst) {
            waiting.push("the customer directory and the group subscription");
        }
        if metrics.assigned_partitions.get() == 0 {
            waiting.push("a partition assignment");
        }
        waiting
    }
}

/// Serves `GET /metrics`, `GET /healthz` (live) and `GET /readyz` (directory loaded, subscribed,
/// partitions assigned) on `address` until `shutdown`. Returns the bound address.
pub async fn serve(address: SocketAddr, metrics: Metrics, shutdown: CancellationToken) -> Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|source| Error::MetricsListen { address, source })?;
    let bound = listener.local_addr().map_err(|source| Error::MetricsListen { address, source })?;
    let for_metrics = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = for_metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let waiting = metrics.readiness.waiting_for(&metrics);
                    if waiting.is_empty() {
                        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready" }))).into_response()
                    } else {
                        let body = serde_json::json!({ "status": "not_ready", "waiting_for": waiting });
                        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!(address = %bound, "serving metrics at /metrics");
    Ok(bound)
}

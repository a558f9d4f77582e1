//! Prometheus metrics of the delivery worker, and the `/metrics` endpoint.
//!
//! Labels are bounded: outcomes, status classes, DLQ reasons and rebalance kinds; nothing per
//! event or per customer.

use std::net::SocketAddr;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
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
    /// `hookline_deliveries_total{outcome}`: final outcome per record (`delivered`, `dead_lettered`).
    pub deliveries: IntCounterVec,
    /// `hookline_retries_total`: retries scheduled.
    pub retries: IntCounter,
    /// `hookline_partitions_in_backoff`: partitions currently waiting to retry.
    pub partitions_in_backoff: IntGauge,
    /// `hookline_dlq_records_total{reason}`: records acknowledged by the DLQ topic.
    pub dlq_records: IntCounterVec,
    /// `hookline_dlq_write_errors_total`: failed DLQ produce attempts (retried).
    pub dlq_write_errors: IntCounter,
    /// `hookline_abandoned_records_total{cause}`: records left for redelivery (revoked, shutdown).
    pub abandoned: IntCounterVec,
    /// `hookline_offsets_stored_total`: commit positions handed to the background committer.
    pub offsets_stored: IntCounter,
    /// `hookline_offset_commits_total{result}`: commit requests answered by the broker.
    pub commits: IntCounterVec,
    /// `hookline_rebalances_total{kind}`.
    pub rebalances: IntCounterVec,
    /// `hookline_assigned_partitions`.
    pub assigned_partitions: IntGauge,
    /// `hookline_duplicates_skipped_total`: records not sent because the ledger says their
    /// (event, customer) was already delivered.
    pub duplicates_skipped: IntCounter,
    /// `hookline_ledger_records_total`: deliveries recorded in the ledger (acknowledged).
    pub ledger_records: IntCounter,
    /// `hookline_ledger_write_errors_total`: failed ledger writes (retried).
    pub ledger_write_errors: IntCounter,
    /// `hookline_ledger_restored_entries_total`: deliveries read back from the ledger when a
    /// partition was assigned.
    pub ledger_restored: IntCounter,
    /// `hookline_ledger_restore_duration_seconds`: how long reading a partition's ledger took.
    pub ledger_restore_duration: Histogram,
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
        Ok(Self {
            attempts: counter_vec(
                "hookline_delivery_attempts_total",
                "HTTP delivery attempts by outcome (ack, failed) and status class (2xx..5xx, timeout, connect, other).",
                &["outcome", "status_class"],
            )?,
            attempt_duration,
            deliveries: counter_vec(
                "hookline_deliveries_total",
                "Records finished, by final outcome (delivered, dead_lettered).",
                &["outcome"],
            )?,
            retries: counter("hookline_retries_total", "Retries scheduled after a failed attempt.")?,
            partitions_in_backoff: gauge(
                "hookline_partitions_in_backoff",
                "Partitions currently blocked waiting for a retry.",
            )?,
            dlq_records: counter_vec(
                "hookline_dlq_records_total",
                "Records written to the DLQ topic and acknowledged, by reason.",
                &["reason"],
            )?,
            dlq_write_errors: counter("hookline_dlq_write_errors_total", "Failed DLQ writes (retried).")?,
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
                "Deliveries read back from the ledger when partitions were assigned.",
            )?,
            ledger_restore_duration,
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
        })
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// Serves `GET /metrics` on `address` until `shutdown`. Returns the bound address.
pub async fn serve(address: SocketAddr, metrics: Metrics, shutdown: CancellationToken) -> Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|source| Error::MetricsListen { address, source })?;
    let bound = listener.local_addr().map_err(|source| Error::MetricsListen { address, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], metrics.render()) }
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

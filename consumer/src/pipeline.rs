//! What happens to one record: decode, skip it if the ledger says it was delivered already, look
//! up the customer, attempt delivery with blocking retries, dead-letter when it cannot be
//! delivered.
//!
//! The customer is looked up before every attempt, so an updated webhook URL, public key or
//! signing secret takes effect on the next retry of a record already in flight. Every attempt is
//! signed, and encrypted when the customer uploaded a key ([`crate::seal`]); a record that cannot
//! be signed or encrypted, or whose URL the SSRF guard blocks, is dead-lettered, never sent.
//! Records keyed by an inbound source go to its operator-chosen internal endpoint, which the
//! guard does not check ([`WebhookRequest::internal`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookline_core::codec::Codec;
use hookline_core::customer::unix_now;
use hookline_core::directory::Directory;
use hookline_core::telemetry;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dlq::{DeadLetter, DlqReason, DlqWriter, Written};
use crate::ledger::{DeliveredSet, Ledger, Receipt};
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::seal::Sealer;
use crate::webhook::{Attempt, WebhookClient, WebhookRequest};

/// How long a look-up of an unknown customer may wait for the directory to catch up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before looking up again when the directory itself is unavailable.
const DIRECTORY_RETRY: Duration = Duration::from_secs(1);

/// How a record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint ACKed: the offset may be committed once the delivery is in the ledger.
    Delivered { attempts: u32, receipt: Receipt },
    /// The ledger says this event was delivered to this customer already: not sent again, and
    /// the offset may be committed.
    Duplicate,
    /// The DLQ acknowledged the record (or its body-less form, or refused even that for good:
    /// see [`crate::dlq`]): the offset may be committed.
    DeadLettered(DlqReason),
    /// Left unfinished because the consumer is stopping: the offset must not be committed.
    Abandoned,
}

/// Everything needed to process records; shared by every partition worker.
#[derive(Debug)]
pub struct Pipeline {
    pub directory: Directory,
    /// Decodes record values (Avro, with or without a schema registry, or legacy JSON).
    pub codec: Codec,
    pub client: WebhookClient,
    pub dlq: DlqWriter,
    pub policy: RetryPolicy,
    pub sealer: Sealer,
    pub metrics: Metrics,
    /// The delivery ledger; `None` with `--dedup-window off`.
    pub ledger: Option<Ledger>,
}

impl Pipeline {
    /// Processes one record to its end. `delivered` is the partition's ledger (what was delivered
    /// already), if de-duplication is on. `stopping` makes it give up at the next wait rather
    /// than sleep through a backoff; an attempt or DLQ write already running is left to finish
    /// (the caller bounds that).
    pub async fn process(
        self: &Arc<Self>,
        record: &OwnedMessage,
        delivered: Option<&DeliveredSet>,
        stopping: &CancellationToken,
    ) -> Outcome {
        // The record's whole processing; a child of the publish request's span when the record
        // carries its trace context (`traceparent`), with one child per attempt and one for the
        // DLQ write.
        let span = tracing::info_span!(
            "deliver",
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            event_id = tracing::field::Empty,
            customer = tracing::field::Empty,
        );
        telemetry::set_parent(&span, telemetry::extract_kafka(record.headers()));
        let Some(customer_id) = record.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            let error = "record key is not a UTF-8 customer id";
            return self.dead_letter(&span, record, DlqReason::Undecodable, error, 0, None).await;
        };
        span.record("customer", customer_id);
        let Some(value) = record.payload() else {
            return self.dead_letter(&span, record, DlqReason::Undecodable, "record has no value", 0, None).await;
        };
        let event = loop {
            match self.codec.decode_delivery(value).await {
                Ok(event) => break event,
                Err(error) => {
                    self.metrics.decode_errors.with_label_values(&[error.decode_reason()]).inc();
                    if !error.is_transient() {
                        let error = format!("record value is not a Hookline event: {error}");
                        return self.dead_letter(&span, record, DlqReason::Undecodable, &error, 0, None).await;
                    }
                    // The record may be fine: only the registry holding its schema is away.
                    tracing::warn!(topic = record.topic(), partition = record.partition(), offset = record.offset(), %error, "cannot decode the record yet; waiting");
                    if wait(DIRECTORY_RETRY, stopping).await.is_err() {
                        return self.abandon("shutdown");
                    }
                }
            }
        };
        span.record("event_id", tracing::field::display(&event.event_id));
        if delivered.is_some_and(|set| set.contains(customer_id, &event.event_id)) {
            self.metrics.duplicates_skipped.inc();
            tracing::info!(
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                event_id = %event.event_id,
                customer = customer_id,
                "already delivered to this customer; not sent again"
            );
            return Outcome::Duplicate;
        }
        let envelope = Bytes::from(event.webhook_body());
        let mut schedule = self.policy.schedule();
        let mut attempts = 0_u32;
        let mut last_status = None;
        let mut caught_up = false;

        loop {
            let customer = match self.directory.get_fresh(customer_id, LOOKUP_TIMEOUT).await {
                Ok(Some(customer)) => customer,
                Ok(None) => {
                    let error = format!("customer `{customer_id}` does not exist");
                    return self
                        .dead_letter(&span, record, DlqReason::UnknownCustomer, &error, attempts, last_status)
                        .await;
                }
                Err(error) => {
                    tracing::warn!(parent: &span, %error, "customer directory unavailable; waiting");
                    if wait(DIRECTORY_RETRY, stopping).await.is_err() {
                        return self.abandon("shutdown");
                    }
                    continue;
                }
            };
            let Some(url) = customer.webhook_url.as_deref() else {
                // The view may lag behind a URL set a moment before the event was published (on
                // a broker that answers a waiting fetch only at its deadline, by up to that):
                // catch up once before giving the record up. If that fails, the view decides.
                if !caught_up {
                    caught_up = true;
                    if let Err(error) = self.directory.sync_within(LOOKUP_TIMEOUT).await {
                        tracing::warn!(parent: &span, %error, "cannot catch the customer directory up");
                    }
                    continue;
                }
                let error = format!("customer `{customer_id}` has no webhook URL");
                return self.dead_letter(&span, record, DlqReason::NoWebhookUrl, &error, attempts, last_status).await;
            };

            let sealed = match self.sealer.seal(&customer, &event.event_id, &envelope, unix_now()) {
                Ok(sealed) => sealed,
                Err(refused) => {
                    tracing::error!(parent: &span, reason = refused.reason.as_str(), error = %refused.error, "cannot prepare the delivery");
                    return self
                        .dead_letter(&span, record, refused.reason, &refused.error, attempts, last_status)
                        .await;
                }
            };
            let request = WebhookRequest {
                url,
                event_id: &event.event_id,
                timestamp: sealed.timestamp,
                content_type: sealed.content_type,
                signature: Some(&sealed.signature),
                body: sealed.body,
                // An inbound source's endpoint is the operator's, internal by design.
                internal: customer.is_source(),
            };
            attempts += 1;
            let attempt_span = tracing::info_span!(
                parent: &span,
                "attempt",
                attempt = attempts,
                status = tracing::field::Empty,
                error_class = tracing::field::Empty,
                "otel.status_code" = tracing::field::Empty,
            );
            let attempt = self.client.attempt(&request).instrument(attempt_span.clone()).await;
            match &attempt {
                Attempt::Acked { status, .. } => {
                    attempt_span.record("status", status);
                }
                Attempt::Failed(failure) => {
                    if let Some(status) = failure.status {
                        attempt_span.record("status", status);
                    }
                    attempt_span.record("error_class", failure.class);
                    attempt_span.record("otel.status_code", "ERROR");
                }
                Attempt::Blocked { .. } => {
                    attempt_span.record("error_class", "blocked");
                    attempt_span.record("otel.status_code", "ERROR");
                }
            }
            drop(attempt_span);
            let failure = match attempt {
                Attempt::Acked { status, took } => {
                    self.metrics.attempts.with_label_values(&["ack", "2xx"]).inc();
                    self.metrics.attempt_duration.observe(took.as_secs_f64());
                    self.metrics.deliveries.with_label_values(&["delivered"]).inc();
                    if let Some(latency) = since(&event.timestamp) {
                        self.metrics.delivery_latency.observe(latency);
                    }
                    tracing::debug!(parent: &span, status, attempts, "delivered (ACK)");
                    let receipt = Receipt { customer: customer_id.to_owned(), event_id: event.event_id.clone() };
                    return Outcome::Delivered { attempts, receipt };
                }
                Attempt::Failed(failure) => failure,
                Attempt::Blocked { reason } => {
                    self.metrics.attempts.with_label_values(&["blocked", "blocked"]).inc();
                    tracing::warn!(parent: &span, %reason, "webhook destination blocked by the SSRF guard");
                    let error = format!("destination blocked: {reason}");
                    return self
                        .dead_letter(&span, record, DlqReason::BlockedDestination, &error, attempts, last_status)
                        .await;
                }
            };
            self.metrics.attempts.with_label_values(&["failed", failure.class]).inc();
            self.metrics.attempt_duration.observe(failure.took.as_secs_f64());
            last_status = failure.status;

            let Some(delay) = schedule.next_delay(failure.retry_after) else {
                let error = format!("{} after {attempts} attempts", failure.error);
                return self.dead_letter(&span, record, DlqReason::MaxAttempts, &error, attempts, last_status).await;
            };
            self.metrics.retries.inc();
            self.metrics.clocks.blocked(record.partition());
            tracing::info!(parent: &span, attempt = attempts, error = %failure.error, retry_in = ?delay, "delivery failed; will retry");
            self.metrics.partitions_in_backoff.inc();
            let waited = wait(delay, stopping).await;
            self.metrics.partitions_in_backoff.dec();
            if waited.is_err() {
                return self.abandon("shutdown");
            }
        }
    }

    async fn dead_letter(
        &self,
        deliver: &tracing::Span,
        record: &OwnedMessage,
        reason: DlqReason,
        error: &str,
        attempts: u32,
        last_status: Option<u16>,
    ) -> Outcome {
        let letter = DeadLetter { reason, error: error.to_owned(), attempts, last_status };
        let span = tracing::info_span!(parent: deliver, "dead_letter", reason = reason.as_str(), attempts);
        let outcome = match self.dlq.write(record, &letter).instrument(span).await {
            Written::Whole | Written::BodyDropped => "dead_lettered",
            // Bounded rather than a partition stopped for good; `DlqWriter::write` said it loudly.
            Written::Nowhere => "skipped",
        };
        self.metrics.deliveries.with_label_values(&[outcome]).inc();
        Outcome::DeadLettered(reason)
    }

    fn abandon(&self, cause: &str) -> Outcome {
        self.metrics.abandoned.with_label_values(&[cause]).inc();
        Outcome::Abandoned
    }
}

/// Seconds since `timestamp` (RFC 3339), if it parses and is not in the future.
fn since(timestamp: &str) -> Option<f64> {
    let at = humantime::parse_rfc3339_weak(timestamp).ok()?;
    std::time::SystemTime::now().duration_since(at).ok().map(|d| d.as_secs_f64())
}

/// Sleeps for `delay` unless `stopping` fires first (then `Err`).
async fn wait(delay: Duration, stopping: &CancellationToken) -> Result<(), ()> {
    tokio::select! {
        () = stopping.cancelled() => Err(()),
        () = tokio::time::sleep(delay) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_backoff_wait_ends_at_its_delay_or_at_shutdown() {
        let stopping = CancellationToken::new();
        let started = tokio::time::Instant::now();
        assert_eq!(wait(Duration::from_secs(300), &stopping).await, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(300));

        let cancel = stopping.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        assert_eq!(wait(Duration::from_secs(300), &stopping).await, Err(()));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}

//! The delivery of one record: decode, skip it if the ledger says it was delivered already, look
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
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use hookline_core::codec::Codec;
use hookline_core::customer::unix_now;
use hookline_core::directory::Directory;
use hookline_core::notices::{EndpointNotice, Notifier};
use hookline_core::telemetry;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt_log::AttemptLog;
use crate::decision::{Decision, Fact, decide};
use crate::dedup::{Receipt, Seen};
use crate::dlq::{DlqWriter, Written};
use crate::metrics::Metrics;
use crate::pacing::Pacer;
use crate::parked::ParkedStore;
use crate::retry::{RetryPolicy, Schedule};
use crate::seal::Sealer;
use crate::webhook::{Attempt, WebhookClient, WebhookRequest};
use hookline_core::deadletter::{DeadLetter, DlqReason};
use hookline_core::envelope::{EventRecord, ledger_id, resend_id};

/// How long a look-up of an unknown customer may wait for the directory to catch up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Left unfinished because the partition is revoked or the consumer is stopping (the worker
    /// counts it): the offset must not be committed.
    Abandoned,
    /// The attempts of a parking policy ran out (`--park-after`, or a probe's one attempt): the
    /// worker parks the record's customer, or keeps it parked.
    Failing { attempts: u32, last_status: Option<u16>, error: String },
}

/// Everything needed to process records; shared by every partition worker.
#[derive(Debug)]
pub struct Deliverer {
    pub directory: Directory,
    /// Decodes record values (Avro, with or without a schema registry, or legacy JSON).
    pub codec: Codec,
    pub client: WebhookClient,
    pub dlq: DlqWriter,
    pub policy: RetryPolicy,
    pub sealer: Sealer,
    pub metrics: Metrics,
    /// `--max-concurrency`: a permit per HTTP attempt in flight in this process.
    pub concurrency: Semaphore,
    /// The retry topic and parking state, with `--park-after` on.
    pub parked: Option<ParkedStore>,
    /// `--retry-schedule`.
    pub retry_schedule: Vec<Duration>,
    /// Disables endpoints (`--disable-after`, with parking on).
    pub tenants: Option<hookline_core::tenants::Tenants>,
    /// `--disable-after`.
    pub disable_after: Option<Duration>,
    /// Publishes operational events (`hookline.endpoint.*`), with parking on.
    pub notifier: Option<Notifier>,
    /// Room for notices being published: one more is dropped (and counted), never queued
    /// without bound.
    pub notices_room: Arc<Semaphore>,
    /// Spaces the attempts of customers with a rate limit.
    pub pacer: Pacer,
    /// The delivery log: every attempt and decision, recorded without waiting.
    pub log: AttemptLog,
}

/// Most operational events being published at once by one consumer.
pub const MAX_NOTICES_IN_FLIGHT: usize = 64;

/// What the delivery of one record has learnt so far, across its attempts.
struct Progress {
    /// The decoded event and its webhook envelope, once decoded.
    event: Option<(EventRecord, Bytes)>,
    schedule: Schedule,
    attempts: u32,
    last_status: Option<u16>,
    /// Whether the directory was caught up once for a customer found without a webhook URL.
    caught_up: bool,
}

/// What [`Deliverer::gather`] found.
enum Gathered<'r> {
    /// A fact to decide on.
    Fact(Fact<'r>),
    /// The partition was revoked or the consumer is stopping before an attempt could start.
    Stopped,
    /// The ledger says this event was delivered to this customer already.
    Duplicate,
}

impl Deliverer {
    /// Publishes `notice` in the background, if this consumer publishes operational events; when
    /// [`MAX_NOTICES_IN_FLIGHT`] are being published already, drops it (counted and logged).
    pub fn notify(&self, notice: EndpointNotice) {
        let Some(notifier) = &self.notifier else { return };
        let Ok(permit) = Arc::clone(&self.notices_room).try_acquire_owned() else {
            let event = notice.event();
            self.metrics.notices.with_label_values(&[event.label(), "dropped"]).inc();
            tracing::warn!(customer = %notice.customer_id, event_type = event.event_type(), "operational event dropped: too many being published");
            return;
        };
        let notifier = notifier.clone();
        tokio::spawn(async move {
            notifier.publish(&notice).await;
            drop(permit);
        });
    }

    /// Processes one record to its end: gathers the facts of each step, asks [`decide`] what to
    /// do, and does it. `seen` tells what the partition delivered already. `stopping` makes it
    /// give up at the next wait rather than sleep through a backoff; an attempt or DLQ write
    /// already running is left to finish (the caller bounds that).
    pub async fn process(
        self: &Arc<Self>,
        record: &OwnedMessage,
        seen: &Seen,
        stopping: &CancellationToken,
        policy: &RetryPolicy,
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
        let mut progress =
            Progress { event: None, schedule: policy.schedule(), attempts: 0, last_status: None, caught_up: false };
        loop {
            let fact = match self.gather(record, seen, stopping, &span, &mut progress).await {
                Gathered::Fact(fact) => fact,
                Gathered::Duplicate => return Outcome::Duplicate,
                Gathered::Stopped => return Outcome::Abandoned,
            };
            let (attempts, last_status) = (progress.attempts, progress.last_status);
            let wait_for = match decide(&fact, attempts, policy) {
                Decision::Ack => {
                    self.metrics.deliveries.with_label_values(&["delivered"]).inc();
                    let (event, _) =
                        progress.event.as_ref().expect("an attempt is made only once the event is decoded");
                    if let Some(latency) = since(&event.timestamp) {
                        self.metrics.delivery_latency.observe(latency);
                    }
                    tracing::debug!(parent: &span, attempts, "delivered (ACK)");
                    let customer = record.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default();
                    let event_id = ledger_id(&event.event_id, resend_id(record));
                    let receipt = Receipt { customer: customer.to_owned(), event_id };
                    return Outcome::Delivered { attempts, receipt };
                }
                Decision::DeadLetter { reason, error } => {
                    let letter = DeadLetter { reason, error, attempts, last_status };
                    let event = progress.event.as_ref().map(|(event, _)| event);
                    return self.dead_letter(&span, record, event, letter).await;
                }
                Decision::Park { error } => {
                    tracing::info!(parent: &span, attempts, %error, "delivery failed; the customer is parked");
                    return Outcome::Failing { attempts, last_status, error };
                }
                Decision::WaitForInfrastructure { after } => {
                    match &fact {
                        Fact::Undecodable { error, .. } => {
                            tracing::warn!(topic = record.topic(), partition = record.partition(), offset = record.offset(), %error, "cannot decode the record yet; waiting");
                        }
                        Fact::DirectoryUnavailable { error } => {
                            tracing::warn!(parent: &span, %error, "customer directory unavailable; waiting");
                        }
                        _ => {}
                    }
                    after
                }
                Decision::Retry { after } => {
                    self.metrics.retries.inc();
                    // Only a delivery-topic record holds its partition's watermark back; a parked
                    // record's offset is the retry topic's.
                    if self.parked.as_ref().is_none_or(|parked| parked.retry_topic != record.topic()) {
                        self.metrics.partitions.failing(record.partition(), record.offset());
                    }
                    if let Fact::Failed { failure, .. } = &fact {
                        tracing::info!(parent: &span, attempt = attempts, error = %failure.error, retry_in = ?after, "delivery failed; will retry");
                    }
                    let waited = {
                        let _waiting = InFlight::new(&self.metrics.keys_in_backoff);
                        wait(after, stopping).await
                    };
                    if waited.is_err() {
                        return Outcome::Abandoned;
                    }
                    continue;
                }
            };
            if wait(wait_for, stopping).await.is_err() {
                return Outcome::Abandoned;
            }
        }
    }

    /// Takes the record's delivery one step further: decodes it (once), looks the customer up,
    /// seals and makes an attempt, and returns what came of it. I/O and observation only (spans,
    /// metrics, logs): what to do about it is [`decide`]'s.
    async fn gather<'r>(
        &self,
        record: &'r OwnedMessage,
        seen: &Seen,
        stopping: &CancellationToken,
        span: &tracing::Span,
        progress: &mut Progress,
    ) -> Gathered<'r> {
        let Some(customer_id) = record.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Gathered::Fact(Fact::KeyNotUtf8);
        };
        span.record("customer", customer_id);
        let (event, envelope) = match &mut progress.event {
            Some(decoded) => &*decoded,
            None => {
                let Some(value) = record.payload() else { return Gathered::Fact(Fact::NoValue) };
                let event = match self.codec.decode_delivery(value).await {
                    Ok(event) => event,
                    Err(error) => {
                        self.metrics.decode_errors.with_label_values(&[error.decode_reason()]).inc();
                        let transient = error.is_transient();
                        return Gathered::Fact(Fact::Undecodable { error: error.to_string(), transient });
                    }
                };
                span.record("event_id", tracing::field::display(&event.event_id));
                // A resent copy is known to the ledger by its own id: sent once, however often
                // the event was delivered before.
                if seen.contains(customer_id, &ledger_id(&event.event_id, resend_id(record))) {
                    self.metrics.duplicates_skipped.inc();
                    tracing::info!(
                        topic = record.topic(),
                        partition = record.partition(),
                        offset = record.offset(),
                        event_id = %event.event_id,
                        customer = customer_id,
                        "already delivered to this customer; not sent again"
                    );
                    self.log.record(&logged(record, AttemptOutcome::Skipped, Some(&event), 0));
                    return Gathered::Duplicate;
                }
                let envelope = Bytes::from(event.webhook_body());
                &*progress.event.insert((event, envelope))
            }
        };

        let mut customer = match self.directory.get_fresh(customer_id, LOOKUP_TIMEOUT).await {
            Ok(Some(customer)) => customer,
            Ok(None) => return Gathered::Fact(Fact::UnknownCustomer { customer: customer_id }),
            Err(error) => return Gathered::Fact(Fact::DirectoryUnavailable { error: error.to_string() }),
        };
        if (customer.webhook_url.is_none() || customer.disabled.is_some()) && !progress.caught_up {
            // The view may lag behind a URL set, or an endpoint enabled, a moment before the
            // event was published (on a broker that answers a waiting fetch only at its
            // deadline, by up to that): catch up once before giving the record up. If that
            // fails, the view decides.
            progress.caught_up = true;
            if let Err(error) = self.directory.sync_within(LOOKUP_TIMEOUT).await {
                tracing::warn!(parent: span, %error, "cannot catch the customer directory up");
            }
            if let Some(fresh) = self.directory.get(customer_id) {
                customer = fresh;
            }
        }
        if let Some(disabled) = &customer.disabled {
            return Gathered::Fact(Fact::Disabled {
                customer: customer_id,
                since: disabled.at,
                reason: disabled.reason.clone(),
            });
        }
        let Some(url) = customer.webhook_url.as_deref() else {
            return Gathered::Fact(Fact::NoWebhookUrl { customer: customer_id });
        };
        // The customer's rate limit: wait for its slot before signing, so that the signed
        // timestamp is the attempt's.
        if let Some(per_second) = customer.rate_limit {
            let now = tokio::time::Instant::now();
            let slot = self.pacer.reserve(customer_id, per_second, now);
            if slot > now {
                self.metrics.throttled_attempts.inc();
                self.metrics.throttle_wait.inc_by((slot - now).as_secs_f64());
                tracing::debug!(parent: span, per_second, wait = ?(slot - now), "waiting for the customer's rate limit");
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => return Gathered::Stopped,
                    () = tokio::time::sleep_until(slot) => {}
                }
            }
        }
        let sealed = match self.sealer.seal(&customer, &event.event_id, envelope, unix_now()) {
            Ok(sealed) => sealed,
            Err(refused) => {
                tracing::error!(parent: span, kind = refused.kind(), error = %refused, "cannot prepare the delivery");
                return Gathered::Fact(Fact::Unsealable(refused));
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
        // No new attempt once revoked or stopping, also when one was on its way (the look-up,
        // or waiting for `--max-concurrency`, which other partitions' slow attempts may hold).
        let permit = tokio::select! {
            biased;
            () = stopping.cancelled() => return Gathered::Stopped,
            permit = self.concurrency.acquire() => permit,
        };
        progress.attempts += 1;
        let attempt_span = tracing::info_span!(
            parent: span,
            "attempt",
            attempt = progress.attempts,
            status = tracing::field::Empty,
            error_class = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        let attempt = {
            // Never closed, so the permit always comes (a closed one would only lift the bound).
            let _permit = permit.ok();
            let _counted = InFlight::new(&self.metrics.attempts_in_flight);
            self.client.attempt(&request).instrument(attempt_span.clone()).await
        };
        let mut entry = logged(record, AttemptOutcome::Delivered, Some(event), progress.attempts);
        let fact = match attempt {
            Attempt::Acked { status, took } => {
                entry.status = Some(status);
                entry.duration_ms = Some(millis(took));
                attempt_span.record("status", status);
                self.metrics.attempts.with_label_values(&["ack", "2xx"]).inc();
                self.metrics.attempt_duration.observe(took.as_secs_f64());
                Fact::Acked
            }
            Attempt::Failed(mut failure) => {
                entry.outcome = AttemptOutcome::Failed;
                entry.status = failure.status;
                entry.duration_ms = Some(millis(failure.took));
                entry.error_class = Some(failure.class.to_owned());
                entry.error = Some(failure.error.clone());
                entry.response = failure.excerpt.take();
                if let Some(status) = failure.status {
                    attempt_span.record("status", status);
                }
                attempt_span.record("error_class", failure.class);
                attempt_span.record("otel.status_code", "ERROR");
                self.metrics.attempts.with_label_values(&["failed", failure.class]).inc();
                self.metrics.attempt_duration.observe(failure.took.as_secs_f64());
                progress.last_status = failure.status;
                Fact::Failed { failure, scheduled: progress.schedule.next_backoff() }
            }
            Attempt::Blocked { reason } => {
                entry.outcome = AttemptOutcome::Failed;
                entry.error_class = Some("blocked".to_owned());
                entry.error = Some(format!("blocked by the SSRF guard: {reason}"));
                attempt_span.record("error_class", "blocked");
                attempt_span.record("otel.status_code", "ERROR");
                self.metrics.attempts.with_label_values(&["blocked", "blocked"]).inc();
                tracing::warn!(parent: span, %reason, "webhook destination blocked by the SSRF guard");
                Fact::Blocked { reason }
            }
        };
        self.log.record(&entry);
        Gathered::Fact(fact)
    }

    /// Dead-letters `record` as `letter` says, outside of its delivery (parking decided it).
    pub async fn dead_letter_as(&self, record: &OwnedMessage, letter: DeadLetter) -> Outcome {
        let span = tracing::info_span!(
            "deliver",
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
        );
        telemetry::set_parent(&span, telemetry::extract_kafka(record.headers()));
        self.dead_letter(&span, record, None, letter).await
    }

    /// Writes `record` to the DLQ as `letter` says, and records it in the delivery log; `event`
    /// is the record's value, when it was decoded.
    async fn dead_letter(
        &self,
        deliver: &tracing::Span,
        record: &OwnedMessage,
        event: Option<&EventRecord>,
        letter: DeadLetter,
    ) -> Outcome {
        let (reason, attempts) = (letter.reason, letter.attempts);
        let mut entry = logged(record, AttemptOutcome::DeadLettered, event, attempts);
        entry.reason = Some(reason.as_str().to_owned());
        entry.status = letter.last_status;
        entry.error = Some(letter.error.clone());
        let span = tracing::info_span!(parent: deliver, "dead_letter", reason = reason.as_str(), attempts);
        let outcome = match self.dlq.write(record, &letter).instrument(span).await {
            Written::Whole | Written::BodyDropped => "dead_lettered",
            // Bounded rather than a partition stopped for good; `DlqWriter::write` said it loudly.
            Written::Nowhere => "skipped",
        };
        self.metrics.deliveries.with_label_values(&[outcome]).inc();
        self.log.record(&entry);
        Outcome::DeadLettered(reason)
    }
}

/// A delivery log entry of `outcome` for `record` after `attempts` attempts, with the event id
/// and type of its decoded value when there is one (else of its headers).
pub fn logged(
    record: &OwnedMessage,
    outcome: AttemptOutcome,
    event: Option<&EventRecord>,
    attempts: u32,
) -> AttemptRecord {
    let at = SystemTime::now();
    let mut entry = match event {
        Some(event) => AttemptRecord::of_event(record, &event.event_id, &event.event_type, outcome, at),
        None => AttemptRecord::of(record, outcome, at),
    };
    entry.attempt = attempts;
    entry
}

/// Whole milliseconds of `took`, for the delivery log.
fn millis(took: Duration) -> u64 {
    u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
}

/// Counts one in a gauge while alive (also when the attempt it counts is dropped unfinished).
struct InFlight<'g>(&'g prometheus::IntGauge);

impl<'g> InFlight<'g> {
    fn new(gauge: &'g prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
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

//! Operational events: Hookline's own events about an endpoint's state (parked, recovered,
//! disabled, enabled again), published on the delivery topic like any event, so that an
//! operator's endpoint subscribed to them can alert the customer concerned.
//!
//! Who receives them is deliberately narrow, because a notice names another tenant and says its
//! endpoint is failing:
//! - only customers subscribed to the operational type **by name**: a `*` subscription does not
//!   match any `hookline.` type ([`is_reserved`], [`crate::customer::Customer::subscribes_to`]);
//! - only an operator subscribes a customer to them (the customer-key API refuses to add one);
//! - nobody publishes a `hookline.` type through the publishing API: they come from Hookline.
//!
//! Delivery of a notice is at most once: it is written after the state change it reports (a
//! crash in between loses it; the metrics and logs still say what happened), within
//! [`Notifier`]'s time bound, and never holds up the change itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::directory::Directory;
use crate::envelope::EventRecord;
use crate::{Error, Result};

// The reserved namespace is a rule on event types, which the customer module owns (it decides what
// `*` matches); re-exported because the operational events are why it exists.
pub use crate::customer::{RESERVED_PREFIX, is_reserved};

/// Whether `event_type` is an operational event type, which only an operator subscribes to.
pub fn is_operational(event_type: &str) -> bool {
    EndpointEvent::ALL.iter().any(|event| event.event_type() == event_type)
}

/// A change of an endpoint's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Its records go to the retry topic (`--park-after` failed attempts in place).
    Parked,
    /// A try of its oldest parked record was acknowledged: its parked records drain.
    Recovered,
    /// Failing for `--disable-after`: its records go to the DLQ until it is enabled again.
    Disabled,
    /// Enabled again (by the customer, an operator, or a new webhook URL).
    Enabled,
}

impl EndpointEvent {
    /// Every kind, in the order of an endpoint's life.
    pub const ALL: [Self; 4] = [Self::Parked, Self::Recovered, Self::Disabled, Self::Enabled];

    /// The event type it is published as.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Parked => "hookline.endpoint.parked",
            Self::Recovered => "hookline.endpoint.recovered",
            Self::Disabled => "hookline.endpoint.disabled",
            Self::Enabled => "hookline.endpoint.enabled",
        }
    }

    /// Its short name, for metric labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Recovered => "recovered",
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
        }
    }
}

/// The payload of an operational event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointNotice {
    /// The customer whose endpoint changed state.
    pub customer_id: String,
    /// `parked`, `recovered`, `disabled` or `enabled`.
    pub state: &'static str,
    /// When it changed, RFC 3339.
    pub at: String,
    /// Since when it has been failing (parked, disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// The last HTTP status it answered, if it answered (parked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last failure (parked), or why it was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When its oldest parked record is tried next (parked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

/// Longest `error` a notice carries; an endpoint's answer can be long.
const MAX_ERROR_CHARS: usize = 512;

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

impl EndpointNotice {
    fn new(event: EndpointEvent, customer_id: &str, at: SystemTime) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            state: event.label(),
            at: rfc3339(at),
            failing_since: None,
            last_status: None,
            error: None,
            next_attempt_at: None,
        }
    }

    /// The customer was parked at `at` after failing since `since`; tried next at `next`.
    pub fn parked(
        customer_id: &str,
        at: SystemTime,
        since: SystemTime,
        last_status: Option<u16>,
        error: Option<&str>,
        next: SystemTime,
    ) -> Self {
        Self {
            failing_since: Some(rfc3339(since)),
            last_status,
            error: error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
            next_attempt_at: Some(rfc3339(next)),
            ..Self::new(EndpointEvent::Parked, customer_id, at)
        }
    }

    /// The customer's endpoint acknowledged a try of its oldest parked record at `at`.
    pub fn recovered(customer_id: &str, at: SystemTime) -> Self {
        Self::new(EndpointEvent::Recovered, customer_id, at)
    }

    /// The customer's endpoint was disabled at `at` for `reason`.
    pub fn disabled(customer_id: &str, at: SystemTime, reason: &str) -> Self {
        Self {
            error: Some(reason.chars().take(MAX_ERROR_CHARS).collect()),
            ..Self::new(EndpointEvent::Disabled, customer_id, at)
        }
    }

    /// The customer's endpoint was enabled again at `at`.
    pub fn enabled(customer_id: &str, at: SystemTime) -> Self {
        Self::new(EndpointEvent::Enabled, customer_id, at)
    }

    /// Which event this is.
    pub fn event(&self) -> EndpointEvent {
        EndpointEvent::ALL.into_iter().find(|event| event.label() == self.state).unwrap_or(EndpointEvent::Parked)
    }
}

/// How publishing one notice ended, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Written for this many subscribers.
    Copies(usize),
    /// Nobody subscribes to its type: nothing written.
    NoSubscriber,
    /// Not written (or not acknowledged in time) for every subscriber; logged.
    Failed,
}

impl Published {
    /// Its metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Copies(_) => "published",
            Self::NoSubscriber => "no_subscriber",
            Self::Failed => "failed",
        }
    }
}

/// Called with each notice's event and outcome (the caller's metrics).
pub type Observer = Arc<dyn Fn(EndpointEvent, Published) + Send + Sync>;

/// Publishes operational events on the delivery topic, one copy per subscriber of their type,
/// keyed by the subscriber's id like any event.
#[derive(Clone)]
pub struct Notifier {
    producer: FutureProducer,
    topic: String,
    directory: Directory,
    timeout: Duration,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("topic", &self.topic).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Notifier {
    /// Writes to the delivery topic `topic` for the subscribers `directory` knows; each notice
    /// within `timeout`.
    pub fn new(producer: FutureProducer, topic: impl Into<String>, directory: Directory, timeout: Duration) -> Self {
        Self { producer, topic: topic.into(), directory, timeout, observer: None }
    }

    /// Reports every outcome to `observer` too.
    #[must_use]
    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Publishes `notice` to the customers subscribed to its type by name, and logs the outcome.
    /// A failure is logged and reported, never returned: the state change stands either way.
    pub async fn publish(&self, notice: &EndpointNotice) -> Published {
        let event = notice.event();
        let outcome = match self.write(event, notice).await {
            Ok(0) => Published::NoSubscriber,
            Ok(copies) => {
                tracing::info!(customer = %notice.customer_id, event_type = event.event_type(), copies, "operational event published");
                Published::Copies(copies)
            }
            Err(error) => {
                tracing::warn!(customer = %notice.customer_id, event_type = event.event_type(), %error, "operational event not published");
                Published::Failed
            }
        };
        if let Some(observer) = &self.observer {
            observer(event, outcome);
        }
        outcome
    }

    async fn write(&self, event: EndpointEvent, notice: &EndpointNotice) -> Result<usize> {
        let recipients = self.directory.subscribers(event.event_type());
        if recipients.is_empty() {
            return Ok(0);
        }
        let payload = serde_json::to_string(notice)
            .and_then(RawValue::from_string)
            .map_err(|e| Error::Invalid { field: "notice", reason: e.to_string() })?;
        let record = EventRecord::new(event.event_type(), payload);
        let value = self.directory.codec().encode_delivery(&self.topic, &record).await?;
        let headers = record.record_headers();
        let sends = recipients.iter().map(|customer| {
            let record =
                FutureRecord::to(&self.topic).key(customer.id.as_str()).payload(&value).headers(headers.clone());
            self.producer.send(record, self.timeout)
        });
        let written = tokio::time::timeout(self.timeout + Duration::from_secs(1), join_all(sends))
            .await
            .map_err(|_| Error::Timeout(self.timeout, "the operational event's acknowledgements"))?;
        let mut copies = 0;
        for result in written {
            result.map_err(|(error, _)| Error::Kafka(error))?;
            copies += 1;
        }
        Ok(copies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operational_types_are_reserved_and_named_after_their_state() {
        for event in EndpointEvent::ALL {
            assert!(is_reserved(event.event_type()));
            assert!(is_operational(event.event_type()));
            assert!(event.event_type().ends_with(event.label()));
        }
        assert!(is_reserved("hookline.test"));
        assert!(!is_operational("hookline.test"));
        assert!(!is_reserved("order.created"));
        assert!(!is_reserved("hookline"));
    }

    #[test]
    fn a_parked_notice_says_since_when_why_and_when_next() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let long = "x".repeat(2000);
        let notice = EndpointNotice::parked(
            "acme",
            at,
            at - Duration::from_secs(60),
            Some(503),
            Some(&long),
            at + Duration::from_secs(5),
        );
        assert_eq!(notice.event(), EndpointEvent::Parked);
        let json: serde_json::Value = serde_json::to_value(&notice).unwrap();
        assert_eq!(json["customer_id"], "acme");
        assert_eq!(json["state"], "parked");
        assert_eq!(json["at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["failing_since"], "2023-11-14T22:12:20Z");
        assert_eq!(json["next_attempt_at"], "2023-11-14T22:13:25Z");
        assert_eq!(json["last_status"], 503);
        assert_eq!(json["error"].as_str().unwrap().len(), MAX_ERROR_CHARS);
    }

    #[test]
    fn other_notices_carry_only_what_applies() {
        let at = SystemTime::UNIX_EPOCH;
        let enabled = serde_json::to_value(EndpointNotice::enabled("acme", at)).unwrap();
        assert_eq!(
            enabled,
            serde_json::json!({"customer_id": "acme", "state": "enabled", "at": "1970-01-01T00:00:00Z"})
        );
        let disabled = EndpointNotice::disabled("acme", at, "failing since yesterday");
        assert_eq!(disabled.event(), EndpointEvent::Disabled);
        assert_eq!(disabled.error.as_deref(), Some("failing since yesterday"));
        assert_eq!(EndpointNotice::recovered("acme", at).event(), EndpointEvent::Recovered);
    }
}

//! One HTTP delivery attempt.
//!
//! The request follows Standard Webhooks: `webhook-id` is the event id (the same on every retry
//! and redelivery, so receivers can de-duplicate), `webhook-timestamp` is the time of this
//! attempt in Unix seconds. Only a 2xx answer is an ACK. Redirects are not followed: a webhook
//! URL that redirects is a misconfiguration to surface, not to chase.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::Result;
use crate::retry::parse_retry_after;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: delivered.
    Acked { status: u16, took: Duration },
    /// Anything else: retry (or dead-letter after the last attempt).
    Failed(Failure),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// Short human-readable cause, safe to log and to put in DLQ headers.
    pub error: String,
    /// `Retry-After` of the response, if any.
    pub retry_after: Option<Duration>,
    /// Bounded label for metrics: `3xx`, `4xx`, `5xx`, `timeout`, `connect`, `other`.
    pub class: &'static str,
    pub took: Duration,
}

/// HTTP client shared by every partition of a consumer (one connection pool).
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
}

impl WebhookClient {
    /// A client whose attempts time out after `request_timeout`.
    pub fn new(request_timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { client })
    }

    /// POSTs `body` to `url` as event `event_id`.
    pub async fn attempt(&self, url: &str, event_id: &str, body: Bytes) -> Attempt {
        let started = Instant::now();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let sent = self
            .client
            .post(url)
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        let took = started.elapsed();
        match sent {
            Ok(response) if response.status().is_success() => {
                Attempt::Acked { status: response.status().as_u16(), took }
            }
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let class = match status.as_u16() {
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    500..=599 => "5xx",
                    _ => "other",
                };
                Attempt::Failed(Failure {
                    status: Some(status.as_u16()),
                    error: format!("HTTP {status}"),
                    retry_after,
                    class,
                    took,
                })
            }
            Err(error) => {
                let (class, cause) = if error.is_timeout() {
                    ("timeout", "timed out")
                } else if error.is_connect() {
                    ("connect", "connection failed")
                } else {
                    ("other", "request failed")
                };
                // reqwest's Display includes the URL, which may carry a customer's secret token
                // in its query; keep the cause generic and the source chain without the URL.
                let detail = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
                let error = if detail.is_empty() { cause.to_owned() } else { format!("{cause}: {detail}") };
                Attempt::Failed(Failure { status: None, error, retry_after: None, class, took })
            }
        }
    }
}

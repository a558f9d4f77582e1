//! One HTTP delivery attempt.
//!
//! The request follows Standard Webhooks: `webhook-id` is the event id (the same on every retry
//! and redelivery, so receivers can de-duplicate), `webhook-timestamp` is the time the signature
//! covers, in Unix seconds, and `webhook-signature` (when the delivery is signed) carries the
//! signatures. Only a 2xx answer is an ACK. Redirects are not followed: a webhook URL that
//! redirects is a misconfiguration to surface, not to chase (and following one would let a
//! customer's server point the consumer at an internal address).
//!
//! # SSRF guard at connection time
//!
//! A webhook URL was checked when it was registered, but DNS can change afterwards (or on
//! purpose, between a check and the connection: "DNS rebinding"). So the guard runs on the
//! addresses actually connected to:
//! - host names are resolved by [`GuardedResolver`], which drops every address the
//!   [`NetworkPolicy`] refuses, and fails with a [`GuardRefusal`] when none is left;
//! - IP-literal hosts, which the HTTP client connects to without calling a resolver, are checked
//!   before the request is sent;
//! - proxies are disabled, so a proxy environment variable cannot route around the guard.
//!
//! A refused destination is [`Attempt::Blocked`]: retrying would not help, so the delivery
//! dead-letters it. Its reason, written to the dead letter's error header and the log, names the
//! host (never the URL) and how to allow the address (`HOOKLINE_ALLOW_NETWORKS`), worded by
//! `hookline_core::netguard`.
//!
//! The guard protects Hookline's network from URLs that customers choose. An inbound source's
//! endpoint is chosen by the operator and is internal by design, so requests marked
//! [`WebhookRequest::internal`] go through a second client without the guard (still without
//! proxies or redirects).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hookline_core::attempts::EXCERPT_MAX;
use hookline_core::netguard::{NetworkPolicy, Refusal, refused_host};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::Result;
use crate::retry::parse_retry_after;

type BoxError = Box<dyn StdError + Send + Sync>;

/// One delivery attempt to make.
pub struct WebhookRequest<'a> {
    pub url: &'a str,
    pub event_id: &'a str,
    /// Unix seconds, the same value the signature covers.
    pub timestamp: i64,
    /// `application/json` or `application/jose`.
    pub content_type: &'static str,
    /// The full `webhook-signature` header value, if the delivery is signed.
    pub signature: Option<&'a str>,
    pub body: Bytes,
    /// The URL is an inbound source's internal endpoint, set by an operator: the SSRF guard
    /// does not apply. Never set for a customer's URL.
    pub internal: bool,
}

// By hand: the URL may carry a customer's token, and the body is the customer's data.
impl fmt::Debug for WebhookRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("event_id", &self.event_id)
            .field("timestamp", &self.timestamp)
            .field("content_type", &self.content_type)
            .field("signed", &self.signature.is_some())
            .field("internal", &self.internal)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: delivered.
    Acked { status: u16, took: Duration },
    /// Anything else: retry (or dead-letter after the last attempt).
    Failed(Failure),
    /// The destination is forbidden by the SSRF guard (every resolved address blocked, or a
    /// blocked IP literal): not retried, dead-lettered by the delivery.
    Blocked { reason: String },
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
    /// The start of the endpoint's answer, when it answered with a body (for the delivery log).
    pub excerpt: Option<String>,
}

/// Parsed URLs kept at most; beyond this the cache starts over (it only saves parsing).
const MAX_CACHED_URLS: usize = 10_000;

/// HTTP client shared by every partition of a consumer (one connection pool).
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    /// For [`WebhookRequest::internal`] requests: the system resolver, no guard.
    internal: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    /// Webhook URLs parsed, by their text: parsing one (with IDNA host processing) cost about
    /// as much CPU as sealing a delivery (BENCHMARKS.md), and a customer's URL rarely changes.
    urls: Arc<Mutex<HashMap<String, reqwest::Url>>>,
}

impl WebhookClient {
    /// A client whose attempts time out after `request_timeout` and may only reach destinations
    /// `policy` allows.
    pub fn new(request_timeout: Duration, policy: NetworkPolicy) -> Result<Self> {
        let policy = Arc::new(policy);
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve and connect on our behalf, out of the guard's sight.
                .no_proxy()
                .timeout(request_timeout)
                .connect_timeout(request_timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(60))
        };
        let client = builder().dns_resolver(GuardedResolver { policy: Arc::clone(&policy) }).build()?;
        let internal = builder().build()?;
        Ok(Self { client, internal, policy, urls: Arc::default() })
    }

    /// `text` parsed, from the cache when it was parsed before.
    fn parse_url(&self, text: &str) -> Result<reqwest::Url, url::ParseError> {
        let mut urls = self.urls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(url) = urls.get(text) {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(text)?;
        if urls.len() >= MAX_CACHED_URLS {
            urls.clear();
        }
        urls.insert(text.to_owned(), url.clone());
        Ok(url)
    }

    /// POSTs `request.body` to `request.url` as event `request.event_id`.
    pub async fn attempt(&self, request: &WebhookRequest<'_>) -> Attempt {
        let started = Instant::now();
        let failed = |error: String| {
            Attempt::Failed(Failure {
                status: None,
                error,
                retry_after: None,
                class: "other",
                took: started.elapsed(),
                excerpt: None,
            })
        };
        // The parser's messages do not quote the URL.
        let url = match self.parse_url(request.url) {
            Ok(url) => url,
            Err(error) => return failed(format!("invalid webhook URL: {error}")),
        };
        let client = if request.internal {
            &self.internal
        } else {
            // What the resolver cannot check: the scheme, and IP-literal hosts (the client
            // connects to those without resolving).
            if let Err(reason) = self.policy.check_without_dns(&url) {
                return Attempt::Blocked { reason };
            }
            &self.client
        };
        let mut post = client
            .post(url)
            .header("webhook-id", request.event_id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header(CONTENT_TYPE, request.content_type);
        if let Some(signature) = request.signature {
            let Ok(mut value) = HeaderValue::from_str(signature) else {
                return failed("invalid webhook-signature header value".to_owned());
            };
            // Keeps it out of the HTTP stack's debug output.
            value.set_sensitive(true);
            post = post.header("webhook-signature", value);
        }
        let sent = post.body(request.body.clone()).send().await;
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
                    excerpt: excerpt(response).await,
                })
            }
            Err(error) => {
                if let Some(reason) = guard_refusal(&error) {
                    return Attempt::Blocked { reason };
                }
                let (class, cause) = if error.is_timeout() {
                    ("timeout", "timed out")
                } else if error.is_connect() {
                    ("connect", "connection failed")
                } else {
                    ("other", "request failed")
                };
                let detail = describe_causes(&error);
                let error = if detail.is_empty() { cause.to_owned() } else { format!("{cause}: {detail}") };
                Attempt::Failed(Failure { status: None, error, retry_after: None, class, took, excerpt: None })
            }
        }
    }
}

/// The start of a refusing endpoint's answer, at most [`EXCERPT_MAX`] bytes, as text: what the
/// delivery log shows a customer of why its endpoint refused. Read within the request's timeout
/// (the client's covers the body); the rest of the body is not read.
async fn excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(EXCERPT_MAX);
    let text = String::from_utf8_lossy(&bytes);
    // A cut through a character leaves a replacement character at the end: drop it.
    let text = text.trim_end_matches('\u{fffd}').trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The error [`GuardedResolver`] fails with when every address of a host is forbidden.
#[derive(Debug)]
pub struct GuardRefusal {
    pub reason: String,
}

/// Starts [`GuardRefusal`]'s message, so it is recognisable even if a layer of the HTTP stack
/// ever flattened the error into text.
const REFUSAL_MARKER: &str = "refused by the SSRF guard: ";

impl fmt::Display for GuardRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REFUSAL_MARKER}{}", self.reason)
    }
}

impl StdError for GuardRefusal {}

/// A DNS resolver that only returns addresses the policy allows.
///
/// Resolution is the system's (`getaddrinfo`, through tokio), like the client's default.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl GuardedResolver {
    #[cfg(test)]
    pub fn new(policy: NetworkPolicy) -> Self {
        Self { policy: Arc::new(policy) }
    }

    /// The allowed addresses of `host` (with port 0: the client sets the URL's port).
    pub async fn resolve_allowed(&self, host: &str) -> std::result::Result<Vec<SocketAddr>, BoxError> {
        let resolved = tokio::net::lookup_host((host, 0)).await?;
        let mut refused: Vec<Refusal> = Vec::new();
        let allowed: Vec<SocketAddr> = resolved
            .filter(|address| match self.policy.check_ip(address.ip()) {
                Ok(()) => true,
                Err(refusal) => {
                    refused.push(refusal);
                    false
                }
            })
            .collect();
        if !allowed.is_empty() {
            return Ok(allowed);
        }
        if refused.is_empty() {
            return Err(format!("host `{host}` has no addresses").into());
        }
        // Says how to allow the addresses, so the dead letter and the log tell the operator.
        Err(Box::new(GuardRefusal { reason: refused_host(host, &refused) }))
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let allowed = resolver.resolve_allowed(name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The reason of a [`GuardRefusal`] anywhere in `error`'s source chain.
fn guard_refusal(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<GuardRefusal>() {
            return Some(refusal.reason.clone());
        }
        // Belt and braces: should a layer ever wrap the refusal as text, the marker still shows.
        if !error.is::<reqwest::Error>()
            && let Some(reason) = error.to_string().split_once(REFUSAL_MARKER).map(|(_, reason)| reason.to_owned())
        {
            return Some(reason);
        }
        current = error.source();
    }
    None
}

/// The messages of `error`'s causes, outermost first, joined by `": "`.
///
/// reqwest's own errors are skipped: their `Display` includes the URL, which may carry a
/// customer's secret token in its query. The lower layers (hyper, I/O, TLS) do not quote it.
fn describe_causes(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = error.source();
    while let Some(cause) = current {
        if !cause.is::<reqwest::Error>() {
            let text = cause.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
        }
        current = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::netguard::parse_network;
    use hookline_testkit::{Endpoint, Respond};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn client(allow: &[&str]) -> WebhookClient {
        let allow = allow.iter().map(|net| parse_network(net).expect("test network")).collect();
        WebhookClient::new(TIMEOUT, NetworkPolicy::new(allow)).expect("client")
    }

    fn request(url: &str) -> WebhookRequest<'_> {
        WebhookRequest {
            url,
            event_id: "evt_test",
            timestamp: 1_700_000_000,
            content_type: "application/json",
            signature: None,
            body: Bytes::from_static(br#"{"type":"t","timestamp":"x","data":{}}"#),
            internal: false,
        }
    }

    fn blocked_reason(attempt: Attempt) -> String {
        match attempt {
            Attempt::Blocked { reason } => reason,
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    fn failure(attempt: Attempt) -> Failure {
        match attempt {
            Attempt::Failed(failure) => failure,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    /// A local port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").port()
    }

    #[tokio::test]
    async fn ip_literal_is_blocked_without_allow_list() {
        let endpoint = Endpoint::ok().await;
        let reason = blocked_reason(client(&[]).attempt(&request(&endpoint.url())).await);
        assert_eq!(
            reason,
            "127.0.0.1 is a loopback address; to allow it, add 127.0.0.0/8 to HOOKLINE_ALLOW_NETWORKS on the publisher, \
             consumer and setup CLI"
        );
        assert_eq!(endpoint.count(), 0);
    }

    #[tokio::test]
    async fn host_name_resolving_to_loopback_is_blocked() {
        // Exercises the resolver: the refusal travels up reqwest's error chain as Blocked.
        let endpoint = Endpoint::ok().await;
        let url = endpoint.url().replace("127.0.0.1", "localhost");
        let reason = blocked_reason(client(&[]).attempt(&request(&url)).await);
        assert!(reason.contains("`localhost`") && reason.contains("loopback"), "{reason}");
        assert!(reason.contains("add 127.0.0.0/8") && reason.contains("to HOOKLINE_ALLOW_NETWORKS"), "{reason}");
        assert_eq!(endpoint.count(), 0);
    }

    #[tokio::test]
    async fn ipv6_literals_are_blocked() {
        let client = client(&[]);
        for url in ["http://[::1]:9/webhook", "http://[::ffff:127.0.0.1]:9/webhook", "http://[fd00:ec2::254]/"] {
            let reason = blocked_reason(client.attempt(&request(url)).await);
            assert!(reason.contains("loopback") || reason.contains("unique-local"), "{url}: {reason}");
        }
    }

    #[tokio::test]
    async fn cloud_metadata_is_blocked_before_connecting() {
        let started = Instant::now();
        let reason = blocked_reason(client(&[]).attempt(&request("http://169.254.169.254/latest/meta-data/")).await);
        assert!(reason.contains("link-local"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(1), "no connection was attempted");
        // Other spellings of a blocked address are normalised by the URL parser first.
        let reason = blocked_reason(client(&[]).attempt(&request("http://0x7f.1/webhook")).await);
        assert!(reason.contains("127.0.0.1"), "{reason}");
    }

    #[tokio::test]
    async fn internal_endpoints_skip_the_guard_and_customer_urls_keep_it() {
        let endpoint = Endpoint::ok().await;
        let url = endpoint.url();
        let client = client(&[]);
        let internal = WebhookRequest { internal: true, ..request(&url) };
        let attempt = client.attempt(&internal).await;
        assert!(matches!(attempt, Attempt::Acked { status: 200, .. }), "{attempt:?}");
        let by_name = url.replace("127.0.0.1", "localhost");
        let attempt = client.attempt(&WebhookRequest { internal: true, ..request(&by_name) }).await;
        assert!(matches!(attempt, Attempt::Acked { status: 200, .. }), "{attempt:?}");
        assert_eq!(endpoint.count(), 2);
        // The same client still refuses the address for a customer, by IP literal and by name.
        blocked_reason(client.attempt(&request(&url)).await);
        blocked_reason(client.attempt(&request(&by_name)).await);
        assert_eq!(endpoint.count(), 2);
    }

    #[tokio::test]
    async fn non_http_schemes_are_blocked() {
        let reason = blocked_reason(client(&[]).attempt(&request("file:///etc/passwd")).await);
        assert!(reason.contains("http or https"), "{reason}");
        // No setting allows another scheme, so none is named.
        assert!(!reason.contains("HOOKLINE_ALLOW_NETWORKS"), "{reason}");
    }

    #[tokio::test]
    async fn delivers_to_allowed_network_with_headers_as_sent() {
        let endpoint = Endpoint::ok().await;
        let signature = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,c2lnbmF0dXJl";
        let body = Bytes::from_static(b"eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.e30.e30.e30.e30");
        let url = endpoint.url();
        let request = WebhookRequest {
            url: &url,
            event_id: "evt_0192",
            timestamp: 1_712_345_678,
            content_type: "application/jose",
            signature: Some(signature),
            body: body.clone(),
            internal: false,
        };
        let attempt = client(&["127.0.0.0/8"]).attempt(&request).await;
        assert!(matches!(attempt, Attempt::Acked { status: 200, .. }), "{attempt:?}");
        let received = endpoint.received();
        assert_eq!(received.len(), 1);
        let received = &received[0];
        assert_eq!(received.path, "/webhook");
        assert_eq!(received.header("webhook-id"), Some("evt_0192"));
        assert_eq!(received.header("webhook-timestamp"), Some("1712345678"));
        assert_eq!(received.header("content-type"), Some("application/jose"));
        assert_eq!(received.header("webhook-signature"), Some(signature));
        assert_eq!(received.body, body);
    }

    #[tokio::test]
    async fn unsigned_request_has_no_signature_header() {
        let endpoint = Endpoint::ok().await;
        let url = endpoint.url();
        let attempt = client(&["127.0.0.1"]).attempt(&request(&url)).await;
        assert!(matches!(attempt, Attempt::Acked { .. }), "{attempt:?}");
        let received = endpoint.received();
        assert_eq!(received[0].header("webhook-signature"), None);
        assert_eq!(received[0].header("content-type"), Some("application/json"));
        assert_eq!(received[0].header("webhook-timestamp"), Some("1700000000"));
    }

    #[tokio::test]
    async fn resolver_keeps_only_allowed_addresses() {
        // `localhost` may also resolve to ::1, which stays blocked; 127.0.0.1 is used.
        let endpoint = Endpoint::ok().await;
        let url = endpoint.url().replace("127.0.0.1", "localhost");
        let attempt = client(&["127.0.0.0/8"]).attempt(&request(&url)).await;
        assert!(matches!(attempt, Attempt::Acked { .. }), "{attempt:?}");
        assert_eq!(endpoint.count(), 1);

        let resolver = GuardedResolver::new(NetworkPolicy::new(vec![parse_network("127.0.0.0/8").expect("net")]));
        let addresses = resolver.resolve_allowed("localhost").await.expect("resolves");
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(|a| a.ip().is_ipv4() && a.ip().is_loopback()), "{addresses:?}");
        let refused = GuardedResolver::new(NetworkPolicy::default()).resolve_allowed("localhost").await;
        let error = refused.expect_err("blocked");
        assert!(error.is::<GuardRefusal>(), "{error}");
    }

    #[tokio::test]
    async fn error_status_is_a_failure_with_retry_after() {
        let endpoint = Endpoint::start(|_| Respond::status(503).retry_after("7")).await;
        let url = endpoint.url();
        let failure = failure(client(&["127.0.0.0/8"]).attempt(&request(&url)).await);
        assert_eq!(failure.status, Some(503));
        assert_eq!(failure.class, "5xx");
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(failure.error, "HTTP 503 Service Unavailable");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let endpoint = Endpoint::always(302).await;
        let url = endpoint.url();
        let failure = failure(client(&["127.0.0.0/8"]).attempt(&request(&url)).await);
        assert_eq!((failure.status, failure.class), (Some(302), "3xx"));
        assert_eq!(endpoint.count(), 1);
    }

    #[tokio::test]
    async fn connection_failure_is_classified_without_the_url() {
        let url = format!("http://127.0.0.1:{}/webhook?token=s3cr3t", closed_port().await);
        let failure = failure(client(&["127.0.0.0/8"]).attempt(&request(&url)).await);
        assert_eq!(failure.class, "connect");
        assert_eq!(failure.status, None);
        assert!(failure.error.starts_with("connection failed"), "{}", failure.error);
        assert!(!failure.error.contains("s3cr3t") && !failure.error.contains("token"), "{}", failure.error);
    }

    #[tokio::test]
    async fn unresolvable_host_is_a_retryable_failure() {
        let failure = failure(client(&[]).attempt(&request("http://hookline-test.invalid/webhook?token=s3cr3t")).await);
        assert_eq!(failure.class, "connect");
        assert!(!failure.error.contains("s3cr3t"), "{}", failure.error);
    }

    #[tokio::test]
    async fn slow_endpoint_times_out() {
        let endpoint = Endpoint::start(|_| Respond::ok().delayed(Duration::from_secs(3))).await;
        let url = endpoint.url();
        let policy = NetworkPolicy::new(vec![parse_network("127.0.0.0/8").expect("net")]);
        let client = WebhookClient::new(Duration::from_millis(300), policy).expect("client");
        let failure = failure(client.attempt(&request(&url)).await);
        assert_eq!(failure.class, "timeout");
    }

    #[tokio::test]
    async fn invalid_url_is_a_failure() {
        let failure = failure(client(&[]).attempt(&request("not a url")).await);
        assert_eq!(failure.class, "other");
        assert!(failure.error.starts_with("invalid webhook URL"), "{}", failure.error);
    }

    #[tokio::test]
    async fn refusal_is_a_typed_error_in_reqwest_chain() {
        // If a reqwest upgrade stopped carrying the resolver's error as a source, the textual
        // fallback in `guard_refusal` would still work, but this test says so first.
        let client = client(&[]);
        let error = client.client.get("http://localhost:9/").send().await.expect_err("refused");
        let mut current: Option<&(dyn StdError + 'static)> = Some(&error);
        let mut found = false;
        while let Some(cause) = current {
            found |= cause.is::<GuardRefusal>();
            current = cause.source();
        }
        assert!(found, "no GuardRefusal in {error:?}");
        assert!(error.is_connect());
    }

    #[test]
    fn refusal_is_found_in_a_source_chain() {
        #[derive(Debug)]
        struct Wrapper(BoxError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let nested = Wrapper(Box::new(Wrapper(Box::new(GuardRefusal { reason: "why".to_owned() }))));
        assert_eq!(guard_refusal(&nested).as_deref(), Some("why"));
        let flattened = Wrapper(format!("dns error: {}", GuardRefusal { reason: "why".to_owned() }).into());
        assert_eq!(guard_refusal(&flattened).as_deref(), Some("why"));
        let unrelated = Wrapper("connection refused".into());
        assert_eq!(guard_refusal(&unrelated), None);
    }

    #[test]
    fn request_debug_hides_url_and_signature() {
        let mut request = request("https://example.com/hook?token=s3cr3t");
        request.signature = Some("v1,c2lnbmF0dXJl");
        let debug = format!("{request:?}");
        assert!(!debug.contains("s3cr3t") && !debug.contains("c2lnbmF0dXJl"), "{debug}");
    }
}

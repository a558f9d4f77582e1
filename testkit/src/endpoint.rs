//! A real HTTP webhook endpoint on `127.0.0.1:0` that records every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub at: Instant,
    /// How many requests with the same `webhook-id` came before this one.
    pub earlier_attempts: usize,
}

impl Received {
    /// A header value (names are lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `webhook-id` header.
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id").unwrap_or_default()
    }

    /// The headers as an `http` header map (what signature verifiers take).
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) =
                (name.parse::<axum::http::HeaderName>(), axum::http::HeaderValue::from_str(value))
            {
                map.append(name, value);
            }
        }
        map
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the endpoint answers one request.
#[derive(Debug, Clone)]
pub struct Respond {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
    /// The answer's body (none by default).
    pub body: Option<String>,
}

impl Respond {
    pub fn status(status: u16) -> Self {
        Self { status, retry_after: None, delay: Duration::ZERO, body: None }
    }
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }
    pub fn ok() -> Self {
        Self::status(200)
    }
    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Script = dyn Fn(&Received) -> Respond + Send + Sync;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
}

/// A recording endpoint; the server stops when this is dropped.
pub struct Endpoint {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint answering 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_| Respond::ok()).await
    }

    /// An endpoint answering `status` to everything.
    pub async fn always(status: u16) -> Self {
        Self::start(move |_| Respond::status(status)).await
    }

    /// An endpoint that answers `status` to the first `n` attempts of each event, then 200.
    pub async fn fail_first(n: usize, status: u16) -> Self {
        Self::start(move |r| if r.earlier_attempts < n { Respond::status(status) } else { Respond::ok() }).await
    }

    /// An endpoint answering as `script` decides.
    pub async fn start(script: impl Fn(&Received) -> Respond + Send + Sync + 'static) -> Self {
        let shared = Shared { received: Arc::default(), script: Arc::new(script) };
        let received = Arc::clone(&shared.received);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind endpoint");
        let address = listener.local_addr().expect("endpoint address");
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { address, received, _stop: stop }
    }

    /// `http://127.0.0.1:PORT/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.address)
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The distinct `webhook-id`s received at least once.
    pub fn distinct_ids(&self) -> std::collections::BTreeSet<String> {
        self.received().iter().map(|r| r.webhook_id().to_owned()).collect()
    }
}

async fn handle(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let respond = {
        let mut received = shared.received.lock().unwrap_or_else(PoisonError::into_inner);
        let id = headers.get("webhook-id").cloned().unwrap_or_default();
        let earlier_attempts = received.iter().filter(|r| r.webhook_id() == id).count();
        let request = Received { path: uri.path().to_owned(), headers, body, at: Instant::now(), earlier_attempts };
        let respond = (shared.script)(&request);
        received.push(request);
        respond
    };
    if !respond.delay.is_zero() {
        tokio::time::sleep(respond.delay).await;
    }
    let status = StatusCode::from_u16(respond.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match respond.body {
        Some(body) => (status, body).into_response(),
        None => status.into_response(),
    };
    if let Some(value) = respond.retry_after
        && let Ok(value) = value.parse()
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

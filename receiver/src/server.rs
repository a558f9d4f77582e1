//! The HTTP side: `POST /webhook`, `GET /stats`, starting/stopping a receiver, and the `--print`
//! lines on stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngExt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Decision, FailureKind, Ledger, Stats};
use crate::verify::{AcceptUnverified, Opened, Verifier};
use crate::{Error, ReceiverConfig, Result};

/// State shared by every request of one receiver.
#[derive(Debug)]
struct Shared {
    config: ReceiverConfig,
    verifier: Arc<dyn Verifier>,
    ledger: Mutex<Ledger>,
    /// Whether accepted deliveries are still printed: `--print`, until stdout fails.
    printing: AtomicBool,
}

impl Shared {
    fn new(config: ReceiverConfig, verifier: Arc<dyn Verifier>) -> Arc<Self> {
        let printing = AtomicBool::new(config.print);
        Arc::new(Self { config, verifier, ledger: Mutex::default(), printing })
    }
}

/// The event fields the receiver reads from a delivery body.
#[derive(Debug)]
struct Event {
    event_type: String,
    timestamp: String,
}

/// Starts receivers in the current Tokio runtime.
#[derive(Debug)]
pub struct Receiver;

impl Receiver {
    /// Serves on `listener` in a background task until the handle is shut down or dropped.
    /// `config.listen` is ignored. Must be called inside a Tokio runtime.
    pub fn start(config: ReceiverConfig, listener: TcpListener) -> Result<ReceiverHandle> {
        Self::start_with_verifier(config, listener, Arc::new(AcceptUnverified))
    }

    /// Like [`Receiver::start`], authenticating every delivery with `verifier` first.
    pub fn start_with_verifier(
        config: ReceiverConfig,
        listener: TcpListener,
        verifier: Arc<dyn Verifier>,
    ) -> Result<ReceiverHandle> {
        let local_addr = listener.local_addr().map_err(Error::LocalAddress)?;
        tracing::info!(receiver = %config.name, address = %local_addr, "receiver listening");
        let shared = Shared::new(config, verifier);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_server(Arc::clone(&shared), listener, shutdown.clone()));
        Ok(ReceiverHandle { local_addr, shared, shutdown, task: Some(task) })
    }

    /// Binds `config.listen` (port 0 picks a free port) and starts serving on it.
    pub async fn bind(config: ReceiverConfig) -> Result<ReceiverHandle> {
        let listener =
            TcpListener::bind(config.listen).await.map_err(|source| Error::Bind { address: config.listen, source })?;
        Self::start(config, listener)
    }
}

/// A running receiver; dropping it stops the server (without waiting for it).
#[derive(Debug)]
pub struct ReceiverHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<()>>>,
}

impl ReceiverHandle {
    /// The address the receiver listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The webhook URL to register for a customer: `http://ADDRESS/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.local_addr)
    }

    /// The counters so far (the same as `GET /stats`).
    pub fn stats(&self) -> Stats {
        self.shared.ledger().stats()
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the server.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(|_| Error::ServerTask)?,
            None => Ok(()),
        }
    }
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves on `listener` until `shutdown` is cancelled, then logs the final counters. Accepts
/// deliveries unverified. `config.listen` is ignored.
pub async fn serve(config: ReceiverConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    serve_with_verifier(config, listener, Arc::new(AcceptUnverified), shutdown).await
}

/// Like [`serve`], authenticating every delivery with `verifier` first.
pub async fn serve_with_verifier(
    config: ReceiverConfig,
    listener: TcpListener,
    verifier: Arc<dyn Verifier>,
    shutdown: CancellationToken,
) -> Result<()> {
    let local_addr = listener.local_addr().map_err(Error::LocalAddress)?;
    tracing::info!(receiver = %config.name, address = %local_addr, "receiver listening");
    let shared = Shared::new(config, verifier);
    let result = run_server(Arc::clone(&shared), listener, shutdown).await;
    let Stats { received, unique, duplicates, failed, rejected, encrypted } = shared.ledger().stats();
    tracing::info!(
        receiver = %shared.config.name, received, unique, duplicates, failed, rejected, encrypted, "receiver stopped"
    );
    result
}

async fn run_server(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let app = Router::new().route("/webhook", post(webhook)).route("/stats", get(stats)).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await.map_err(Error::Serve)
}

async fn webhook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, answer) = shared.handle(&headers, body);
    (status, Json(answer)).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.ledger().stats())
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the answer to one delivery; synchronous, so the ledger lock is never held across
    /// an await.
    fn handle(&self, headers: &HeaderMap, body: Bytes) -> (StatusCode, Value) {
        // Authentication comes first: nothing in a request is used before it is verified (a
        // signing verifier also requires webhook-id and webhook-timestamp, so their absence is a
        // 401 there). The claimed id is only quoted in the log of a refusal.
        let opened = match self.verifier.verify(headers, body) {
            Ok(opened) => opened,
            Err(reason) => {
                let claimed_id = header(headers, "webhook-id").ok().flatten();
                return self.reject(StatusCode::UNAUTHORIZED, claimed_id, reason);
            }
        };
        let id = match header(headers, "webhook-id") {
            Ok(Some(id)) if !id.trim().is_empty() => id,
            Ok(_) => return self.reject(StatusCode::BAD_REQUEST, None, "missing webhook-id header".into()),
            Err(reason) => return self.reject(StatusCode::BAD_REQUEST, None, reason),
        };
        // Checked (and required) by a signing verifier; optional for unverified demo deliveries.
        let timestamp = match header(headers, "webhook-timestamp") {
            Ok(None) => None,
            Ok(Some(raw)) => match raw.trim().parse::<i64>() {
                Ok(seconds) => Some(seconds),
                Err(_) => {
                    let reason = format!("webhook-timestamp header `{raw}` is not a Unix time in seconds");
                    return self.reject(StatusCode::BAD_REQUEST, Some(id), reason);
                }
            },
            Err(reason) => return self.reject(StatusCode::BAD_REQUEST, Some(id), reason),
        };
        let event = match parse_body(&opened.body) {
            Ok(event) => event,
            Err(reason) => return self.reject(StatusCode::BAD_REQUEST, Some(id), reason),
        };

        let roll: f64 = rand::rng().random();
        let decision = {
            let mut ledger = self.ledger();
            if opened.was_encrypted() {
                ledger.decrypted();
            }
            ledger.decide(id, self.config.fail_first, self.config.fail_rate, roll)
        };
        let receiver = self.config.name.as_str();
        let event_type = event.event_type.as_str();
        match decision {
            Decision::Accept { attempt } => {
                tracing::info!(
                    receiver, webhook_id = id, event_type, attempt, event_timestamp = event.timestamp, webhook_timestamp = ?timestamp,
                    encrypted = opened.was_encrypted(), "webhook accepted"
                );
                // Printed before the answer, as a real endpoint processes before acknowledging.
                self.print(id, timestamp, &opened);
                (StatusCode::OK, json!({ "received": true }))
            }
            Decision::Duplicate { attempt } => {
                tracing::info!(
                    receiver,
                    webhook_id = id,
                    event_type,
                    attempt,
                    "duplicate webhook acknowledged, not processed again"
                );
                (StatusCode::OK, json!({ "received": true, "duplicate": true }))
            }
            Decision::Fail { attempt, why } => {
                let reason = match why {
                    FailureKind::FailFirst => {
                        format!("simulated failure: attempt {attempt} of the first {} refused", self.config.fail_first)
                    }
                    FailureKind::FailRate => format!("simulated failure at rate {}", self.config.fail_rate),
                };
                tracing::info!(receiver, webhook_id = id, event_type, attempt, "webhook refused with 503 ({reason})");
                (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": reason }))
            }
        }
    }

    /// Writes the `--print` line of an accepted delivery to stdout and flushes it. Blocking, like
    /// any processing before the 200: a reader that stops reading stalls the acknowledgements. If
    /// stdout fails (the reader went away: `| head -1`), printing stops and deliveries are still
    /// accepted.
    fn print(&self, id: &str, timestamp: Option<i64>, opened: &Opened) {
        if !self.printing.load(Ordering::Relaxed) {
            return;
        }
        let line = delivery_line(id, timestamp, opened);
        let mut stdout = std::io::stdout().lock();
        let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        drop(stdout);
        if let Err(error) = written
            && self.printing.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(receiver = %self.config.name, %error, "cannot write to stdout: no longer printing deliveries");
        }
    }

    fn reject(&self, status: StatusCode, id: Option<&str>, reason: String) -> (StatusCode, Value) {
        self.ledger().reject();
        tracing::warn!(receiver = %self.config.name, webhook_id = id, status = status.as_u16(), %reason, "webhook rejected");
        (status, json!({ "error": reason }))
    }
}

/// A header as text: `Ok(None)` when absent, `Err` naming it when it is not visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| format!("{name} header is not visible ASCII")),
    }
}

/// One `--print` line (see [`delivery_line`]).
#[derive(Debug, Serialize)]
struct Printed<'a> {
    webhook_id: &'a str,
    webhook_timestamp: Option<i64>,
    verified: bool,
    encrypted: bool,
    key_id: Option<&'a str>,
    event: &'a RawValue,
}

/// The `--print` line of an accepted delivery, without the newline: its id and timestamp, how it
/// arrived, and the envelope as the customer's code gets it. The envelope is embedded as received
/// when it is on one line (key order and number formatting kept), else re-serialized compactly:
/// the line must never contain a newline.
fn delivery_line(id: &str, timestamp: Option<i64>, opened: &Opened) -> String {
    let as_received = std::str::from_utf8(&opened.body)
        .ok()
        .filter(|text| !text.contains(['\n', '\r']))
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok().map(RawValue::to_owned));
    // `parse_body` accepted the body as JSON, so one of the two succeeds.
    let event = as_received
        .or_else(|| {
            serde_json::from_slice::<Value>(&opened.body).ok().and_then(|v| serde_json::value::to_raw_value(&v).ok())
        })
        .unwrap_or_else(|| RawValue::NULL.to_owned());
    let printed = Printed {
        webhook_id: id,
        webhook_timestamp: timestamp,
        verified: opened.verified,
        encrypted: opened.was_encrypted(),
        key_id: opened.decrypted_with.as_deref(),
        event: &event,
    };
    serde_json::to_string(&printed).unwrap_or_else(|_| format!("{{\"webhook_id\":{}}}", json!(id)))
}

/// Reads the Standard Webhooks body `{type, timestamp, data}`; an error names the bad field.
fn parse_body(body: &[u8]) -> Result<Event, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("body must be a JSON object with fields type, timestamp and data".into());
    };
    let text = |field: &str| match object.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(_) => Err(format!("body field `{field}` must be a non-empty string")),
        None => Err(format!("body field `{field}` is missing")),
    };
    let event_type = text("type")?;
    let timestamp = text("timestamp")?;
    if !object.contains_key("data") {
        return Err("body field `data` is missing".into());
    }
    Ok(Event { event_type, timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field() {
        assert!(parse_body(br#"{"type":"a.b","timestamp":"t","data":null}"#).is_ok());
        let error = |body: &[u8]| parse_body(body).unwrap_err();
        assert!(error(b"nope").contains("not JSON"));
        assert!(error(b"[]").contains("JSON object"));
        assert!(error(br#"{"timestamp":"t","data":{}}"#).contains("`type` is missing"));
        assert!(error(br#"{"type":1,"timestamp":"t","data":{}}"#).contains("`type` must be"));
        assert!(error(br#"{"type":"a","data":{}}"#).contains("`timestamp` is missing"));
        assert!(error(br#"{"type":"a","timestamp":"t"}"#).contains("`data` is missing"));
    }

    fn printed(timestamp: Option<i64>, body: &str, decrypted_with: Option<&str>) -> Value {
        let opened = Opened {
            body: Bytes::from(body.to_owned()),
            verified: true,
            decrypted_with: decrypted_with.map(str::to_owned),
        };
        let line = delivery_line("evt_1", timestamp, &opened);
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(&line).expect("the line is JSON")
    }

    #[test]
    fn print_lines_show_the_envelope_and_how_it_arrived() {
        let body = r#"{"type":"order.created","timestamp":"t","data":{"order":1.50}}"#;
        let line = delivery_line(
            "evt_1",
            Some(1_735_689_600),
            &Opened { body: Bytes::from(body), verified: true, decrypted_with: Some("kid-1".into()) },
        );
        // The envelope as received: key order and number formatting kept.
        assert!(line.ends_with(&format!(r#","event":{body}}}"#)), "{line}");
        assert_eq!(
            printed(Some(1_735_689_600), body, Some("kid-1")),
            json!({
                "webhook_id": "evt_1", "webhook_timestamp": 1_735_689_600, "verified": true,
                "encrypted": true, "key_id": "kid-1",
                "event": { "type": "order.created", "timestamp": "t", "data": { "order": 1.50 } }
            })
        );
        let plain = printed(None, body, None);
        assert_eq!(
            (&plain["encrypted"], &plain["key_id"], &plain["webhook_timestamp"]),
            (&json!(false), &Value::Null, &Value::Null)
        );
    }

    #[test]
    fn a_multi_line_envelope_is_printed_on_one_line() {
        let body = "{\n  \"type\": \"a.b\",\r\n  \"timestamp\": \"t\",\n  \"data\": [1, 2]\n}\n";
        assert_eq!(printed(None, body, None)["event"], json!({ "type": "a.b", "timestamp": "t", "data": [1, 2] }));
    }
}

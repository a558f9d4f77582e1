//! The fast receiver: the customers' endpoints of a benchmark, one HTTP server on loopback.
//!
//! It does the least a real endpoint must (read the whole body, check that the delivery is
//! signed, answer) so that the figures measure Hookline, not the receiver. Customer `n` is at
//! `/c/{n}`. Every request is logged with its arrival time and `webhook-id`, which is how
//! throughput is counted (distinct deliveries, not requests) and latency measured (against the
//! time the publish request for that event id was due).
//!
//! A gate holds requests until [`FastReceiver::open`]: a drain starts its clock only once every
//! consumer process has joined the group and every partition worker is waiting on its first
//! delivery, so start-up and rebalances stay out of the figure.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Result;

/// One request received.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub customer: u32,
    pub webhook_id: String,
    pub at: Instant,
    /// First arrival of this (customer, webhook-id) with a 2xx answer.
    pub first_delivery: bool,
    pub status: u16,
}

#[derive(Debug, Default)]
struct Log {
    arrivals: Vec<Arrival>,
    delivered: HashSet<(u32, String)>,
}

#[derive(Debug)]
struct Shared {
    log: Mutex<Log>,
    /// Distinct deliveries answered 2xx (read without the lock while waiting).
    delivered: AtomicUsize,
    /// Deliveries of customers other than the failing one.
    healthy_delivered: AtomicUsize,
    requests: AtomicUsize,
    /// Requests refused because they were not signed.
    unsigned: AtomicUsize,
    held: AtomicUsize,
    gate: watch::Sender<bool>,
    failing: Option<u32>,
}

/// The receiver; its server stops when this is dropped.
#[derive(Debug)]
pub struct FastReceiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FastReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FastReceiver {
    /// A receiver on `127.0.0.1:0`. `gated`: hold requests until [`Self::open`]. `failing`: this
    /// customer gets 503 to everything.
    pub async fn start(gated: bool, failing: Option<u32>) -> Result<Self> {
        let (gate, _) = watch::channel(!gated);
        let shared = Arc::new(Shared {
            log: Mutex::default(),
            delivered: AtomicUsize::new(0),
            healthy_delivered: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            unsigned: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            gate,
            failing,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let app = axum::Router::new().route("/c/{customer}", post(deliver)).with_state(Arc::clone(&shared));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        // One thread with its own single-threaded runtime, like an event-loop server's worker:
        // on a machine this small, a second worker thread costs more CPU in wake-ups than it
        // adds, and the receiver's CPU is CPU the system under test does not get.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("fast-receiver".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let _ = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned()).await;
            });
        })?;
        Ok(Self { address, shared, stop })
    }

    /// The webhook URL of customer `n`.
    pub fn url(&self, customer: u32) -> String {
        format!("http://{}/c/{customer}", self.address)
    }

    /// Lets held and further requests through; returns when that happened.
    pub fn open(&self) -> Instant {
        self.shared.gate.send_replace(true);
        Instant::now()
    }

    /// Requests waiting at the gate.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// Distinct deliveries answered 2xx so far.
    pub fn delivered(&self) -> usize {
        self.shared.delivered.load(Ordering::Acquire)
    }

    /// Distinct deliveries of the customers other than the failing one.
    pub fn healthy_delivered(&self) -> usize {
        self.shared.healthy_delivered.load(Ordering::Acquire)
    }

    /// Requests so far, repeats and refusals included.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Acquire)
    }

    /// Requests refused for lack of a `webhook-signature`.
    pub fn unsigned(&self) -> usize {
        self.shared.unsigned.load(Ordering::Acquire)
    }

    /// Every request so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.log.lock().unwrap_or_else(PoisonError::into_inner).arrivals.clone()
    }
}

/// What the receiver answers to an accepted delivery: a short JSON body, as most endpoints
/// (and `hookline-receiver`) send.
const ACK_BODY: &str = r#"{"received":true}"#;

async fn deliver(
    State(shared): State<Arc<Shared>>,
    Path(customer): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !*shared.gate.borrow() {
        shared.held.fetch_add(1, Ordering::AcqRel);
        let mut gate = shared.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        shared.held.fetch_sub(1, Ordering::AcqRel);
    }
    let at = Instant::now();
    shared.requests.fetch_add(1, Ordering::AcqRel);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(webhook_id), Some(_signature)) = (header("webhook-id"), header("webhook-signature")) else {
        shared.unsigned.fetch_add(1, Ordering::AcqRel);
        return (StatusCode::BAD_REQUEST, r#"{"error":"webhook-id and webhook-signature are required"}"#);
    };
    if body.is_empty() {
        return (StatusCode::BAD_REQUEST, r#"{"error":"empty body"}"#);
    }
    let status = if shared.failing == Some(customer) { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
    let first_delivery = status.is_success() && log.delivered.insert((customer, webhook_id.to_owned()));
    if first_delivery {
        shared.delivered.fetch_add(1, Ordering::AcqRel);
        if shared.failing != Some(customer) {
            shared.healthy_delivered.fetch_add(1, Ordering::AcqRel);
        }
    }
    log.arrivals.push(Arrival {
        customer,
        webhook_id: webhook_id.to_owned(),
        at,
        first_delivery,
        status: status.as_u16(),
    });
    if status.is_success() { (status, ACK_BODY) } else { (status, r#"{"error":"unavailable"}"#) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_distinct_signed_deliveries_and_holds_requests_until_opened() {
        let receiver = FastReceiver::start(true, Some(2)).await.unwrap();
        let client = reqwest::Client::new();
        let send = |customer: u32, id: &'static str, signed: bool| {
            let mut request = client.post(receiver.url(customer)).header("webhook-id", id).body("{}");
            if signed {
                request = request.header("webhook-signature", "v1,x");
            }
            request.send()
        };
        let held = tokio::spawn(send(1, "a", true));
        while receiver.held() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(receiver.requests(), 0, "held at the gate");
        receiver.open();
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
        assert_eq!(send(1, "a", true).await.unwrap().status(), 200, "a repeat is acknowledged");
        assert_eq!(send(1, "b", false).await.unwrap().status(), 400, "unsigned");
        assert_eq!(send(2, "c", true).await.unwrap().status(), 503, "the failing customer");
        assert_eq!((receiver.delivered(), receiver.healthy_delivered(), receiver.requests()), (1, 1, 4));
        assert_eq!(receiver.unsigned(), 1);
        let arrivals = receiver.arrivals();
        assert_eq!(arrivals.iter().filter(|a| a.first_delivery).count(), 1);
        assert_eq!(arrivals.last().map(|a| a.status), Some(503));
    }
}

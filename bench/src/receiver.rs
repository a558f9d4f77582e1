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
//!
//! [`Endpoints`] makes the endpoints behave like real ones: every answer after a latency, one
//! customer dead (503 to everything) or slow. The wait is a timer in the request's own future,
//! never a blocked thread, so any number of requests wait at once, as at separate real servers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Result;

/// How the customers' endpoints answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// How long every endpoint takes to answer.
    pub latency: Duration,
    /// The one customer that behaves differently, and how.
    pub odd_one: Option<(u32, OddOne)>,
}

/// The customer whose endpoint is not like the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OddOne {
    /// Answers 503 to everything (after the common latency).
    Dead,
    /// Answers 200 after this long instead of the common latency.
    Slow(Duration),
}

impl Endpoints {
    /// Instant 200s from every customer but `dead`, which answers 503.
    pub fn instant(dead: Option<u32>) -> Self {
        Self { latency: Duration::ZERO, odd_one: dead.map(|n| (n, OddOne::Dead)) }
    }

    /// The customer that is dead or slow.
    pub fn odd_customer(&self) -> Option<u32> {
        self.odd_one.map(|(n, _)| n)
    }

    /// What customer `n`'s endpoint answers, and after how long.
    pub fn answer(&self, customer: u32) -> (StatusCode, Duration) {
        match self.odd_one {
            Some((n, OddOne::Dead)) if n == customer => (StatusCode::SERVICE_UNAVAILABLE, self.latency),
            Some((n, OddOne::Slow(latency))) if n == customer => (StatusCode::OK, latency),
            _ => (StatusCode::OK, self.latency),
        }
    }
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub customer: u32,
    pub webhook_id: String,
    /// When it was answered (after the endpoint's latency): when the delivery was done.
    pub at: Instant,
    /// First answer to this (customer, webhook-id) that was 2xx.
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
    /// Deliveries of customers other than the odd (dead or slow) one.
    healthy_delivered: AtomicUsize,
    requests: AtomicUsize,
    /// Requests refused because they were not signed.
    unsigned: AtomicUsize,
    held: AtomicUsize,
    gate: watch::Sender<bool>,
    endpoints: Endpoints,
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
    /// A receiver on `127.0.0.1:0`. `gated`: hold requests until [`Self::open`]. `endpoints`:
    /// how its customers' endpoints answer.
    pub async fn start(gated: bool, endpoints: Endpoints) -> Result<Self> {
        let (gate, _) = watch::channel(!gated);
        let shared = Arc::new(Shared {
            log: Mutex::default(),
            delivered: AtomicUsize::new(0),
            healthy_delivered: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            unsigned: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            gate,
            endpoints,
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

    /// Distinct deliveries of the customers other than the odd (dead or slow) one.
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
    shared.requests.fetch_add(1, Ordering::AcqRel);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(webhook_id), Some(_signature)) = (header("webhook-id"), header("webhook-signature")) else {
        shared.unsigned.fetch_add(1, Ordering::AcqRel);
        return (StatusCode::BAD_REQUEST, r#"{"error":"webhook-id and webhook-signature are required"}"#);
    };
    if body.is_empty() {
        return (StatusCode::BAD_REQUEST, r#"{"error":"empty body"}"#);
    }
    let (status, latency) = shared.endpoints.answer(customer);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let at = Instant::now();
    let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
    let first_delivery = status.is_success() && log.delivered.insert((customer, webhook_id.to_owned()));
    if first_delivery {
        shared.delivered.fetch_add(1, Ordering::AcqRel);
        if shared.endpoints.odd_customer() != Some(customer) {
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
        let receiver = FastReceiver::start(true, Endpoints::instant(Some(2))).await.unwrap();
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

    #[test]
    fn the_odd_customer_answers_differently() {
        let slow =
            Endpoints { latency: Duration::from_millis(50), odd_one: Some((3, OddOne::Slow(Duration::from_secs(2)))) };
        assert_eq!(slow.answer(1), (StatusCode::OK, Duration::from_millis(50)));
        assert_eq!(slow.answer(3), (StatusCode::OK, Duration::from_secs(2)));
        let dead = Endpoints { odd_one: Some((3, OddOne::Dead)), ..slow };
        assert_eq!(dead.answer(3), (StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(50)));
        assert_eq!(dead.odd_customer(), Some(3));
        assert_eq!(Endpoints::instant(None).answer(3), (StatusCode::OK, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_waiting_endpoint_does_not_hold_up_the_others_and_answers_after_its_latency() {
        let latency = Duration::from_millis(100);
        let never = Duration::from_secs(3600);
        let endpoints = Endpoints { latency, odd_one: Some((0, OddOne::Slow(never))) };
        let receiver = FastReceiver::start(false, endpoints).await.unwrap();
        let client = reqwest::Client::new();
        let send = |customer: u32, id: &str| {
            client
                .post(receiver.url(customer))
                .header("webhook-id", id)
                .header("webhook-signature", "v1,x")
                .body("{}")
                .send()
        };
        let slow = tokio::spawn(send(0, "slow"));
        while receiver.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The receiver has one thread: a blocking wait would hold every other request.
        let sent = Instant::now();
        // A guard against a hang, not a timing: the others need milliseconds.
        let others =
            tokio::time::timeout(Duration::from_secs(30), futures::future::join_all((1..=20).map(|n| send(n, "e"))))
                .await
                .expect("the others answered while the slow customer waits");
        assert!(others.iter().all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
        assert!(!slow.is_finished(), "the slow customer is still waiting");
        assert_eq!((receiver.delivered(), receiver.healthy_delivered(), receiver.requests()), (20, 20, 21));
        let arrivals = receiver.arrivals();
        assert!(arrivals.iter().all(|a| a.at.duration_since(sent) >= latency), "answered after the latency");
        slow.abort();
    }
}

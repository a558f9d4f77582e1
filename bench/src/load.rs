//! HTTP load generators: closed-loop (N clients, each sending its next request when the last
//! one was answered) and open-loop (requests sent on a fixed schedule, whatever the answers).
//!
//! Both use `reqwest`, the client the consumer itself delivers with, over keep-alive
//! connections. Open-loop latencies are measured from when a request was *due*, not when it
//! went out, so a stalled server is not hidden by the generator waiting for it (coordinated
//! omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::stats::Latencies;

/// Builds request number `n`.
pub type MakeRequest = dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync;

/// What a closed-loop run measured (inside its measured window only).
#[derive(Debug, Default)]
pub struct ClosedLoop {
    pub completed: u64,
    pub failed: u64,
    pub measured: Duration,
    pub latencies: Latencies,
    pub first_failure: Option<String>,
}

impl ClosedLoop {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.measured.as_secs_f64()
    }
}

/// `clients` concurrent clients sending requests back to back for `warmup` + `measured`;
/// requests answered 2xx within the measured window count as completed.
pub async fn closed_loop(
    client: reqwest::Client,
    clients: usize,
    warmup: Duration,
    measured: Duration,
    make: Arc<MakeRequest>,
) -> ClosedLoop {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (window_start, window_end) = (start + warmup, start + warmup + measured);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, make, counter) = (client.clone(), Arc::clone(&make), Arc::clone(&counter));
            tokio::spawn(async move {
                let mut result = ClosedLoop::default();
                loop {
                    let sent = Instant::now();
                    if sent >= window_end {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let answer = make(&client, n).send().await;
                    let outcome = match answer {
                        Ok(response) if response.status().is_success() => {
                            response.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                        }
                        Ok(response) => {
                            let status = response.status();
                            Err(format!("{status}: {}", response.text().await.unwrap_or_default()))
                        }
                        Err(error) => Err(error.to_string()),
                    };
                    let done = Instant::now();
                    if sent < window_start || done > window_end {
                        continue;
                    }
                    match outcome {
                        Ok(()) => {
                            result.completed += 1;
                            result.latencies.record(done - sent);
                        }
                        Err(failure) => {
                            result.failed += 1;
                            result.first_failure.get_or_insert(failure);
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut total = ClosedLoop { measured, ..ClosedLoop::default() };
    for worker in workers {
        if let Ok(result) = worker.await {
            total.completed += result.completed;
            total.failed += result.failed;
            total.latencies.merge(&result.latencies);
            if total.first_failure.is_none() {
                total.first_failure = result.first_failure;
            }
        }
    }
    total
}

/// One request of an open-loop run that was answered 2xx.
#[derive(Debug, Clone)]
pub struct Answered {
    pub due: Instant,
    /// The answer's body.
    pub body: bytes::Bytes,
}

/// What an open-loop run sent.
#[derive(Debug, Default)]
pub struct OpenLoop {
    pub answered: Vec<Answered>,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// Requests not sent because `max_in_flight` were outstanding (the server fell behind).
    pub shed: u64,
}

/// Sends `rate` requests per second for `duration`, each as its own task, at most
/// `max_in_flight` at once.
pub async fn open_loop(
    client: reqwest::Client,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
    make: Arc<MakeRequest>,
) -> OpenLoop {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let start = Instant::now();
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut shed = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0_u64;
    while next < total {
        ticker.tick().await;
        let now = Instant::now();
        // Everything due by now goes out, with the time it was due.
        while next < total {
            let due = start + interval.mul_f64(next as f64);
            if due > now {
                break;
            }
            let n = next;
            next += 1;
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                shed += 1;
                continue;
            };
            let (client, make) = (client.clone(), Arc::clone(&make));
            tasks.push(tokio::spawn(async move {
                let _slot = slot;
                match make(&client, n).send().await {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.map(|body| Answered { due, body }).map_err(|e| e.to_string())
                    }
                    Ok(response) => {
                        let status = response.status();
                        Err(format!("{status}: {}", response.text().await.unwrap_or_default()))
                    }
                    Err(error) => Err(error.to_string()),
                }
            }));
        }
    }
    let mut result = OpenLoop { shed, ..OpenLoop::default() };
    for task in tasks {
        match task.await {
            Ok(Ok(answered)) => result.answered.push(answered),
            Ok(Err(failure)) => {
                result.failed += 1;
                result.first_failure.get_or_insert(failure);
            }
            Err(error) => {
                result.failed += 1;
                result.first_failure.get_or_insert(error.to_string());
            }
        }
    }
    result
}

/// An HTTP client like the consumer's: keep-alive, no proxy, bounded timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::{Endpoints, FastReceiver};

    fn signed_post(url: String) -> Arc<MakeRequest> {
        Arc::new(move |client: &reqwest::Client, n: u64| {
            client.post(&url).header("webhook-id", format!("msg_{n}")).header("webhook-signature", "v1,x").body("{}")
        })
    }

    #[tokio::test]
    async fn closed_loop_counts_answered_requests_in_its_window() {
        let receiver = FastReceiver::start(false, Endpoints::default()).await.unwrap();
        let measured = Duration::from_millis(300);
        let run = closed_loop(client(), 4, Duration::from_millis(100), measured, signed_post(receiver.url(1))).await;
        assert!(run.completed > 0 && run.failed == 0, "{run:?}");
        assert_eq!(run.latencies.count(), run.completed);
        // Requests of the warm-up and past the window reached the receiver but are not counted.
        assert!(receiver.delivered() as u64 > run.completed);
    }

    #[tokio::test]
    async fn open_loop_sends_the_scheduled_number_of_requests() {
        let receiver = FastReceiver::start(false, Endpoints::default()).await.unwrap();
        let run = open_loop(client(), 500, Duration::from_millis(400), 64, signed_post(receiver.url(1))).await;
        assert_eq!((run.answered.len(), run.failed, run.shed), (200, 0, 0));
        assert_eq!(receiver.delivered(), 200);
        let failing = FastReceiver::start(false, Endpoints::instant(Some(1))).await.unwrap();
        let run = open_loop(client(), 500, Duration::from_millis(100), 64, signed_post(failing.url(1))).await;
        assert_eq!((run.answered.len(), run.failed), (0, 50));
        assert!(run.first_failure.is_some_and(|f| f.starts_with("503")));
    }
}

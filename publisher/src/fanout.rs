//! Writing the copies of one event through the shared producer within bounds on the bytes in
//! flight (handed to librdkafka and not yet acknowledged), so that a large fan-out streams
//! through the producer's queue instead of filling it, and other requests keep their share.
//!
//! Two bounds, both in bytes, each copy counted as its record's size plus
//! [`COPY_OVERHEAD`](crate::config::COPY_OVERHEAD):
//! - per request, a window (`--max-request-inflight-bytes`): the next copy is handed over only
//!   when the request's copies in flight leave room for it (a first copy always goes);
//! - in total, a byte semaphore (`--max-inflight-bytes`), sized within half of librdkafka's
//!   queue ([`Config::limits`](crate::Config::limits)), so that copies never find the queue full.
//!   The semaphore serves waiters in order and a request waits for one copy at a time, so a
//!   request arriving during a large fan-out waits for at most one of its copies per request
//!   ahead of it, not for the whole fan-out.
//!
//! Time: each copy is bounded by `--produce-timeout` (librdkafka's `message.timeout.ms`, plus
//! [`ACK_GRACE`](crate::config::ACK_GRACE) for its verdict), and so is each wait for room; the
//! whole request by `--fanout-timeout` (at least `--produce-timeout`). After the first failure
//! no further copy is handed over; the copies in flight are awaited, so that the answer says how
//! many were written.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hookline_core::customer::Customer;
use hookline_core::limits;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::error::Elapsed;

use crate::config::{ACK_GRACE, COPY_OVERHEAD, Config, Limits};
use crate::metrics::{Bound, Metrics};

/// The shared in-flight budget and the time bounds of writing copies.
#[derive(Debug)]
pub(crate) struct Fanout {
    room: Arc<Semaphore>,
    total: usize,
    per_request: usize,
    produce_timeout: Duration,
    deadline: Duration,
    metrics: Metrics,
}

/// One event's copies: the same value and headers, keyed by each recipient's id.
#[derive(Clone, Copy)]
pub(crate) struct Copies<'a> {
    pub producer: &'a FutureProducer,
    pub topic: &'a str,
    pub value: &'a [u8],
    pub headers: &'a OwnedHeaders,
}

/// How writing the copies ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Copies the broker acknowledged.
    pub produced: usize,
    /// The first failure, if any; no copy was handed over after it.
    pub failure: Option<String>,
}

/// Room reserved for one copy in flight, given back when dropped.
#[derive(Debug)]
struct Reserved {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: i64,
    metrics: Metrics,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.metrics.inflight(-self.bytes);
    }
}

type Reserving<'a> = Pin<Box<dyn Future<Output = Result<Reserved, Elapsed>> + Send + 'a>>;

impl Fanout {
    pub(crate) fn new(config: &Config, limits: &Limits, metrics: Metrics) -> Self {
        let total = limits.inflight.min(Semaphore::MAX_PERMITS);
        Self {
            room: Arc::new(Semaphore::new(total)),
            total,
            per_request: limits.request_inflight,
            produce_timeout: config.produce_timeout,
            deadline: config.publish_deadline(),
            metrics,
        }
    }

    /// Room for `bytes` in the total budget, waiting in line when it is full.
    async fn reserve(&self, bytes: usize) -> Reserved {
        let permits = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        let permit = match Arc::clone(&self.room).try_acquire_many_owned(permits) {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::NoPermits) => {
                self.metrics.inflight_wait(Bound::Total);
                // The semaphore is never closed, so this is always a permit.
                Arc::clone(&self.room).acquire_many_owned(permits).await.ok()
            }
            Err(TryAcquireError::Closed) => None,
        };
        let bytes = i64::from(permits);
        self.metrics.inflight(bytes);
        Reserved { _permit: permit, bytes, metrics: self.metrics.clone() }
    }

    /// Writes one copy per recipient, keyed by its id, within the in-flight and time bounds, and
    /// waits for the acknowledgements.
    pub(crate) async fn send(&self, copies: Copies<'_>, recipients: &[Arc<Customer>]) -> Sent {
        let ack_timeout = self.produce_timeout + ACK_GRACE;
        let header_sizes: Vec<(&str, usize)> =
            copies.headers.iter().map(|h| (h.key, h.value.map_or(0, <[u8]>::len))).collect();
        let charge = |key: &str| {
            limits::record_size(key.len(), copies.value.len(), header_sizes.iter().copied()) + COPY_OVERHEAD
        };
        let deadline = tokio::time::sleep(self.deadline);
        tokio::pin!(deadline);
        let mut next = recipients.iter().peekable();
        let mut sending = FuturesUnordered::new();
        let mut window = 0;
        let mut window_wait_counted = false;
        let mut reserving: Option<Reserving<'_>> = None;
        let mut sent = Sent { produced: 0, failure: None };
        loop {
            if reserving.is_none()
                && sent.failure.is_none()
                && let Some(customer) = next.peek()
            {
                if sending.is_empty() || window + charge(&customer.id) <= self.per_request {
                    reserving =
                        Some(Box::pin(tokio::time::timeout(self.produce_timeout, self.reserve(charge(&customer.id)))));
                    window_wait_counted = false;
                } else if !window_wait_counted {
                    self.metrics.inflight_wait(Bound::Request);
                    window_wait_counted = true;
                }
            }
            if reserving.is_none() && sending.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = &mut deadline => {
                    // Unanswered copies stay queued in librdkafka and may still be written.
                    sent.failure.get_or_insert_with(|| {
                        format!("the copies were not all written within {:?} (--fanout-timeout)", self.deadline)
                    });
                    break;
                }
                Some((result, bytes)) = sending.next(), if !sending.is_empty() => {
                    window -= bytes;
                    let result: Result<OwnedDeliveryResult, Elapsed> = result;
                    let failure = match result {
                        Ok(Ok(_delivery)) => {
                            sent.produced += 1;
                            continue;
                        }
                        Ok(Err((error, _message))) => error.to_string(),
                        // Normally librdkafka's own `message.timeout.ms` verdict comes first.
                        Err(_elapsed) => format!("no acknowledgement within {ack_timeout:?}"),
                    };
                    sent.failure.get_or_insert(failure);
                    reserving = None;
                }
                reserved = next_of(&mut reserving) => {
                    reserving = None;
                    let reserved = match reserved {
                        Ok(reserved) => reserved,
                        Err(_elapsed) => {
                            sent.failure.get_or_insert_with(|| {
                                format!(
                                    "no room among the copies in flight within {:?}: the broker is not keeping up",
                                    self.produce_timeout
                                )
                            });
                            continue;
                        }
                    };
                    let Some(customer) = next.next() else { continue };
                    let bytes = charge(&customer.id);
                    window += bytes;
                    let copy = FutureRecord::to(copies.topic)
                        .key(customer.id.as_str())
                        .payload(copies.value)
                        .headers(copies.headers.clone());
                    let produce = copies.producer.send(copy, Timeout::After(self.produce_timeout));
                    sending.push(acknowledged(produce, ack_timeout, reserved, bytes));
                }
            }
        }
        sent
    }
}

/// One copy handed over: its acknowledgement within `ack_timeout`, with its charge; its room is
/// given back then.
async fn acknowledged(
    produce: impl Future<Output = OwnedDeliveryResult>,
    ack_timeout: Duration,
    reserved: Reserved,
    bytes: usize,
) -> (Result<OwnedDeliveryResult, Elapsed>, usize) {
    let result = tokio::time::timeout(ack_timeout, produce).await;
    drop(reserved);
    (result, bytes)
}

/// The output of `future`, if there is one; never otherwise.
async fn next_of<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

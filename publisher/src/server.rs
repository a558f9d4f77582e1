//! The HTTP server beneath the router, and its time limits against slow or stalled clients.
//!
//! `axum::serve` cannot bound how long a client may take to send its request headers, so the
//! publisher serves its connections with hyper directly ([`serve`]): HTTP/1.1 (gRPC has its own
//! port), with
//! - `--http-header-read-timeout` (default 10 s): a connection whose request line and headers have
//!   not all arrived within it is closed without an answer (slowloris). A keep-alive connection
//!   left idle that long is closed too.
//! - `--http-request-timeout` (default 60 s), from the end of the headers to the answer
//!   ([`limit_request_time`], the router's outermost layer): a request whose body is still
//!   arriving then gets `408 {"error"}` (and its connection is closed); one whose handler is still
//!   at work gets `503 {"error"}` (retry, as after any `503`: copies of an event may have been
//!   written meanwhile). Both are counted in `hookline_http_request_timeouts_total{stage}`
//!   (`body`, `answer`).
//!
//! - `--http-max-connections` (default 1024): connections open at once. At the limit the server
//!   stops accepting until one closes; new clients wait in the listen backlog (and their
//!   connect may time out), so that memory and file descriptors stay bounded whatever the number
//!   of clients. Open connections are `hookline_http_connections`, and each time the limit made a
//!   connection wait counts in `hookline_http_connection_waits_total`.
//!
//! On shutdown the server stops accepting, lets every connection finish the request it is
//! serving (each bounded by the request timeout) and closes idle ones.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::metrics::Metrics;

/// The pause after a failed `accept` that is not the peer's doing (out of file descriptors, say),
/// so that the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The limits of the HTTP server (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains (see the module
/// documentation).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    // hyper enforces the header read timeout only with a timer.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection's task holds a sender: `recv` answers `None` once all of them have ended.
    let (open, mut drained) = mpsc::channel::<()>(1);
    loop {
        // Room first, then accept: at the limit, new clients wait in the listen backlog.
        let permit = match Arc::clone(&room).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics.http_connection_waited();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = Arc::clone(&room).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let connection = serve_connection(Arc::clone(&builder), stream, router.clone(), shutdown.clone());
                let open = open.clone();
                let metrics = metrics.clone();
                metrics.http_connections(1);
                tokio::spawn(async move {
                    connection.await;
                    metrics.http_connections(-1);
                    drop(permit);
                    drop(open);
                });
            }
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    drop(open);
    let _ = drained.recv().await;
}

/// Serves one connection until the client closes it, a time limit closes it, or `shutdown`
/// lets it finish its request in progress.
async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    router: Router,
    shutdown: CancellationToken,
) {
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    // Clients that go away, time out or send garbage: theirs to see, not ours.
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Whether a failed `accept` concerns only that one connection.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// The state of [`limit_request_time`]: the limit and where to count the requests that reach it.
#[derive(Debug, Clone)]
pub(crate) struct RequestTimeout {
    limit: Duration,
    metrics: Metrics,
}

impl RequestTimeout {
    pub(crate) fn new(limit: Duration, metrics: Metrics) -> Self {
        Self { limit, metrics }
    }
}

/// How far a request body has been read (see [`Watched`]).
const BODY_UNREAD: u8 = 0;
const BODY_READING: u8 = 1;
const BODY_READ: u8 = 2;

/// Middleware: answers a request that is not answered within the limit, with `408` if its body
/// was still being read then, else `503` (both JSON `{"error"}`). The handler is dropped at that
/// point.
pub(crate) async fn limit_request_time(
    State(timeout): State<RequestTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let progress = Arc::new(AtomicU8::new(BODY_UNREAD));
    let body = Body::from_stream(Watched { inner: body.into_data_stream(), progress: Arc::clone(&progress) });
    let Ok(response) = tokio::time::timeout(timeout.limit, next.run(Request::from_parts(parts, body))).await else {
        let limit = timeout.limit;
        let (stage, error) = match progress.load(Ordering::Acquire) {
            BODY_READING => ("body", Error::BodyTimeout { limit }),
            _ => ("answer", Error::AnswerTimeout { limit }),
        };
        timeout.metrics.request_timed_out(stage);
        if stage == "answer" {
            tracing::warn!(%error, "request timed out");
        } else {
            tracing::debug!(%error, "request timed out");
        }
        return error.into_response();
    };
    response
}

/// A request body that records how far it has been read, so that a timeout can tell a client
/// still sending from a handler still working.
struct Watched {
    inner: BodyDataStream,
    progress: Arc<AtomicU8>,
}

impl Stream for Watched {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        let progress = match &polled {
            Poll::Ready(None | Some(Err(_))) => BODY_READ,
            _ => BODY_READING,
        };
        // Never back from read to reading.
        self.progress.fetch_max(progress, Ordering::AcqRel);
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::middleware;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    use super::*;

    /// Generous: the limits under test are a fraction of it.
    const PATIENCE: Duration = Duration::from_secs(10);

    struct Server {
        address: SocketAddr,
        metrics: Metrics,
        shutdown: CancellationToken,
        served: JoinHandle<()>,
    }

    /// Serves a router with a quick route, a slow one and one that echoes its body, with the
    /// given limits.
    async fn start(header_read_timeout: Duration, request_timeout: Duration) -> Server {
        start_with(header_read_timeout, request_timeout, 1024).await
    }

    /// [`start`] with a limit on open connections.
    async fn start_with(header_read_timeout: Duration, request_timeout: Duration, max_connections: usize) -> Server {
        let metrics = Metrics::new().expect("metrics");
        let router = Router::new()
            .route("/quick", get(|| async { "quick" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "slow"
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(middleware::from_fn_with_state(
                RequestTimeout::new(request_timeout, metrics.clone()),
                limit_request_time,
            ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let limits = Limits { header_read_timeout, max_connections };
        let served = tokio::spawn(serve(listener, router, limits, metrics.clone(), shutdown.clone()));
        Server { address, metrics, shutdown, served }
    }

    impl Server {
        /// Cancels and waits until every connection has ended.
        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(PATIENCE, self.served).await.expect("drained in time").expect("no panic");
        }

        fn metrics(&self) -> String {
            self.metrics.render().expect("metrics")
        }
    }

    /// Reads until the server closes the connection: the answer.
    async fn answer(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection in time")
            .expect("read the answer");
        String::from_utf8(answer).expect("text answer")
    }

    /// Sends `request` as is; the answer.
    async fn exchange(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        answer(&mut stream).await
    }

    #[tokio::test]
    async fn answers_within_the_limits() {
        let server = start(Duration::from_secs(5), Duration::from_secs(5)).await;
        let answer = exchange(server.address, "GET /quick HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("quick"), "{answer}");
        let request = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        let answer = exchange(server.address, request).await;
        assert!(answer.ends_with("hello"), "{answer}");
        server.stop().await;
    }

    #[tokio::test]
    async fn stalled_headers_close_the_connection() {
        let server = start(Duration::from_millis(200), Duration::from_secs(3600)).await;
        // Never finishes its headers: closed (hyper does not answer).
        let answer = exchange(server.address, "GET /quick HTTP/1.1\r\nhost: x\r\n").await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_body_gets_408() {
        let server = start(Duration::from_secs(3600), Duration::from_millis(200)).await;
        let request = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly part of it";
        let answer = exchange(server.address, request).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.ends_with(r#"{"error":"the request body did not arrive within 200ms"}"#), "{answer}");
        let metrics = server.metrics();
        assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="body"} 1"#), "{metrics}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_handler_gets_503() {
        let server = start(Duration::from_secs(3600), Duration::from_millis(200)).await;
        let answer = exchange(server.address, "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.ends_with(r#"{"error":"the request was not answered within 200ms; retry"}"#), "{answer}");
        let metrics = server.metrics();
        assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="answer"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="body"} 0"#), "{metrics}");
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_progress_finish() {
        let server = start(Duration::from_secs(3600), Duration::from_secs(3600)).await;
        let address = server.address;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // The headers are in and the body is on its way when the shutdown comes.
        stream.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhe").await.expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.shutdown.cancel();
        stream.write_all(b"llo").await.expect("send the rest");
        let answer = answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");
        server.stop().await;
        assert!(TcpStream::connect(address).await.is_err(), "no longer listening");
    }

    #[tokio::test]
    async fn at_the_connection_limit_new_clients_wait_for_room() {
        let server = start_with(Duration::from_secs(3600), Duration::from_secs(3600), 1).await;
        // Holds the only connection: connected, request not sent.
        let held = TcpStream::connect(server.address).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut waiting = TcpStream::connect(server.address).await.expect("connect (the backlog takes it)");
        waiting.write_all(b"GET /quick HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("send");
        let mut early = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut early)).await;
        assert!(read.is_err(), "answered although the only connection allowed is held: {read:?}");
        let metrics = server.metrics();
        assert!(metrics.contains("hookline_http_connections 1"), "{metrics}");
        assert!(metrics.contains("hookline_http_connection_waits_total 1"), "{metrics}");

        drop(held);
        let answer = answer(&mut waiting).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("quick"), "{answer}");
        server.stop().await;
    }
}

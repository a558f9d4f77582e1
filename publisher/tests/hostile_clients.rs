//! Clients that send too much, too slowly or not at all, against a publisher on a real tansu
//! broker: bodies are read only once the caller is authenticated, a body that does not arrive in
//! time gets `408`, a request the server cannot answer in time `503` (gRPC: `CANCELLED`), and a
//! connection whose headers do not arrive is closed.
//!
//! The requests are written by hand on a TCP socket, since HTTP clients do not stall on purpose.

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, Harness, PRODUCER_TOKEN, error_of};
use hookline_publisher::grpc::pb::SendOutgoingEventRequest;
use hookline_publisher::grpc::pb::event_broker_client::EventBrokerClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: every limit under test is a fraction of it, and an answer that depends on a body
/// that never comes would take forever.
const PATIENCE: Duration = Duration::from_secs(10);

/// A request line and headers, with `authorization: Bearer <token>` when given.
fn head(method: &str, path: &str, token: Option<&str>, content_length: usize) -> String {
    let authorization = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nhost: publisher\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n{authorization}\r\n"
    )
}

/// Writes `sent` to the publisher and nothing more, then reads until it closes the connection:
/// the raw answer. Panics if it does not close within [`PATIENCE`].
async fn send_and_stall(harness: &Harness, sent: &str) -> String {
    let address = harness.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(sent.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer within {PATIENCE:?} to {sent:?}"))
        .expect("read the answer");
    String::from_utf8(answer).expect("text answer")
}

/// The status and JSON body of a raw answer.
fn parse(answer: &str) -> (u16, Value) {
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {answer:?}"));
    let (_, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body: {answer:?}"));
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {answer:?}")))
}

/// An HTTP client that opens a connection per request, so that a connection the server closed
/// for idling is never reused.
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(PATIENCE).build().expect("client")
}

/// `POST /publish` of `body` as `token`, on a connection of its own.
async fn publish(harness: &Harness, token: &str, body: String) -> reqwest::Response {
    let request = unpooled_client().post(format!("{}/publish", harness.base)).bearer_auth(token);
    request.header("content-type", "application/json").body(body).send().await.expect("publish")
}

async fn metrics(harness: &Harness) -> String {
    let response = unpooled_client().get(format!("{}/metrics", harness.base)).send().await.expect("metrics");
    response.text().await.expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_only_after_authentication() {
    let harness = Harness::start(&[("alice", &["*"])], |config| config.max_body_size = Some(1024)).await;

    // Headers announcing 10 MB, the first bytes of the body, then nothing: answered at once,
    // without waiting for (or reading) the rest.
    let cases = [
        ("POST", "/publish", None, 401),
        ("POST", "/publish", Some("wrong"), 401),
        ("POST", "/publish", Some(ADMIN_TOKEN), 403),
        ("POST", "/v1/customers", None, 401),
        ("POST", "/v1/customers", Some(PRODUCER_TOKEN), 403),
        ("PUT", "/v1/customer/webhook", Some("hk_nope_nope"), 401),
        ("PUT", "/v1/customer/public-key", None, 401),
        ("PUT", "/v1/customer/subscriptions", Some(ADMIN_TOKEN), 403),
    ];
    for (method, path, token, expected) in cases {
        let sent = format!("{}{{\"type\": \"order.cr", head(method, path, token, 10_000_000));
        let answer = send_and_stall(&harness, &sent).await;
        let (status, body) = parse(&answer);
        assert_eq!(status, expected, "{method} {path} as {token:?}: {answer}");
        assert!(!error_of(&body).is_empty(), "{answer}");
    }

    // A whole body over the limit: refused for the credentials (401), not for its size (413).
    let oversized = format!(r#"{{"type": "order.created", "payload": "{}"}}"#, "x".repeat(4096));
    assert_eq!(publish(&harness, "wrong", oversized.clone()).await.status(), 401);
    // With a producer token, the limit applies.
    assert_eq!(publish(&harness, PRODUCER_TOKEN, oversized).await.status(), 413);

    let metrics = metrics(&harness).await;
    for line in [
        r#"hookline_publish_requests_total{outcome="unauthorized"} 4"#,
        r#"hookline_publish_requests_total{outcome="too_large"} 1"#,
        r#"hookline_api_requests_total{operation="create_customer",status="401"} 1"#,
        r#"hookline_api_requests_total{operation="create_customer",status="403"} 1"#,
        r#"hookline_api_requests_total{operation="set_webhook",status="401"} 1"#,
        r#"hookline_api_requests_total{operation="set_public_key",status="401"} 1"#,
        r#"hookline_api_requests_total{operation="set_subscriptions",status="403"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let harness = Harness::start(&[("alice", &["*"])], |config| {
        config.http_request_timeout = Duration::from_secs(1);
        config.http_header_read_timeout = Duration::from_secs(1);
    })
    .await;

    // A producer whose body stops halfway: 408, JSON.
    let sent = format!("{}{{\"type\": \"order.cr", head("POST", "/publish", Some(PRODUCER_TOKEN), 100));
    let (status, body) = parse(&send_and_stall(&harness, &sent).await);
    assert_eq!(status, 408, "{body}");
    assert_eq!(error_of(&body), "the request body did not arrive within 1s");

    // Headers that never end: the connection is closed (hyper does not answer).
    let answer = send_and_stall(&harness, "POST /publish HTTP/1.1\r\nhost: publisher\r\ncontent-type: appl").await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Requests in time are served as before.
    let event = json!({"type": "order.created", "payload": {"id": 1}}).to_string();
    assert_eq!(publish(&harness, PRODUCER_TOKEN, event).await.status(), 202);

    let metrics = metrics(&harness).await;
    assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="body"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="answer"} 0"#), "{metrics}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_broker_cannot_answer_in_time_are_cut_off() {
    let mut harness = Harness::start(&[("alice", &["*"])], |config| {
        config.http_request_timeout = Duration::from_secs(1);
        // Beyond the request timeout: the request timeout answers first.
        config.produce_timeout = Duration::from_secs(5);
    })
    .await;
    harness.broker.kill();

    let response =
        publish(&harness, PRODUCER_TOKEN, json!({"type": "order.created", "payload": {"id": 1}}).to_string()).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(error_of(&body), "the request was not answered within 1s; retry");

    let mut client =
        EventBrokerClient::connect(format!("http://{}", harness.grpc)).await.expect("connect to the gRPC broker");
    let mut request = tonic::Request::new(SendOutgoingEventRequest {
        r#type: "order.created".into(),
        payload: r#"{"id": 2}"#.into(),
        target: None,
        idempotency_key: None,
    });
    request.metadata_mut().insert("authorization", format!("Bearer {PRODUCER_TOKEN}").parse().expect("metadata"));
    let status = tokio::time::timeout(PATIENCE, client.send_outgoing_event(request))
        .await
        .expect("the call ends in time")
        .expect_err("the call is cut off");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");

    let metrics = metrics(&harness).await;
    assert!(metrics.contains(r#"hookline_http_request_timeouts_total{stage="answer"} 1"#), "{metrics}");
    harness.stop().await;
}

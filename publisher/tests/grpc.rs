//! The gRPC event broker against a real tansu broker: `SendOutgoingEvent` and
//! `HandleIncomingEvent` through tonic's client and through an independent client (Node.js
//! `@grpc/grpc-js` loading the .proto at run time), the health service, and the status codes.

mod common;

use common::{ADMIN_TOKEN, Harness, PRODUCER_TOKEN, read_all};
use hookline_publisher::grpc::pb::event_broker_client::EventBrokerClient;
use hookline_publisher::grpc::pb::{HandleIncomingEventRequest, SendOutgoingEventRequest};
use hookline_testkit::interop::{self, node, repo_root};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn client(harness: &Harness) -> EventBrokerClient<Channel> {
    EventBrokerClient::connect(format!("http://{}", harness.grpc)).await.expect("connect to the gRPC broker")
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii metadata"));
    }
    request
}

fn outgoing(r#type: &str, payload: &str, target: Option<&str>) -> SendOutgoingEventRequest {
    SendOutgoingEventRequest {
        r#type: r#type.into(),
        payload: payload.into(),
        target: target.map(Into::into),
        idempotency_key: None,
    }
}

/// Calls `SendOutgoingEvent` and expects a failure with `code`; returns its message.
async fn refused(
    client: &mut EventBrokerClient<Channel>,
    request: Request<SendOutgoingEventRequest>,
    code: Code,
) -> String {
    let status = client.send_outgoing_event(request).await.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    status.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_outgoing_event_publishes_like_http() {
    let harness = Harness::start(&[("alice", &["order.created"]), ("bob", &["order.created"])], |_| {}).await;
    let mut client = client(&harness).await;

    // Fan-out, with the payload kept as the exact text sent.
    let payload = r#"{"b":1,  "a":[2]}"#;
    let answer = client
        .send_outgoing_event(with_token(outgoing("order.created", payload, None), Some(PRODUCER_TOKEN)))
        .await
        .expect("published")
        .into_inner();
    assert_eq!(answer.deliveries, 2);
    assert!(answer.event_id.starts_with("evt_"), "{answer:?}");
    // A target.
    let targeted = client
        .send_outgoing_event(with_token(outgoing("invoice.paid", "[1]", Some("bob")), Some(PRODUCER_TOKEN)))
        .await
        .expect("published to bob")
        .into_inner();
    assert_eq!(targeted.deliveries, 1);

    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let fanned: Vec<_> = records.iter().filter(|r| r.value.event_id == answer.event_id).collect();
    assert_eq!(fanned.len(), 2);
    assert!(fanned.iter().all(|r| r.value.payload.get() == payload), "{fanned:?}");
    let to_bob: Vec<_> = records.iter().filter(|r| r.value.event_id == targeted.event_id).collect();
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0].key, "bob");
    assert_eq!(to_bob[0].value.event_type, "invoice.paid");

    // Authentication and authorization.
    let message = refused(&mut client, with_token(outgoing("a", "{}", None), None), Code::Unauthenticated).await;
    assert!(message.contains("Authorization"), "{message}");
    refused(&mut client, with_token(outgoing("a", "{}", None), Some("wrong")), Code::Unauthenticated).await;
    refused(&mut client, with_token(outgoing("a", "{}", None), Some(ADMIN_TOKEN)), Code::PermissionDenied).await;
    let (status, created) =
        harness.call(reqwest::Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({"id": "carol"}))).await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["api_key"].as_str().expect("api key");
    refused(&mut client, with_token(outgoing("a", "{}", None), Some(api_key)), Code::PermissionDenied).await;

    // Invalid arguments name the field; unknown targets are NOT_FOUND.
    let token = Some(PRODUCER_TOKEN);
    for (request, field) in [
        (outgoing("", "{}", None), "`type`"),
        (outgoing("*", "{}", None), "`type`"),
        (outgoing("has space", "{}", None), "`type`"),
        (outgoing("a", "", None), "`payload`"),
        (outgoing("a", "{not json", None), "`payload`"),
        (outgoing("a", "{}", Some("bad id")), "`target`"),
    ] {
        let message = refused(&mut client, with_token(request, token), Code::InvalidArgument).await;
        assert!(message.contains(field), "{message} should name {field}");
    }
    let message = refused(&mut client, with_token(outgoing("a", "{}", Some("mallory")), token), Code::NotFound).await;
    assert!(message.contains("mallory"), "{message}");

    // Nothing was produced by the refused calls.
    assert_eq!(read_all(&harness.kafka, &harness.topics.deliveries).await.len(), 3);
    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_grpc_requests_total{code="Ok",method="SendOutgoingEvent"} 2"#), "{metrics}");
    assert!(
        metrics.contains(r#"hookline_grpc_requests_total{code="NotFound",method="SendOutgoingEvent"} 1"#),
        "{metrics}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_the_message_is_read() {
    let harness = Harness::start(&[("alice", &["*"])], |config| config.max_body_size = Some(1024)).await;
    let mut client = client(&harness).await;
    // Far larger than the server would decode (the body limit and 64 KiB): a server that read and
    // decoded it first would refuse it for its size.
    let large = format!(r#""{}""#, "x".repeat(256 * 1024));

    let message = refused(&mut client, with_token(outgoing("a", &large, None), None), Code::Unauthenticated).await;
    assert!(message.contains("Authorization"), "{message}");
    refused(&mut client, with_token(outgoing("a", &large, None), Some("wrong")), Code::Unauthenticated).await;
    refused(&mut client, with_token(outgoing("a", &large, None), Some(ADMIN_TOKEN)), Code::PermissionDenied).await;
    let incoming =
        HandleIncomingEventRequest { source: "github".into(), r#type: None, payload: large, idempotency_key: None };
    let status = client.handle_incoming_event(with_token(incoming, None)).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let (_, metrics) = harness.get("/metrics").await;
    for line in [
        r#"hookline_grpc_requests_total{code="Unauthenticated",method="SendOutgoingEvent"} 2"#,
        r#"hookline_grpc_requests_total{code="PermissionDenied",method="SendOutgoingEvent"} 1"#,
        r#"hookline_grpc_requests_total{code="Unauthenticated",method="HandleIncomingEvent"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_incoming_event_needs_a_known_source() {
    let harness = Harness::start(&[("alice", &["*"])], |_| {}).await;
    let mut client = client(&harness).await;
    let incoming = |source: &str| HandleIncomingEventRequest {
        source: source.into(),
        r#type: None,
        payload: r#"{"action":"opened"}"#.into(),
        idempotency_key: None,
    };

    let status = client.handle_incoming_event(with_token(incoming("alice"), None)).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    // A customer is not an inbound source.
    let status =
        client.handle_incoming_event(with_token(incoming("alice"), Some(PRODUCER_TOKEN))).await.expect_err("customer");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status =
        client.handle_incoming_event(with_token(incoming("nobody"), Some(PRODUCER_TOKEN))).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("nobody"), "{status:?}");
    let status =
        client.handle_incoming_event(with_token(incoming(""), Some(PRODUCER_TOKEN))).await.expect_err("no source");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("`source`"), "{status:?}");

    assert!(read_all(&harness.kafka, &harness.topics.deliveries).await.is_empty());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving() {
    let harness = Harness::start(&[], |_| {}).await;
    let channel =
        Channel::from_shared(format!("http://{}", harness.grpc)).expect("uri").connect().await.expect("connect");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "hookline.v1.EventBroker"] {
        let answer = health
            .check(HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|status| panic!("health of {service:?}: {status:?}"))
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = health.check(HealthCheckRequest { service: "no.Such".into() }).await.expect_err("unknown service");
    assert_eq!(status.code(), Code::NotFound);

    // Server reflection (v1) lists the event broker, so tools like grpcurl need no .proto.
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(futures::stream::iter([ask])).await.expect("reflection").into_inner();
    let answer = answers.message().await.expect("reflection answer").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"hookline.v1.EventBroker"), "{names:?}");
    harness.stop().await;
}

/// Server reflection as Python's grpcio-reflection asks for it (`grpc.reflection.v1alpha`, the
/// only version it speaks): the event broker and its methods are found without a .proto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_a_v1alpha_client_that_is_not_ours() {
    let harness = Harness::start(&[], |_| {}).await;
    let input = json!({ "address": harness.grpc.to_string(), "service": "hookline.v1.EventBroker" });
    let answer = tokio::task::spawn_blocking(move || interop::python("reflection_client.py", &input))
        .await
        .expect("the Python client runs");
    assert!(answer.get("error").is_none(), "{answer}");
    let services: Vec<&str> =
        answer["services"].as_array().expect("services").iter().filter_map(Value::as_str).collect();
    assert!(services.contains(&"hookline.v1.EventBroker"), "{answer}");
    let methods: Vec<&str> = answer["methods"].as_array().expect("methods").iter().filter_map(Value::as_str).collect();
    assert_eq!(methods, ["SendOutgoingEvent", "HandleIncomingEvent"], "{answer}");
    harness.stop().await;
}

/// Runs `interop/grpc-client.mjs`: an independent client built from the repository's .proto.
fn node_call(harness: &Harness, method: &str, request: Value, token: Option<&str>) -> Value {
    let proto = repo_root().join("publisher/proto/hookline/v1/event_broker.proto");
    let mut input = json!({
        "address": harness.grpc,
        "protoPath": proto.to_str().expect("UTF-8 path"),
        "method": method,
        "request": request,
    });
    if let Some(token) = token {
        input["token"] = json!(token);
    }
    node("grpc-client.mjs", &input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_js_client_interoperates() {
    let harness = Harness::start(&[("alice", &["order.created"])], |_| {}).await;
    let payload = r#"{"id": 42, "items": ["x"]}"#;

    let answer = node_call(
        &harness,
        "SendOutgoingEvent",
        json!({"type": "order.created", "payload": payload, "idempotency_key": "k-1"}),
        Some(PRODUCER_TOKEN),
    );
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {answer}"));
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].key, "alice");
    assert_eq!(records[0].value.event_id, event_id);
    assert_eq!(records[0].value.payload.get(), payload);

    let denied = node_call(&harness, "SendOutgoingEvent", json!({"type": "a", "payload": "{}"}), None);
    assert_eq!(denied["codeName"], "UNAUTHENTICATED", "{denied}");
    let invalid =
        node_call(&harness, "SendOutgoingEvent", json!({"type": "a", "payload": "nope"}), Some(PRODUCER_TOKEN));
    assert_eq!(invalid["codeName"], "INVALID_ARGUMENT", "{invalid}");
    assert!(invalid["details"].as_str().is_some_and(|d| d.contains("`payload`")), "{invalid}");
    let unknown = node_call(
        &harness,
        "SendOutgoingEvent",
        json!({"type": "a", "payload": "{}", "target": "mallory"}),
        Some(PRODUCER_TOKEN),
    );
    assert_eq!(unknown["codeName"], "NOT_FOUND", "{unknown}");
    let incoming =
        node_call(&harness, "HandleIncomingEvent", json!({"source": "nobody", "payload": "{}"}), Some(PRODUCER_TOKEN));
    assert_eq!(incoming["codeName"], "NOT_FOUND", "{incoming}");

    assert_eq!(read_all(&harness.kafka, &harness.topics.deliveries).await.len(), 1);
    harness.stop().await;
}

//! The gRPC event broker: `hookline.v1.EventBroker` with `SendOutgoingEvent` and
//! `HandleIncomingEvent`, plus the standard health (`grpc.health.v1.Health`) and reflection
//! (`grpc.reflection.v1`, and `v1alpha` for the clients that speak only it) services, on
//! `--grpc-listen` (default `0.0.0.0:9620`).
//!
//! It shares the HTTP API's publish path ([`Publisher::publish`]) and credentials, so the rules
//! are the same: a producer token as metadata `authorization: Bearer <token>`, the same validation,
//! the same fan-out and acknowledgement semantics. Errors become gRPC status codes
//! ([`Error::grpc_code`]) whose message names the offending field.
//!
//! The token is checked before the call's message is read (`ProducerOnly`: tonic decodes the
//! message before the handler runs). Every call is bounded by `--http-request-timeout` (tonic
//! answers `CANCELLED` "Timeout expired" beyond it), and each connection by the HTTP/2 limits
//! below.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::auth::{Authenticator, require_producer};
use crate::metrics::Metrics;
use crate::publish::{
    Direction, PublishRequest, Publisher, default_incoming_type, parse_payload, publish_span, validate_id_field,
    validate_publish_type,
};
use crate::{Error, Result, idempotency};

/// The generated messages, client and server of `proto/hookline/v1/event_broker.proto`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("hookline.v1");

    /// The encoded file descriptor set of the proto, served by the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("event_broker_descriptor");
}

use pb::event_broker_server::{EventBroker, EventBrokerServer};
use pb::{
    HandleIncomingEventRequest, HandleIncomingEventResponse, SendOutgoingEventRequest, SendOutgoingEventResponse,
};

/// The fully-qualified service name, as served by the health service.
pub const SERVICE_NAME: &str = "hookline.v1.EventBroker";

/// Calls one HTTP/2 connection may have in flight at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// The largest header block (metadata) a call may send: the default would be 16 MiB.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// How often an idle connection is pinged, and how long the answer may take before the
/// connection is closed, so that dead peers do not hold connections forever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the event broker uses.
#[derive(Debug)]
pub(crate) struct BrokerState {
    pub publisher: Arc<Publisher>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// The largest message decoded: the HTTP body limit and room for the other fields.
    pub message_limit: usize,
    /// The longest a call may take (`--http-request-timeout`).
    pub timeout: Duration,
}

/// Serves the event broker, health and reflection on `listener` until `shutdown` is cancelled;
/// calls in flight then finish.
pub(crate) async fn serve(state: Arc<BrokerState>, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", ServingStatus::Serving).await;
    health_reporter.set_serving::<EventBrokerServer<Broker>>().await;
    // Both reflection versions: `v1` is the standard, but many clients (Python's
    // grpcio-reflection, several GUI tools) still speak only `v1alpha`, and get UNIMPLEMENTED
    // from a server without it.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Grpc(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Grpc(e.to_string()))?;
    let limit = state.message_limit;
    let timeout = state.timeout;
    let broker = EventBrokerServer::new(Broker { state: Arc::clone(&state) }).max_decoding_message_size(limit);
    let broker = ProducerOnly { inner: broker, state };
    tonic::transport::Server::builder()
        .timeout(timeout)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_SIZE)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(broker)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Grpc(e.to_string()))
}

/// The `EventBroker` service behind a check of the caller's token that runs before the call's
/// message is read or decoded (as the HTTP API reads no body before authentication): a caller
/// without a producer token cannot make the server read and decode up to the message size limit.
#[derive(Debug, Clone)]
struct ProducerOnly<S> {
    inner: S,
    state: Arc<BrokerState>,
}

impl<S: NamedService> NamedService for ProducerOnly<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ProducerOnly<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service polled ready serves this call; the clone left in its place is polled next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            // Metadata that is not ASCII text is reported like a malformed header.
            let header = request.headers().get("authorization").map(|v| v.to_str().unwrap_or_default());
            let authorized = state.auth.identify_bearer(header).await.and_then(require_producer);
            match authorized {
                Ok(()) => inner.call(request).await,
                Err(error) => Ok(refuse(&state, method_name(request.uri().path()), &error).into_http()),
            }
        })
    }
}

/// The RPC a request path (`/hookline.v1.EventBroker/<method>`) names, as a metrics label.
fn method_name(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("SendOutgoingEvent") => "SendOutgoingEvent",
        Some("HandleIncomingEvent") => "HandleIncomingEvent",
        _ => "unknown",
    }
}

/// The status a call refused with `error` is answered with, counted and logged.
fn refuse(state: &BrokerState, method: &'static str, error: &Error) -> Status {
    let code = error.grpc_code();
    state.metrics.grpc_request(method, code);
    if matches!(code, tonic::Code::Unavailable | tonic::Code::Internal) {
        tracing::warn!(method, %error, "gRPC call failed");
    } else {
        tracing::debug!(method, %error, "gRPC call refused");
    }
    Status::new(code, error.to_string())
}

/// The `EventBroker` service. Served only behind [`ProducerOnly`], which checks the token.
#[derive(Debug)]
pub(crate) struct Broker {
    state: Arc<BrokerState>,
}

impl Broker {
    /// Answers `result`, counting it and logging failures.
    fn answer<T>(&self, method: &'static str, result: Result<T>) -> Result<Response<T>, Status> {
        match result {
            Ok(answer) => {
                self.state.metrics.grpc_request(method, tonic::Code::Ok);
                Ok(Response::new(answer))
            }
            Err(error) => Err(refuse(&self.state, method, &error)),
        }
    }

    async fn send_outgoing(&self, request: Request<SendOutgoingEventRequest>) -> Result<SendOutgoingEventResponse> {
        let span = publish_span(telemetry::extract_http(&request.metadata().clone().into_headers()));
        let request = outgoing_request(request.into_inner())?;
        let accepted = self.state.publisher.publish(request, &span).await?;
        Ok(SendOutgoingEventResponse {
            event_id: accepted.event_id,
            deliveries: u32::try_from(accepted.deliveries).unwrap_or(u32::MAX),
        })
    }

    async fn handle_incoming(
        &self,
        request: Request<HandleIncomingEventRequest>,
    ) -> Result<HandleIncomingEventResponse> {
        let span = publish_span(telemetry::extract_http(&request.metadata().clone().into_headers()));
        let request = incoming_request(request.into_inner())?;
        let accepted = self.state.publisher.publish(request, &span).await?;
        Ok(HandleIncomingEventResponse { event_id: accepted.event_id })
    }
}

#[tonic::async_trait]
impl EventBroker for Broker {
    async fn send_outgoing_event(
        &self,
        request: Request<SendOutgoingEventRequest>,
    ) -> Result<Response<SendOutgoingEventResponse>, Status> {
        let result = self.send_outgoing(request).await;
        self.answer("SendOutgoingEvent", result)
    }

    async fn handle_incoming_event(
        &self,
        request: Request<HandleIncomingEventRequest>,
    ) -> Result<Response<HandleIncomingEventResponse>, Status> {
        let result = self.handle_incoming(request).await;
        self.answer("HandleIncomingEvent", result)
    }
}

/// Validates a `SendOutgoingEvent` request with the rules of `POST /publish`.
fn outgoing_request(request: SendOutgoingEventRequest) -> Result<PublishRequest> {
    validate_publish_type(&request.r#type)?;
    let target = request.target.filter(|t| !t.is_empty());
    if let Some(target) = &target {
        validate_id_field("target", target)?;
    }
    Ok(PublishRequest {
        event_type: request.r#type,
        payload: parse_payload("payload", request.payload)?,
        target,
        idempotency_key: idempotency_key(request.idempotency_key)?,
        direction: Direction::Outgoing,
    })
}

/// Validates a `HandleIncomingEvent` request; the type defaults to `<source>.received`.
fn incoming_request(request: HandleIncomingEventRequest) -> Result<PublishRequest> {
    validate_id_field("source", &request.source)?;
    let event_type = match request.r#type.filter(|t| !t.is_empty()) {
        Some(event_type) => event_type,
        None => default_incoming_type(&request.source),
    };
    validate_publish_type(&event_type)?;
    Ok(PublishRequest {
        event_type,
        payload: parse_payload("payload", request.payload)?,
        target: Some(request.source),
        idempotency_key: idempotency_key(request.idempotency_key)?,
        direction: Direction::Incoming,
    })
}

/// An idempotency key: absent or empty means none; otherwise checked by the rule every path
/// shares ([`idempotency::validate_key`]).
pub(crate) fn idempotency_key(key: Option<String>) -> Result<Option<String>> {
    let Some(key) = key.filter(|k| !k.is_empty()) else { return Ok(None) };
    idempotency::validate_key(&key, "`idempotency_key`")?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(r#type: &str, payload: &str, target: Option<&str>) -> SendOutgoingEventRequest {
        SendOutgoingEventRequest {
            r#type: r#type.into(),
            payload: payload.into(),
            target: target.map(Into::into),
            idempotency_key: None,
        }
    }

    fn invalid(result: Result<PublishRequest>) -> String {
        match result {
            Err(error @ Error::InvalidRequest(_)) => {
                assert_eq!(error.grpc_code(), tonic::Code::InvalidArgument);
                error.to_string()
            }
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn outgoing_requests_are_validated_like_http() {
        let ok = outgoing_request(outgoing("order.created", r#"{"b":1,  "a":[2]}"#, Some("acme"))).unwrap();
        assert_eq!(ok.payload.get(), r#"{"b":1,  "a":[2]}"#, "the payload stays the text sent");
        assert_eq!(ok.target.as_deref(), Some("acme"));
        assert_eq!(ok.direction, Direction::Outgoing);
        assert!(outgoing_request(outgoing("a", "null", Some(""))).unwrap().target.is_none());

        assert!(invalid(outgoing_request(outgoing("", "{}", None))).starts_with("invalid `type`"));
        assert!(invalid(outgoing_request(outgoing("*", "{}", None))).starts_with("invalid `type`"));
        assert!(invalid(outgoing_request(outgoing("a", "", None))).starts_with("invalid `payload`"));
        assert!(invalid(outgoing_request(outgoing("a", "{", None))).starts_with("invalid `payload`"));
        assert!(invalid(outgoing_request(outgoing("a", "{}", Some("bad id")))).starts_with("invalid `target`"));
        // The rule of the HTTP header: printable ASCII, space included, at most 255.
        let keyed = |key: &str| {
            let mut request = outgoing("a", "{}", None);
            request.idempotency_key = Some(key.into());
            outgoing_request(request)
        };
        assert_eq!(keyed("has space").unwrap().idempotency_key.as_deref(), Some("has space"));
        assert!(invalid(keyed("new\nline")).starts_with("invalid `idempotency_key`"));
        assert!(invalid(keyed(&"k".repeat(256))).starts_with("invalid `idempotency_key`"));
        assert_eq!(keyed("").unwrap().idempotency_key, None, "empty means none");
    }

    #[test]
    fn incoming_requests_default_their_type() {
        let request = HandleIncomingEventRequest {
            source: "github".into(),
            r#type: None,
            payload: r#"{"x":1}"#.into(),
            idempotency_key: Some("d-1".into()),
        };
        let parsed = incoming_request(request).unwrap();
        assert_eq!(parsed.event_type, "github.received");
        assert_eq!(parsed.target.as_deref(), Some("github"));
        assert_eq!(parsed.direction, Direction::Incoming);
        assert_eq!(parsed.idempotency_key.as_deref(), Some("d-1"));

        let no_source = HandleIncomingEventRequest {
            source: String::new(),
            r#type: None,
            payload: "{}".into(),
            idempotency_key: None,
        };
        assert!(invalid(incoming_request(no_source)).starts_with("invalid `source`"));
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_name("/hookline.v1.EventBroker/SendOutgoingEvent"), "SendOutgoingEvent");
        assert_eq!(method_name("/hookline.v1.EventBroker/HandleIncomingEvent"), "HandleIncomingEvent");
        assert_eq!(method_name("/hookline.v1.EventBroker/Anything"), "unknown");
        assert_eq!(method_name(""), "unknown");
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        use tonic::Code;
        let cases = [
            (Error::InvalidRequest("x".into()), Code::InvalidArgument),
            (Error::Unauthorized("x"), Code::Unauthenticated),
            (Error::Forbidden("x"), Code::PermissionDenied),
            (Error::UnknownCustomer("c".into()), Code::NotFound),
            (Error::UnknownSource("s".into()), Code::NotFound),
            (Error::Conflict("x".into()), Code::FailedPrecondition),
            (Error::IdempotencyInProgress, Code::Aborted),
            (Error::IdempotencyKeyReused, Code::InvalidArgument),
            (Error::Tenant(hookline_core::Error::CustomerExists("c".into())), Code::AlreadyExists),
            (
                Error::Produce { event_id: "e".into(), total: 1, failed: 1, produced: 0, reason: "x".into() },
                Code::Unavailable,
            ),
            (Error::Directory(hookline_core::Error::DirectoryStopped), Code::Unavailable),
        ];
        for (error, code) in cases {
            assert_eq!(error.grpc_code(), code, "{error}");
        }
    }
}

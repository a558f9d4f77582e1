//! The gRPC event broker (seed 000): `hookline.v1.EventBroker` with `SendOutgoingEvent` and
//! `HandleIncomingEvent`, plus the standard health (`grpc.health.v1.Health`) and reflection
//! (`grpc.reflection.v1`) services, on `--grpc-listen` (default `0.0.0.0:9620`).
//!
//! It shares the HTTP API's state and publish path (`http::publish_event`), so the rules are
//! the same: a producer token as metadata `authorization: Bearer <token>`, the same validation,
//! the same fan-out and acknowledgement semantics. Errors become gRPC status codes
//! ([`Error::grpc_code`]) whose message names the offending field.

use std::sync::Arc;

use hookline_core::telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::auth::{identify_bearer, require_producer};
use crate::http::{
    AppState, Direction, PublishRequest, parse_payload, publish_span, publish_traced, validate_id_field,
    validate_publish_type,
};
use crate::{Error, Result};

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

/// Serves the event broker, health and reflection on `listener` until `shutdown` is cancelled;
/// calls in flight then finish.
pub(crate) async fn serve(state: Arc<AppState>, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", ServingStatus::Serving).await;
    health_reporter.set_serving::<EventBrokerServer<Broker>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Grpc(e.to_string()))?;
    // Messages are bounded like HTTP bodies (a payload travels as text in both).
    let limit = state.max_body_size.saturating_add(64 * 1024);
    let broker = EventBrokerServer::new(Broker { state }).max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(broker)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Grpc(e.to_string()))
}

/// The `EventBroker` service.
#[derive(Debug)]
pub(crate) struct Broker {
    state: Arc<AppState>,
}

impl Broker {
    /// The caller must hold a producer token.
    async fn authorize<T>(&self, request: &Request<T>) -> Result<()> {
        // Metadata that is not ASCII text is reported like a malformed header.
        let header = request.metadata().get("authorization").map(|v| v.to_str().unwrap_or_default());
        require_producer(identify_bearer(&self.state, header).await?)
    }

    /// Answers `result`, counting it and logging failures.
    fn answer<T>(&self, method: &'static str, result: Result<T>) -> Result<Response<T>, Status> {
        match result {
            Ok(answer) => {
                self.state.metrics.grpc_request(method, tonic::Code::Ok);
                Ok(Response::new(answer))
            }
            Err(error) => {
                let code = error.grpc_code();
                self.state.metrics.grpc_request(method, code);
                if matches!(code, tonic::Code::Unavailable | tonic::Code::Internal) {
                    tracing::warn!(method, %error, "gRPC call failed");
                } else {
                    tracing::debug!(method, %error, "gRPC call refused");
                }
                Err(Status::new(code, error.to_string()))
            }
        }
    }

    async fn send_outgoing(&self, request: Request<SendOutgoingEventRequest>) -> Result<SendOutgoingEventResponse> {
        self.authorize(&request).await?;
        let span = publish_span(telemetry::extract_http(&request.metadata().clone().into_headers()));
        let request = outgoing_request(request.into_inner())?;
        let accepted = publish_traced(&self.state, request, &span).await?;
        Ok(SendOutgoingEventResponse {
            event_id: accepted.event_id,
            deliveries: u32::try_from(accepted.deliveries).unwrap_or(u32::MAX),
        })
    }

    async fn handle_incoming(
        &self,
        request: Request<HandleIncomingEventRequest>,
    ) -> Result<HandleIncomingEventResponse> {
        self.authorize(&request).await?;
        let span = publish_span(telemetry::extract_http(&request.metadata().clone().into_headers()));
        let request = incoming_request(request.into_inner())?;
        let accepted = publish_traced(&self.state, request, &span).await?;
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

/// The type of an incoming event whose sender gave none.
pub(crate) fn default_incoming_type(source: &str) -> String {
    format!("{source}.received")
}

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// An idempotency key: absent or empty means none; otherwise 1 to 255 printable ASCII
/// characters (what an HTTP `Idempotency-Key` header can carry).
pub(crate) fn idempotency_key(key: Option<String>) -> Result<Option<String>> {
    let Some(key) = key.filter(|k| !k.is_empty()) else { return Ok(None) };
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::InvalidRequest(format!(
            "invalid `idempotency_key`: must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
        )));
    }
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
        let mut keyed = outgoing("a", "{}", None);
        keyed.idempotency_key = Some("has space".into());
        assert!(invalid(outgoing_request(keyed)).starts_with("invalid `idempotency_key`"));
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

//! Errors of the publisher: start-up failures and the reasons a publish request is refused.
//!
//! One enum for both, so that a handler can use `?` on anything. Each variant has one HTTP
//! status ([`Error::status`], answered as JSON `{"error": "..."}`), one gRPC status code derived
//! from it ([`Error::grpc_code`]) and one `outcome` metrics label ([`Error::outcome`]), so that
//! every transport refuses alike.

use std::net::SocketAddr;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::metrics::Outcome;

/// Result alias used across `hookline-publisher`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),

    /// The body is JSON but not a valid publish request: a missing, unknown or ill-typed field,
    /// or a field value that fails validation (422). The message names the field.
    #[error("{0}")]
    InvalidRequest(String),

    /// The request is not `application/json` (415).
    #[error("expected a request with `Content-Type: application/json`")]
    UnsupportedMediaType,

    /// The body is larger than `--max-body-size` (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },

    /// The event's encoded record (Avro envelope and payload) is larger than the record limit:
    /// librdkafka's `message.max.bytes` less room for Hookline's headers (413). Nothing is produced.
    #[error(
        "the event is too large: its record would be {size} bytes, more than the limit of {limit} bytes (the \
         producer's message.max.bytes less room for Hookline's headers); send a smaller payload"
    )]
    EventTooLarge { size: usize, limit: usize },

    /// The body could not be read (400): the client went away or sent a broken body.
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),

    /// The request body did not arrive within `--http-request-timeout` (408).
    #[error("the request body did not arrive within {limit:?}")]
    BodyTimeout { limit: std::time::Duration },

    /// The request was not answered within `--http-request-timeout` (503): retry it, as after any
    /// 503 (an event may have been written meanwhile).
    #[error("the request was not answered within {limit:?}; retry")]
    AnswerTimeout { limit: std::time::Duration },

    /// `target` names a customer the directory does not know (404).
    #[error("unknown customer `{}`", hookline_core::quote::clip(.0))]
    UnknownCustomer(String),

    /// An incoming event names no inbound source (404).
    #[error("unknown inbound source `{}`", hookline_core::quote::clip(.0))]
    UnknownSource(String),

    /// `POST /inbound/{source}`: the sender's signature is missing, malformed or wrong (401).
    #[error("{0}")]
    BadSignature(String),

    /// `POST /inbound/{source}`: the signed timestamp is outside the tolerance (401).
    #[error("the `webhook-timestamp` is missing, malformed or more than 5 minutes from now")]
    StaleSignature,

    /// No credentials, or credentials nobody issued (401).
    #[error("{0}")]
    Unauthorized(&'static str),

    /// Valid credentials of a role this endpoint does not serve (403).
    #[error("{0}")]
    Forbidden(&'static str),

    /// A tenant operation was refused or failed: bad input (422, naming the field), unknown
    /// customer (404), existing customer (409), directory or broker unavailable (503).
    #[error("{0}")]
    Tenant(#[source] hookline_core::Error),

    /// The request conflicts with the customer's configuration (409).
    #[error("{0}")]
    Conflict(String),

    /// No route for this path (404).
    #[error("no route for {}", hookline_core::quote::clip(.0))]
    NoRoute(String),

    /// The path exists but not with this method (405).
    #[error("method {} is not allowed on {}", hookline_core::quote::clip(method), hookline_core::quote::clip(path))]
    MethodNotAllowed { method: String, path: String },

    /// Producing one or more copies of an event failed (503). This is a partial failure when
    /// `produced > 0`: those copies are on the topic and will be delivered. The contract is
    /// at-least-once: the caller retries the whole request, so those customers may receive the
    /// event twice (under a new event id, since every request gets its own).
    #[error(
        "could not publish event {event_id}: {failed} of {total} deliveries failed ({reason}); \
         {produced} were already written (and a failed one may have been), so a retry can deliver \
         some copies twice"
    )]
    Produce { event_id: String, total: usize, failed: usize, produced: usize, reason: String },

    /// The `Idempotency-Key` was used within the window for a request with another body (422).
    #[error(
        "this `Idempotency-Key` was used for a different request (type, payload or target) within the \
         idempotency window; use a new key for a new request"
    )]
    IdempotencyKeyReused,

    /// A request with the same `Idempotency-Key` is being published right now (409).
    #[error("a request with this `Idempotency-Key` is in progress; retry shortly")]
    IdempotencyInProgress,

    /// The idempotency records could not be read or written in time (503).
    #[error("idempotency records unavailable: {0}")]
    Idempotency(#[source] hookline_core::Error),

    /// The idempotency records could not be loaded at start-up.
    #[error("cannot load the idempotency records from `{topic}`: {source}")]
    IdempotencyLoad { topic: String, source: hookline_core::Error },

    /// The event could not be encoded: the schema registry is unreachable or does not hold the
    /// schema (503).
    #[error("cannot encode the event: {0}")]
    Encode(#[source] hookline_core::Error),

    /// The customer directory could not answer in time, or has stopped (503).
    #[error("customer directory unavailable: {0}")]
    Directory(#[source] hookline_core::Error),

    /// An event-type schema file cannot be used (a start-up error naming the file).
    #[error("event type schema {file}: {reason}")]
    EventSchema { file: String, reason: String },

    /// The schema registry could not be read: at start-up, or when a publish needed a schema
    /// it could not give while schemas are required (503).
    #[error("schema registry: {0}")]
    SchemaRegistry(String),

    /// The customer directory could not be loaded at start-up.
    #[error("cannot load the customer directory from `{topic}`: {source}")]
    DirectoryLoad { topic: String, source: hookline_core::Error },

    /// A start-up failure of the shared core: topic missing, directory load, client creation.
    #[error(transparent)]
    Core(#[from] hookline_core::Error),

    /// Creating the Kafka producer failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),

    /// Registering the metrics failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// Binding the listen address failed.
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    /// The HTTP server stopped with an I/O error.
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),

    /// The gRPC server could not be built or stopped with an error.
    #[error("grpc server: {0}")]
    Grpc(String),

    /// The deliveries index failed (503).
    #[error("delivery log: {0}")]
    DeliveryLog(String),

    /// No delivery of this event to this customer in the delivery log (404).
    #[error("no delivery of event {} in the delivery log", hookline_core::quote::clip(.0))]
    UnknownDelivery(String),

    /// A bug: work that should not fail did (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A JSON error answer. The message is clipped: it may quote the caller's input (a JSON parser's
/// message does), and an error must not echo a megabyte back.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let error = hookline_core::quote::clip_to(message, hookline_core::quote::MAX_MESSAGE_CHARS);
    (status, Json(ErrorBody { error })).into_response()
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBody {
    /// What was wrong, naming the field, parameter or header at fault.
    pub error: String,
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::AnswerTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } | Self::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownCustomer(_) | Self::UnknownSource(_) | Self::UnknownDelivery(_) | Self::NoRoute(_) => {
                StatusCode::NOT_FOUND
            }
            Self::Unauthorized(_) | Self::BadSignature(_) | Self::StaleSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) | Self::IdempotencyInProgress => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Idempotency(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Tenant(error) => tenant_status(error),
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Produce { .. }
            | Self::Directory(_)
            | Self::SchemaRegistry(_)
            | Self::Encode(_)
            | Self::DeliveryLog(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::DirectoryLoad { .. }
            | Self::IdempotencyLoad { .. }
            | Self::EventSchema { .. }
            | Self::Core(_)
            | Self::Kafka(_)
            | Self::Metrics(_)
            | Self::Bind { .. }
            | Self::Serve(_)
            | Self::Grpc(_)
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code this error is answered with (see `proto/hookline/v1/event_broker.proto`),
    /// derived from the HTTP status so that both transports refuse alike.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Tenant(hookline_core::Error::CustomerExists(_)) => return Code::AlreadyExists,
            // A concurrent request holds the key: gRPC's code for "retry the whole call".
            Self::IdempotencyInProgress => return Code::Aborted,
            _ => {}
        }
        match self.status() {
            StatusCode::BAD_REQUEST
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::CONFLICT => Code::FailedPrecondition,
            StatusCode::METHOD_NOT_ALLOWED => Code::Unimplemented,
            StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::Internal,
        }
    }

    /// The `outcome` label of a publish request refused with this error, derived from the HTTP
    /// status like [`Error::grpc_code`].
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            // Not a publish at all: the request went to no route.
            Self::NoRoute(_) | Self::MethodNotAllowed { .. } => return Outcome::BadRequest,
            Self::IdempotencyInProgress => return Outcome::Conflict,
            _ => {}
        }
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Outcome::BadRequest
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => Outcome::Invalid,
            StatusCode::PAYLOAD_TOO_LARGE => Outcome::TooLarge,
            StatusCode::NOT_FOUND => Outcome::UnknownTarget,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Unauthorized,
            _ => Outcome::BrokerError,
        }
    }
}

/// The status of a failed tenant operation.
fn tenant_status(error: &hookline_core::Error) -> StatusCode {
    use hookline_core::Error as Core;
    match error {
        Core::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Core::UnknownCustomer(_) | Core::UnknownSource(_) => StatusCode::NOT_FOUND,
        Core::CustomerExists(_) => StatusCode::CONFLICT,
        Core::Timeout(..)
        | Core::DirectoryStopped
        | Core::Kafka(_)
        | Core::MissingTopic { .. }
        | Core::RegistryUnavailable(_)
        | Core::RegistryRefused { .. }
        | Core::SchemaNotRegistered { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = error_response(status, &self.to_string());
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::IdempotencyInProgress) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_statuses_and_outcomes() {
        let cases = [
            (Error::MalformedJson("x".into()), 400, Outcome::BadRequest),
            (Error::InvalidRequest("x".into()), 422, Outcome::Invalid),
            (Error::UnsupportedMediaType, 415, Outcome::BadRequest),
            (Error::BodyTooLarge { limit: 1 }, 413, Outcome::TooLarge),
            (Error::EventTooLarge { size: 2, limit: 1 }, 413, Outcome::TooLarge),
            (Error::UnknownCustomer("c".into()), 404, Outcome::UnknownTarget),
            (Error::NoRoute("/x".into()), 404, Outcome::BadRequest),
            (Error::BodyTimeout { limit: std::time::Duration::from_secs(1) }, 408, Outcome::BadRequest),
            (Error::StaleSignature, 401, Outcome::Unauthorized),
            (Error::Forbidden("x"), 403, Outcome::Unauthorized),
            (Error::Conflict("x".into()), 409, Outcome::Invalid),
            (Error::IdempotencyKeyReused, 422, Outcome::Invalid),
            (Error::IdempotencyInProgress, 409, Outcome::Conflict),
            (Error::Tenant(hookline_core::Error::CustomerExists("c".into())), 409, Outcome::Invalid),
            (Error::Tenant(hookline_core::Error::UnknownCustomer("c".into())), 404, Outcome::UnknownTarget),
            (Error::Tenant(hookline_core::Error::DirectoryStopped), 503, Outcome::BrokerError),
            (Error::Internal("x".into()), 500, Outcome::BrokerError),
            (
                Error::Produce { event_id: "e".into(), total: 2, failed: 1, produced: 1, reason: "x".into() },
                503,
                Outcome::BrokerError,
            ),
        ];
        for (error, status, outcome) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.outcome(), outcome, "{error}");
        }
        let partial = Error::Produce { event_id: "evt_1".into(), total: 3, failed: 1, produced: 2, reason: "x".into() };
        assert!(partial.to_string().contains("2 were already written"), "{partial}");
    }
}

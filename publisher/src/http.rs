//! The HTTP router: every route of the HTTP API assembled in one place, with the layers that
//! bound them. `POST /publish` (producer tokens only), `GET /healthz`, `GET /readyz` and
//! `GET /metrics` are handled here; the onboarding API and `GET /v1/event-types` in [`crate::api`],
//! inbound webhooks in `inbound`, the deliveries API in `deliveries`, the portal in `portal`. Each
//! group of routes gets only the state it uses. Every API route is registered with its OpenAPI
//! path item (`utoipa_axum`); the document they make is served at `GET /openapi.json` (`openapi`).
//!
//! Every error answer is JSON `{"error": "..."}`, including axum's own rejections (body too
//! large, wrong content type), unknown routes and wrong methods, so that clients can always
//! decode the body. A rejected request produces nothing.
//!
//! Routes with a body authenticate the caller first and read the body only then, so that
//! credentials nobody issued cost no body read (inbound webhooks, whose credential is a signature
//! over the body, read it once the source is known). Every request is bounded in time by the
//! router's outermost layer (`server`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hookline_core::telemetry;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::Onboarding;
use crate::auth::Producer;
use crate::body::{is_json, parse_json, read_body};
use crate::deliveries::Deliveries;
use crate::error::{ErrorBody, error_response};
use crate::idempotency::{self, Accepted};
use crate::inbound::Inbound;
use crate::metrics::{Metrics, Outcome};
use crate::openapi::{self, BadBody, Refused};
use crate::portal::Portal;
use crate::publish::{Direction, PublishRequest, Publisher, publish_span, validate_id_field, validate_publish_type};
use crate::server::{RequestTimeout, limit_request_time};
use crate::state::{RouteState, Shared};
use crate::{Error, Result};

/// How long `/readyz` waits for the broker.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The request header that makes a publish idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The answer header saying the answer is that of an earlier request with the same key.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What `POST /publish`, the probes, `/metrics` and the router's layers use.
#[derive(Debug)]
pub(crate) struct HttpState {
    pub publisher: Arc<Publisher>,
    /// Credentials and the body limit.
    pub shared: Shared,
    pub metrics: Metrics,
    /// The longest an HTTP request may take, body included.
    pub request_timeout: Duration,
}

impl RouteState for HttpState {
    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The application's routes, each group with its own state, and the OpenAPI document they make
/// (served at `/openapi.json`).
pub(crate) fn router(
    state: Arc<HttpState>,
    onboarding: Arc<Onboarding>,
    inbound: Arc<Inbound>,
    deliveries: Arc<Deliveries>,
    portal: Arc<Portal>,
) -> Result<Router> {
    let timeout = RequestTimeout::new(state.request_timeout, state.metrics.clone());
    let limit = state.shared.body_limit.0;
    let (router, document) = OpenApiRouter::with_openapi(openapi::root())
        .routes(routes!(publish))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(state)
        .merge(crate::api::routes(onboarding))
        .merge(crate::inbound::routes(inbound))
        .merge(crate::deliveries::routes(deliveries))
        .merge(crate::portal::routes(portal))
        .split_for_parts();
    let document =
        document.to_json().map_err(|e| Error::Internal(format!("cannot write the OpenAPI document: {e}")))?;
    Ok(router
        .route("/openapi.json", get(openapi::openapi_json).with_state(openapi::Document(document.into())))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost, so that it bounds everything above, the body included.
        .layer(middleware::from_fn_with_state(timeout, limit_request_time)))
}

/// The body of `POST /publish`, as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// The event type: the recipients are the customers subscribed to it, and its schema (if it
    /// has one) checks `payload`.
    #[serde(rename = "type")]
    event_type: String,
    /// Any JSON value, `null` included; kept as the exact text sent.
    #[schema(value_type = Value)]
    payload: Box<RawValue>,
    /// One customer id: the event goes to that customer only (if subscribed).
    #[serde(default)]
    target: Option<String>,
}

/// Parses and validates a publish body. Syntax errors are [`Error::MalformedJson`]; anything
/// else (not an object, missing/unknown/ill-typed field, invalid value) is
/// [`Error::InvalidRequest`] with a message naming the field.
pub(crate) fn parse_publish(body: &[u8]) -> Result<PublishRequest> {
    let parsed: PublishBody = parse_json(body)?;
    validate_publish_type(&parsed.event_type)?;
    if let Some(target) = &parsed.target {
        validate_id_field("target", target)?;
    }
    Ok(PublishRequest {
        event_type: parsed.event_type,
        payload: parsed.payload,
        target: parsed.target,
        idempotency_key: None,
        direction: Direction::Outgoing,
    })
}

/// Extractor for a validated publish request; rejects with our JSON errors instead of axum's
/// plain-text ones.
#[derive(Debug)]
pub(crate) struct Publish(pub PublishRequest);

impl FromRequest<Arc<HttpState>> for Publish {
    type Rejection = Error;

    async fn from_request(request: Request, state: &Arc<HttpState>) -> Result<Self> {
        // The content type is checked before the body is read, so a wrong one costs nothing.
        if !is_json(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let idempotency_key = match request.headers().get(IDEMPOTENCY_KEY) {
            None => None,
            Some(value) => {
                let key = value.to_str().map_err(|_| {
                    Error::InvalidRequest("invalid `Idempotency-Key` header: not printable ASCII".to_owned())
                })?;
                idempotency::validate_key(key, "`Idempotency-Key` header")?;
                Some(key.to_owned())
            }
        };
        let body = read_body(request, state.shared.body_limit).await?;
        let mut publish = parse_publish(&body)?;
        publish.idempotency_key = idempotency_key;
        Ok(Self(publish))
    }
}

/// `POST /publish`. The body is taken as the raw request and read only once the caller is known
/// to hold a producer token: anyone else is refused without a byte of it being read, however large
/// or slow it is.
#[utoipa::path(
    post,
    path = "/publish",
    tag = "publish",
    operation_id = "publish",
    security(("producer_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the publish idempotent: a repeat with the same key and body is answered as the first was, with `Idempotent-Replayed: true`")),
    request_body(content = PublishBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Every copy is on the delivery topic, one per recipient", body = Accepted,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier request with the same key"))),
        (status = 409, description = "A request with the same `Idempotency-Key` is in progress", body = ErrorBody),
        Refused,
        BadBody,
    ),
)]
async fn publish(State(state): State<Arc<HttpState>>, auth: Result<Producer, Error>, request: Request) -> Response {
    let span = publish_span(telemetry::extract_http(request.headers()));
    let result = match auth {
        Err(error) => Err(error),
        Ok(Producer) => match Publish::from_request(request, &state).await {
            Ok(Publish(request)) => state.publisher.publish(request, &span).await,
            Err(error) => Err(error),
        },
    };
    let _entered = span.enter();
    match result {
        Ok(accepted) if accepted.replayed => {
            state.metrics.request(Outcome::Replayed);
            let replayed = [(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"))];
            (StatusCode::ACCEPTED, replayed, Json(accepted)).into_response()
        }
        Ok(accepted) => {
            state.metrics.request(Outcome::Accepted);
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err(error) => {
            state.metrics.request(error.outcome());
            if error.status().is_server_error() {
                tracing::warn!(%error, "publish failed");
            } else {
                tracing::debug!(%error, "publish rejected");
            }
            error.into_response()
        }
    }
}

/// The answer of the probes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Probe {
    /// `ok` (alive), `ready`, or `not_ready`.
    status: &'static str,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process answers", body = Probe)))]
async fn healthz() -> Response {
    Json(Probe { status: "ok", error: None }).into_response()
}

/// Ready when the broker answers a metadata request (the directory and the idempotency keys are
/// loaded before the server answers anything).
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "The broker answers", body = Probe),
        (status = 503, description = "The broker does not answer", body = Probe),
    ))]
async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    match state.publisher.broker_reachable(READINESS_TIMEOUT).await {
        Ok(()) => Json(Probe { status: "ready", error: None }).into_response(),
        Err(error) => {
            let body = Probe { status: "not_ready", error: Some(error.to_string()) };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Prometheus metrics (`hookline_*`), in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 500, description = "The metrics cannot be rendered", body = ErrorBody),
    ))]
async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot render metrics");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot render metrics: {error}"))
        }
    }
}

async fn no_route(uri: Uri) -> Response {
    Error::NoRoute(uri.path().to_owned()).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    Error::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> String {
        match parse_publish(body.as_bytes()) {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest for {body}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_full_request_and_keeps_payload_text() {
        let request =
            parse_publish(br#" {"type":"order.created","payload":{"b":1,  "a":[2]},"target":"customer-1"} "#).unwrap();
        assert_eq!(request.event_type, "order.created");
        assert_eq!(request.payload.get(), r#"{"b":1,  "a":[2]}"#);
        assert_eq!(request.target.as_deref(), Some("customer-1"));
    }

    #[test]
    fn target_is_optional_and_payload_may_be_any_value() {
        for payload in ["null", "1", r#""text""#, "[1,2]", "{}"] {
            let body = format!(r#"{{"type":"a.b","payload":{payload}}}"#);
            let request = parse_publish(body.as_bytes()).unwrap();
            assert_eq!(request.payload.get(), payload);
            assert!(request.target.is_none());
        }
        let explicit_null = parse_publish(br#"{"type":"a","payload":1,"target":null}"#).unwrap();
        assert!(explicit_null.target.is_none());
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in ["", "{", r#"{"type":"a","payload":1"#, "nope", r#"{"type":"a","payload":1} x"#] {
            assert!(
                matches!(parse_publish(body.as_bytes()), Err(Error::MalformedJson(_))),
                "{body:?} should be malformed"
            );
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert!(invalid(r#"{"payload":1}"#).contains("missing field `type`"));
        assert!(invalid(r#"{"type":"a"}"#).contains("missing field `payload`"));
        assert!(invalid(r#"{"type":"a","payload":1,"extra":2}"#).contains("unknown field `extra`"));
        assert!(invalid(r#"{"type":5,"payload":1}"#).starts_with("invalid `type`"));
        assert!(invalid(r#"{"type":"a","payload":1,"target":[1]}"#).starts_with("invalid `target`"));
        assert!(invalid(r#"["a", 1]"#).contains("JSON object"));
        assert!(invalid("42").contains("JSON object"));
    }

    #[test]
    fn values_are_validated() {
        assert!(invalid(r#"{"type":"has space","payload":1}"#).starts_with("invalid `type`"));
        assert!(invalid(r#"{"type":"","payload":1}"#).starts_with("invalid `type`"));
        assert!(invalid(r#"{"type":"*","payload":1}"#).starts_with("invalid `type`"));
        assert!(invalid(r#"{"type":"hookline.endpoint.parked","payload":1}"#).contains("Hookline's own events"));
        assert!(invalid(r#"{"type":"a","payload":1,"target":"bad id"}"#).starts_with("invalid `target`"));
        let long = format!(r#"{{"type":"a","payload":1,"target":"{}"}}"#, "x".repeat(200));
        assert!(invalid(&long).starts_with("invalid `target`"));
    }

    #[tokio::test]
    async fn errors_do_not_echo_whole_inputs() {
        let huge = "x".repeat(1_000_000);
        let target = invalid(&format!(r#"{{"type":"a","payload":1,"target":"{huge}"}}"#));
        assert!(target.starts_with("invalid `target`") && target.len() < 300, "{} bytes", target.len());
        let event_type = invalid(&format!(r#"{{"type":"{huge}!","payload":1}}"#));
        assert!(event_type.starts_with("invalid `type`") && event_type.len() < 300, "{} bytes", event_type.len());
        // A parser's own message quoting the input (serde names an unknown field) is clipped
        // where it is answered.
        let unknown_field = invalid(&format!(r#"{{"type":"a","payload":1,"{huge}":1}}"#));
        let answered = Error::InvalidRequest(unknown_field).into_response();
        let body = axum::body::to_bytes(answered.into_body(), usize::MAX).await.unwrap();
        assert!(body.len() < 2_000, "{} bytes answered", body.len());
        let unknown = Error::UnknownSource(huge).to_string();
        assert!(unknown.len() < 200, "{} bytes", unknown.len());
    }
}

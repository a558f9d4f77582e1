//! The HTTP API: `POST /publish` (producer tokens only), `GET /healthz`, `GET /metrics`, and the
//! onboarding routes of [`crate::api`] under `/v1`.
//!
//! Every error answer is JSON `{"error": "..."}`, including axum's own rejections (body too
//! large, wrong content type), unknown routes and wrong methods, so that clients can always
//! decode the body. A rejected request produces nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hookline_core::codec::Codec;
use hookline_core::customer::{ALL_EVENTS, Customer, validate_event_type, validate_id};
use hookline_core::directory::Directory;
use hookline_core::envelope::{EventRecord, headers};
use hookline_core::secrets::TokenSet;
use hookline_core::tenants::Tenants;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::Producer;
use crate::metrics::{Metrics, Outcome};
use crate::{Error, Result};

/// How long a targeted request waits for the directory to catch up with the customers topic
/// before calling the target unknown: long enough to see a customer created a moment ago, short
/// enough that a typo is answered quickly.
const TARGET_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Extra time granted beyond `produce_timeout` before giving up on acknowledgements, so that
/// librdkafka's own `message.timeout.ms` verdict (a definite answer) normally arrives first.
const ACK_GRACE: Duration = Duration::from_secs(1);

/// What every handler shares.
pub(crate) struct AppState {
    pub producer: FutureProducer,
    pub directory: Directory,
    /// The delivery topic.
    pub topic: String,
    /// Encodes delivery records (Avro; through the schema registry when one is configured).
    pub codec: Codec,
    pub produce_timeout: Duration,
    pub max_body_size: usize,
    pub metrics: Metrics,
    pub tenants: Tenants,
    pub admin_tokens: TokenSet,
    pub producer_tokens: TokenSet,
    /// How long a replaced signing secret keeps signing after a rotation.
    pub signing_secret_grace: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("topic", &self.topic)
            .field("produce_timeout", &self.produce_timeout)
            .field("max_body_size", &self.max_body_size)
            .finish_non_exhaustive()
    }
}

/// The application's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/publish", post(publish))
        .merge(crate::api::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_size))
        .with_state(state)
}

/// The body of `POST /publish`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(rename = "type")]
    event_type: String,
    /// Any JSON value, `null` included; kept as the exact text sent.
    payload: Box<RawValue>,
    #[serde(default)]
    target: Option<String>,
}

/// A validated publish request.
#[derive(Debug)]
pub(crate) struct PublishRequest {
    pub event_type: String,
    pub payload: Box<RawValue>,
    /// Deliver to this customer only, whatever its subscriptions.
    pub target: Option<String>,
}

/// The answer to an accepted request.
#[derive(Debug, Serialize)]
pub(crate) struct Accepted {
    pub event_id: String,
    pub deliveries: usize,
}

/// Parses and validates a publish body. Syntax errors are [`Error::MalformedJson`]; anything
/// else (not an object, missing/unknown/ill-typed field, invalid value) is
/// [`Error::InvalidRequest`] with a message naming the field.
pub(crate) fn parse_publish(body: &[u8]) -> Result<PublishRequest> {
    let parsed: PublishBody = parse_json(body)?;
    if parsed.event_type == ALL_EVENTS {
        return Err(Error::InvalidRequest(format!(
            "invalid `type`: `{ALL_EVENTS}` only subscribes to every event type; publish a concrete type"
        )));
    }
    validate_event_type(&parsed.event_type).map_err(|e| invalid_field("type", e))?;
    if let Some(target) = &parsed.target {
        validate_id(target).map_err(|e| invalid_field("target", e))?;
    }
    Ok(PublishRequest { event_type: parsed.event_type, payload: parsed.payload, target: parsed.target })
}

/// Parses a JSON object body into `T`. Syntax errors are [`Error::MalformedJson`] (400); anything
/// else (not an object, missing/unknown/ill-typed field) is [`Error::InvalidRequest`] (422) with a
/// message naming the field.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    // Checking the syntax of the whole document first keeps "not JSON" (400) apart from "JSON of
    // the wrong shape" (422) whatever the shape, and lets us refuse arrays, which serde would
    // otherwise accept as a struct written positionally.
    let document: &RawValue = serde_json::from_slice(body).map_err(|e| Error::MalformedJson(e.to_string()))?;
    if !document.get().starts_with('{') {
        return Err(Error::InvalidRequest(format!(
            "the body must be a JSON object, got `{}`",
            abbreviate(document.get())
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_str(document.get());
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        // Missing and unknown fields are reported at the root, and serde already names them.
        if path == "." || path == "?" {
            Error::InvalidRequest(e.into_inner().to_string())
        } else {
            Error::InvalidRequest(format!("invalid `{path}`: {}", e.into_inner()))
        }
    })
}

fn invalid_field(field: &str, error: hookline_core::Error) -> Error {
    match error {
        hookline_core::Error::Invalid { reason, .. } => Error::InvalidRequest(format!("invalid `{field}`: {reason}")),
        other => Error::InvalidRequest(format!("invalid `{field}`: {other}")),
    }
}

/// The start of `text`, for error messages that quote the client's input.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 32;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`,
/// parameters such as `charset` ignored), as axum's `Json` extractor does.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v: &HeaderValue| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Extractor for a validated publish request; rejects with our JSON errors instead of axum's
/// plain-text ones.
#[derive(Debug)]
pub(crate) struct Publish(pub PublishRequest);

impl FromRequest<Arc<AppState>> for Publish {
    type Rejection = Error;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self> {
        // The content type is checked before the body is read, so a wrong one costs nothing.
        if !is_json(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let body = read_body(request, state).await?;
        parse_publish(&body).map(Self)
    }
}

/// The request body, within `--max-body-size`.
pub(crate) async fn read_body(request: Request, state: &Arc<AppState>) -> Result<Bytes> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge { limit: state.max_body_size }
        } else {
            Error::BodyUnreadable(rejection.body_text())
        }
    })
}

async fn publish(
    State(state): State<Arc<AppState>>,
    auth: Result<Producer, Error>,
    request: Result<Publish, Error>,
) -> Response {
    let result = match (auth, request) {
        (Err(error), _) | (Ok(_), Err(error)) => Err(error),
        (Ok(Producer), Ok(Publish(request))) => publish_event(&state, request).await,
    };
    match result {
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

/// Writes one copy of the event per recipient and waits for every acknowledgement.
async fn publish_event(state: &AppState, request: PublishRequest) -> Result<Accepted> {
    let recipients: Vec<Arc<Customer>> = match &request.target {
        // A directory that has not seen the customer yet may just be lagging: catch up first.
        Some(id) => match state.directory.get_fresh(id, TARGET_LOOKUP_TIMEOUT).await.map_err(Error::Directory)? {
            Some(customer) => vec![customer],
            None => return Err(Error::UnknownCustomer(id.clone())),
        },
        None => state.directory.subscribers(&request.event_type),
    };
    let record = EventRecord::new(request.event_type, request.payload);
    if recipients.is_empty() {
        tracing::info!(event_id = %record.event_id, event_type = %record.event_type, "event has no subscribers");
        return Ok(Accepted { event_id: record.event_id, deliveries: 0 });
    }
    produce_copies(state, record, &recipients).await
}

/// Writes one copy of `record` per recipient, keyed by the customer id, and waits for every
/// acknowledgement.
pub(crate) async fn produce_copies(
    state: &AppState,
    record: EventRecord,
    recipients: &[Arc<Customer>],
) -> Result<Accepted> {
    let value = state.codec.encode_delivery(&state.topic, &record).await.map_err(Error::Encode)?;
    let record_headers = OwnedHeaders::new()
        .insert(Header { key: headers::EVENT_ID, value: Some(record.event_id.as_str()) })
        .insert(Header { key: headers::EVENT_TYPE, value: Some(record.event_type.as_str()) });
    let total = recipients.len();
    let started = Instant::now();
    // All copies go out at once on the shared producer; linger.ms batches them (and those of
    // concurrent requests) into as few broker round trips as possible.
    let mut pending: FuturesUnordered<_> = recipients
        .iter()
        .map(|customer| {
            let copy = FutureRecord::to(&state.topic)
                .key(customer.id.as_str())
                .payload(value.as_slice())
                .headers(record_headers.clone());
            state.producer.send(copy, Timeout::After(state.produce_timeout))
        })
        .collect();

    let deadline = tokio::time::Instant::now() + state.produce_timeout + ACK_GRACE;
    let mut produced = 0;
    let mut first_error: Option<String> = None;
    loop {
        match tokio::time::timeout_at(deadline, pending.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(_delivery))) => produced += 1,
            Ok(Some(Err((error, _message)))) => {
                first_error.get_or_insert_with(|| error.to_string());
            }
            Err(_elapsed) => {
                // Unanswered copies stay queued in librdkafka and may still be written.
                first_error.get_or_insert_with(|| {
                    format!("no acknowledgement within {:?}", state.produce_timeout + ACK_GRACE)
                });
                break;
            }
        }
    }
    state.metrics.produce_took(started.elapsed().as_secs_f64());
    state.metrics.produced(produced);

    if let Some(reason) = first_error {
        return Err(Error::Produce { event_id: record.event_id, total, failed: total - produced, produced, reason });
    }
    tracing::info!(
        event_id = %record.event_id,
        event_type = %record.event_type,
        deliveries = total,
        "event published"
    );
    Ok(Accepted { event_id: record.event_id, deliveries: total })
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownCustomer(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Tenant(error) => tenant_status(error),
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Produce { .. } | Self::Directory(_) | Self::Encode(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::DirectoryLoad { .. }
            | Self::Core(_)
            | Self::Kafka(_)
            | Self::Metrics(_)
            | Self::Bind { .. }
            | Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `outcome` label of a publish request refused with this error.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::MalformedJson(_)
            | Self::BodyUnreadable(_)
            | Self::UnsupportedMediaType
            | Self::NoRoute(_)
            | Self::MethodNotAllowed { .. } => Outcome::BadRequest,
            Self::InvalidRequest(_) => Outcome::Invalid,
            Self::BodyTooLarge { .. } => Outcome::TooLarge,
            Self::UnknownCustomer(_) => Outcome::UnknownTarget,
            Self::Unauthorized(_) | Self::Forbidden(_) => Outcome::Unauthorized,
            Self::Conflict(_) => Outcome::Invalid,
            Self::Tenant(error) => match tenant_status(error) {
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => Outcome::Invalid,
                StatusCode::NOT_FOUND => Outcome::UnknownTarget,
                _ => Outcome::BrokerError,
            },
            Self::Produce { .. }
            | Self::Directory(_)
            | Self::Encode(_)
            | Self::DirectoryLoad { .. }
            | Self::Core(_)
            | Self::Kafka(_)
            | Self::Metrics(_)
            | Self::Bind { .. }
            | Self::Serve(_) => Outcome::BrokerError,
        }
    }
}

/// The status of a failed tenant operation.
fn tenant_status(error: &hookline_core::Error) -> StatusCode {
    use hookline_core::Error as Core;
    match error {
        Core::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Core::UnknownCustomer(_) => StatusCode::NOT_FOUND,
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
        response
    }
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
        assert!(invalid(r#"{"type":"a","payload":1,"target":"bad id"}"#).starts_with("invalid `target`"));
        let long = format!(r#"{{"type":"a","payload":1,"target":"{}"}}"#, "x".repeat(200));
        assert!(invalid(&long).starts_with("invalid `target`"));
    }

    #[test]
    fn content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/cloudevents+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn errors_map_to_statuses_and_outcomes() {
        let cases = [
            (Error::MalformedJson("x".into()), 400, Outcome::BadRequest),
            (Error::InvalidRequest("x".into()), 422, Outcome::Invalid),
            (Error::UnsupportedMediaType, 415, Outcome::BadRequest),
            (Error::BodyTooLarge { limit: 1 }, 413, Outcome::TooLarge),
            (Error::UnknownCustomer("c".into()), 404, Outcome::UnknownTarget),
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

    #[test]
    fn abbreviates_long_input() {
        assert_eq!(abbreviate("short"), "short");
        assert_eq!(abbreviate(&"é".repeat(40)).chars().count(), 33);
    }
}

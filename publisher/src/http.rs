//! The HTTP API: `POST /publish` (producer tokens only), `GET /healthz`, `GET /metrics`, the
//! onboarding routes of [`crate::api`] under `/v1`, `GET /v1/event-types` ([`crate::event_types`]),
//! and inbound webhooks (`inbound`).
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
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::codec::Codec;
use hookline_core::customer::{ALL_EVENTS, Customer, validate_event_type, validate_id};
use hookline_core::directory::Directory;
use hookline_core::envelope::EventRecord;
use hookline_core::notices::{self, RESERVED_PREFIX};
use hookline_core::secrets::TokenSet;
use hookline_core::telemetry;
use hookline_core::tenants::Tenants;
use rdkafka::producer::FutureProducer;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::auth::Producer;
use crate::config::Limits;
use crate::event_types::EventTypes;
use crate::fanout::{Copies, Fanout};
use crate::idempotency::{self, Accepted, Begin, Idempotency};
use crate::metrics::{Metrics, Outcome};
use crate::server::{RequestTimeout, limit_request_time};
use crate::{Error, Result};

/// How long a targeted request waits for the directory to catch up with the customers topic
/// before calling the target unknown: long enough to see a customer created a moment ago, short
/// enough that a typo is answered quickly.
pub(crate) const TARGET_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `/readyz` waits for the broker.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The request header that makes a publish idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The answer header saying the answer is that of an earlier request with the same key.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What every handler shares.
pub(crate) struct AppState {
    pub producer: FutureProducer,
    pub directory: Directory,
    /// The delivery topic.
    pub topic: String,
    /// Encodes delivery records (Avro; through the schema registry when one is configured).
    pub codec: Codec,
    /// The record and body limits and in-flight budgets ([`crate::Config::limits`]).
    pub limits: Limits,
    /// Writes an event's copies within the in-flight and time bounds.
    pub fanout: Fanout,
    pub metrics: Metrics,
    pub tenants: Tenants,
    pub admin_tokens: TokenSet,
    pub producer_tokens: TokenSet,
    pub idempotency: Idempotency,
    /// How long a replaced signing secret keeps signing after a rotation.
    pub signing_secret_grace: Duration,
    /// Event-type schemas, checked before anything is produced.
    pub event_types: Arc<EventTypes>,
    /// The longest an HTTP request or gRPC call may take, body included.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("topic", &self.topic).field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The application's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/publish", post(publish))
        .merge(crate::api::routes())
        .merge(crate::event_types::routes())
        .merge(crate::inbound::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.body))
        // Outermost, so that it bounds everything above, the body included.
        .layer(middleware::from_fn_with_state(
            RequestTimeout::new(state.request_timeout, state.metrics.clone()),
            limit_request_time,
        ))
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
    /// Deliver to this customer only, whatever its subscriptions. For an incoming event, the
    /// inbound source it is for (required).
    pub target: Option<String>,
    /// A repeat of a request with this key within the window is answered from the first one.
    pub idempotency_key: Option<String>,
    pub direction: Direction,
}

impl PublishRequest {
    /// What identifies the request's content for [`crate::idempotency`].
    fn fingerprint(&self) -> idempotency::Fingerprint {
        let target = self.target.as_deref().unwrap_or_default();
        idempotency::fingerprint(&[self.event_type.as_bytes(), self.payload.get().as_bytes(), target.as_bytes()])
    }
}

/// Whom an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// To customers (`POST /publish`, `SendOutgoingEvent`): `target` must be a customer, never an
    /// inbound source.
    Outgoing,
    /// From an external sender to an inbound source's internal endpoint (`POST /inbound/{source}`,
    /// `HandleIncomingEvent`): `target` must be an inbound source.
    Incoming,
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

/// Checks the type of an event to publish: a valid event type, not the `*` wildcard, and not
/// one of Hookline's own (`hookline.…`: operational events come from Hookline only).
pub(crate) fn validate_publish_type(event_type: &str) -> Result<()> {
    if event_type == ALL_EVENTS {
        return Err(Error::InvalidRequest(format!(
            "invalid `type`: `{ALL_EVENTS}` only subscribes to every event type; publish a concrete type"
        )));
    }
    if notices::is_reserved(event_type) {
        return Err(Error::InvalidRequest(format!(
            "invalid `type`: `{RESERVED_PREFIX}…` types are Hookline's own events; publish a type of yours"
        )));
    }
    validate_event_type(event_type).map_err(|e| invalid_field("type", e))
}

/// Checks a customer or source id given in the request field `field`.
pub(crate) fn validate_id_field(field: &str, id: &str) -> Result<()> {
    validate_id(id).map_err(|e| invalid_field(field, e))
}

/// A payload given as JSON text (gRPC, inbound bodies): any JSON value, kept as sent (without
/// surrounding whitespace).
pub(crate) fn parse_payload(field: &str, text: String) -> Result<Box<RawValue>> {
    if text.trim().is_empty() {
        return Err(Error::InvalidRequest(format!("invalid `{field}`: JSON text is required, e.g. `{{}}`")));
    }
    RawValue::from_string(text).map_err(|e| Error::InvalidRequest(format!("invalid `{field}`: not JSON ({e})")))
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
    hookline_core::quote::clip_to(text, 32)
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
        let body = read_body(request, state).await?;
        let mut publish = parse_publish(&body)?;
        publish.idempotency_key = idempotency_key;
        Ok(Self(publish))
    }
}

/// The request body, within `--max-body-size`.
pub(crate) async fn read_body(request: Request, state: &Arc<AppState>) -> Result<Bytes> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge { limit: state.limits.body }
        } else {
            Error::BodyUnreadable(rejection.body_text())
        }
    })
}

/// `POST /publish`. The body is taken as the raw request and read only once the caller is known
/// to hold a producer token: anyone else is refused without a byte of it being read, however large
/// or slow it is.
async fn publish(State(state): State<Arc<AppState>>, auth: Result<Producer, Error>, request: Request) -> Response {
    let span = publish_span(telemetry::extract_http(request.headers()));
    let result = match auth {
        Err(error) => Err(error),
        Ok(Producer) => match Publish::from_request(request, &state).await {
            Ok(Publish(request)) => publish_traced(&state, request, &span).await,
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

/// The span of one publish request (`POST /publish`, inbound webhook, gRPC call), a child of the
/// caller's span when `parent` (extracted from its `traceparent`) holds one. The records carry
/// its context on to the consumer (see [`produce_copies`]).
pub(crate) fn publish_span(parent: telemetry::TraceContext) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        event_type = tracing::field::Empty,
        target = tracing::field::Empty,
        event_id = tracing::field::Empty,
        deliveries = tracing::field::Empty,
    );
    telemetry::set_parent(&span, parent);
    span
}

/// [`publish_event`] within `span` (from [`publish_span`]), recording the request's fields on it.
pub(crate) async fn publish_traced(
    state: &AppState,
    request: PublishRequest,
    span: &tracing::Span,
) -> Result<Accepted> {
    span.record("event_type", request.event_type.as_str());
    if let Some(target) = &request.target {
        span.record("target", target.as_str());
    }
    let result = publish_event(state, request).instrument(span.clone()).await;
    if let Ok(accepted) = &result {
        span.record("event_id", accepted.event_id.as_str());
        span.record("deliveries", accepted.deliveries);
    }
    result
}

/// Checks the payload against its type's schema, then writes one copy of the event per
/// recipient and waits for every acknowledgement. Shared by `POST /publish`,
/// `POST /inbound/{source}` and the gRPC event broker. With an idempotency key, a repeat is answered
/// from the first request instead (see [`crate::idempotency`]).
pub(crate) async fn publish_event(state: &AppState, request: PublishRequest) -> Result<Accepted> {
    state.event_types.check(&request.event_type, &request.payload).await?;
    let Some(key) = request.idempotency_key.clone() else {
        return publish_once(state, request, None).await;
    };
    let claim = match state.idempotency.begin(&key, request.fingerprint()).await? {
        Begin::Replay(accepted) => {
            tracing::info!(event_id = %accepted.event_id, "idempotent request answered from the first one");
            return Ok(accepted);
        }
        Begin::Claimed(claim) => claim,
    };
    let published = publish_once(state, request, Some(claim.event_id.clone())).await;
    state.idempotency.finish(claim, published.as_ref().ok()).await;
    published
}

/// Resolves the recipients and writes one copy per recipient, with `event_id` if given.
async fn publish_once(state: &AppState, request: PublishRequest, event_id: Option<String>) -> Result<Accepted> {
    let recipients: Vec<Arc<Customer>> = match (&request.target, request.direction) {
        // A directory that has not seen the customer yet may just be lagging: catch up first.
        (Some(id), direction) => {
            let found = state.directory.get_fresh(id, TARGET_LOOKUP_TIMEOUT).await.map_err(Error::Directory)?;
            match (found, direction) {
                (Some(customer), Direction::Outgoing) if !customer.is_source() => vec![customer],
                (Some(source), Direction::Incoming) if source.is_source() => vec![source],
                (_, Direction::Outgoing) => return Err(Error::UnknownCustomer(id.clone())),
                (_, Direction::Incoming) => return Err(Error::UnknownSource(id.clone())),
            }
        }
        (None, Direction::Outgoing) => state.directory.subscribers(&request.event_type),
        (None, Direction::Incoming) => {
            return Err(Error::InvalidRequest("invalid `source`: an incoming event needs its source".into()));
        }
    };
    let mut record = EventRecord::new(request.event_type, request.payload);
    if let Some(event_id) = event_id {
        record.event_id = event_id;
    }
    produce_copies(state, record, &recipients).await
}

/// Encodes `record`, refuses it if it exceeds the record limit (whether or not anyone receives
/// it, so the answer does not depend on subscriptions), then writes one copy per recipient,
/// keyed by the customer id, within the in-flight bounds ([`crate::fanout`]) and waits for every
/// acknowledgement.
pub(crate) async fn produce_copies(
    state: &AppState,
    record: EventRecord,
    recipients: &[Arc<Customer>],
) -> Result<Accepted> {
    let value = state.codec.encode_delivery(&state.topic, &record).await.map_err(Error::Encode)?;
    if value.len() > state.limits.record {
        return Err(Error::EventTooLarge { size: value.len(), limit: state.limits.record });
    }
    if recipients.is_empty() {
        tracing::info!(event_id = %record.event_id, event_type = %record.event_type, "event has no subscribers");
        return Ok(Accepted { event_id: record.event_id, deliveries: 0, replayed: false });
    }
    // The current span's W3C context (`traceparent`, `tracestate`), so that the deliveries join
    // this trace; nothing without the OpenTelemetry layer.
    let record_headers = telemetry::with_trace_headers(record.record_headers(), &telemetry::current_trace_headers());
    let total = recipients.len();
    let started = Instant::now();
    let copies = Copies { producer: &state.producer, topic: &state.topic, value: &value, headers: &record_headers };
    let sent = state.fanout.send(copies, recipients).await;
    let (produced, first_error) = (sent.produced, sent.failure);
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
    Ok(Accepted { event_id: record.event_id, deliveries: total, replayed: false })
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Ready when the broker answers a metadata request (the directory and the idempotency keys are
/// loaded before the server answers anything).
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let producer = state.producer.clone();
    let topic = state.topic.clone();
    let reachable = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer as _;
        producer.client().fetch_metadata(Some(&topic), READINESS_TIMEOUT).map(|_| ())
    })
    .await;
    match reachable {
        Ok(Ok(())) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(Err(error)) => {
            let body = serde_json::json!({ "status": "not_ready", "error": format!("kafka: {error}") });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, "the readiness check failed"),
    }
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

/// A JSON error answer. The message is clipped: it may quote the caller's input (a JSON parser's
/// message does), and an error must not echo a megabyte back.
fn error_response(status: StatusCode, message: &str) -> Response {
    let message = hookline_core::quote::clip_to(message, hookline_core::quote::MAX_MESSAGE_CHARS);
    (status, Json(serde_json::json!({ "error": message }))).into_response()
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
            Self::UnknownCustomer(_) | Self::UnknownSource(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) | Self::BadSignature(_) | Self::StaleSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) | Self::IdempotencyInProgress => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Idempotency(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Tenant(error) => tenant_status(error),
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Produce { .. } | Self::Directory(_) | Self::SchemaRegistry(_) | Self::Encode(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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

    /// The `outcome` label of a publish request refused with this error.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::MalformedJson(_)
            | Self::BodyUnreadable(_)
            | Self::BodyTimeout { .. }
            | Self::UnsupportedMediaType
            | Self::NoRoute(_)
            | Self::MethodNotAllowed { .. } => Outcome::BadRequest,
            Self::InvalidRequest(_) => Outcome::Invalid,
            Self::BodyTooLarge { .. } | Self::EventTooLarge { .. } => Outcome::TooLarge,
            Self::UnknownCustomer(_) | Self::UnknownSource(_) => Outcome::UnknownTarget,
            Self::Unauthorized(_) | Self::Forbidden(_) | Self::BadSignature(_) | Self::StaleSignature => {
                Outcome::Unauthorized
            }
            Self::Conflict(_) | Self::IdempotencyKeyReused => Outcome::Invalid,
            Self::IdempotencyInProgress => Outcome::Conflict,
            Self::Tenant(error) => match tenant_status(error) {
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => Outcome::Invalid,
                StatusCode::NOT_FOUND => Outcome::UnknownTarget,
                _ => Outcome::BrokerError,
            },
            Self::Produce { .. }
            | Self::Directory(_)
            | Self::Idempotency(_)
            | Self::IdempotencyLoad { .. }
            | Self::SchemaRegistry(_)
            | Self::EventSchema { .. }
            | Self::Encode(_)
            | Self::DirectoryLoad { .. }
            | Self::Core(_)
            | Self::Kafka(_)
            | Self::Metrics(_)
            | Self::Bind { .. }
            | Self::Serve(_)
            | Self::Grpc(_)
            | Self::AnswerTimeout { .. }
            | Self::Internal(_) => Outcome::BrokerError,
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
            (Error::EventTooLarge { size: 2, limit: 1 }, 413, Outcome::TooLarge),
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
        assert!(abbreviate(&"é".repeat(40)).starts_with(&"é".repeat(32)));
        assert!(!abbreviate(&"é".repeat(40)).contains(&"é".repeat(33)));
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

//! Inbound webhooks (the event gateway): `POST /inbound/{source}` receives a webhook from
//! an external sender, verifies its signature with the source's secret, and queues it for the
//! source's internal endpoint like an outgoing event (the consumer delivers it, signed with
//! Hookline's own Standard Webhooks signature).
//!
//! There is no bearer token: the signature is the credential. In order:
//! 1. unknown source (or a customer's id) → `404`;
//! 2. missing, malformed or wrong signature → `401`, stale `webhook-timestamp` → `401`; nothing
//!    about the body is looked at before this;
//! 3. not `application/json` → `415`, not JSON → `400`, too large → `413`, an invalid type → `422`;
//! 4. queued through [`Publisher::publish`] (the same validation and acknowledgement as
//!    `POST /publish`), keyed by the source id → `202 {"event_id"}`.
//!
//! Event type: Standard Webhooks sources take the body's top-level string `type` (the shape of
//! Standard Webhooks payloads); `hub-signature-256` sources the `X-GitHub-Event` header; failing
//! those, `<source>.received`. The payload is the body, byte for byte.
//!
//! De-duplication only trusts what the signature covers. A Standard Webhooks `webhook-id` is
//! signed, so it becomes the idempotency key `inbound:<source>:<id>`. An `X-Hub-Signature-256`
//! covers the body alone (not `X-GitHub-Delivery`, not `X-GitHub-Event`), so there the key is
//! `inbound:<source>:body-<SHA-256 of the body>`: a captured request replayed with another
//! delivery id is answered as the first one, and with another event type it is refused (422, the
//! key's content differs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookline_core::customer::{Customer, SignatureScheme, validate_id};
use hookline_core::telemetry;
use hookline_wire::signing::{ID_HEADER, SignatureVerifier, SigningSecret, verify_hub_signature};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use hookline_core::tenants::Tenants;

use crate::body::{BodyLimit, is_json, read_body};
use crate::error::ErrorBody;
use crate::idempotency::{fingerprint, validate_key};
use crate::metrics::{InboundOutcome, Metrics};
use crate::openapi::BadBody;
use crate::publish::{
    Direction, PublishRequest, Publisher, TARGET_LOOKUP_TIMEOUT, default_incoming_type, publish_span,
    validate_publish_type,
};
use crate::{Error, Result};

/// The header GitHub-style senders name the event type in.
const EVENT_HEADER: &str = "x-github-event";

/// What the inbound route uses.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub publisher: Arc<Publisher>,
    /// Opens the sources' secrets.
    pub tenants: Arc<Tenants>,
    pub body_limit: BodyLimit,
    pub metrics: Metrics,
}

/// The inbound route.
pub(crate) fn routes(state: Arc<Inbound>) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(receive)).with_state(state)
}

/// `202` of an inbound webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Queued {
    /// The id of the event queued for the source's internal endpoint.
    event_id: String,
}

/// An inbound webhook from an external sender. There is no bearer token: the signature over the
/// body, with the source's secret, is the credential (Standard Webhooks `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`; or `X-Hub-Signature-256`).
#[utoipa::path(post, path = "/inbound/{source}", tag = "publish", operation_id = "receive_inbound",
    security(()),
    params(
        ("source" = String, Path, description = "The source's id (`hookline-setup sources add`)"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks: the message id (de-duplicates)"),
        ("webhook-timestamp" = Option<String>, Header, description = "Standard Webhooks: Unix seconds, within the tolerance"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks: `v1,<base64 HMAC-SHA256>`"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "GitHub style: `sha256=<hex HMAC-SHA256 of the body>`"),
        ("X-GitHub-Event" = Option<String>, Header, description = "GitHub style: the event type"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The sender's event, byte for byte"),
    responses(
        (status = 202, description = "Verified and queued for the source's internal endpoint", body = Queued),
        (status = 401, description = "A missing, malformed, wrong or stale signature", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 503, description = "The broker is unavailable: retry later", body = ErrorBody),
        BadBody,
    ))]
async fn receive(State(state): State<Arc<Inbound>>, Path(source): Path<String>, request: Request) -> Response {
    match accept(&state, &source, request).await {
        Ok(event_id) => {
            state.metrics.inbound_request(InboundOutcome::Accepted);
            (StatusCode::ACCEPTED, Json(Queued { event_id })).into_response()
        }
        Err(error) => {
            let outcome = inbound_outcome(&error);
            state.metrics.inbound_request(outcome);
            if error.status().is_server_error() {
                tracing::warn!(%error, "inbound webhook failed");
            } else if outcome == InboundOutcome::UnknownSource {
                // The id comes from the path, from anyone: not logged, and neither is the error,
                // which names it (a scanner's noise, or a secret pasted into a URL).
                tracing::info!(outcome = outcome.as_str(), "inbound webhook refused: unknown source");
            } else {
                tracing::info!(%source, outcome = outcome.as_str(), %error, "inbound webhook refused");
            }
            error.into_response()
        }
    }
}

/// Verifies and queues one inbound request; the event id.
async fn accept(state: &Inbound, source_id: &str, request: Request) -> Result<String> {
    if validate_id(source_id).is_err() {
        return Err(Error::UnknownSource(source_id.to_owned()));
    }
    // Anyone can name any source: an unknown one costs a paced catch-up (see the directory).
    let source = match state
        .publisher
        .directory
        .get_fresh_paced(source_id, TARGET_LOOKUP_TIMEOUT)
        .await
        .map_err(Error::Directory)?
    {
        Some(source) if source.is_source() => source,
        _ => return Err(Error::UnknownSource(source_id.to_owned())),
    };
    let headers = request.headers().clone();
    let body = read_body(request, state.body_limit).await?;
    let scheme = verify(state, &source, &headers, &body)?;

    if !is_json(&headers) {
        return Err(Error::UnsupportedMediaType);
    }
    let text = String::from_utf8(body.to_vec()).map_err(|e| Error::MalformedJson(e.to_string()))?;
    let payload = RawValue::from_string(text).map_err(|e| Error::MalformedJson(e.to_string()))?;
    let event_type = event_type(scheme, &source.id, &headers, &payload);
    validate_publish_type(&event_type)?;
    let delivery_id = match scheme {
        // `webhook-id` is part of what the signature covers.
        SignatureScheme::StandardWebhooks => header(&headers, ID_HEADER).map(str::to_owned),
        // `X-GitHub-Delivery` is not: a captured request replayed with a fresh delivery id would
        // pass as a new event. The body is covered, so the body is the de-duplication id.
        SignatureScheme::HubSignature256 => Some(format!("body-{}", fingerprint(&[&body]).to_hex())),
    };
    let idempotency_key = delivery_id.map(|id| inbound_key(&source.id, &id));
    let request = PublishRequest {
        event_type,
        payload,
        target: Some(source.id.clone()),
        idempotency_key,
        direction: Direction::Incoming,
    };
    let span = publish_span(telemetry::extract_http(&headers));
    Ok(state.publisher.publish(request, &span).await?.event_id)
}

/// The idempotency key of an inbound delivery: `inbound:<source>:<sender's id>` when that is a
/// valid key ([`validate_key`]), else (an id too long, or not printable ASCII) the same with the
/// id's SHA-256, so that every sender id keeps its de-duplication.
fn inbound_key(source: &str, delivery_id: &str) -> String {
    let key = format!("inbound:{source}:{delivery_id}");
    if validate_key(&key, "delivery id").is_ok() {
        return key;
    }
    format!("inbound:{source}:sha256-{}", fingerprint(&[delivery_id.as_bytes()]).to_hex())
}

/// Checks the sender's signature over the exact body with the source's secret.
fn verify(state: &Inbound, source: &Customer, headers: &HeaderMap, body: &[u8]) -> Result<SignatureScheme> {
    let scheme =
        source.inbound.as_ref().map(|inbound| inbound.scheme).ok_or_else(|| Error::UnknownSource(source.id.clone()))?;
    let secret = state.tenants.inbound_secret(source).map_err(Error::Tenant)?;
    let verified = match scheme {
        SignatureScheme::StandardWebhooks => {
            let secret = SigningSecret::parse(&secret)
                .map_err(|e| Error::Tenant(hookline_core::Error::Invalid { field: "secret", reason: e.to_string() }))?;
            SignatureVerifier::new(vec![secret]).verify(headers, body)
        }
        SignatureScheme::HubSignature256 => verify_hub_signature(secret.as_bytes(), headers, body),
    };
    verified.map(|()| scheme).map_err(|error| match error {
        hookline_wire::Error::TimestampOutOfTolerance => Error::StaleSignature,
        hookline_wire::Error::NoMatchingSignature => {
            Error::BadSignature("the signature does not match the body".into())
        }
        other => Error::BadSignature(other.to_string()),
    })
}

/// The event type of an inbound event (see the module documentation).
fn event_type(scheme: SignatureScheme, source: &str, headers: &HeaderMap, payload: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        event_type: Option<std::borrow::Cow<'a, str>>,
    }
    let named = match scheme {
        SignatureScheme::StandardWebhooks => serde_json::from_str::<Typed<'_>>(payload.get())
            .ok()
            .and_then(|typed| typed.event_type)
            .map(|t| t.into_owned()),
        SignatureScheme::HubSignature256 => header(headers, EVENT_HEADER).map(str::to_owned),
    };
    named.filter(|t| !t.is_empty()).unwrap_or_else(|| default_incoming_type(source))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The metrics outcome of a refused inbound request.
fn inbound_outcome(error: &Error) -> InboundOutcome {
    match error {
        Error::UnknownSource(_) => InboundOutcome::UnknownSource,
        Error::BadSignature(_) => InboundOutcome::BadSignature,
        Error::StaleSignature => InboundOutcome::Stale,
        error if error.status().is_client_error() => InboundOutcome::Invalid,
        _ => InboundOutcome::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn every_sender_delivery_id_keeps_its_de_duplication() {
        // Valid as a key (spaces too, as on the other paths): kept as it is.
        assert_eq!(inbound_key("github", "72d3162e-cc78"), "inbound:github:72d3162e-cc78");
        assert_eq!(inbound_key("billing", "msg 42"), "inbound:billing:msg 42");
        // Not valid as a key: hashed, the same for the same id, another for another.
        for id in ["x".repeat(300), "caf\u{e9}".to_owned(), "new\nline".to_owned()] {
            let key = inbound_key("billing", &id);
            assert!(key.starts_with("inbound:billing:sha256-"), "{key}");
            assert!(validate_key(&key, "key").is_ok(), "{key}");
            assert_eq!(key, inbound_key("billing", &id));
            assert_ne!(key, inbound_key("billing", &format!("{id}2")));
        }
    }

    #[test]
    fn event_types_follow_the_documented_rule() {
        let none = HeaderMap::new();
        let standard = SignatureScheme::StandardWebhooks;
        let hub = SignatureScheme::HubSignature256;
        assert_eq!(event_type(standard, "s", &none, &raw(r#"{"type":"user.created","data":{}}"#)), "user.created");
        assert_eq!(event_type(standard, "s", &none, &raw(r#"{"type":5}"#)), "s.received");
        assert_eq!(event_type(standard, "s", &none, &raw(r#"[1]"#)), "s.received");
        assert_eq!(event_type(standard, "s", &none, &raw(r#"{"type":""}"#)), "s.received");
        let mut github = HeaderMap::new();
        github.insert(EVENT_HEADER, HeaderValue::from_static("pull_request"));
        assert_eq!(event_type(hub, "gh", &github, &raw(r#"{"type":"ignored"}"#)), "pull_request");
        assert_eq!(event_type(hub, "gh", &none, &raw("{}")), "gh.received");
    }

    #[test]
    fn outcomes_are_bounded() {
        assert_eq!(inbound_outcome(&Error::UnknownSource("x".into())), InboundOutcome::UnknownSource);
        assert_eq!(inbound_outcome(&Error::StaleSignature), InboundOutcome::Stale);
        assert_eq!(inbound_outcome(&Error::BadSignature("x".into())), InboundOutcome::BadSignature);
        assert_eq!(inbound_outcome(&Error::UnsupportedMediaType), InboundOutcome::Invalid);
        assert_eq!(inbound_outcome(&Error::MalformedJson("x".into())), InboundOutcome::Invalid);
        let produce = Error::Produce { event_id: "e".into(), total: 1, failed: 1, produced: 0, reason: "x".into() };
        assert_eq!(inbound_outcome(&produce), InboundOutcome::Unavailable);
    }
}

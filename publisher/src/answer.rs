//! How the JSON APIs (onboarding, deliveries) answer a handler's result: the body as JSON with
//! its status, or the error's own answer; each counted per operation and status
//! (`hookline_api_requests_total`), failures logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Result;
use crate::metrics::Metrics;

/// An answer body as the JSON value [`counted`] answers with.
pub(crate) fn to_json(body: impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).unwrap_or_default()
}

/// Answers `result` and counts it under `operation`, with the status answered.
pub(crate) fn counted(
    metrics: &Metrics,
    operation: &'static str,
    result: Result<(StatusCode, serde_json::Value)>,
) -> Response {
    let response = match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => {
            if error.status().is_server_error() {
                tracing::warn!(operation, %error, "API request failed");
            } else {
                tracing::debug!(operation, %error, "API request refused");
            }
            error.into_response()
        }
    };
    metrics.api_request(operation, response.status().as_u16());
    response
}

//! HTTP request bodies: read within `--max-body-size`, JSON told apart by content type, and parsed
//! with errors that name the offending field. Every route with a body reads it through here, so
//! that every body is bounded and refused alike.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::{Error, Result};

/// The largest request body read (`--max-body-size`), part of each router's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// The request body, within `limit`.
pub(crate) async fn read_body(request: Request, limit: BodyLimit) -> Result<Bytes> {
    Bytes::from_request(request, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge { limit: limit.0 }
        } else {
            Error::BodyUnreadable(rejection.body_text())
        }
    })
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

/// The start of `text`, for error messages that quote the client's input.
fn abbreviate(text: &str) -> String {
    hookline_core::quote::clip_to(text, 32)
}

/// Extractor: a JSON request body of type `T`, parsed with errors naming the offending field.
/// The content type is checked before the body is read, so a wrong one costs nothing.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        if !is_json(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let body = read_body(request, BodyLimit::from_ref(state)).await?;
        parse_json(&body).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Named {
        name: String,
        #[serde(default)]
        count: Option<u32>,
    }

    fn invalid(body: &str) -> String {
        match parse_json::<Named>(body.as_bytes()) {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest for {body}, got {other:?}"),
        }
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
    fn syntax_and_shape_errors_are_told_apart() {
        for body in ["", "{", r#"{"name":"a""#, "nope", r#"{"name":"a"} x"#] {
            assert!(matches!(parse_json::<Named>(body.as_bytes()), Err(Error::MalformedJson(_))), "{body:?}");
        }
        assert!(invalid("{}").contains("missing field `name`"));
        assert!(invalid(r#"{"name":"a","extra":1}"#).contains("unknown field `extra`"));
        assert!(invalid(r#"{"name":"a","count":"x"}"#).starts_with("invalid `count`"));
        assert!(invalid(r#"["a", 1]"#).contains("JSON object"));
    }

    #[test]
    fn abbreviates_long_input() {
        assert_eq!(abbreviate("short"), "short");
        assert!(abbreviate(&"é".repeat(40)).starts_with(&"é".repeat(32)));
        assert!(!abbreviate(&"é".repeat(40)).contains(&"é".repeat(33)));
    }
}

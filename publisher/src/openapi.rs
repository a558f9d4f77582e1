//! The OpenAPI document of the HTTP API, served at `GET /openapi.json`.
//!
//! The document is generated from the code: every API route is registered through
//! `utoipa_axum`'s router from its handler's `#[utoipa::path]` (so a route cannot exist without
//! its path item, nor a path item without its route), and the request and answer bodies are the
//! types the handlers read and write, deriving `ToSchema` beside `Deserialize`/`Serialize`. This
//! module holds what belongs to no one route: the document's title, the security schemes, and the
//! sets of refusals many routes share. The portal's page and static assets are not part of the
//! API and are not described.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use crate::error::ErrorBody;

/// The security scheme of admin tokens (`--admin-token`).
pub(crate) const ADMIN: &str = "admin_token";
/// The security scheme of a customer's API key, or of a portal token (`hlp_…`) for that customer.
pub(crate) const CUSTOMER: &str = "customer_api_key";
/// The security scheme of producer tokens (`--producer-token`).
pub(crate) const PRODUCER: &str = "producer_token";

/// The document's root: title, description, security schemes, tags. The paths come from the
/// routers (`crate::http::router`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline",
        description = "Kafka-native webhook delivery: publish events, onboard customers, and show \
            customers what was delivered to their endpoints. Every error is answered as JSON \
            `{\"error\": \"...\"}` naming the field, parameter or header at fault.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(openapi_json),
    modifiers(&SecuritySchemes),
    tags(
        (name = "publish", description = "Events in: producers, and inbound webhooks from senders"),
        (name = "customers", description = "Operators onboard customers (admin token)"),
        (name = "customer", description = "A customer configures its own endpoint (its API key)"),
        (name = "deliveries", description = "What was delivered to a customer's endpoint, resend and recover"),
        (name = "operations", description = "Probes, metrics and this document"),
    ),
)]
struct Root;

/// The root of the document, before the routers add their paths.
pub(crate) fn root() -> utoipa::openapi::OpenApi {
    Root::openapi()
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(ADMIN, bearer("An admin token (`--admin-token`): any customer."));
        components.add_security_scheme(
            CUSTOMER,
            bearer(
                "A customer's API key, or a portal token (`hlp_…`) an admin issued for it: that \
                 customer's own record and deliveries only.",
            ),
        );
        components.add_security_scheme(PRODUCER, bearer("A producer token (`--producer-token`): publish only."));
    }
}

/// The document, serialized once when the router is built.
#[derive(Debug, Clone)]
pub(crate) struct Document(pub Arc<str>);

/// `GET /openapi.json`: this document. Public: it holds no secret, and clients generate code
/// from it.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document of this API", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json(State(document): State<Document>) -> Response {
    ([(CONTENT_TYPE, "application/json")], document.0.to_string()).into_response()
}

/// The path parameter of the routes about one customer (`/v1/customers/{id}/…`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct CustomerId {
    /// The customer's id.
    id: String,
}

/// The path parameter of the routes about one delivery (`…/deliveries/{event_id}…`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct EventId {
    /// The event's id.
    event_id: String,
}

/// Refusals of every route that takes a credential.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Refused {
    /// No credential, or one nobody issued.
    #[response(status = 401, description = "No credential, or one nobody issued")]
    Unauthorized(ErrorBody),
    /// A credential of another role.
    #[response(status = 403, description = "A credential of another role")]
    Forbidden(ErrorBody),
    /// The broker (or the delivery log) cannot be reached: retry.
    #[response(status = 503, description = "The broker or the delivery log is unavailable: retry later")]
    Unavailable(ErrorBody),
}

/// Refusals of every route that reads a JSON body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BadBody {
    /// Not JSON.
    #[response(status = 400, description = "The body is not valid JSON")]
    Malformed(ErrorBody),
    /// Over `--max-body-bytes`.
    #[response(status = 413, description = "The body is larger than the publisher takes")]
    TooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415, description = "The body is not `application/json`")]
    UnsupportedMediaType(ErrorBody),
    /// A missing, unknown or invalid field, named in the answer.
    #[response(status = 422, description = "A missing, unknown or invalid field, named in the answer")]
    Invalid(ErrorBody),
}

/// The refusal of a route naming a customer or a delivery that does not exist.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum NotFound {
    /// No such customer (or delivery).
    #[response(status = 404, description = "No such customer, or no such delivery of the customer")]
    Missing(ErrorBody),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_names_its_security_schemes() {
        let root = serde_json::to_value(root()).unwrap();
        for scheme in [ADMIN, CUSTOMER, PRODUCER] {
            assert_eq!(root["components"]["securitySchemes"][scheme]["scheme"], "bearer", "{scheme}");
        }
        assert_eq!(root["openapi"], "3.1.0");
        assert!(root["paths"]["/openapi.json"]["get"].is_object());
    }
}

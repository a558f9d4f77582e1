//! The onboarding API: operators create customers, customers configure
//! themselves.
//!
//! Admin (`Authorization: Bearer <admin token>`):
//! - `POST /v1/customers {"id", "name"?}` → `201 {"id", "api_key", "signing_secret", "customer"}`;
//!   the key and secret are shown this once (only a hash of the key and a sealed copy of the
//!   secret are stored).
//! - `GET /v1/customers`, `GET /v1/customers/{id}`, `DELETE /v1/customers/{id}`.
//! - `POST /v1/customers/{id}/api-key` issues a new API key (the old one stops working).
//! - `POST /v1/customers/{id}/webhook/enable` enables a disabled endpoint again.
//! - `PUT /v1/customers/{id}/subscriptions {"events": [...]}`: any types, the operational events
//!   (`hookline.endpoint.*`) included (an operator's own endpoint subscribes to them this way).
//! - `PUT /v1/customers/{id}/rate-limit {"per_second": N | null}`: the most deliveries per second
//!   to the customer's endpoint (the consumer paces its deliveries; `null` removes the limit).
//!
//! Customer (`Authorization: Bearer <api key>`), acting on its own record only (no customer id
//! appears in these paths, so there is no other tenant's record to name):
//! - `GET /v1/customer`
//! - `PUT /v1/customer/public-key` (PEM body, or JSON `{"public_key": "<PEM>"}`),
//!   `DELETE /v1/customer/public-key`
//! - `PUT /v1/customer/webhook {"url"}` (SSRF-checked; a new URL also enables a disabled endpoint)
//! - `POST /v1/customer/webhook/enable`: enables its endpoint after the consumer disabled it
//!   (`--disable-after`); answers the customer with `"was_disabled"`.
//! - `PUT /v1/customer/rate-limit {"per_second": N | null}`: what its endpoint can take
//! - `PUT /v1/customer/subscriptions {"events": [...]}` (not the `hookline.endpoint.*` operational
//!   events, which tell of other tenants: an operator subscribes an endpoint to them)
//! - `POST /v1/customer/signing-secret/rotate` → the new secret, once; the previous one keeps
//!   signing for `--signing-secret-grace`.
//! - `POST /v1/customer/test-event` → `202 {"event_id", "deliveries"}`: a `hookline.test` event.
//!
//! Customers are shown without credentials ([`hookline_core::customer::CustomerView`]). Every
//! route checks the caller's credentials before it reads the request body.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use hookline_core::customer::{Customer, CustomerView, unix_now};
use hookline_core::envelope::EventRecord;
use hookline_core::notices;
use hookline_core::tenants::Tenants;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::answer::{counted, to_json};
use crate::auth::{Admin, AnyRole, AuthenticatedCustomer};
use crate::body::{JsonBody, is_json, parse_json, read_body};
use crate::error::ErrorBody;
use crate::event_types::{EventTypes, Format, Source};
use crate::idempotency::Accepted;
use crate::metrics::Metrics;
use crate::openapi::{BadBody, CustomerId, NotFound, Refused};
use crate::publish::Publisher;
use crate::state::{RouteState, Shared};
use crate::{Error, Result};

/// The event type of `POST /v1/customer/test-event`.
pub const TEST_EVENT_TYPE: &str = "hookline.test";

/// What the onboarding routes use.
#[derive(Debug)]
pub(crate) struct Onboarding {
    /// Credentials and the body limit.
    pub shared: Shared,
    pub tenants: Arc<Tenants>,
    pub metrics: Metrics,
    /// How long a replaced signing secret keeps signing after a rotation.
    pub signing_secret_grace: Duration,
    /// Writes the test event.
    pub publisher: Arc<Publisher>,
    /// Listed on `GET /v1/event-types`.
    pub event_types: Arc<EventTypes>,
}

impl RouteState for Onboarding {
    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The onboarding routes, and `GET /v1/event-types`.
pub(crate) fn routes(state: Arc<Onboarding>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_event_types))
        .routes(routes!(create_customer, list_customers))
        .routes(routes!(get_customer, delete_customer))
        .routes(routes!(reissue_api_key))
        .routes(routes!(enable_customer_webhook))
        .routes(routes!(set_customer_subscriptions))
        .routes(routes!(set_customer_rate_limit))
        .routes(routes!(set_own_rate_limit))
        .routes(routes!(own_record))
        .routes(routes!(set_public_key, clear_public_key))
        .routes(routes!(set_webhook))
        .routes(routes!(enable_own_webhook))
        .routes(routes!(set_subscriptions))
        .routes(routes!(rotate_signing_secret))
        .routes(routes!(send_test_event))
        .with_state(state)
}

/// Runs `work` for an authenticated caller (or answers the authentication error), then answers
/// and counts the result under `operation`. Handlers that take a body receive the raw request
/// and read it inside `work`: a caller that fails authentication is refused without a byte of
/// its body being read.
async fn respond<Caller, Work>(
    state: &Onboarding,
    operation: &'static str,
    auth: Result<Caller, Error>,
    work: impl FnOnce(Caller) -> Work,
) -> Response
where
    Work: Future<Output = Result<(StatusCode, serde_json::Value)>>,
{
    let result = match auth {
        Ok(caller) => work(caller).await,
        Err(error) => Err(error),
    };
    counted(&state.metrics, operation, result)
}

/// `POST /v1/customers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    /// The customer's id: letters, digits, `.`, `_`, `-`; the key of its deliveries.
    id: String,
    /// A display name.
    #[serde(default)]
    name: Option<String>,
}

/// `201` of `POST /v1/customers`: the credentials, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Created {
    id: String,
    /// The customer's API key (only its hash is stored).
    api_key: String,
    /// The secret its deliveries are signed with (stored sealed).
    signing_secret: String,
    customer: CustomerView,
}

/// `GET /v1/customers`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomerList {
    customers: Vec<CustomerView>,
}

/// `DELETE /v1/customers/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Deleted {
    /// The id of the customer deleted.
    deleted: String,
}

/// `POST /v1/customers/{id}/api-key`: the new key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    id: String,
    api_key: String,
}

/// The answer of the enable routes: the customer, and whether its endpoint was disabled.
#[derive(Debug, Serialize, ToSchema)]
struct Enabled {
    #[serde(flatten)]
    customer: CustomerView,
    was_disabled: bool,
}

/// `POST /v1/customer/signing-secret/rotate`: the new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotatedSecret {
    signing_secret: String,
    /// Unix seconds when the previous secret stops signing (absent if there was none).
    previous_expires_at: Option<i64>,
    customer: CustomerView,
}

#[utoipa::path(post, path = "/v1/customers", tag = "customers", operation_id = "create_customer",
    security(("admin_token" = [])),
    request_body(content = CreateCustomer, content_type = "application/json"),
    responses(
        (status = 201, description = "The customer, with its API key and signing secret shown this once", body = Created),
        (status = 409, description = "A customer with this id exists", body = ErrorBody),
        Refused, BadBody,
    ))]
async fn create_customer(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    request: Request,
) -> Response {
    respond(&state, "create_customer", auth, |_admin| async {
        let JsonBody(body) = JsonBody::<CreateCustomer>::from_request(request, &state).await?;
        let issued = state.tenants.create(&body.id, body.name.as_deref()).await.map_err(Error::Tenant)?;
        Ok((
            StatusCode::CREATED,
            to_json(Created {
                id: issued.customer.id.clone(),
                api_key: issued.api_key.expose().to_owned(),
                signing_secret: issued.signing_secret.expose().to_owned(),
                customer: issued.customer.view(),
            }),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/v1/customers", tag = "customers", operation_id = "list_customers",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every customer, without credentials", body = CustomerList), Refused))]
async fn list_customers(State(state): State<Arc<Onboarding>>, auth: Result<Admin, Error>) -> Response {
    respond(&state, "list_customers", auth, |_admin| async {
        let customers = state.tenants.list().await.map_err(Error::Tenant)?;
        let views: Vec<_> = customers.iter().map(|c| c.view()).collect();
        Ok((StatusCode::OK, to_json(CustomerList { customers: views })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", operation_id = "get_customer",
    security(("admin_token" = [])), params(CustomerId),
    responses((status = 200, description = "The customer, without credentials", body = CustomerView), Refused, NotFound))]
async fn get_customer(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
) -> Response {
    respond(&state, "get_customer", auth, |_admin| async {
        let customer = state.tenants.get(&id).await.map_err(Error::Tenant)?;
        Ok((StatusCode::OK, view(&customer)))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers", operation_id = "delete_customer",
    security(("admin_token" = [])), params(CustomerId),
    responses((status = 200, description = "Deleted: its deliveries stop", body = Deleted), Refused, NotFound))]
async fn delete_customer(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
) -> Response {
    respond(&state, "delete_customer", auth, |_admin| async {
        state.tenants.delete(&id).await.map_err(Error::Tenant)?;
        Ok((StatusCode::OK, to_json(Deleted { deleted: id })))
    })
    .await
}

#[utoipa::path(post, path = "/v1/customers/{id}/api-key", tag = "customers", operation_id = "reissue_api_key",
    security(("admin_token" = [])), params(CustomerId),
    responses((status = 200, description = "A new API key, shown this once; the old one stops working", body = ApiKey), Refused, NotFound))]
async fn reissue_api_key(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
) -> Response {
    respond(&state, "reissue_api_key", auth, |_admin| async {
        let (customer, api_key) = state.tenants.reissue_api_key(&id).await.map_err(Error::Tenant)?;
        Ok((StatusCode::OK, to_json(ApiKey { id: customer.id.clone(), api_key: api_key.expose().to_owned() })))
    })
    .await
}

/// `POST /v1/customers/{id}/webhook/enable` (admin): enables a disabled endpoint again.
#[utoipa::path(post, path = "/v1/customers/{id}/webhook/enable", tag = "customers", operation_id = "enable_customer_webhook",
    security(("admin_token" = [])), params(CustomerId),
    responses((status = 200, description = "Enabled", body = Enabled), Refused, NotFound))]
async fn enable_customer_webhook(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
) -> Response {
    respond(&state, "enable_webhook", auth, |_admin| enable(&state, &id)).await
}

/// `PUT /v1/customers/{id}/subscriptions` (admin): replaces a customer's subscriptions, the
/// operational events (`hookline.endpoint.*`) included, which only an operator subscribes to.
#[utoipa::path(put, path = "/v1/customers/{id}/subscriptions", tag = "customers", operation_id = "set_customer_subscriptions",
    security(("admin_token" = [])), params(CustomerId),
    request_body(content = SubscriptionsBody, content_type = "application/json"),
    responses((status = 200, description = "The customer, subscribed to these types only", body = CustomerView), Refused, BadBody, NotFound))]
async fn set_customer_subscriptions(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let state = &state;
    respond(
        state,
        "set_subscriptions",
        auth,
        |_admin| async move { subscriptions(state, &id, request, |_| Ok(())).await },
    )
    .await
}

/// Replaces customer `id`'s subscriptions with the request body's, once `allowed` accepts them:
/// its view.
async fn subscriptions(
    state: &Arc<Onboarding>,
    id: &str,
    request: Request,
    allowed: impl FnOnce(&[String]) -> Result<()>,
) -> Result<(StatusCode, serde_json::Value)> {
    let JsonBody(body) = JsonBody::<SubscriptionsBody>::from_request(request, state).await?;
    allowed(&body.events)?;
    let updated = state.tenants.set_events(id, body.events).await.map_err(field_named("events"))?;
    Ok((StatusCode::OK, view(&updated)))
}

/// `PUT /v1/customer/rate-limit` and `PUT /v1/customers/{id}/rate-limit` body: deliveries per
/// second, or `null` for no limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    /// The most deliveries per second to the endpoint; `null`: no limit.
    per_second: Option<u32>,
}

/// `PUT /v1/customers/{id}/rate-limit` (admin).
#[utoipa::path(put, path = "/v1/customers/{id}/rate-limit", tag = "customers", operation_id = "set_customer_rate_limit",
    security(("admin_token" = [])), params(CustomerId),
    request_body(content = RateLimitBody, content_type = "application/json"),
    responses((status = 200, description = "The customer, with its limit", body = CustomerView), Refused, BadBody, NotFound))]
async fn set_customer_rate_limit(
    State(state): State<Arc<Onboarding>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let state = &state;
    respond(state, "set_rate_limit", auth, |_admin| async move { rate_limit(state, &id, request).await }).await
}

/// Sets customer `id`'s rate limit from the request body: its view.
async fn rate_limit(state: &Arc<Onboarding>, id: &str, request: Request) -> Result<(StatusCode, serde_json::Value)> {
    let JsonBody(body) = JsonBody::<RateLimitBody>::from_request(request, state).await?;
    let updated = state.tenants.set_rate_limit(id, body.per_second).await.map_err(field_named("per_second"))?;
    Ok((StatusCode::OK, view(&updated)))
}

/// `PUT /v1/customer/rate-limit` (the customer's API key): what its own endpoint can take.
#[utoipa::path(put, path = "/v1/customer/rate-limit", tag = "customer", operation_id = "set_own_rate_limit",
    security(("customer_api_key" = [])),
    request_body(content = RateLimitBody, content_type = "application/json"),
    responses((status = 200, description = "The customer, with its limit", body = CustomerView), Refused, BadBody))]
async fn set_own_rate_limit(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
    request: Request,
) -> Response {
    let state = &state;
    respond(state, "set_rate_limit", auth, |AuthenticatedCustomer(customer)| async move {
        rate_limit(state, &customer.id, request).await
    })
    .await
}

/// `POST /v1/customer/webhook/enable` (the customer's API key): enables its disabled endpoint.
#[utoipa::path(post, path = "/v1/customer/webhook/enable", tag = "customer", operation_id = "enable_own_webhook",
    security(("customer_api_key" = [])),
    responses((status = 200, description = "Enabled", body = Enabled), Refused))]
async fn enable_own_webhook(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
) -> Response {
    let state = &*state;
    respond(state, "enable_webhook", auth, |AuthenticatedCustomer(customer)| async move {
        enable(state, &customer.id).await
    })
    .await
}

/// Enables customer `id`'s endpoint: its view, with whether it was disabled.
async fn enable(state: &Onboarding, id: &str) -> Result<(StatusCode, serde_json::Value)> {
    let (customer, was_disabled) = state.tenants.enable(id).await.map_err(Error::Tenant)?;
    Ok((StatusCode::OK, to_json(Enabled { customer: customer.view(), was_disabled })))
}

#[utoipa::path(get, path = "/v1/customer", tag = "customer", operation_id = "get_own_customer",
    security(("customer_api_key" = [])),
    responses((status = 200, description = "The caller's own record, without credentials", body = CustomerView), Refused))]
async fn own_record(State(state): State<Arc<Onboarding>>, auth: Result<AuthenticatedCustomer, Error>) -> Response {
    let state = &*state;
    respond(state, "get_own_customer", auth, |AuthenticatedCustomer(customer)| async move {
        Ok((StatusCode::OK, view(&customer)))
    })
    .await
}

/// `PUT /v1/customer/public-key` body, when sent as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublicKeyBody {
    /// An RSA public key (2048 bits or more), PEM.
    public_key: String,
}

/// The PEM of a public-key upload: the raw body, or `public_key` of a JSON body.
#[derive(Debug)]
struct PemUpload(String);

impl FromRequest<Arc<Onboarding>> for PemUpload {
    type Rejection = Error;

    async fn from_request(request: Request, state: &Arc<Onboarding>) -> Result<Self> {
        let json = is_json(request.headers());
        let body = read_body(request, state.shared.body_limit).await?;
        if json {
            let parsed: PublicKeyBody = parse_json(&body)?;
            return Ok(Self(parsed.public_key));
        }
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Ok(Self(text)),
            Err(_) => Err(Error::InvalidRequest("invalid `public_key`: the body is not PEM text".into())),
        }
    }
}

#[utoipa::path(put, path = "/v1/customer/public-key", tag = "customer", operation_id = "set_public_key",
    security(("customer_api_key" = [])),
    request_body(description = "The RSA public key deliveries are encrypted to: PEM, or JSON `{\"public_key\": \"<PEM>\"}`",
        content((PublicKeyBody = "application/json"), (String = "application/x-pem-file"))),
    responses((status = 200, description = "The customer: its deliveries are encrypted from now on", body = CustomerView), Refused, BadBody))]
async fn set_public_key(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
    request: Request,
) -> Response {
    let state = &state;
    respond(state, "set_public_key", auth, |AuthenticatedCustomer(customer)| async move {
        let PemUpload(pem) = PemUpload::from_request(request, state).await?;
        let updated = state.tenants.set_public_key(&customer.id, &pem).await.map_err(field_named("public_key"))?;
        Ok((StatusCode::OK, view(&updated)))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/customer/public-key", tag = "customer", operation_id = "clear_public_key",
    security(("customer_api_key" = [])),
    responses((status = 200, description = "The customer: its deliveries are no longer encrypted", body = CustomerView), Refused))]
async fn clear_public_key(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
) -> Response {
    let state = &*state;
    respond(state, "clear_public_key", auth, |AuthenticatedCustomer(customer)| async move {
        let updated = state.tenants.clear_public_key(&customer.id).await.map_err(Error::Tenant)?;
        Ok((StatusCode::OK, view(&updated)))
    })
    .await
}

/// `PUT /v1/customer/webhook` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    /// Where deliveries are POSTed: `http(s)`, refused if it names a private or local address.
    url: String,
}

#[utoipa::path(put, path = "/v1/customer/webhook", tag = "customer", operation_id = "set_webhook",
    security(("customer_api_key" = [])),
    request_body(content = WebhookBody, content_type = "application/json"),
    responses((status = 200, description = "The customer, with its new URL (a disabled endpoint is enabled)", body = CustomerView), Refused, BadBody))]
async fn set_webhook(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
    request: Request,
) -> Response {
    let state = &state;
    respond(state, "set_webhook", auth, |AuthenticatedCustomer(customer)| async move {
        let JsonBody(body) = JsonBody::<WebhookBody>::from_request(request, state).await?;
        let updated = state.tenants.set_webhook_url(&customer.id, &body.url).await.map_err(field_named("url"))?;
        Ok((StatusCode::OK, view(&updated)))
    })
    .await
}

/// `PUT /v1/customer/subscriptions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionsBody {
    /// The event types to receive (`GET /v1/event-types`), replacing the previous ones.
    events: Vec<String>,
}

#[utoipa::path(put, path = "/v1/customer/subscriptions", tag = "customer", operation_id = "set_subscriptions",
    security(("customer_api_key" = [])),
    request_body(content = SubscriptionsBody, content_type = "application/json"),
    responses((status = 200, description = "The customer, subscribed to these types only", body = CustomerView), Refused, BadBody))]
async fn set_subscriptions(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
    request: Request,
) -> Response {
    let state = &state;
    respond(state, "set_subscriptions", auth, |AuthenticatedCustomer(customer)| async move {
        // Operational events tell of other tenants: only an operator subscribes to them (a
        // customer keeps those it was given).
        let allowed = |events: &[String]| {
            if events.iter().any(|e| notices::is_operational(e) && !customer.events.contains(e)) {
                return Err(Error::Forbidden(
                    "`events`: `hookline.endpoint.*` operational events are subscribed to by an operator only",
                ));
            }
            Ok(())
        };
        subscriptions(state, &customer.id, request, allowed).await
    })
    .await
}

#[utoipa::path(post, path = "/v1/customer/signing-secret/rotate", tag = "customer", operation_id = "rotate_signing_secret",
    security(("customer_api_key" = [])),
    responses((status = 200, description = "A new signing secret, shown this once; the previous one signs too until `previous_expires_at`", body = RotatedSecret), Refused))]
async fn rotate_signing_secret(
    State(state): State<Arc<Onboarding>>,
    auth: Result<AuthenticatedCustomer, Error>,
) -> Response {
    let state = &*state;
    respond(state, "rotate_signing_secret", auth, |AuthenticatedCustomer(customer)| async move {
        let rotated = state
            .tenants
            .rotate_signing_secret(&customer.id, state.signing_secret_grace)
            .await
            .map_err(Error::Tenant)?;
        Ok((
            StatusCode::OK,
            to_json(RotatedSecret {
                signing_secret: rotated.signing_secret.expose().to_owned(),
                previous_expires_at: rotated.previous_expires_at,
                customer: rotated.customer.view(),
            }),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/v1/customer/test-event", tag = "customer", operation_id = "send_test_event",
    security(("customer_api_key" = [])),
    responses(
        (status = 202, description = "A `hookline.test` event is on its way to the caller's endpoint", body = Accepted),
        (status = 409, description = "No webhook URL is configured", body = ErrorBody),
        Refused,
    ))]
async fn send_test_event(State(state): State<Arc<Onboarding>>, auth: Result<AuthenticatedCustomer, Error>) -> Response {
    let state = &*state;
    respond(state, "send_test_event", auth, |AuthenticatedCustomer(customer)| async move {
        // Re-read: the extractor's copy may predate a URL set a moment ago through another replica.
        let customer = state.tenants.get(&customer.id).await.map_err(Error::Tenant)?;
        if customer.webhook_url.is_none() {
            return Err(Error::Conflict(
                "configure a webhook URL first (PUT /v1/customer/webhook); a test event would be dead-lettered".into(),
            ));
        }
        let payload = RawValue::from_string(
            json!({
                "message": "This is a test event from Hookline.",
                "customer_id": customer.id,
                "sent_at": unix_now(),
            })
            .to_string(),
        )
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let record = EventRecord::new(TEST_EVENT_TYPE.to_owned(), payload);
        let accepted = state.publisher.produce_copies(record, &[customer]).await?;
        Ok((StatusCode::ACCEPTED, to_json(accepted)))
    })
    .await
}

/// One entry of `GET /v1/event-types`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ListedType<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    format: Format,
    source: Source,
    /// The schema's version in the registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    /// The schema, in its own language (`format`).
    #[schema(value_type = Value)]
    schema: &'a serde_json::Value,
}

/// `GET /v1/event-types`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EventTypeList<'a> {
    event_types: Vec<ListedType<'a>>,
}

/// `GET /v1/event-types`. Any authenticated caller may read the types: customers choose
/// subscriptions from them, producers write payloads to them, admins run the place.
#[utoipa::path(get, path = "/v1/event-types", tag = "customer", operation_id = "list_event_types",
    security(("customer_api_key" = []), ("admin_token" = []), ("producer_token" = [])),
    responses((status = 200, description = "The event types and their schemas", body = EventTypeList), Refused))]
async fn list_event_types(State(state): State<Arc<Onboarding>>, auth: Result<AnyRole, Error>) -> Response {
    let state = &*state;
    respond(state, "list_event_types", auth, |AnyRole| async move {
        let types = state.event_types.list();
        let listed: Vec<ListedType<'_>> = types
            .iter()
            .map(|t| ListedType {
                event_type: &t.name,
                format: t.format,
                source: t.source,
                version: t.version,
                schema: &t.schema,
            })
            .collect();
        Ok((StatusCode::OK, to_json(EventTypeList { event_types: listed })))
    })
    .await
}

fn view(customer: &Customer) -> serde_json::Value {
    serde_json::to_value(customer.view()).unwrap_or_default()
}

/// Maps a tenant error, reporting an invalid value under the request's own field name.
fn field_named(field: &'static str) -> impl FnOnce(hookline_core::Error) -> Error {
    move |error| match error {
        hookline_core::Error::Invalid { reason, .. } => Error::Tenant(hookline_core::Error::Invalid { field, reason }),
        other => Error::Tenant(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_reported_under_the_request_field() {
        let error = field_named("url")(hookline_core::Error::Invalid { field: "webhook_url", reason: "nope".into() });
        assert_eq!(error.to_string(), "invalid url: nope");
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let unknown = field_named("url")(hookline_core::Error::UnknownCustomer("c".into()));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn pem_content_type_is_not_json() {
        use axum::http::header::CONTENT_TYPE;
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/x-pem-file".parse().unwrap());
        assert!(!is_json(&headers));
    }
}

//! The customer portal: a web page at `/portal` over the customer API, and the short-lived links
//! an admin creates for a customer.
//!
//! - `GET /portal` and its script, styles and vendored chart library (`publisher/portal/`,
//!   embedded in the binary: no build step, nothing fetched at run time). Served with a CSP that
//!   allows only this origin's scripts, styles and API calls (no inline script), no framing, no
//!   referrer and no caching.
//! - `POST /v1/customers/{id}/portal {"ttl_seconds"?}` (admin): `201 {"url", "expires_at"}`, a
//!   link `<public URL>/portal#token=hlp_…`. The token rides in the URL fragment, which browsers
//!   never send to a server, so no access log or proxy holds it; the page moves it into the tab's
//!   session storage and clears the address bar. It names its customer and its expiry and is
//!   signed with a key derived from the master key (`hookline_core::secrets::PortalSigner`): any
//!   replica checks it, nothing is stored, and it works only on that customer's own routes.
//!
//! A customer can also sign in with its API key.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hookline_core::secrets::PortalSigner;
use hookline_core::tenants::Tenants;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::answer::{counted, to_json};
use crate::auth::Admin;
use crate::body::{JsonBody, is_json};
use crate::metrics::Metrics;
use crate::openapi::{BadBody, CustomerId, NotFound, Refused};
use crate::state::{RouteState, Shared};
use crate::{Error, Result};

/// The longest a portal link may live.
pub(crate) const MAX_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// The page's content security policy: this origin only, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../portal/index.html");
const APP_JS: &str = include_str!("../portal/app.js");
const APP_CSS: &str = include_str!("../portal/app.css");
const UPLOT_JS: &str = include_str!("../portal/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../portal/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../portal/vendor/LICENSE-uplot");

/// What the portal routes use.
#[derive(Debug)]
pub(crate) struct Portal {
    /// Credentials and the body limit.
    pub shared: Shared,
    pub tenants: Arc<Tenants>,
    pub metrics: Metrics,
    /// Signs the links' tokens.
    pub signer: PortalSigner,
    /// The address customers reach this publisher at (`--public-url`); without it, the request's
    /// `Host`.
    pub public_url: Option<String>,
    /// How long a link lives unless the request says (`--portal-link-ttl`).
    pub default_ttl: Duration,
}

impl RouteState for Portal {
    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The portal's routes.
pub(crate) fn routes(state: Arc<Portal>) -> OpenApiRouter {
    // The page and its assets are not API: routed, not described.
    OpenApiRouter::new()
        .route("/portal", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/portal/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/portal/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/portal/vendor/uPlot.iife.min.js", get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }))
        .route("/portal/vendor/uPlot.min.css", get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
        .route("/portal/vendor/LICENSE-uplot", get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
        .routes(routes!(create_link))
        .with_state(state)
}

/// One embedded file, with the portal's security headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The page holds a credential once signed in: never kept by a cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /v1/customers/{id}/portal` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// How long the link lives, from 1 to 86400 seconds (default `--portal-link-ttl`).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `201` of `POST /v1/customers/{id}/portal`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Link {
    /// `<public URL>/portal#token=hlp_…`: the token rides in the fragment, which no server logs.
    url: String,
    /// When the link stops working (RFC 3339).
    expires_at: String,
}

/// The base URL of links: `--public-url`, else the address the admin called.
fn base_url(state: &Portal, headers: &HeaderMap) -> Result<String> {
    if let Some(url) = &state.public_url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    host.map(|host| format!("http://{host}"))
        .ok_or_else(|| Error::InvalidRequest("no usable `Host` header: set --public-url for portal links".into()))
}

#[utoipa::path(post, path = "/v1/customers/{id}/portal", tag = "customers", operation_id = "create_portal_link",
    security(("admin_token" = [])),
    params(CustomerId),
    request_body(content = Option<LinkBody>, content_type = "application/json", description = "Optional"),
    responses((status = 201, description = "A signed, expiring portal link for the customer", body = Link), Refused, BadBody, NotFound))]
async fn create_link(
    State(state): State<Arc<Portal>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        auth?;
        let customer = state.tenants.get(&id).await.map_err(Error::Tenant)?;
        if customer.is_source() {
            return Err(Error::UnknownCustomer(id.clone()));
        }
        let base = base_url(&state, request.headers())?;
        let body = if is_json(request.headers()) {
            JsonBody::<LinkBody>::from_request(request, &state).await?.0
        } else {
            LinkBody::default()
        };
        let ttl = match body.ttl_seconds {
            None => state.default_ttl,
            Some(seconds) if (1..=MAX_LINK_TTL.as_secs()).contains(&seconds) => Duration::from_secs(seconds),
            Some(_) => {
                return Err(Error::InvalidRequest(format!(
                    "invalid `ttl_seconds`: from 1 to {} is expected",
                    MAX_LINK_TTL.as_secs()
                )));
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let expires = now + ttl.as_secs();
        let token = state.signer.sign(&customer.id, expires);
        let expires_at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(expires)).to_string();
        tracing::info!(customer = %customer.id, %expires_at, "portal link created");
        Ok(Link { url: format!("{base}/portal#token={token}"), expires_at })
    }
    .await;
    counted(&state.metrics, "create_portal_link", result.map(|link| (StatusCode::CREATED, to_json(link))))
}

//! Who is calling: an `Authorization: Bearer <token>` header resolved to a role.
//!
//! Four kinds of credential share the header: operator admin tokens (`--admin-tokens`),
//! producer tokens (`--producer-tokens`), both compared in constant time against hashes held in
//! memory; customers' API keys, looked up by their non-secret key id and checked against the
//! stored SHA-256 hash in constant time; and portal links' tokens (`hlp_…`, signed and expiring,
//! see `portal`), which stand for their customer like its API key. Each route accepts one role: no credentials or unknown
//! ones get 401, credentials of another role 403. Nothing about a presented token is logged.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hookline_core::customer::Customer;
use hookline_core::secrets::{PORTAL_TOKEN_PREFIX, PortalRefusal, PortalSigner, TokenSet, bearer_token};
use hookline_core::tenants::Tenants;

use crate::Error;

/// What resolves credentials: the operators' token sets and the tenants (for API keys). The
/// extractors below take it from any router state that holds one (`FromRef`); a clone is a
/// handle on the same sets.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    admin_tokens: Arc<TokenSet>,
    producer_tokens: Arc<TokenSet>,
    tenants: Arc<Tenants>,
    /// Checks portal links' tokens (`hlp_…`), which act as their customer's API key until they
    /// expire.
    portal: Arc<PortalSigner>,
}

/// The role a request authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Admin,
    Producer,
    Customer(Arc<Customer>),
}

impl Authenticator {
    pub(crate) fn new(
        admin_tokens: TokenSet,
        producer_tokens: TokenSet,
        tenants: Arc<Tenants>,
        portal: PortalSigner,
    ) -> Self {
        let (admin_tokens, producer_tokens) = (Arc::new(admin_tokens), Arc::new(producer_tokens));
        Self { admin_tokens, producer_tokens, tenants, portal: Arc::new(portal) }
    }

    /// Resolves the request's bearer credentials.
    async fn identify(&self, parts: &Parts) -> Result<Caller, Error> {
        // A header that is not text is reported like a malformed one.
        self.identify_bearer(parts.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or_default())).await
    }

    /// Resolves an `Authorization` value (HTTP header or gRPC metadata), `None` when absent.
    pub(crate) async fn identify_bearer(&self, header: Option<&str>) -> Result<Caller, Error> {
        let header = header.ok_or(Error::Unauthorized("missing `Authorization: Bearer <token>` header"))?;
        let token =
            bearer_token(header).ok_or(Error::Unauthorized("the `Authorization` header must be `Bearer <token>`"))?;
        // Both sets are always checked, so timing does not tell which kind of token was close.
        let admin = self.admin_tokens.contains(token);
        let producer = self.producer_tokens.contains(token);
        if admin {
            return Ok(Caller::Admin);
        }
        if producer {
            return Ok(Caller::Producer);
        }
        if token.starts_with(PORTAL_TOKEN_PREFIX) {
            return self.portal_customer(token);
        }
        match self.tenants.authenticate(token).await.map_err(Error::Directory)? {
            Some(customer) => Ok(Caller::Customer(customer)),
            None => Err(Error::Unauthorized("invalid credentials")),
        }
    }
}

impl Authenticator {
    /// The customer a portal link's token stands for, while it lives and the customer exists.
    fn portal_customer(&self, token: &str) -> Result<Caller, Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self.portal.verify(token, now) {
            Ok(id) => match self.tenants.directory().get(&id) {
                Some(customer) if !customer.is_source() => Ok(Caller::Customer(customer)),
                _ => Err(Error::Unauthorized("invalid credentials")),
            },
            Err(PortalRefusal::Expired) => Err(Error::Unauthorized("the portal link expired; ask for a new one")),
            Err(PortalRefusal::Invalid) => Err(Error::Unauthorized("invalid credentials")),
        }
    }
}

/// The [`Authenticator`] of a router state.
async fn identify<S>(parts: &Parts, state: &S) -> Result<Caller, Error>
where
    Authenticator: FromRef<S>,
{
    Authenticator::from_ref(state).identify(parts).await
}

/// Succeeds for a producer token: the only role that may publish events.
pub(crate) fn require_producer(caller: Caller) -> Result<(), Error> {
    match caller {
        Caller::Producer => Ok(()),
        _ => Err(Error::Forbidden("only producer tokens may publish events")),
    }
}

/// Extractor: the caller holds an admin token.
#[derive(Debug)]
pub(crate) struct Admin;

/// Extractor: the caller holds a producer token.
#[derive(Debug)]
pub(crate) struct Producer;

/// Extractor: any valid credentials (admin, producer or customer).
#[derive(Debug)]
pub(crate) struct AnyRole;

/// Extractor: the caller holds a customer's API key; that customer's record as last read.
#[derive(Debug)]
pub(crate) struct AuthenticatedCustomer(pub Arc<Customer>);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match identify(parts, state).await? {
            Caller::Admin => Ok(Self),
            _ => Err(Error::Forbidden("this endpoint needs an admin token")),
        }
    }
}

impl<S> FromRequestParts<S> for Producer
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        require_producer(identify(parts, state).await?).map(|()| Self)
    }
}

impl<S> FromRequestParts<S> for AnyRole
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        identify(parts, state).await.map(|_| Self)
    }
}

impl<S> FromRequestParts<S> for AuthenticatedCustomer
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match identify(parts, state).await? {
            Caller::Customer(customer) => Ok(Self(customer)),
            _ => Err(Error::Forbidden("this endpoint needs a customer API key")),
        }
    }
}

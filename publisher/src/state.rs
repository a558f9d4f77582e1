//! What every group of HTTP routes has in its state: the credentials check and the body limit.
//! The extractors (`auth`, `body`) take them from any state that implements [`RouteState`], so
//! each group keeps a state of its own without repeating how they are found.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::Authenticator;
use crate::body::BodyLimit;

/// The part of a route group's state every group has.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub auth: Authenticator,
    pub body_limit: BodyLimit,
}

/// A route group's state.
pub(crate) trait RouteState {
    fn shared(&self) -> &Shared;
}

impl<S: RouteState> FromRef<Arc<S>> for Authenticator {
    fn from_ref(state: &Arc<S>) -> Self {
        state.shared().auth.clone()
    }
}

impl<S: RouteState> FromRef<Arc<S>> for BodyLimit {
    fn from_ref(state: &Arc<S>) -> Self {
        state.shared().body_limit
    }
}

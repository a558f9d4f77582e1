//! Errors of the demo receiver.

use std::net::SocketAddr;

/// Result alias used across `hookline-receiver`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop the receiver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    #[error("cannot read the listening address: {0}")]
    LocalAddress(std::io::Error),

    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),

    #[error("the HTTP server task ended abnormally")]
    ServerTask,
}

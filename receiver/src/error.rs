//! Errors of the receiver: what stops it (with the exit code each maps to), and why a delivery
//! is refused ([`VerifyError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Result alias used across `hookline-receiver`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for an operational failure (cannot listen, server failure).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad settings; the same code clap uses for a command line it cannot parse.
pub const EXIT_USAGE: u8 = 2;

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

    /// One of the `--signing-secret` values is unusable (which one is counted from 1; the value
    /// itself is never repeated).
    #[error("--signing-secret value #{position}: {source}")]
    SigningSecret { position: usize, source: hookline_wire::Error },

    #[error("cannot read the private key file {}: {source}", path.display())]
    ReadPrivateKey { path: PathBuf, source: std::io::Error },

    #[error("the private key file {}: {source}", path.display())]
    PrivateKey { path: PathBuf, source: hookline_wire::Error },

    #[error(
        "{0} needs --signing-secret: a body is decrypted only after its signature proves it comes from \
         Hookline; give the signing secret shown when the customer was created (or its secret rotated)"
    )]
    NeedsSigningSecret(&'static str),

    #[error("--require-encryption needs --private-key: without the key, encrypted deliveries cannot be opened")]
    RequireEncryptionWithoutKey,
}

impl Error {
    /// The process exit code for this error: [`EXIT_USAGE`] for bad settings, else
    /// [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::SigningSecret { .. }
            | Self::ReadPrivateKey { .. }
            | Self::PrivateKey { .. }
            | Self::NeedsSigningSecret(_)
            | Self::RequireEncryptionWithoutKey => EXIT_USAGE,
            Self::Bind { .. } | Self::LocalAddress(_) | Self::Serve(_) | Self::ServerTask => EXIT_FAILURE,
        }
    }
}

/// Why a delivery was refused by a [`crate::DeliveryVerifier`] (answered 401). The messages name
/// the problem, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The Standard Webhooks signature check failed: a header is missing or malformed, the
    /// timestamp is outside the tolerance, or no signature matches.
    #[error("signature check failed: {0}")]
    Signature(hookline_wire::Error),

    /// The body is a JWE but this receiver was started without a private key.
    #[error(
        "the body is encrypted (content-type application/jose) but this receiver has no private key (--private-key)"
    )]
    NoPrivateKey,

    /// The body is not encrypted but this receiver requires encryption.
    #[error("the body is not encrypted (content-type application/jose), and this receiver requires encryption")]
    NotEncrypted,

    /// The body claims to be a JWE but is not even text.
    #[error("the encrypted body is not a JWE: it is not text")]
    NotText,

    /// The JWE is malformed, uses other algorithms, is for another key, or does not decrypt.
    #[error("{0}")]
    Decrypt(hookline_wire::Error),
}

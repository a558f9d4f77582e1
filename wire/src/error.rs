//! Errors of the wire format.
//!
//! No variant ever carries secret material (signing secrets, private keys, content-encryption
//! keys, plaintext). Text copied from untrusted input (a JWE header value, a `kid`) is clipped,
//! so a hostile request cannot flood the logs through an error message.

/// Result alias used across `hookline-wire`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A configuration value (signing secret, key) is unusable; `field` names it.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// A header a signed delivery must carry is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),

    /// A header is present but is not visible ASCII text.
    #[error("the {0} header is not visible ASCII text")]
    InvalidHeader(&'static str),

    /// `webhook-timestamp` is not a Unix time in whole seconds.
    #[error("the webhook-timestamp header is not a Unix time in seconds")]
    BadTimestamp,

    /// `webhook-timestamp` is too far from the receiver's clock: a replayed delivery, or clocks
    /// that disagree by more than the tolerance.
    #[error("the webhook-timestamp header is outside the accepted tolerance (replayed delivery or clock skew)")]
    TimestampOutOfTolerance,

    /// No `v1` signature in `webhook-signature` matches the body under any known secret.
    #[error("no signature in the webhook-signature header matches the delivery under any signing secret")]
    NoMatchingSignature,

    /// The text is not a JWE in compact serialization; the reason says which part is wrong.
    #[error("malformed JWE: {0}")]
    MalformedJwe(&'static str),

    /// The JWE uses an algorithm or feature this implementation does not accept.
    #[error("unsupported JWE: {parameter} `{value}` (expected {expected})")]
    UnsupportedJwe { parameter: &'static str, value: String, expected: &'static str },

    /// The JWE was encrypted for another key than the one this decryptor holds.
    #[error("the JWE is encrypted for key `{kid}`, but this private key is `{expected}`")]
    WrongRecipient { kid: String, expected: String },

    /// Decryption failed: the JWE was encrypted for another key or was altered. Deliberately says
    /// no more (RFC 7516 §11.5), so failures cannot be told apart by an attacker.
    #[error("cannot decrypt the JWE: it was encrypted for another key or altered in transit")]
    Decrypt,

    /// A cryptographic primitive failed where it should not (RNG failure, key generation).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// Clips untrusted text quoted in an error to a readable length.
pub(crate) fn clip(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("RSA1_5"), "RSA1_5");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), 65);
        assert!(clipped.ends_with('…'));
    }
}

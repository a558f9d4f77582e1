//! Standard Webhooks v1 signatures (<https://www.standardwebhooks.com>): the sender signs every
//! delivery, the receiver checks the signature before trusting anything in it.
//!
//! The signature is HMAC-SHA256, keyed with a shared secret (`whsec_` + base64), over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, sent base64-encoded as `v1,<signature>` in the
//! `webhook-signature` header. The header may hold several space-separated signatures: during a
//! secret rotation the sender signs with the old and the new secret, so receivers that know
//! either one keep accepting deliveries. Entries with other versions (`v1a,...`) are ignored.
//!
//! The timestamp is covered by the signature and checked against the receiver's clock (5 minutes
//! either way by default), so a captured delivery cannot be replayed later.
//!
//! [`verify_hub_signature`] checks the other common scheme, GitHub's `X-Hub-Signature-256:
//! sha256=<hex HMAC-SHA256 of the body>` (no timestamp, so no replay protection of its own).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The prefix of a signing secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Header carrying the message id (the same on every attempt of a delivery).
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying the space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// How far `webhook-timestamp` may be from the receiver's clock, in either direction, by default
/// (the value every Standard Webhooks library uses).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Bytes of a freshly generated secret (the specification asks for at least 24).
const GENERATED_SECRET_BYTES: usize = 32;
/// The shortest secret accepted (the specification's minimum).
const MIN_SECRET_BYTES: usize = 24;
/// The signature scheme this module produces and checks.
const VERSION: &str = "v1";

/// Standard base64 that accepts secrets and signatures with or without `=` padding, since other
/// Standard Webhooks implementations differ on it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// A shared HMAC key. Its bytes are wiped from memory when dropped, and `Debug` never shows them.
#[derive(Clone)]
pub struct SigningSecret(Zeroizing<Vec<u8>>);

impl SigningSecret {
    /// A new random secret (32 bytes from the thread-local CSPRNG).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0_u8; GENERATED_SECRET_BYTES]);
        rand::fill(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Reads the text form `whsec_<base64>` (surrounding whitespace ignored). Fails, without
    /// quoting the text, unless it has the prefix, is base64 and decodes to at least 24 bytes.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid { field: "signing_secret", reason: reason.to_owned() };
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| invalid("a signing secret starts with `whsec_` followed by base64"))?;
        let bytes = Zeroizing::new(
            LENIENT_BASE64.decode(encoded).map_err(|_| invalid("the text after `whsec_` is not standard base64"))?,
        );
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(invalid(&format!(
                "it decodes to {} bytes; at least {MIN_SECRET_BYTES} are required",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// The text form `whsec_<base64>`: shown once to the customer, or sealed at rest. Treat the
    /// result as the secret itself.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.0.as_slice()))
    }

    /// The signature of one delivery, as a header entry: `v1,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("{VERSION},{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    /// The raw HMAC-SHA256 over `"{msg_id}.{timestamp}.{body}"`.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(whsec_<redacted>)")
    }
}

/// The `webhook-signature` header value for a delivery: one `v1,<base64>` entry per secret,
/// space-separated, in the order given (during a rotation: both the old and the new secret).
/// Empty when `secrets` is empty.
pub fn signature_header(secrets: &[SigningSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| secret.sign(msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Checks deliveries against a set of secrets (several during a rotation) and a clock tolerance.
#[derive(Debug, Clone)]
pub struct SignatureVerifier {
    secrets: Vec<SigningSecret>,
    tolerance: Duration,
}

impl SignatureVerifier {
    /// A verifier accepting a signature made with any of `secrets`, with the default 5-minute
    /// tolerance. With no secret at all, every delivery is refused.
    pub fn new(secrets: Vec<SigningSecret>) -> Self {
        Self { secrets, tolerance: DEFAULT_TOLERANCE }
    }

    /// Sets how far `webhook-timestamp` may be from the receiver's clock, in either direction.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The accepted distance between `webhook-timestamp` and the receiver's clock.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Checks the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers against the
    /// raw `body`, at the current time.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<()> {
        self.verify_at(headers, body, SystemTime::now())
    }

    /// Like [`SignatureVerifier::verify`], with the receiver's clock reading `now`.
    pub fn verify_at(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<()> {
        let msg_id = required_header(headers, ID_HEADER)?;
        let timestamp: i64 =
            required_header(headers, TIMESTAMP_HEADER)?.trim().parse().map_err(|_| Error::BadTimestamp)?;
        let mut signatures = Vec::new();
        for value in headers.get_all(SIGNATURE_HEADER) {
            signatures.push(value.to_str().map_err(|_| Error::InvalidHeader(SIGNATURE_HEADER))?);
        }
        if signatures.is_empty() {
            return Err(Error::MissingHeader(SIGNATURE_HEADER));
        }

        // The clock check comes first: a replayed delivery is refused even if correctly signed.
        if seconds_since_epoch(now).abs_diff(timestamp) > self.tolerance.as_secs() {
            return Err(Error::TimestampOutOfTolerance);
        }

        let expected: Vec<[u8; 32]> = self.secrets.iter().map(|secret| secret.mac(msg_id, timestamp, body)).collect();
        let offered = signatures.iter().flat_map(|value| value.split_whitespace()).filter_map(|entry| {
            let (version, signature) = entry.split_once(',')?;
            // Unknown versions are skipped, as the specification requires; undecodable entries too.
            (version == VERSION).then(|| LENIENT_BASE64.decode(signature).ok()).flatten()
        });
        for candidate in offered {
            // Constant-time comparison, so response timing reveals nothing about the expected MAC.
            if expected.iter().any(|mac| bool::from(mac.as_slice().ct_eq(&candidate))) {
                return Ok(());
            }
        }
        Err(Error::NoMatchingSignature)
    }
}

/// The header of [`verify_hub_signature`]'s scheme.
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex>` header: the HMAC-SHA256 of the raw `body`
/// keyed with the bytes of `secret`, compared in constant time.
pub fn verify_hub_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let value = required_header(headers, HUB_SIGNATURE_HEADER)?;
    let offered = value
        .trim()
        .strip_prefix("sha256=")
        .and_then(crate::hex::decode)
        .ok_or(Error::InvalidHeader(HUB_SIGNATURE_HEADER))?;
    if bool::from(hub_mac(secret, body).as_slice().ct_eq(&offered)) { Ok(()) } else { Err(Error::NoMatchingSignature) }
}

/// The `X-Hub-Signature-256` value a sender with `secret` puts on `body`: `sha256=<hex>`.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", crate::hex::encode(&hub_mac(secret, body)))
}

fn hub_mac(secret: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// A header that must be present, as text.
fn required_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str> {
    let value = headers.get(name).ok_or(Error::MissingHeader(name))?;
    value.to_str().map_err(|_| Error::InvalidHeader(name))
}

/// Whole seconds since the Unix epoch, negative before it (a badly wrong clock, not a panic).
fn seconds_since_epoch(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).expect("positive"))
    }

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, HeaderValue::from_str(id).expect("id"));
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).expect("timestamp"));
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).expect("signature"));
        headers
    }

    fn spec_secret() -> SigningSecret {
        SigningSecret::parse(SPEC_SECRET).expect("the specification's secret parses")
    }

    #[test]
    fn signs_the_specification_test_vector() {
        assert_eq!(spec_secret().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        assert_eq!(signature_header(&[spec_secret()], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn verifies_the_specification_test_vector() {
        let verifier = SignatureVerifier::new(vec![spec_secret()]);
        let request = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), SPEC_SIGNATURE);
        assert_eq!(verifier.verify_at(&request, SPEC_BODY, at(SPEC_TIMESTAMP)), Ok(()));
        // The real clock is years past 2021: refused as a replay.
        assert_eq!(verifier.verify(&request, SPEC_BODY), Err(Error::TimestampOutOfTolerance));
    }

    #[test]
    fn secrets_round_trip_and_stay_out_of_debug_output() {
        let secret = SigningSecret::generate();
        let text = secret.expose();
        assert!(text.starts_with(SECRET_PREFIX));
        let again = SigningSecret::parse(&text).expect("own output parses");
        assert_eq!(again.sign("a", 1, b"b"), secret.sign("a", 1, b"b"));
        assert_ne!(SigningSecret::generate().sign("a", 1, b"b"), secret.sign("a", 1, b"b"));

        let debug = format!("{secret:?} {:?}", SignatureVerifier::new(vec![secret.clone()]));
        assert!(!debug.contains(&text[SECRET_PREFIX.len()..]), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn parse_accepts_padding_either_way_and_surrounding_whitespace() {
        let secret = SigningSecret::generate();
        let padded = secret.expose();
        assert!(padded.ends_with('='), "32 bytes encode with one `=`");
        let unpadded = padded.trim_end_matches('=');
        for text in [padded.as_str(), unpadded, &format!("  {padded}\n")] {
            let parsed = SigningSecret::parse(text).expect("parses");
            assert_eq!(parsed.sign("a", 1, b"b"), secret.sign("a", 1, b"b"));
        }
    }

    #[test]
    fn parse_refuses_bad_secrets_without_quoting_them() {
        let short = format!("{SECRET_PREFIX}{}", STANDARD.encode([7_u8; 23]));
        for (text, hint) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with `whsec_`"),
            ("whsec_not base64!!", "not standard base64"),
            (short.as_str(), "23 bytes; at least 24"),
            ("whsec_", "0 bytes"),
        ] {
            let error = SigningSecret::parse(text).expect_err(text);
            let Error::Invalid { field, reason } = &error else { panic!("{error:?}") };
            assert_eq!(*field, "signing_secret");
            assert!(reason.contains(hint), "{text}: {reason}");
            let quoted = text.trim_start_matches(SECRET_PREFIX);
            assert!(quoted.is_empty() || !error.to_string().contains(quoted), "{error}");
        }
    }

    #[test]
    fn rotation_header_is_accepted_by_either_secret_and_refused_by_others() {
        let (old, new, other) = (SigningSecret::generate(), SigningSecret::generate(), SigningSecret::generate());
        let header = signature_header(&[old.clone(), new.clone()], "msg_1", 1_700_000_000, b"{}");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries, [old.sign("msg_1", 1_700_000_000, b"{}"), new.sign("msg_1", 1_700_000_000, b"{}")]);

        let request = headers("msg_1", "1700000000", &header);
        let now = at(1_700_000_000);
        for secrets in [vec![old.clone()], vec![new.clone()], vec![other.clone(), new]] {
            assert_eq!(SignatureVerifier::new(secrets).verify_at(&request, b"{}", now), Ok(()));
        }
        assert_eq!(
            SignatureVerifier::new(vec![other]).verify_at(&request, b"{}", now),
            Err(Error::NoMatchingSignature)
        );
        assert_eq!(SignatureVerifier::new(vec![]).verify_at(&request, b"{}", now), Err(Error::NoMatchingSignature));
    }

    #[test]
    fn unknown_versions_and_garbage_entries_are_skipped() {
        let secret = spec_secret();
        let verifier = SignatureVerifier::new(vec![secret]);
        let now = at(SPEC_TIMESTAMP);
        let valid = SPEC_SIGNATURE;
        let bare = &SPEC_SIGNATURE[3..];
        for (header, expected) in [
            (format!("v1a,{bare} {valid}"), Ok(())),
            (format!("v2,xxx v1,!!! nocomma  {valid}"), Ok(())),
            (format!("v1a,{bare}"), Err(Error::NoMatchingSignature)),
            (format!("v2,{bare}"), Err(Error::NoMatchingSignature)),
            (valid.trim_end_matches('=').to_owned(), Ok(())),
            (String::new(), Err(Error::NoMatchingSignature)),
        ] {
            let request = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), &header);
            assert_eq!(verifier.verify_at(&request, SPEC_BODY, now), expected, "{header}");
        }
    }

    #[test]
    fn several_signature_header_lines_are_all_considered() {
        let verifier = SignatureVerifier::new(vec![spec_secret()]);
        let mut request = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), "v1,AAAA");
        request.append(SIGNATURE_HEADER, HeaderValue::from_static(SPEC_SIGNATURE));
        assert_eq!(verifier.verify_at(&request, SPEC_BODY, at(SPEC_TIMESTAMP)), Ok(()));
    }

    #[test]
    fn tampering_with_anything_signed_is_refused() {
        let verifier = SignatureVerifier::new(vec![spec_secret()]);
        let now = at(SPEC_TIMESTAMP);
        let ts = SPEC_TIMESTAMP.to_string();
        let tampered_body = verifier.verify_at(&headers(SPEC_ID, &ts, SPEC_SIGNATURE), br#"{"test": 2432232315}"#, now);
        assert_eq!(tampered_body, Err(Error::NoMatchingSignature));
        let tampered_id = verifier.verify_at(&headers("msg_other", &ts, SPEC_SIGNATURE), SPEC_BODY, now);
        assert_eq!(tampered_id, Err(Error::NoMatchingSignature));
        let tampered_ts = verifier.verify_at(&headers(SPEC_ID, "1614265331", SPEC_SIGNATURE), SPEC_BODY, now);
        assert_eq!(tampered_ts, Err(Error::NoMatchingSignature));
        let flipped = SPEC_SIGNATURE.replace("g0hM", "g0hN");
        assert_eq!(
            verifier.verify_at(&headers(SPEC_ID, &ts, &flipped), SPEC_BODY, now),
            Err(Error::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_are_checked_against_the_tolerance_both_ways() {
        let secret = SigningSecret::generate();
        let signed_at = 1_700_000_000;
        let request = headers("msg_1", "1700000000", &secret.sign("msg_1", signed_at, b"x"));
        let default = SignatureVerifier::new(vec![secret.clone()]);
        assert_eq!(default.tolerance(), Duration::from_secs(300));
        for (now, expected) in [
            (signed_at + 300, Ok(())),
            (signed_at - 300, Ok(())),
            (signed_at + 301, Err(Error::TimestampOutOfTolerance)),
            (signed_at - 301, Err(Error::TimestampOutOfTolerance)),
        ] {
            assert_eq!(default.verify_at(&request, b"x", at(now)), expected, "now {now}");
        }
        let strict = default.with_tolerance(Duration::from_secs(10));
        assert_eq!(strict.verify_at(&request, b"x", at(signed_at + 11)), Err(Error::TimestampOutOfTolerance));
        assert_eq!(strict.verify_at(&request, b"x", at(signed_at + 10)), Ok(()));
    }

    #[test]
    fn missing_and_malformed_headers_have_their_own_errors() {
        let verifier = SignatureVerifier::new(vec![spec_secret()]);
        let now = at(SPEC_TIMESTAMP);
        let complete = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), SPEC_SIGNATURE);
        for name in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let mut request = complete.clone();
            request.remove(name);
            assert_eq!(verifier.verify_at(&request, SPEC_BODY, now), Err(Error::MissingHeader(name)));
        }
        for bad in ["yesterday", "1614265330.5", "", "99999999999999999999"] {
            let request = headers(SPEC_ID, bad, SPEC_SIGNATURE);
            assert_eq!(verifier.verify_at(&request, SPEC_BODY, now), Err(Error::BadTimestamp), "{bad}");
        }
        let mut request = complete.clone();
        request.insert(SIGNATURE_HEADER, HeaderValue::from_bytes(b"v1,\xff").expect("opaque bytes"));
        assert_eq!(verifier.verify_at(&request, SPEC_BODY, now), Err(Error::InvalidHeader(SIGNATURE_HEADER)));
        let extreme = headers(SPEC_ID, &i64::MIN.to_string(), SPEC_SIGNATURE);
        assert_eq!(verifier.verify_at(&extreme, SPEC_BODY, now), Err(Error::TimestampOutOfTolerance));
    }

    #[test]
    fn hub_signature_matches_githubs_example() {
        // The example of GitHub's "Validating webhook deliveries" documentation.
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HUB_SIGNATURE_HEADER, HeaderValue::from_str(value).expect("header"));
            headers
        };
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(hub_signature(secret, body), good);
        verify_hub_signature(secret, &with(good), body).expect("GitHub's example verifies");
        verify_hub_signature(secret, &with(&good.to_uppercase().replace("SHA256=", "sha256=")), body)
            .expect("upper-case hex");
        assert!(matches!(verify_hub_signature(secret, &with(good), b"Hello, World?"), Err(Error::NoMatchingSignature)));
        assert!(matches!(verify_hub_signature(b"other", &with(good), body), Err(Error::NoMatchingSignature)));
        for malformed in ["757107ea", "sha1=757107ea", "sha256=zz", "sha256=abc"] {
            assert!(
                matches!(verify_hub_signature(secret, &with(malformed), body), Err(Error::InvalidHeader(_))),
                "{malformed}"
            );
        }
        assert!(matches!(
            verify_hub_signature(secret, &HeaderMap::new(), body),
            Err(Error::MissingHeader(HUB_SIGNATURE_HEADER))
        ));
    }
}

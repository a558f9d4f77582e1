//! Secrets at rest and credential checks.
//!
//! - [`MasterKey`]: the operator's AES-256-GCM key. Customers' signing secrets are stored in the
//!   customers topic *sealed* with it, so read access to Kafka alone does not reveal them. Each
//!   sealed value is bound to its record (the customer id is the associated data), so a value
//!   copied into another customer's record does not open there.
//! - [`ApiKey`] / [`ApiKeyHash`]: customers' API keys. The plaintext is shown once, at creation;
//!   only a SHA-256 hash is stored.
//! - [`TokenSet`]: the operator's bearer tokens (admin, producer), compared in constant time.
//!
//! Nothing secret ever appears in `Debug` output or in error messages: the types holding secrets
//! implement `Debug` by hand, and errors describe what is wrong without echoing the input.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hookline_wire::hex;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::{Error, Result};

const MASTER_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// AES-GCM's authentication tag, appended to the ciphertext.
const TAG_LEN: usize = 16;
/// Prefix of sealed values: the format version, so the scheme can change without ambiguity.
const SEALED_PREFIX: &str = "v1:";

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------------------------
// Master key
// ---------------------------------------------------------------------------------------------

/// The operator's 32-byte master key (AES-256-GCM) that encrypts customers' signing secrets in
/// the customers topic.
///
/// Sealed values use a random 96-bit nonce each; that is safe for far more values than a
/// customers topic will ever hold (the usual bound is 2^32 seals per key).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MasterKey").field(&Redacted).finish()
    }
}

impl MasterKey {
    /// A new random key (from the thread-local CSPRNG, seeded by the operating system).
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        rand::fill(&mut key[..]);
        Self(key)
    }

    /// Parses standard base64 (with padding) of exactly 32 bytes; surrounding whitespace is
    /// ignored. Errors never echo the input.
    pub fn from_base64(text: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid { field: "master_key", reason };
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| invalid("not valid base64 (expected standard base64 of 32 random bytes)".to_owned()))?,
        );
        if decoded.len() != MASTER_KEY_LEN {
            return Err(invalid(format!(
                "must be base64 of exactly {MASTER_KEY_LEN} bytes, but decodes to {} bytes",
                decoded.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        key.copy_from_slice(&decoded);
        Ok(Self(key))
    }

    /// Reads the base64 text of a key from `path` (see [`MasterKey::from_base64`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| Error::Invalid {
            field: "master_key_file",
            reason: format!("cannot read {}: {error}", path.display()),
        })?);
        Self::from_base64(&text).map_err(|error| match error {
            Error::Invalid { reason, .. } => {
                Error::Invalid { field: "master_key_file", reason: format!("{}: {reason}", path.display()) }
            }
            other => other,
        })
    }

    /// Standard base64 with padding, the form [`MasterKey::from_base64`] reads.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0[..])
    }

    fn cipher(&self) -> Aes256Gcm {
        // By reference: no copy of the key outside its zeroizing wrapper.
        Aes256Gcm::new((&*self.0).into())
    }

    /// Encrypts `plaintext` bound to `context` (the customer id, as AES-GCM associated data, so
    /// a sealed value copied to another customer's record does not open).
    ///
    /// Output: `"v1:"` + standard base64 of (12-byte random nonce ‖ ciphertext ‖ 16-byte tag).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let sealed = self
            .cipher()
            .encrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            // AES-GCM refuses only plaintexts over 64 GiB, which cannot reach this function
            // (secrets are a few dozen bytes and Kafka records are capped far lower).
            .expect("AES-GCM encryption of an in-memory value cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same key and `context`.
    ///
    /// A wrong key, a wrong context, an altered value or text that is not a sealed value all give
    /// [`Error::Unseal`], which says nothing about the value.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        const MALFORMED: Error = Error::Unseal { what: "the value (it is not a `v1:` sealed value)" };
        let encoded = sealed.trim().strip_prefix(SEALED_PREFIX).ok_or(MALFORMED)?;
        let raw = STANDARD.decode(encoded).map_err(|_| MALFORMED)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(MALFORMED);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MALFORMED)?;
        self.cipher()
            .decrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| Error::Unseal { what: "the sealed value (wrong key, another record's value, or altered)" })
    }

    /// [`MasterKey::open`] for values that were UTF-8 text when sealed.
    pub fn open_string(&self, context: &str, sealed: &str) -> Result<Zeroizing<String>> {
        let mut bytes = self.open(context, sealed)?;
        // Take the bytes out so the `Zeroizing` wrapper of the result owns them; on the error path
        // `FromUtf8Error` hands them back and they are wiped.
        match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(error) => {
                drop(Zeroizing::new(error.into_bytes()));
                Err(Error::Unseal { what: "the sealed value as text (it is not UTF-8)" })
            }
        }
    }
}

/// Where the master key comes from; flattened into the configuration of every binary that needs
/// it.
#[derive(Clone, Default, clap::Args)]
pub struct MasterKeyArgs {
    /// base64 of 32 random bytes (generate: `hookline-setup keys master-key`)
    #[arg(long, env = "HOOKLINE_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,

    /// File containing the master key's base64 text (e.g. a mounted secret)
    #[arg(long, env = "HOOKLINE_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
}

// By hand: a derived Debug would print the key.
impl fmt::Debug for MasterKeyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyArgs")
            .field("master_key", &self.master_key.as_ref().map(|_| Redacted))
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

impl MasterKeyArgs {
    /// Arguments carrying `key` inline (tests, in-process set-ups).
    pub fn with_key(key: &MasterKey) -> Self {
        Self { master_key: Some(key.to_base64()), master_key_file: None }
    }

    /// The configured key, `None` if neither source is set (a blank value counts as unset).
    pub fn load(&self) -> Result<Option<MasterKey>> {
        let inline = self.master_key.as_deref().filter(|text| !text.trim().is_empty());
        match (inline, &self.master_key_file) {
            (Some(_), Some(_)) => Err(Error::Invalid {
                field: "master_key",
                reason: "set HOOKLINE_MASTER_KEY or HOOKLINE_MASTER_KEY_FILE, not both".to_owned(),
            }),
            (Some(text), None) => MasterKey::from_base64(text).map(Some),
            (None, Some(path)) => MasterKey::from_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The configured key; an error explaining how to set one if there is none.
    pub fn require(&self) -> Result<MasterKey> {
        self.load()?.ok_or_else(|| Error::Invalid {
            field: "master_key",
            reason: "not set: pass --master-key / HOOKLINE_MASTER_KEY or --master-key-file / HOOKLINE_MASTER_KEY_FILE \
                     (generate one with `hookline-setup keys master-key`)"
                .to_owned(),
        })
    }
}

impl From<MasterKey> for MasterKeyArgs {
    fn from(key: MasterKey) -> Self {
        Self::with_key(&key)
    }
}

// ---------------------------------------------------------------------------------------------
// Customer API keys
// ---------------------------------------------------------------------------------------------

const API_KEY_PREFIX: &str = "hk_";
const KEY_ID_LEN: usize = 16;
const API_SECRET_BYTES: usize = 32;
/// base64url without padding of 32 bytes.
const API_SECRET_LEN: usize = 43;
const API_KEY_LEN: usize = API_KEY_PREFIX.len() + KEY_ID_LEN + 1 + API_SECRET_LEN;

/// A customer's API key in plaintext, `hk_<key_id>_<secret>`: `key_id` is 16 lowercase hex
/// characters (random; a look-up handle, not secret), `secret` is base64url without padding of
/// 32 random bytes. Shown to the customer once, at creation; only its [`ApiKeyHash`] is stored.
pub struct ApiKey(Zeroizing<String>);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &api_key_id(&self.0).unwrap_or_default())
            .field("secret", &Redacted)
            .finish()
    }
}

impl ApiKey {
    /// A new random key and the hash to store for it.
    pub fn generate() -> (ApiKey, ApiKeyHash) {
        let mut id = [0u8; KEY_ID_LEN / 2];
        rand::fill(&mut id[..]);
        let key_id = hex::encode(&id);
        let mut secret = Zeroizing::new([0u8; API_SECRET_BYTES]);
        rand::fill(&mut secret[..]);
        let mut text = Zeroizing::new(String::with_capacity(API_KEY_LEN));
        text.push_str(API_KEY_PREFIX);
        text.push_str(&key_id);
        text.push('_');
        URL_SAFE_NO_PAD.encode_string(&secret[..], &mut text);
        let hash = ApiKeyHash { key_id, sha256: hex::encode(&sha256(text.as_bytes())) };
        (ApiKey(text), hash)
    }

    /// The plaintext key, to show to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key's look-up handle.
    pub fn key_id(&self) -> &str {
        api_key_id(&self.0).unwrap_or_default()
    }
}

/// What is stored for an API key.
///
/// The hash is a plain SHA-256, not a slow password hash, deliberately: the key carries 256 bits
/// of randomness, so guessing it from the hash is out of reach however fast the hash is, and a
/// fast hash keeps authenticating each request cheap. (Slow hashes protect low-entropy, human
/// chosen passwords, which API keys are not.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeyHash {
    /// The key's look-up handle (the `<key_id>` part of the key).
    pub key_id: String,
    /// Lowercase hex of SHA-256 over the whole key text.
    pub sha256: String,
}

impl ApiKeyHash {
    /// Whether `presented` is the key this hash was made from. The hashes are compared in
    /// constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = hex::encode(&sha256(presented.as_bytes()));
        bool::from(presented.as_bytes().ct_eq(self.sha256.as_bytes()))
    }
}

/// The `key_id` of a well-formed API key (`hk_` + 16 lowercase hex + `_` + 43 base64url
/// characters), else `None`. A cheap format check to find the stored hash; it proves nothing.
pub fn api_key_id(presented: &str) -> Option<&str> {
    let bytes = presented.as_bytes();
    if bytes.len() != API_KEY_LEN || !presented.starts_with(API_KEY_PREFIX) {
        return None;
    }
    let id_end = API_KEY_PREFIX.len() + KEY_ID_LEN;
    let id = bytes.get(API_KEY_PREFIX.len()..id_end)?;
    let secret = bytes.get(id_end + 1..)?;
    let well_formed = id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && bytes.get(id_end) == Some(&b'_')
        && secret.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    // Every byte checked above is ASCII, so these are character boundaries.
    if well_formed { presented.get(API_KEY_PREFIX.len()..id_end) } else { None }
}

// ---------------------------------------------------------------------------------------------
// Operator bearer tokens
// ---------------------------------------------------------------------------------------------

/// The operator's bearer tokens (e.g. the admin or producer tokens). Only their SHA-256 hashes
/// are kept in memory; `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct TokenSet(Vec<[u8; 32]>);

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet").field("count", &self.0.len()).finish()
    }
}

impl TokenSet {
    /// The set of `tokens`, each trimmed; empty entries are ignored.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(tokens: I) -> Self {
        Self(
            tokens
                .into_iter()
                .map(|token| token.as_ref().trim().to_owned())
                .filter(|token| !token.is_empty())
                .map(|token| sha256(Zeroizing::new(token).as_bytes()))
                .collect(),
        )
    }

    /// The set of a comma-separated list, as operators give it in an environment variable.
    pub fn from_comma_list(list: &str) -> Self {
        Self::new(list.split(','))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `presented` is one of the tokens. It is compared (by hash, in constant time)
    /// against every token, without stopping at a match, so timing reveals neither which token
    /// matched nor how much of one did. Always `false` for an empty set.
    pub fn contains(&self, presented: &str) -> bool {
        let presented = sha256(presented.trim().as_bytes());
        let mut found = Choice::from(0);
        for stored in &self.0 {
            found |= stored.ct_eq(&presented);
        }
        bool::from(found)
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme case-insensitive),
/// else `None`.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

// ---------------------------------------------------------------------------------------------
// Portal links
// ---------------------------------------------------------------------------------------------

/// What starts a portal link's token, so that it is told apart from an API key at a glance.
pub const PORTAL_TOKEN_PREFIX: &str = "hlp_";

/// Signs and checks the short-lived tokens of customer portal links: `hlp_` + the customer id
/// (base64url) + `.` + the expiry (Unix seconds) + `.` + HMAC-SHA256 of both (base64url), under a
/// key derived from the master key. Every publisher replica with the same master key checks any
/// replica's tokens, with nothing stored; the comparison is constant-time.
#[derive(Clone)]
pub struct PortalSigner {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for PortalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalSigner").finish_non_exhaustive()
    }
}

/// Why a portal token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalRefusal {
    /// Not a token this key signed (altered, another key's, or not a token at all).
    Invalid,
    /// Signed, but past its expiry.
    Expired,
}

impl PortalSigner {
    /// The signer of `master`'s portal tokens (its key is the master key's HMAC of a label, so
    /// no token reveals anything of the master key, nor serves as anything else).
    pub fn new(master: &MasterKey) -> Self {
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&master.0[..]).expect("HMAC takes any key");
        hmac::Mac::update(&mut mac, b"hookline portal link v1");
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&hmac::Mac::finalize(mac).into_bytes());
        Self { key }
    }

    fn tag(&self, customer_part: &str, expires: u64) -> [u8; 32] {
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&self.key[..]).expect("HMAC takes any key");
        hmac::Mac::update(&mut mac, format!("{customer_part}.{expires}").as_bytes());
        hmac::Mac::finalize(mac).into_bytes().into()
    }

    /// A token for `customer_id`, valid until `expires` (Unix seconds).
    pub fn sign(&self, customer_id: &str, expires: u64) -> String {
        let customer_part = URL_SAFE_NO_PAD.encode(customer_id);
        let tag = URL_SAFE_NO_PAD.encode(self.tag(&customer_part, expires));
        format!("{PORTAL_TOKEN_PREFIX}{customer_part}.{expires}.{tag}")
    }

    /// The customer a token was signed for, if it is this key's and not expired at `now` (Unix
    /// seconds).
    pub fn verify(&self, token: &str, now: u64) -> std::result::Result<String, PortalRefusal> {
        let rest = token.strip_prefix(PORTAL_TOKEN_PREFIX).ok_or(PortalRefusal::Invalid)?;
        let mut parts = rest.split('.');
        let (Some(customer_part), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PortalRefusal::Invalid);
        };
        let expires: u64 = expires.parse().map_err(|_| PortalRefusal::Invalid)?;
        let presented = URL_SAFE_NO_PAD.decode(tag).map_err(|_| PortalRefusal::Invalid)?;
        let expected = self.tag(customer_part, expires);
        if !bool::from(presented.ct_eq(&expected[..])) {
            return Err(PortalRefusal::Invalid);
        }
        if now >= expires {
            return Err(PortalRefusal::Expired);
        }
        let customer = URL_SAFE_NO_PAD.decode(customer_part).map_err(|_| PortalRefusal::Invalid)?;
        String::from_utf8(customer).map_err(|_| PortalRefusal::Invalid)
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

// ---------------------------------------------------------------------------------------------

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn portal_tokens_name_their_customer_until_they_expire() {
        let master = MasterKey::generate();
        let signer = PortalSigner::new(&master);
        let token = signer.sign("acme", 1_000);
        assert!(token.starts_with(PORTAL_TOKEN_PREFIX), "{token}");
        assert_eq!(signer.verify(&token, 999), Ok("acme".to_owned()));
        assert_eq!(signer.verify(&token, 1_000), Err(PortalRefusal::Expired));
        // Another master key's token, an altered customer or expiry, and junk are all invalid.
        assert_eq!(PortalSigner::new(&MasterKey::generate()).verify(&token, 0), Err(PortalRefusal::Invalid));
        let other = signer.sign("globex", 1_000);
        let (_, globex_tag) = other.rsplit_once('.').unwrap();
        let (acme_head, _) = token.rsplit_once('.').unwrap();
        assert_eq!(signer.verify(&format!("{acme_head}.{globex_tag}"), 0), Err(PortalRefusal::Invalid));
        let later = token.replace(".1000.", ".9999.");
        assert_eq!(signer.verify(&later, 0), Err(PortalRefusal::Invalid));
        for junk in ["", "hlp_", "hlp_a.b.c", "hk_abc", &format!("{token}.x")] {
            assert_eq!(signer.verify(junk, 0), Err(PortalRefusal::Invalid), "{junk:?}");
        }
        // The signer is the master key's: the same key signs alike, in another replica.
        assert_eq!(PortalSigner::new(&master).verify(&token, 0), Ok("acme".to_owned()));
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        key: MasterKeyArgs,
    }

    fn parse(args: &[&str]) -> MasterKeyArgs {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).expect("arguments parse").key
    }

    fn invalid_field(error: Error) -> (&'static str, String) {
        match error {
            Error::Invalid { field, reason } => (field, reason),
            other => panic!("expected Error::Invalid, got {other}"),
        }
    }

    // --- MasterKey ---------------------------------------------------------------------------

    #[test]
    fn master_key_base64_round_trips() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        assert_eq!(STANDARD.decode(&text).expect("base64").len(), 32);
        let again = MasterKey::from_base64(&format!("  {text}\n")).expect("parses with surrounding whitespace");
        assert_eq!(again.to_base64(), text);
        assert_ne!(MasterKey::generate().to_base64(), text, "keys are random");
    }

    #[test]
    fn master_key_rejects_bad_text_without_echoing_it() {
        for bad in ["not base64 at all!!", &STANDARD.encode([7u8; 16]), &STANDARD.encode([7u8; 33]), ""] {
            let (field, reason) = invalid_field(MasterKey::from_base64(bad).expect_err("rejected"));
            assert_eq!(field, "master_key");
            if !bad.is_empty() {
                assert!(!reason.contains(bad), "reason echoes the input: {reason}");
            }
        }
        let (_, reason) = invalid_field(MasterKey::from_base64(&STANDARD.encode([7u8; 16])).expect_err("rejected"));
        assert!(reason.contains("32 bytes") && reason.contains("16"), "{reason}");
    }

    #[test]
    fn master_key_from_file() {
        let dir = std::env::temp_dir().join(format!("hookline-secrets-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("master.key");
        let key = MasterKey::generate();
        std::fs::write(&path, format!("{}\n", key.to_base64())).expect("write key file");
        assert_eq!(MasterKey::from_file(&path).expect("reads").to_base64(), key.to_base64());

        std::fs::write(&path, "garbage").expect("write key file");
        let (field, reason) = invalid_field(MasterKey::from_file(&path).expect_err("rejected"));
        assert_eq!(field, "master_key_file");
        assert!(!reason.contains("garbage"), "{reason}");

        let (field, reason) = invalid_field(MasterKey::from_file(&dir.join("missing")).expect_err("rejected"));
        assert_eq!(field, "master_key_file");
        assert!(reason.contains("cannot read"), "{reason}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seal_open_round_trip() {
        let key = MasterKey::generate();
        for plaintext in [&b""[..], b"whsec_abc", &[0u8, 255, 1, 2][..], &[42u8; 4096][..]] {
            let sealed = key.seal("cust_1", plaintext);
            assert!(sealed.starts_with("v1:"), "{sealed}");
            assert_eq!(&key.open("cust_1", &sealed).expect("opens")[..], plaintext);
        }
        let sealed = key.seal("cust_1", "secret text".as_bytes());
        assert_eq!(key.open_string("cust_1", &sealed).expect("opens").as_str(), "secret text");
    }

    #[test]
    fn sealing_twice_gives_different_values() {
        let key = MasterKey::generate();
        assert_ne!(key.seal("c", b"same"), key.seal("c", b"same"), "fresh nonce per seal");
    }

    #[test]
    fn sealed_value_hides_the_plaintext() {
        let key = MasterKey::generate();
        let sealed = key.seal("c", b"whsec_visible_marker");
        assert!(!sealed.contains("whsec"));
        let raw = STANDARD.decode(sealed.trim_start_matches("v1:")).expect("base64");
        assert_eq!(raw.len(), NONCE_LEN + b"whsec_visible_marker".len() + TAG_LEN);
    }

    fn assert_unseal_error(result: Result<Zeroizing<Vec<u8>>>) {
        match result {
            Err(error @ Error::Unseal { .. }) => {
                let text = error.to_string();
                assert!(text.starts_with("cannot decrypt") && text.contains("with this master key"), "{text}");
            }
            Err(other) => panic!("expected Error::Unseal, got {other}"),
            Ok(_) => panic!("opened"),
        }
    }

    #[test]
    fn open_fails_with_wrong_key_or_context() {
        let key = MasterKey::generate();
        let sealed = key.seal("cust_1", b"whsec_abc");
        assert_unseal_error(MasterKey::generate().open("cust_1", &sealed));
        assert_unseal_error(key.open("cust_2", &sealed));
        assert_unseal_error(key.open("", &sealed));
    }

    #[test]
    fn open_fails_on_tampering() {
        let key = MasterKey::generate();
        let sealed = key.seal("cust_1", b"whsec_abc");
        let raw = STANDARD.decode(sealed.trim_start_matches("v1:")).expect("base64");
        for index in 0..raw.len() {
            let mut altered = raw.clone();
            altered[index] ^= 0x01;
            assert_unseal_error(key.open("cust_1", &format!("v1:{}", STANDARD.encode(&altered))));
        }
        let truncated = &raw[..raw.len() - 1];
        assert_unseal_error(key.open("cust_1", &format!("v1:{}", STANDARD.encode(truncated))));
    }

    #[test]
    fn open_fails_on_garbage() {
        let key = MasterKey::generate();
        for garbage in ["", "v1:", "v1:!!!", "v2:AAAA", "whsec_plaintext", "v1:AAAA", "v1:ü", &"v1:".repeat(100)] {
            assert_unseal_error(key.open("c", garbage));
        }
        let sealed = key.seal("c", b"x");
        assert_unseal_error(key.open("c", &sealed.replacen("v1:", "v0:", 1)));
    }

    #[test]
    fn open_string_rejects_non_utf8() {
        let key = MasterKey::generate();
        let sealed = key.seal("c", &[0xff, 0xfe]);
        assert!(matches!(key.open_string("c", &sealed), Err(Error::Unseal { .. })));
    }

    #[test]
    fn master_key_debug_is_redacted() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        let debug = format!("{key:?} {:?}", MasterKeyArgs::with_key(&key));
        assert!(!debug.contains(&text), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    // --- MasterKeyArgs -----------------------------------------------------------------------

    #[test]
    fn master_key_args_from_the_command_line() {
        let key = MasterKey::generate();
        let args = parse(&["--master-key", &key.to_base64()]);
        assert_eq!(args.require().expect("loads").to_base64(), key.to_base64());
        assert_eq!(MasterKeyArgs::from(key.clone()).require().expect("loads").to_base64(), key.to_base64());
    }

    #[test]
    fn master_key_args_from_a_file() {
        let dir = std::env::temp_dir().join(format!("hookline-secrets-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("key");
        let key = MasterKey::generate();
        std::fs::write(&path, key.to_base64()).expect("write");
        let path_text = path.to_str().expect("utf-8 temp path");
        let args = parse(&["--master-key-file", path_text]);
        assert_eq!(args.load().expect("loads").expect("set").to_base64(), key.to_base64());

        let both = parse(&["--master-key", &key.to_base64(), "--master-key-file", path_text]);
        let (field, reason) = invalid_field(both.load().expect_err("rejected"));
        assert_eq!(field, "master_key");
        assert!(reason.contains("not both"), "{reason}");
        assert!(!reason.contains(&key.to_base64()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn master_key_args_unset() {
        // Guard against a developer's environment setting the variables.
        if std::env::var_os("HOOKLINE_MASTER_KEY").is_some() || std::env::var_os("HOOKLINE_MASTER_KEY_FILE").is_some() {
            return;
        }
        let args = parse(&[]);
        assert!(args.load().expect("no error").is_none());
        let (field, reason) = invalid_field(args.require().expect_err("required"));
        assert_eq!(field, "master_key");
        assert!(reason.contains("HOOKLINE_MASTER_KEY") && reason.contains("hookline-setup keys master-key"));
        let blank = MasterKeyArgs { master_key: Some("  ".to_owned()), master_key_file: None };
        assert!(blank.load().expect("blank is unset").is_none());
    }

    #[test]
    fn master_key_args_bad_key_error_hides_it() {
        let args = parse(&["--master-key", "c2VjcmV0LWJ1dC10b28tc2hvcnQ="]);
        let (field, reason) = invalid_field(args.require().expect_err("rejected"));
        assert_eq!(field, "master_key");
        assert!(!reason.contains("c2VjcmV0"), "{reason}");
    }

    // --- API keys ----------------------------------------------------------------------------

    #[test]
    fn api_key_format() {
        let (key, hash) = ApiKey::generate();
        let text = key.expose();
        assert_eq!(text.len(), API_KEY_LEN);
        assert!(text.starts_with("hk_"));
        assert_eq!(api_key_id(text), Some(hash.key_id.as_str()));
        assert_eq!(key.key_id(), hash.key_id);
        assert_eq!(hash.key_id.len(), 16);
        assert!(hash.key_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let secret = &text[20..];
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).expect("base64url").len(), 32);
        assert_eq!(hash.sha256.len(), 64);
        assert_eq!(hash.sha256, hash.sha256.to_lowercase());
        let (other, other_hash) = ApiKey::generate();
        assert_ne!(other.expose(), text);
        assert_ne!(other_hash.key_id, hash.key_id);
    }

    #[test]
    fn api_key_hash_matches_only_its_key() {
        let (key, hash) = ApiKey::generate();
        assert!(hash.matches(key.expose()));
        let (other, _) = ApiKey::generate();
        assert!(!hash.matches(other.expose()));
        assert!(!hash.matches(""));
        assert!(!hash.matches(&key.expose()[..key.expose().len() - 1]));
        assert!(!hash.matches(&format!("{} ", key.expose())));
        let mut flipped = key.expose().to_owned();
        flipped.replace_range(30..31, if &flipped[30..31] == "A" { "B" } else { "A" });
        assert!(!hash.matches(&flipped));
    }

    #[test]
    fn api_key_hash_is_sha256_of_the_key_text() {
        // Known answer: SHA-256("abc").
        let hash = ApiKeyHash {
            key_id: "0000000000000000".to_owned(),
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(),
        };
        assert!(hash.matches("abc"));
    }

    #[test]
    fn api_key_hash_serde() {
        let (_, hash) = ApiKey::generate();
        let json = serde_json::to_value(&hash).expect("serializes");
        assert_eq!(json["key_id"], hash.key_id.as_str());
        assert_eq!(json["sha256"], hash.sha256.as_str());
        assert_eq!(serde_json::from_value::<ApiKeyHash>(json).expect("deserializes"), hash);
    }

    #[test]
    fn api_key_id_format_checks() {
        let secret = "A".repeat(43);
        let good = format!("hk_0123456789abcdef_{secret}");
        assert_eq!(api_key_id(&good), Some("0123456789abcdef"));
        assert_eq!(api_key_id(&format!("hk_0123456789abcdef_{}", "-_aZ9".repeat(8) + "abc")), Some("0123456789abcdef"));
        let bad = [
            String::new(),
            "hk_".to_owned(),
            format!("HK_0123456789abcdef_{secret}"), // prefix is case-sensitive
            format!("hk_0123456789ABCDEF_{secret}"), // key id is lowercase
            format!("hk_0123456789abcdeg_{secret}"), // not hex
            format!("hk_0123456789abcde_{secret}A"), // key id too short
            format!("hk_0123456789abcdef-{secret}"), // wrong separator
            format!("hk_0123456789abcdef_{}", "A".repeat(42)), // secret too short
            format!("hk_0123456789abcdef_{}", "A".repeat(44)), // secret too long
            format!("hk_0123456789abcdef_{}=", "A".repeat(42)), // padding
            format!("hk_0123456789abcdef_{}+", "A".repeat(42)), // standard alphabet
            format!(" {good}"),
            format!("hk_0123456789abcdef_{}é", "A".repeat(41)), // multi-byte, right byte length
            format!("hk_0123456789abcdé_{secret}"),
            "Bearer hk_".to_owned(),
        ];
        for text in &bad {
            assert_eq!(api_key_id(text), None, "{text:?}");
        }
        // No panics on arbitrary byte lengths and character boundaries.
        for len in 0..80 {
            let _ = api_key_id(&"é".repeat(len));
            let _ = api_key_id(&"_".repeat(len));
            let _ = api_key_id(&format!("hk_{}", "ü".repeat(len)));
        }
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let (key, _) = ApiKey::generate();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.expose()[20..]), "{debug}");
        assert!(debug.contains(key.key_id()) && debug.contains("<redacted>"), "{debug}");
    }

    // --- Tokens ------------------------------------------------------------------------------

    #[test]
    fn token_set_membership() {
        let tokens = TokenSet::new(["alpha", " beta ", "", "   "]);
        assert_eq!(tokens.len(), 2);
        assert!(!tokens.is_empty());
        assert!(tokens.contains("alpha"));
        assert!(tokens.contains("beta"));
        assert!(!tokens.contains("gamma"));
        assert!(!tokens.contains(""));
        assert!(!tokens.contains("alph"));
        assert!(!tokens.contains("alphaa"));
        assert!(!tokens.contains("ALPHA"));
    }

    #[test]
    fn token_set_from_comma_list() {
        let tokens = TokenSet::from_comma_list("one, two,,three ,");
        assert_eq!(tokens.len(), 3);
        assert!(tokens.contains("two") && tokens.contains("three"));
        assert!(TokenSet::from_comma_list("").is_empty());
        assert!(TokenSet::from_comma_list(" , ").is_empty());
    }

    #[test]
    fn empty_token_set_accepts_nothing() {
        let tokens = TokenSet::default();
        assert!(tokens.is_empty());
        assert!(!tokens.contains(""));
        assert!(!tokens.contains("anything"));
        assert!(!TokenSet::new(Vec::<String>::new()).contains(""));
    }

    #[test]
    fn token_set_debug_shows_only_the_count() {
        let debug = format!("{:?}", TokenSet::new(["s3cr3t-token", "another"]));
        assert_eq!(debug, "TokenSet { count: 2 }");
    }

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer hk_x_y"), Some("hk_x_y"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token("Bearér abc"), None);
    }
}

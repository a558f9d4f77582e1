//! Per-tenant encryption of delivery bodies: RFC 7516 JWE, compact serialization, key management
//! `RSA-OAEP-256` (RFC 7518 §4.3: RSAES-OAEP with SHA-256 as both the OAEP hash and MGF1's) and
//! content encryption `A256GCM`. A customer that uploaded an RSA public key receives bodies of
//! type [`CONTENT_TYPE`] that only its private key opens; the protected header carries
//! `"kid"` (the key's RFC 7638 thumbprint, see [`PublicKey::kid`]) and
//! `"cty": "application/json"` (the plaintext is the usual JSON envelope).
//!
//! # Why the content-encryption key is cached
//!
//! RSA is expensive. Measured in a release build on a 2-core machine, one RSA-OAEP-256
//! encryption takes about 45 µs with a 2048-bit key and 180 µs with a 4096-bit key, and one
//! decryption 1.6 ms and 8 ms; AES-256-GCM of a 1 KiB body takes about 1 µs. One RSA operation per
//! message would therefore dominate the sender's cost and cap a customer's receiver at a few
//! hundred (4096-bit) to a few thousand (2048-bit) messages per second per core. So the
//! [`Encryptor`] keeps, per recipient `kid`, a random 256-bit content-encryption key (CEK)
//! together with its RSA-OAEP-256-wrapped form (the JWE "encrypted_key" segment) and the base64url
//! protected header. Each message then costs only AES-256-GCM under a fresh random 96-bit IV,
//! with the ASCII of the base64url protected header as additional authenticated data (RFC 7516
//! §5.1 step 14), whatever the payload's size.
//!
//! A CEK is replaced after [`ContentKeyPolicy::max_uses`] messages or
//! [`ContentKeyPolicy::max_age`], whichever comes first. The defaults (one million messages, one
//! hour) stay far inside NIST SP 800-38D's limit of 2^32 random 96-bit IVs per key, and bound how
//! much traffic one leaked CEK exposes. A recipient whose key changed has a new `kid` and so gets
//! a new CEK at once.
//!
//! The [`Decryptor`] symmetrically remembers the unwrapped CEK of the last 1024 distinct
//! "encrypted_key" segments, so the receiver pays one RSA decryption per CEK, not per message.
//!
//! Every message is still a standalone, standard JWE: any JOSE library (`jose`, `jwcrypto`,
//! `nimbus-jose-jwt`, ...) decrypts it with the private key alone, and this [`Decryptor`] opens
//! JWEs from any of them that use the same algorithms.
//!
//! # Side channels
//!
//! The `rsa` crate's 0.10 line is constant-time (built on `crypto-bigint`), so the Marvin timing
//! attack of RUSTSEC-2023-0071, which affected `rsa` 0.9, does not apply. On top of that, a failed
//! RSA-OAEP unwrap is not reported as such: a random CEK is used instead and the AES-GCM tag check
//! fails, as RFC 7516 §11.5 recommends, so every failure looks alike ([`Error::Decrypt`]). CEKs are
//! wiped from memory when dropped.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, Nonce};
use aes_gcm::{Aes256Gcm, KeyInit, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::clip;
use crate::{Error, PrivateKey, PublicKey, Result};

/// The `content-type` of an encrypted delivery body (RFC 7516 §9: compact serialization).
pub const CONTENT_TYPE: &str = "application/jose";

/// The key management algorithm: RSAES-OAEP with SHA-256 and MGF1 with SHA-256.
pub const ALGORITHM: &str = "RSA-OAEP-256";
/// The content encryption algorithm: AES-256 in Galois/Counter Mode.
pub const ENCRYPTION: &str = "A256GCM";
/// The `cty` header: what the plaintext is.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/json";

/// Bytes of an A256GCM content-encryption key.
const CEK_BYTES: usize = 32;
/// Bytes of an AES-GCM initialization vector (96 bits, the size GCM is designed for).
const IV_BYTES: usize = 12;
/// Bytes of an AES-GCM authentication tag.
const TAG_BYTES: usize = 16;
/// How many unwrapped CEKs a [`Decryptor`] remembers.
const DECRYPTOR_CACHE_CAPACITY: usize = 1024;
/// An [`Encryptor`] drops expired CEKs of recipients it no longer sends to once it holds this
/// many, and then whenever the count has doubled since the last sweep.
const ENCRYPTOR_FIRST_SWEEP: usize = 256;

/// When the [`Encryptor`] replaces a recipient's content-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentKeyPolicy {
    /// Messages encrypted under one CEK before a new one is made (0 behaves as 1: one CEK, and
    /// so one RSA operation, per message).
    pub max_uses: u64,
    /// Age after which a CEK is no longer used.
    pub max_age: Duration,
}

impl Default for ContentKeyPolicy {
    fn default() -> Self {
        Self { max_uses: 1_000_000, max_age: Duration::from_secs(60 * 60) }
    }
}

/// The JOSE protected header this module writes. Field order is the serialization order.
#[derive(Serialize)]
struct ProtectedHeader<'a> {
    alg: &'static str,
    enc: &'static str,
    cty: &'static str,
    kid: &'a str,
}

/// One recipient's current CEK, ready to encrypt messages.
struct ContentKey {
    /// Holds the CEK (its key schedule is wiped on drop: `aes-gcm`'s `zeroize` feature).
    cipher: Aes256Gcm,
    /// Base64url of the protected header; also the AEAD's additional authenticated data.
    protected_header: String,
    /// Base64url of the RSA-OAEP-256-wrapped CEK.
    encrypted_key: String,
    created: Instant,
}

impl ContentKey {
    /// A fresh random CEK, wrapped for `recipient`: the one RSA operation.
    fn new(recipient: &PublicKey) -> Result<Self> {
        let mut cek = Zeroizing::new([0_u8; CEK_BYTES]);
        rand::fill(cek.as_mut_slice());
        let wrapped = recipient
            .rsa()
            .oaep_encrypt::<Sha256>(cek.as_slice())
            .map_err(|_| Error::Crypto("RSA-OAEP encryption of the content key failed"))?;
        let header =
            ProtectedHeader { alg: ALGORITHM, enc: ENCRYPTION, cty: PAYLOAD_CONTENT_TYPE, kid: recipient.kid() };
        let header = serde_json::to_vec(&header).map_err(|_| Error::Crypto("cannot serialize the JWE header"))?;
        Ok(Self {
            cipher: cipher(&cek)?,
            protected_header: URL_SAFE_NO_PAD.encode(header),
            encrypted_key: URL_SAFE_NO_PAD.encode(wrapped),
            created: Instant::now(),
        })
    }

    /// One JWE in compact serialization: header.encrypted_key.iv.ciphertext.tag.
    fn seal(&self, plaintext: &[u8]) -> Result<String> {
        let mut iv = [0_u8; IV_BYTES];
        rand::fill(&mut iv);
        let mut buffer = plaintext.to_vec();
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(iv),
                self.protected_header.as_bytes(),
                buffer.as_mut_slice().into(),
            )
            .map_err(|_| Error::Crypto("AES-GCM encryption failed"))?;

        let encoded_len = |bytes: usize| bytes.div_ceil(3) * 4;
        let mut compact = String::with_capacity(
            self.protected_header.len()
                + self.encrypted_key.len()
                + encoded_len(IV_BYTES)
                + encoded_len(buffer.len())
                + encoded_len(TAG_BYTES)
                + 4,
        );
        compact.push_str(&self.protected_header);
        compact.push('.');
        compact.push_str(&self.encrypted_key);
        compact.push('.');
        URL_SAFE_NO_PAD.encode_string(iv, &mut compact);
        compact.push('.');
        URL_SAFE_NO_PAD.encode_string(&buffer, &mut compact);
        compact.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut compact);
        Ok(compact)
    }
}

/// A recipient's CEK and how many messages it has encrypted.
struct CachedKey {
    key: Arc<ContentKey>,
    uses: u64,
}

#[derive(Default)]
struct EncryptorState {
    by_kid: HashMap<String, CachedKey>,
    /// Size of `by_kid` at which expired keys are next swept out.
    sweep_at: usize,
}

/// Encrypts delivery bodies for customers' public keys, reusing each recipient's CEK as its
/// [`ContentKeyPolicy`] allows. One instance is shared (it is `Send + Sync`) by every partition
/// worker of a consumer; the lock is held only to look a key up, never during RSA or AES work.
pub struct Encryptor {
    policy: ContentKeyPolicy,
    state: Mutex<EncryptorState>,
}

impl Encryptor {
    /// An encryptor replacing CEKs according to `policy`.
    pub fn new(policy: ContentKeyPolicy) -> Self {
        let state = EncryptorState { by_kid: HashMap::new(), sweep_at: ENCRYPTOR_FIRST_SWEEP };
        Self { policy, state: Mutex::new(state) }
    }

    /// The policy this encryptor follows.
    pub fn policy(&self) -> ContentKeyPolicy {
        self.policy
    }

    /// `plaintext` as a JWE for `recipient`, in compact serialization (send it with
    /// `content-type: application/jose`).
    pub fn encrypt(&self, recipient: &PublicKey, plaintext: &[u8]) -> Result<String> {
        self.content_key(recipient)?.seal(plaintext)
    }

    /// The recipient's current CEK, counting one use; a new one when there is none or it is used
    /// up or too old.
    fn content_key(&self, recipient: &PublicKey) -> Result<Arc<ContentKey>> {
        let now = Instant::now();
        if let Some(cached) = self.state().by_kid.get_mut(recipient.kid())
            && cached.uses < self.policy.max_uses
            && now.saturating_duration_since(cached.key.created) < self.policy.max_age
        {
            cached.uses += 1;
            return Ok(Arc::clone(&cached.key));
        }
        // The RSA operation runs outside the lock, so other partitions keep encrypting meanwhile.
        // Two workers racing here both make a CEK and the last one stays: harmless.
        let fresh = Arc::new(ContentKey::new(recipient)?);
        let mut state = self.state();
        if state.by_kid.len() >= state.sweep_at {
            let max_age = self.policy.max_age;
            state.by_kid.retain(|_, cached| now.saturating_duration_since(cached.key.created) < max_age);
            state.sweep_at = (state.by_kid.len() * 2).max(ENCRYPTOR_FIRST_SWEEP);
        }
        state.by_kid.insert(recipient.kid().to_owned(), CachedKey { key: Arc::clone(&fresh), uses: 1 });
        Ok(fresh)
    }

    fn state(&self) -> MutexGuard<'_, EncryptorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Encryptor {
    fn default() -> Self {
        Self::new(ContentKeyPolicy::default())
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("policy", &self.policy)
            .field("recipients", &self.state().by_kid.len())
            .finish_non_exhaustive()
    }
}

/// The protected header of a received JWE: only what is checked. Unknown members are ignored
/// unless listed in `crit` (RFC 7516 §4.1.13).
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: Option<String>,
    enc: Option<String>,
    kid: Option<String>,
    zip: Option<serde::de::IgnoredAny>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Default)]
struct DecryptorCache {
    by_encrypted_key: HashMap<String, Arc<Aes256Gcm>>,
    /// Insertion order, to evict the oldest entry when full.
    order: VecDeque<String>,
}

/// Opens JWEs encrypted for one private key (`RSA-OAEP-256` + `A256GCM`, compact serialization),
/// remembering recently unwrapped CEKs. `Send + Sync`; any input yields a typed error, never a
/// panic.
pub struct Decryptor {
    key: PrivateKey,
    cache: Mutex<DecryptorCache>,
}

impl Decryptor {
    /// A decryptor for JWEs encrypted to `key`'s public key.
    pub fn new(key: PrivateKey) -> Self {
        Self { key, cache: Mutex::default() }
    }

    /// The kid of the key this decryptor holds.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The plaintext of `compact`, after checking that it uses `RSA-OAEP-256` and `A256GCM`, that
    /// its `kid` (when present) is this key's, and that it is authentic. Surrounding whitespace
    /// is ignored.
    pub fn decrypt(&self, compact: &str) -> Result<Vec<u8>> {
        let mut segments = compact.trim().split('.');
        let (Some(header), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) =
            (segments.next(), segments.next(), segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(Error::MalformedJwe("a compact JWE has five base64url segments separated by dots"));
        };

        self.check_header(header)?;
        let iv: [u8; IV_BYTES] = decode(iv, "the initialization vector is not base64url")?
            .try_into()
            .map_err(|_| Error::MalformedJwe("the initialization vector of A256GCM must be 96 bits"))?;
        let tag: [u8; TAG_BYTES] = decode(tag, "the authentication tag is not base64url")?
            .try_into()
            .map_err(|_| Error::MalformedJwe("the authentication tag of A256GCM must be 128 bits"))?;
        let mut plaintext = decode(ciphertext, "the ciphertext is not base64url")?;
        let cipher = self.content_key(encrypted_key)?;
        cipher
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(iv),
                header.as_bytes(),
                plaintext.as_mut_slice().into(),
                &Tag::from(tag),
            )
            .map_err(|_| Error::Decrypt)?;
        Ok(plaintext)
    }

    fn check_header(&self, encoded: &str) -> Result<()> {
        let json = decode(encoded, "the protected header is not base64url")?;
        let header: ReceivedHeader = serde_json::from_slice(&json).map_err(|_| {
            Error::MalformedJwe("the protected header is not a JSON object with string members alg, enc and kid")
        })?;
        let alg = header.alg.ok_or(Error::MalformedJwe("the protected header has no alg"))?;
        if alg != ALGORITHM {
            return Err(Error::UnsupportedJwe { parameter: "alg", value: clip(&alg), expected: ALGORITHM });
        }
        let enc = header.enc.ok_or(Error::MalformedJwe("the protected header has no enc"))?;
        if enc != ENCRYPTION {
            return Err(Error::UnsupportedJwe { parameter: "enc", value: clip(&enc), expected: ENCRYPTION });
        }
        if header.zip.is_some() {
            return Err(Error::UnsupportedJwe {
                parameter: "zip",
                value: "(present)".into(),
                expected: "no compression",
            });
        }
        if header.crit.is_some() {
            return Err(Error::UnsupportedJwe {
                parameter: "crit",
                value: "(present)".into(),
                expected: "no critical extensions",
            });
        }
        match header.kid {
            Some(kid) if kid != self.key.kid() => {
                Err(Error::WrongRecipient { kid: clip(&kid), expected: self.key.kid().to_owned() })
            }
            _ => Ok(()),
        }
    }

    /// The AES-GCM cipher for the CEK wrapped in `encrypted_key`: remembered, or unwrapped now.
    fn content_key(&self, encrypted_key: &str) -> Result<Arc<Aes256Gcm>> {
        if let Some(cipher) = self.cache().by_encrypted_key.get(encrypted_key) {
            return Ok(Arc::clone(cipher));
        }
        let wrapped = decode(encrypted_key, "the encrypted key is not base64url")?;
        let unwrapped = self.key.rsa().oaep_decrypt::<Sha256>(&wrapped).map(Zeroizing::new);
        let cek: Option<Zeroizing<[u8; CEK_BYTES]>> =
            unwrapped.ok().and_then(|cek| <[u8; CEK_BYTES]>::try_from(cek.as_slice()).ok().map(Zeroizing::new));
        let Some(cek) = cek else {
            // RFC 7516 §11.5: carry on with a random CEK, so that the failure surfaces as the same
            // authentication error as any tampering, not as a distinguishable unwrap error.
            let mut random = Zeroizing::new([0_u8; CEK_BYTES]);
            rand::fill(random.as_mut_slice());
            return Ok(Arc::new(cipher(&random)?));
        };
        let cipher = Arc::new(cipher(&cek)?);
        let mut cache = self.cache();
        if !cache.by_encrypted_key.contains_key(encrypted_key) {
            if cache.order.len() >= DECRYPTOR_CACHE_CAPACITY
                && let Some(oldest) = cache.order.pop_front()
            {
                cache.by_encrypted_key.remove(&oldest);
            }
            cache.order.push_back(encrypted_key.to_owned());
            cache.by_encrypted_key.insert(encrypted_key.to_owned(), Arc::clone(&cipher));
        }
        Ok(cipher)
    }

    fn cache(&self) -> MutexGuard<'_, DecryptorCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("kid", &self.key.kid())
            .field("cached_keys", &self.cache().order.len())
            .finish_non_exhaustive()
    }
}

fn cipher(cek: &[u8; CEK_BYTES]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(cek).map_err(|_| Error::Crypto("AES-256-GCM takes a 256-bit key"))
}

/// A base64url segment (no padding, as RFC 7515 §2 requires); `not_base64url` is the error.
fn decode(segment: &str, not_base64url: &'static str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| Error::MalformedJwe(not_base64url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;

    fn header_of(compact: &str) -> serde_json::Value {
        let encoded = compact.split('.').next().expect("header segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("JSON")
    }

    fn segments(compact: &str) -> Vec<&str> {
        compact.split('.').collect()
    }

    fn decryptor() -> Decryptor {
        Decryptor::new(test_key().clone())
    }

    #[test]
    fn is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Encryptor>();
        shared::<Decryptor>();
    }

    #[test]
    fn round_trips_with_the_documented_header() {
        let recipient = test_key().public_key();
        let encryptor = Encryptor::default();
        let body = br#"{"type":"order.created","timestamp":"2025-01-01T00:00:00Z","data":{"n":1}}"#;
        let compact = encryptor.encrypt(&recipient, body).expect("encrypt");
        assert_eq!(segments(&compact).len(), 5);
        assert_eq!(
            header_of(&compact),
            serde_json::json!({
                "alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "application/json", "kid": recipient.kid()
            })
        );
        assert_eq!(decryptor().decrypt(&compact).expect("decrypt"), body);
        assert_eq!(decryptor().decrypt(&format!("{compact}\r\n")).expect("trailing newline"), body);
        assert_eq!(decryptor().decrypt(&encryptor.encrypt(&recipient, b"").expect("empty")).expect("empty"), b"");
    }

    #[test]
    fn large_payloads_round_trip() {
        let recipient = test_key().public_key();
        let body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let compact = Encryptor::default().encrypt(&recipient, &body).expect("encrypt");
        assert_eq!(decryptor().decrypt(&compact).expect("decrypt"), body);
    }

    #[test]
    fn the_cek_is_reused_with_fresh_ivs_until_the_policy_replaces_it() {
        let recipient = test_key().public_key();
        let encryptor = Encryptor::new(ContentKeyPolicy { max_uses: 3, max_age: Duration::from_secs(3600) });
        let messages: Vec<String> = (0..7)
            .map(|n| encryptor.encrypt(&recipient, format!("message {n}").as_bytes()).expect("encrypt"))
            .collect();
        let wrapped: Vec<&str> = messages.iter().map(|m| segments(m)[1]).collect();
        // Uses 1-3 share a CEK, 4-6 the next, 7 a third.
        assert!(wrapped[0] == wrapped[1] && wrapped[1] == wrapped[2]);
        assert!(wrapped[3] == wrapped[4] && wrapped[4] == wrapped[5]);
        assert!(wrapped[2] != wrapped[3] && wrapped[5] != wrapped[6] && wrapped[0] != wrapped[6]);
        let ivs: std::collections::HashSet<&str> = messages.iter().map(|m| segments(m)[2]).collect();
        assert_eq!(ivs.len(), messages.len(), "every message has its own IV");

        let decryptor = decryptor();
        for (n, message) in messages.iter().enumerate() {
            assert_eq!(decryptor.decrypt(message).expect("decrypt"), format!("message {n}").as_bytes());
        }
        assert_eq!(decryptor.cache().order.len(), 3, "one RSA unwrap per CEK");
    }

    #[test]
    fn zero_age_or_uses_means_a_new_cek_per_message() {
        let recipient = test_key().public_key();
        for policy in [
            ContentKeyPolicy { max_uses: 10, max_age: Duration::ZERO },
            ContentKeyPolicy { max_uses: 0, max_age: Duration::from_secs(60) },
        ] {
            let encryptor = Encryptor::new(policy);
            let first = encryptor.encrypt(&recipient, b"a").expect("encrypt");
            let second = encryptor.encrypt(&recipient, b"a").expect("encrypt");
            assert_ne!(segments(&first)[1], segments(&second)[1], "{policy:?}");
        }
    }

    #[test]
    fn each_recipient_has_its_own_cek() {
        let other = PrivateKey::generate(2048).expect("second key");
        let encryptor = Encryptor::default();
        let to_test_key = encryptor.encrypt(&test_key().public_key(), b"a").expect("encrypt");
        let to_other = encryptor.encrypt(&other.public_key(), b"b").expect("encrypt");
        assert_ne!(segments(&to_test_key)[1], segments(&to_other)[1]);
        assert_eq!(header_of(&to_other)["kid"], other.kid());
        assert!(format!("{encryptor:?}").contains("recipients: 2"));

        // The other key's receiver is told the message is not for it, before any RSA work.
        let other_kid = other.kid().to_owned();
        assert_eq!(
            Decryptor::new(other).decrypt(&to_test_key),
            Err(Error::WrongRecipient { kid: test_key().kid().to_owned(), expected: other_kid })
        );
    }

    #[test]
    fn tampering_with_any_segment_is_detected() {
        let recipient = test_key().public_key();
        let compact = Encryptor::default().encrypt(&recipient, b"{\"secret\":true}").expect("encrypt");
        let decryptor = decryptor();
        for index in 1..5 {
            let mut parts: Vec<String> = segments(&compact).iter().map(|s| (*s).to_owned()).collect();
            let mut bytes = URL_SAFE_NO_PAD.decode(&parts[index]).expect("segment");
            bytes[0] ^= 1;
            parts[index] = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(decryptor.decrypt(&parts.join(".")), Err(Error::Decrypt), "segment {index}");
        }
        // A header changed in a way that still passes the checks (AAD mismatch).
        let other_header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{}"}}"#, recipient.kid()));
        let rest = compact.split_once('.').expect("dot").1;
        assert_eq!(decryptor.decrypt(&format!("{other_header}.{rest}")), Err(Error::Decrypt));
        // The failed unwraps were not cached; the genuine message still opens.
        assert_eq!(decryptor.decrypt(&compact).expect("genuine"), b"{\"secret\":true}");
    }

    #[test]
    fn unsupported_and_malformed_jwes_get_typed_errors() {
        let decryptor = decryptor();
        let kid = test_key().kid();
        let with_header =
            |json: &str| format!("{}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA", URL_SAFE_NO_PAD.encode(json));
        let cases: Vec<(String, Error)> = vec![
            (String::new(), Error::MalformedJwe("a compact JWE has five base64url segments separated by dots")),
            ("a.b.c".into(), Error::MalformedJwe("a compact JWE has five base64url segments separated by dots")),
            ("a.b.c.d.e.f".into(), Error::MalformedJwe("a compact JWE has five base64url segments separated by dots")),
            ("!!.b.c.d.e".into(), Error::MalformedJwe("the protected header is not base64url")),
            (
                with_header("[1]"),
                Error::MalformedJwe("the protected header is not a JSON object with string members alg, enc and kid"),
            ),
            (
                with_header(r#"{"alg":"RSA-OAEP-256","alg":"dir","enc":"A256GCM"}"#),
                Error::MalformedJwe("the protected header is not a JSON object with string members alg, enc and kid"),
            ),
            (with_header(r#"{"enc":"A256GCM"}"#), Error::MalformedJwe("the protected header has no alg")),
            (with_header(r#"{"alg":"RSA-OAEP-256"}"#), Error::MalformedJwe("the protected header has no enc")),
            (
                with_header(r#"{"alg":"RSA1_5","enc":"A256GCM"}"#),
                Error::UnsupportedJwe { parameter: "alg", value: "RSA1_5".into(), expected: "RSA-OAEP-256" },
            ),
            (
                with_header(r#"{"alg":"RSA-OAEP-256","enc":"A128CBC-HS256"}"#),
                Error::UnsupportedJwe { parameter: "enc", value: "A128CBC-HS256".into(), expected: "A256GCM" },
            ),
            (
                with_header(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","zip":"DEF"}"#),
                Error::UnsupportedJwe { parameter: "zip", value: "(present)".into(), expected: "no compression" },
            ),
            (
                with_header(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","crit":["exp"],"exp":1}"#),
                Error::UnsupportedJwe {
                    parameter: "crit",
                    value: "(present)".into(),
                    expected: "no critical extensions",
                },
            ),
            (
                with_header(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"someone-else"}"#),
                Error::WrongRecipient { kid: "someone-else".into(), expected: kid.to_owned() },
            ),
            (
                format!(
                    "{}.AAAA.AAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#)
                ),
                Error::MalformedJwe("the initialization vector of A256GCM must be 96 bits"),
            ),
            (
                format!(
                    "{}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAA",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#)
                ),
                Error::MalformedJwe("the authentication tag of A256GCM must be 128 bits"),
            ),
            (
                format!(
                    "{}.AA=A.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#)
                ),
                Error::MalformedJwe("the encrypted key is not base64url"),
            ),
            // Well-formed, but the "encrypted key" is not an RSA ciphertext for this key.
            (with_header(&format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{kid}"}}"#)), Error::Decrypt),
        ];
        for (input, expected) in cases {
            assert_eq!(decryptor.decrypt(&input), Err(expected), "{input}");
        }
        let long_alg = "x".repeat(10_000);
        let error =
            decryptor.decrypt(&with_header(&format!(r#"{{"alg":"{long_alg}","enc":"A256GCM"}}"#))).expect_err("alg");
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let decryptor = decryptor();
        let valid = Encryptor::default().encrypt(&test_key().public_key(), b"x").expect("encrypt");
        let mut seed = 0x9e37_79b9_u32;
        for round in 0..300 {
            let mut text: Vec<u8> = valid.as_bytes().to_vec();
            for _ in 0..=(round % 8) {
                // xorshift: deterministic, dependency-free mutations.
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % text.len();
                match seed % 3 {
                    0 => text[at] = b"A.-_=!\x00\xff"[(seed >> 8) as usize % 8],
                    1 => text.truncate(at),
                    _ => text.insert(at, b'.'),
                }
                if text.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&text);
            assert!(decryptor.decrypt(&text).is_err() || text == valid, "{text}");
        }
    }

    #[test]
    fn the_decryptor_cache_is_bounded() {
        let decryptor = decryptor();
        let recipient = test_key().public_key();
        let encryptor = Encryptor::new(ContentKeyPolicy { max_uses: 1, ..ContentKeyPolicy::default() });
        // Filling 1024 entries would take 1024 RSA decryptions; plant cheap entries instead.
        {
            let mut cache = decryptor.cache();
            for n in 0..DECRYPTOR_CACHE_CAPACITY {
                let name = format!("planted{n}");
                cache.order.push_back(name.clone());
                cache.by_encrypted_key.insert(name, Arc::new(cipher(&[0; CEK_BYTES]).expect("cipher")));
            }
        }
        let compact = encryptor.encrypt(&recipient, b"x").expect("encrypt");
        assert_eq!(decryptor.decrypt(&compact).expect("decrypt"), b"x");
        let cache = decryptor.cache();
        assert_eq!(cache.order.len(), DECRYPTOR_CACHE_CAPACITY);
        assert_eq!(cache.by_encrypted_key.len(), DECRYPTOR_CACHE_CAPACITY);
        assert!(!cache.by_encrypted_key.contains_key("planted0"), "the oldest entry was evicted");
        assert!(cache.by_encrypted_key.contains_key(segments(&compact)[1]));
    }
}

//! Customers' RSA keys: the public key a customer uploads so that Hookline encrypts its deliveries,
//! and the private key its receiver decrypts them with.
//!
//! Keys are read from PEM, in the forms OpenSSL and every JOSE library write: SPKI
//! (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) for public keys, PKCS#8
//! (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) for private ones. Only RSA keys of
//! [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits are accepted: smaller ones no longer offer 112-bit
//! security (NIST SP 800-57), larger ones are refused by the RSA implementation.
//!
//! A key is named by its `kid`, the RFC 7638 JWK thumbprint (SHA-256 of the canonical JWK
//! `{"e","kty","n"}`, base64url without padding): the same value `jose`, `node-jose`, `jwcrypto`
//! and others compute, so a customer can check which key a delivery was encrypted for.
//!
//! Errors name the field (`public_key` or `private_key`) and say what is wrong, never quoting
//! key material.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::der::Decode as _;
use rsa::pkcs1::{LineEnding, RsaPrivateKeyRef, RsaPublicKeyRef};
use rsa::pkcs8::{
    EncodePrivateKey as _, EncodePublicKey as _, ObjectIdentifier, PrivateKeyInfoRef, SubjectPublicKeyInfoRef,
};
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (the RSA implementation's own limit).
pub const MAX_RSA_BITS: usize = 8192;

const PUBLIC_FIELD: &str = "public_key";
const PRIVATE_FIELD: &str = "private_key";

/// A customer's RSA public key, with its RFC 7638 thumbprint.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::PublicKey,
    kid: String,
    bits: usize,
}

impl PublicKey {
    /// Reads an RSA public key from PEM: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`), of at least [`MIN_RSA_BITS`] bits.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let invalid = |reason: &str| invalid(PUBLIC_FIELD, reason);
        let (label, der) = decode_pem(pem, PUBLIC_FIELD)?;
        let pkcs1_der = match label.as_str() {
            "PUBLIC KEY" => {
                let info = SubjectPublicKeyInfoRef::from_der(&der)
                    .map_err(|_| invalid("the PUBLIC KEY block is not a valid SubjectPublicKeyInfo"))?;
                require_rsa(info.algorithm.oid, PUBLIC_FIELD)?;
                info.subject_public_key.as_bytes().ok_or_else(|| invalid("the RSA public key is malformed"))?
            }
            "RSA PUBLIC KEY" => der.as_slice(),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                return Err(invalid(
                    "this is a private key, which must stay with its owner; give the public key instead \
                     (`openssl pkey -in private.pem -pubout`)",
                ));
            }
            "CERTIFICATE" => {
                return Err(invalid(
                    "this is a certificate; give its public key (`openssl x509 -in cert.pem -pubkey -noout`)",
                ));
            }
            other => return Err(unexpected_label(PUBLIC_FIELD, other, "`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`")),
        };
        let parts = RsaPublicKeyRef::from_der(pkcs1_der).map_err(|_| invalid("the RSA public key is malformed"))?;
        check_bits(bit_length(parts.modulus.as_bytes()), PUBLIC_FIELD)?;
        let key = rsa::PublicKey::try_from(parts).map_err(|_| invalid("the RSA public key is not a usable key"))?;
        Ok(Self::from_rsa(key))
    }

    /// The normalized form Hookline stores: SPKI PEM (`BEGIN PUBLIC KEY`), LF line endings.
    pub fn to_spki_pem(&self) -> String {
        // Encoding a valid two-component public key cannot fail.
        self.key.to_public_key_pem(LineEnding::LF).unwrap_or_else(|_| unreachable!("an RSA public key encodes"))
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url without padding).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    pub(crate) fn from_rsa(key: rsa::PublicKey) -> Self {
        let bits = key.n().bit_width() as usize;
        let kid = thumbprint(&key);
        Self { key, kid, bits }
    }

    pub(crate) fn rsa(&self) -> &rsa::PublicKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("bits", &self.bits).finish()
    }
}

/// Two public keys are equal when they are the same key (same thumbprint).
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
    }
}

impl Eq for PublicKey {}

/// A receiver's RSA private key. Every copy is wiped from memory when dropped; `Debug` shows only
/// the kid.
#[derive(Clone)]
pub struct PrivateKey {
    key: rsa::PrivateKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Reads an RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`), unencrypted, of at least [`MIN_RSA_BITS`] bits.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let invalid = |reason: &str| invalid(PRIVATE_FIELD, reason);
        let (label, der) = decode_pem(pem, PRIVATE_FIELD)?;
        let pkcs1_der = match label.as_str() {
            "PRIVATE KEY" => {
                let info = PrivateKeyInfoRef::from_der(&der)
                    .map_err(|_| invalid("the PRIVATE KEY block is not a valid PKCS#8 PrivateKeyInfo"))?;
                require_rsa(info.algorithm.oid, PRIVATE_FIELD)?;
                info.private_key.as_bytes()
            }
            "RSA PRIVATE KEY" => der.as_slice(),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(invalid(
                    "the key is password-protected; store it unencrypted with restricted file permissions \
                     (`openssl pkey -in encrypted.pem -out private.pem`)",
                ));
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                return Err(invalid("this is a public key; decrypting needs the matching private key"));
            }
            other => {
                return Err(unexpected_label(PRIVATE_FIELD, other, "`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`"));
            }
        };
        let parts = RsaPrivateKeyRef::from_der(pkcs1_der)
            .map_err(|_| invalid("the RSA private key is malformed (or has more than two primes)"))?;
        check_bits(bit_length(parts.modulus.as_bytes()), PRIVATE_FIELD)?;
        let key = rsa::PrivateKey::try_from(parts)
            .map_err(|_| invalid("the RSA private key is inconsistent (its components do not form a valid key)"))?;
        Ok(Self::from_rsa(key))
    }

    /// A new key pair with a modulus of `bits` bits ([`MIN_RSA_BITS`] to [`MAX_RSA_BITS`]) and
    /// public exponent 65537. Takes a fraction of a second for 2048 bits, a few seconds for 4096.
    pub fn generate(bits: usize) -> Result<Self> {
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(invalid(
                "bits",
                &format!("cannot generate a {bits}-bit key; choose {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"),
            ));
        }
        let key =
            rsa::PrivateKey::new(&mut rand::rng(), bits).map_err(|_| Error::Crypto("RSA key generation failed"))?;
        Ok(Self::from_rsa(key))
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`, unencrypted, LF line endings). This is the
    /// secret itself: write it only to a file readable by its owner, and drop it soon.
    pub fn to_pkcs8_pem(&self) -> String {
        // Encoding a valid two-prime private key cannot fail.
        let pem = self.key.to_pkcs8_pem(LineEnding::LF).unwrap_or_else(|_| unreachable!("an RSA private key encodes"));
        pem.as_str().to_owned()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The key id of the matching public key.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    fn from_rsa(key: rsa::PrivateKey) -> Self {
        let public = PublicKey::from_rsa(key.to_public_key());
        Self { key, public }
    }

    pub(crate) fn rsa(&self) -> &rsa::PrivateKey {
        &self.key
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kid", &self.public.kid)
            .field("bits", &self.public.bits)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::Invalid { field, reason: reason.to_owned() }
}

/// The label and DER content of a PEM text. The DER is wiped after use: for a private key it is
/// the key.
fn decode_pem(pem: &str, field: &'static str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let (label, der) = rsa::pkcs1::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|_| invalid(field, "not a PEM block (`-----BEGIN ...-----`, base64, `-----END ...-----`)"))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

fn unexpected_label(field: &'static str, label: &str, expected: &str) -> Error {
    invalid(field, &format!("expected {expected}, found a `BEGIN {}` block", crate::error::clip(label)))
}

fn require_rsa(algorithm: ObjectIdentifier, field: &'static str) -> Result<()> {
    if algorithm == rsa::pkcs1::ALGORITHM_OID {
        Ok(())
    } else {
        Err(invalid(field, &format!("not an RSA key (algorithm {algorithm}); Hookline encrypts to RSA keys only")))
    }
}

fn check_bits(bits: usize, field: &'static str) -> Result<()> {
    if bits < MIN_RSA_BITS {
        Err(invalid(field, &format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")))
    } else if bits > MAX_RSA_BITS {
        Err(invalid(field, &format!("the RSA key has {bits} bits; at most {MAX_RSA_BITS} are supported")))
    } else {
        Ok(())
    }
}

/// Bits of a big-endian unsigned integer.
fn bit_length(big_endian: &[u8]) -> usize {
    let significant = big_endian.iter().position(|byte| *byte != 0).map_or(&[][..], |first| &big_endian[first..]);
    match significant.first() {
        Some(top) => significant.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

/// RFC 7638 thumbprint: SHA-256 of the canonical JWK (required members in lexicographic order,
/// no whitespace), base64url without padding.
fn thumbprint(key: &rsa::PublicKey) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.e_bytes()),
        URL_SAFE_NO_PAD.encode(key.n_bytes())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use base64::engine::general_purpose::STANDARD;
    use rsa::BoxedUint;
    use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};

    use super::*;

    /// One 2048-bit key for every unit test of this crate (generation is slow in debug builds).
    pub(crate) fn test_key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate(2048).expect("generate a test key"))
    }

    /// The example key of RFC 7638 §3.1 and its published thumbprint.
    const RFC7638_N: &str = concat!(
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE",
        "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q",
        "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6",
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    );
    const RFC7638_E: &str = "AQAB";
    const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn rfc7638_key() -> PublicKey {
        let n = URL_SAFE_NO_PAD.decode(RFC7638_N).expect("n");
        let e = URL_SAFE_NO_PAD.decode(RFC7638_E).expect("e");
        let n = BoxedUint::from_be_slice(&n, 2048).expect("n fits");
        let e = BoxedUint::from_be_slice(&e, 32).expect("e fits");
        PublicKey::from_rsa(rsa::PublicKey::new(n, e).expect("valid key"))
    }

    /// A PEM block with the given label around DER bytes.
    fn pem(label: &str, der: &[u8]) -> String {
        rsa::pkcs1::der::pem::encode_string(label, LineEnding::LF, der).expect("PEM")
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        let key = rfc7638_key();
        assert_eq!(key.kid(), RFC7638_THUMBPRINT);
        assert_eq!(key.bits(), 2048);
        // The same key read back from its stored form keeps its kid.
        let stored = PublicKey::from_pem(&key.to_spki_pem()).expect("SPKI round trip");
        assert_eq!(stored.kid(), RFC7638_THUMBPRINT);
        assert_eq!(stored, key);
    }

    #[test]
    fn public_keys_are_read_from_spki_and_pkcs1_and_stored_as_spki() {
        let public = test_key().public_key();
        let spki = public.to_spki_pem();
        assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{spki}");
        let pkcs1 = public.rsa().to_pkcs1_pem(LineEnding::CRLF).expect("PKCS#1");
        assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        for text in [spki.clone(), pkcs1, format!("\n\n  {spki}  \n")] {
            let read = PublicKey::from_pem(&text).expect("reads");
            assert_eq!(read.kid(), test_key().kid());
            assert_eq!(read.to_spki_pem(), spki);
        }
        let debug = format!("{public:?}");
        assert_eq!(debug, format!("PublicKey {{ kid: {:?}, bits: 2048 }}", public.kid()));
    }

    #[test]
    fn private_keys_are_read_from_pkcs8_and_pkcs1() {
        let key = test_key();
        let pkcs8 = key.to_pkcs8_pem();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let pkcs1 = key.rsa().to_pkcs1_pem(LineEnding::LF).expect("PKCS#1");
        for text in [pkcs8.as_str(), pkcs1.as_str()] {
            let read = PrivateKey::from_pem(text).expect("reads");
            assert_eq!(read.kid(), key.kid());
            assert_eq!(read.public_key(), key.public_key());
        }
        let debug = format!("{key:?}");
        assert!(debug.starts_with("PrivateKey { kid: ") && debug.ends_with("bits: 2048, .. }"), "{debug}");
    }

    #[test]
    fn small_keys_are_refused_with_their_size() {
        // Built by hand: the RSA crate (rightly) refuses to generate keys this small. Only the
        // modulus size matters for the check, so any odd modulus will do.
        for bits in [512_usize, 1024, 2040] {
            let mut modulus = vec![0xff_u8; bits / 8];
            modulus[0] = 0xc5;
            let n = BoxedUint::from_be_slice(&modulus, bits as u32).expect("n");
            let e = BoxedUint::from(65_537_u32);
            let small = rsa::PublicKey::new_unchecked(n, e);
            let pkcs1 = small.to_pkcs1_der().expect("DER");
            for text in
                [pem("RSA PUBLIC KEY", pkcs1.as_bytes()), small.to_public_key_pem(LineEnding::LF).expect("SPKI")]
            {
                let error = PublicKey::from_pem(&text).expect_err("too small");
                assert_eq!(
                    error,
                    Error::Invalid {
                        field: "public_key",
                        reason: format!("the RSA key has {bits} bits; at least 2048 are required")
                    }
                );
            }
        }
    }

    #[test]
    fn wrong_kinds_of_pem_are_explained() {
        let key = test_key();
        let cases = [
            ("not a key at all".to_owned(), "not a PEM block"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
                "not a valid SubjectPublicKeyInfo",
            ),
            (pem("RSA PUBLIC KEY", b"\x30\x03\x02\x01\x01"), "malformed"),
            (key.to_pkcs8_pem(), "this is a private key"),
            (pem("CERTIFICATE", b"\x30\x00"), "this is a certificate"),
            (pem("EC PRIVATE KEY", b"\x30\x00"), "found a `BEGIN EC PRIVATE KEY` block"),
            // An Ed25519 SPKI (RFC 8410 example).
            (
                pem(
                    "PUBLIC KEY",
                    &STANDARD.decode("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=").expect("b64"),
                ),
                "not an RSA key (algorithm 1.3.101.112)",
            ),
        ];
        for (text, hint) in cases {
            let error = PublicKey::from_pem(&text).expect_err(hint);
            let Error::Invalid { field: "public_key", reason } = &error else { panic!("{error:?}") };
            assert!(reason.contains(hint), "{hint}: {reason}");
        }

        let private_cases = [
            (key.public_key().to_spki_pem(), "this is a public key"),
            (pem("ENCRYPTED PRIVATE KEY", b"\x30\x00"), "password-protected"),
            (pem("PRIVATE KEY", b"\x30\x00"), "not a valid PKCS#8"),
            ("garbage".to_owned(), "not a PEM block"),
        ];
        for (text, hint) in private_cases {
            let error = PrivateKey::from_pem(&text).expect_err(hint);
            let Error::Invalid { field: "private_key", reason } = &error else { panic!("{error:?}") };
            assert!(reason.contains(hint), "{hint}: {reason}");
        }
    }

    #[test]
    fn generation_refuses_sizes_out_of_range() {
        for bits in [0, 1024, 2047, 8200] {
            let error = PrivateKey::generate(bits).expect_err("out of range");
            assert!(matches!(&error, Error::Invalid { field: "bits", reason } if reason.contains(&bits.to_string())));
        }
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0xff]), 9);
    }
}

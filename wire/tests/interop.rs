//! Interoperability with off-the-shelf implementations, in both directions: the official Standard
//! Webhooks library (npm `standardwebhooks`) and panva's JOSE library (npm `jose`), run with
//! Node.js through the small scripts in `interop/`.
//!
//! The scripts run through `hookline_testkit::interop::node`, which installs the packages with
//! `scripts/ensure-interop.sh` when needed; when Node.js or the packages cannot be had the tests
//! fail, saying why: interoperability is a requirement, so it is never skipped silently.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hookline_testkit::interop::node;
use hookline_wire::{
    ContentKeyPolicy, Decryptor, Encryptor, Error, PrivateKey, PublicKey, SignatureVerifier, SigningSecret,
    signature_header,
};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

fn key_2048() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).expect("generate a 2048-bit key"))
}

/// The test suite's only 4096-bit key generation.
fn key_4096() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(4096).expect("generate a 4096-bit key"))
}

fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit")
}

fn envelope(n: usize) -> String {
    json!({ "type": "order.created", "timestamp": "2025-01-01T00:00:00.000Z", "data": { "order": n } }).to_string()
}

/// Asks `standardwebhooks` to verify a delivery; `Err` carries the library's message.
fn standardwebhooks_verify(
    secret: &SigningSecret,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> Result<(), String> {
    let headers =
        json!({ "webhook-id": id, "webhook-timestamp": timestamp.to_string(), "webhook-signature": signature });
    let answer = node("verify-signature.mjs", &json!({ "secret": secret.expose(), "headers": headers, "body": body }));
    match answer["verified"].as_bool() {
        Some(true) => Ok(()),
        Some(false) => Err(answer["error"].as_str().unwrap_or_default().to_owned()),
        None => panic!("unexpected answer {answer}"),
    }
}

/// Decrypts JWEs with `jose`; returns (plaintext, protected header) per JWE.
fn jose_decrypt(key: &PrivateKey, jwes: &[&str]) -> Vec<(Vec<u8>, Value)> {
    let answer = node("decrypt-jwe.mjs", &json!({ "privateKey": key.to_pkcs8_pem(), "jwes": jwes }));
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), jwes.len());
    results
        .iter()
        .map(|result| {
            let plaintext = STANDARD.decode(result["plaintext"].as_str().expect("plaintext")).expect("base64");
            (plaintext, result["protectedHeader"].clone())
        })
        .collect()
}

fn jose_encrypt(public_key: &PublicKey, plaintext: &[u8], kid: Option<&str>) -> String {
    let input = json!({ "publicKey": public_key.to_spki_pem(), "plaintext": STANDARD.encode(plaintext), "kid": kid });
    node("encrypt-jwe.mjs", &input)["jwe"].as_str().expect("jwe").to_owned()
}

fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).expect("id"));
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", HeaderValue::from_str(signature).expect("signature"));
    headers
}

#[test]
fn our_signature_is_verified_by_standardwebhooks() {
    let secret = SigningSecret::generate();
    let (id, timestamp, body) = ("evt_0192a7b4-single", now(), envelope(1));
    let header = signature_header(std::slice::from_ref(&secret), id, timestamp, body.as_bytes());
    assert_eq!(standardwebhooks_verify(&secret, id, timestamp, &header, &body), Ok(()));
}

#[test]
fn our_rotation_pair_is_verified_by_standardwebhooks_with_either_secret() {
    let (old, new, unrelated) = (SigningSecret::generate(), SigningSecret::generate(), SigningSecret::generate());
    let (id, timestamp, body) = ("evt_rotation", now(), envelope(2));
    let header = signature_header(&[old.clone(), new.clone()], id, timestamp, body.as_bytes());
    assert_eq!(header.split(' ').count(), 2);
    assert_eq!(standardwebhooks_verify(&old, id, timestamp, &header, &body), Ok(()));
    assert_eq!(standardwebhooks_verify(&new, id, timestamp, &header, &body), Ok(()));
    assert_eq!(
        standardwebhooks_verify(&unrelated, id, timestamp, &header, &body),
        Err("No matching signature found".to_owned())
    );
}

#[test]
fn tampered_deliveries_are_refused_by_standardwebhooks_too() {
    let secret = SigningSecret::generate();
    let (id, timestamp, body) = ("evt_tampered", now(), envelope(3));
    let header = secret.sign(id, timestamp, body.as_bytes());
    // One bit of the MAC flipped, then re-encoded: still well-formed, no longer valid.
    let mut mac = STANDARD.decode(&header[3..]).expect("base64");
    mac[0] ^= 0x01;
    let tampered_signature = format!("v1,{}", STANDARD.encode(mac));
    let refused = Err("No matching signature found".to_owned());
    assert_eq!(standardwebhooks_verify(&secret, id, timestamp, &tampered_signature, &body), refused);
    assert_eq!(standardwebhooks_verify(&secret, id, timestamp, &header, &envelope(4)), refused);
    assert_eq!(standardwebhooks_verify(&secret, "evt_other", timestamp, &header, &body), refused);
    // Our own verifier agrees on all three.
    let verifier = SignatureVerifier::new(vec![secret]);
    assert_eq!(
        verifier.verify(&headers(id, timestamp, &tampered_signature), body.as_bytes()),
        Err(Error::NoMatchingSignature)
    );
    assert_eq!(
        verifier.verify(&headers(id, timestamp, &header), envelope(4).as_bytes()),
        Err(Error::NoMatchingSignature)
    );
    assert_eq!(verifier.verify(&headers(id, timestamp, &header), body.as_bytes()), Ok(()));
}

#[test]
fn standardwebhooks_signatures_are_verified_by_us() {
    // The specification's test vector, signed by the JS library: the same value our unit test expects.
    let spec = node(
        "sign.mjs",
        &json!({
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msgId": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "timestamp": 1_614_265_330, "body": "{\"test\": 2432232314}"
        }),
    );
    assert_eq!(spec["signature"], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    let secret = SigningSecret::generate();
    let (id, timestamp, body) = ("evt_from_js", now(), envelope(5));
    let input = json!({ "secret": secret.expose(), "msgId": id, "timestamp": timestamp, "body": body });
    let signature = node("sign.mjs", &input)["signature"].as_str().expect("signature").to_owned();
    let verifier = SignatureVerifier::new(vec![SigningSecret::generate(), secret]);
    assert_eq!(verifier.verify(&headers(id, timestamp, &signature), body.as_bytes()), Ok(()));
    assert_eq!(
        verifier.verify(&headers(id, timestamp, &signature), envelope(6).as_bytes()),
        Err(Error::NoMatchingSignature)
    );
}

/// Our JWEs for `key`: a small message, a 256 KiB one, and another small one that reuses the first
/// one's cached CEK; all decrypted by `jose`, with the documented protected header.
fn our_jwes_are_decrypted_by_jose(key: &PrivateKey) {
    let recipient = key.public_key();
    let encryptor = Encryptor::new(ContentKeyPolicy::default());
    let large = json!({ "type": "blob.stored", "timestamp": "t", "data": "x".repeat(256 * 1024) }).to_string();
    let plaintexts = [envelope(7), large, envelope(8)];
    let jwes: Vec<String> = plaintexts
        .iter()
        .map(|plaintext| encryptor.encrypt(&recipient, plaintext.as_bytes()).expect("encrypt"))
        .collect();
    let encrypted_key = |jwe: &str| jwe.split('.').nth(1).expect("segment").to_owned();
    assert_eq!(encrypted_key(&jwes[0]), encrypted_key(&jwes[2]), "the cached CEK is shared");
    assert_eq!(encrypted_key(&jwes[0]), encrypted_key(&jwes[1]));
    assert_ne!(jwes[0].split('.').nth(2), jwes[2].split('.').nth(2), "but each message has its own IV");

    let decrypted = jose_decrypt(key, &jwes.iter().map(String::as_str).collect::<Vec<_>>());
    for ((plaintext, header), expected) in decrypted.iter().zip(&plaintexts) {
        assert_eq!(plaintext, expected.as_bytes());
        assert_eq!(
            header,
            &json!({ "alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "application/json", "kid": recipient.kid() })
        );
    }
}

#[test]
fn our_jwes_for_a_2048_bit_key_are_decrypted_by_jose() {
    our_jwes_are_decrypted_by_jose(key_2048());
}

#[test]
fn our_jwes_for_a_4096_bit_key_are_decrypted_by_jose() {
    assert_eq!(key_4096().public_key().bits(), 4096);
    our_jwes_are_decrypted_by_jose(key_4096());
}

#[test]
fn jose_jwes_are_decrypted_by_us() {
    for key in [key_2048(), key_4096()] {
        let decryptor = Decryptor::new(key.clone());
        let with_kid = jose_encrypt(&key.public_key(), envelope(9).as_bytes(), Some(key.kid()));
        assert_eq!(decryptor.decrypt(&with_kid).expect("decrypt"), envelope(9).as_bytes());
        let binary: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let without_kid = jose_encrypt(&key.public_key(), &binary, None);
        assert_eq!(decryptor.decrypt(&without_kid).expect("decrypt"), binary);
        // A JWE from jose for someone else's key is refused by kid, before any RSA work.
        let for_other = jose_encrypt(&key.public_key(), b"{}", Some("another-key"));
        assert!(matches!(decryptor.decrypt(&for_other), Err(Error::WrongRecipient { .. })));
    }
}

#[test]
fn kids_match_jose_thumbprints_and_openssl_keys_are_read() {
    let ours = key_2048().public_key();
    let jose = node("thumbprint.mjs", &json!({ "publicKey": ours.to_spki_pem() }));
    assert_eq!(jose["thumbprint"], ours.kid());

    // A key pair made by Node's OpenSSL, in every PEM form a customer might hand us.
    let generated = node("generate-key.mjs", &json!({ "bits": 2048 }));
    let field = |name: &str| generated[name].as_str().expect(name).to_owned();
    for form in ["spki", "pkcs1Public"] {
        let public = PublicKey::from_pem(&field(form)).unwrap_or_else(|error| panic!("{form}: {error}"));
        assert_eq!(public.kid(), field("thumbprint"), "{form}");
    }
    for form in ["pkcs8", "pkcs1Private"] {
        let private = PrivateKey::from_pem(&field(form)).unwrap_or_else(|error| panic!("{form}: {error}"));
        assert_eq!(private.kid(), field("thumbprint"), "{form}");
    }
    // And the OpenSSL key works both ways.
    let public = PublicKey::from_pem(&field("spki")).expect("spki");
    let jwe = Encryptor::default().encrypt(&public, envelope(10).as_bytes()).expect("encrypt");
    let private = PrivateKey::from_pem(&field("pkcs8")).expect("pkcs8");
    assert_eq!(jose_decrypt(&private, &[&jwe])[0].0, envelope(10).as_bytes());
    let decryptor = Decryptor::new(private);
    assert_eq!(decryptor.decrypt(&jwe).expect("decrypt"), envelope(10).as_bytes());
}

#[test]
fn a_customer_can_open_a_signed_encrypted_delivery_with_off_the_shelf_libraries_only() {
    let (secret, key) = (SigningSecret::generate(), key_2048());
    let (id, timestamp) = ("evt_customer_view", now());
    // What the sender does: encrypt, then sign the body as sent.
    let body = Encryptor::default().encrypt(&key.public_key(), envelope(11).as_bytes()).expect("encrypt");
    let signature = signature_header(std::slice::from_ref(&secret), id, timestamp, body.as_bytes());
    // What a customer without hookline-wire does: standardwebhooks first, then jose.
    assert_eq!(standardwebhooks_verify(&secret, id, timestamp, &signature, &body), Ok(()));
    let (plaintext, header) = jose_decrypt(key, &[&body]).remove(0);
    assert_eq!(plaintext, envelope(11).as_bytes());
    assert_eq!(header["kid"], key.kid());
    // The JWE header is plain base64url JSON, as any JOSE tooling expects.
    let encoded_header = body.split('.').next().expect("header");
    let parsed: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded_header).expect("b64")).expect("json");
    assert_eq!(parsed, header);
}

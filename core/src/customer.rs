//! A customer (tenant) as stored (Avro `dev.hookline.Customer`, see [`crate::codec`]; JSON before
//! that) in the compacted customers topic under the customer id: delivery configuration,
//! credentials and keys.
//!
//! Nothing secret is stored in the clear: the API key only as a SHA-256 hash
//! ([`ApiKeyHash`]), signing secrets sealed with the operator's master key
//! ([`MasterKey::seal`], bound to the customer id). The customer's RSA public key is public.
//! Newer writers do not break older readers: fields they add are dropped by Avro schema
//! resolution (and ignored in JSON records).
//!
//! Everything here is pure data manipulation; [`crate::tenants`] reads and writes the topic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookline_wire::keys::PublicKey;
use hookline_wire::signing::SigningSecret;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::secrets::{ApiKey, ApiKeyHash, MasterKey};
use crate::{Error, Result};

/// Longest customer id accepted; ids are Kafka keys and appear in logs and metrics.
pub const MAX_ID_LEN: usize = 128;
/// Longest event type accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 255;
/// Longest display name accepted.
pub const MAX_NAME_LEN: usize = 200;
/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Most subscriptions one customer may have.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Subscribing to this event type means "every event type".
pub const ALL_EVENTS: &str = "*";

/// A customer: delivery configuration, hashed API key, sealed signing secrets, public key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    /// Display name, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where events are POSTed. `None` until the customer configures one; deliveries to a customer
    /// without a URL are dead-lettered.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Event types the customer receives when an event is fanned out (`*` = all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Hash of the customer's API key; the key itself is shown once, when issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyHash>,
    /// The customer's RSA public key: when set, bodies are sent as JWE encrypted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<StoredPublicKey>,
    /// Signing secrets, newest first, sealed with the master key. More than one is active only
    /// during a rotation's grace period, when every delivery carries a signature per secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<SealedSecret>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: i64,
}

/// A customer's RSA public key, normalized to SPKI PEM, with its RFC 7638 thumbprint (the JWE
/// `kid`) so that readers need not recompute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPublicKey {
    pub pem: String,
    pub kid: String,
    pub bits: usize,
}

impl StoredPublicKey {
    /// Reads a public key from PEM (SPKI or PKCS#1, RSA of at least 2048 bits) into the form
    /// stored.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = PublicKey::from_pem(pem).map_err(wire_error)?;
        Ok(Self { pem: key.to_spki_pem(), kid: key.kid().to_owned(), bits: key.bits() })
    }
}

/// A signing secret sealed with the master key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// [`MasterKey::seal`] output; opens only with the master key and this customer's id.
    pub sealed: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which it no longer signs (set when a newer secret replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl SealedSecret {
    /// Whether it still signs at `now` (Unix seconds).
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a new customer is given, once: the plaintext API key and signing secret.
#[derive(Debug)]
pub struct Issued {
    pub customer: Customer,
    pub api_key: ApiKey,
    pub signing_secret: SigningSecret,
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl Customer {
    /// A validated customer with a delivery configuration only (no credentials); see
    /// [`Customer::onboard`] for a complete tenant.
    pub fn new(id: &str, webhook_url: &str, events: Vec<String>) -> Result<Self> {
        validate_id(id)?;
        let url = validate_webhook_url(webhook_url)?;
        let events = normalize_events(events)?;
        let now = unix_now();
        Ok(Self {
            id: id.to_owned(),
            webhook_url: Some(url.to_string()),
            events,
            created_at: now,
            updated_at: now,
            ..Self::default()
        })
    }

    /// A new tenant with a fresh API key and signing secret (sealed with `master`), and no
    /// webhook URL or subscriptions yet (seed 003 steps 1 to 3).
    pub fn onboard(id: &str, name: Option<&str>, master: &MasterKey) -> Result<Issued> {
        validate_id(id)?;
        let name = name.map(validate_name).transpose()?;
        let now = unix_now();
        let (api_key, api_key_hash) = ApiKey::generate();
        let signing_secret = SigningSecret::generate();
        let customer = Self {
            id: id.to_owned(),
            name,
            api_key: Some(api_key_hash),
            signing_secrets: vec![SealedSecret {
                sealed: master.seal(&secret_context(id), signing_secret.expose().as_bytes()),
                created_at: now,
                expires_at: None,
            }],
            created_at: now,
            updated_at: now,
            ..Self::default()
        };
        Ok(Issued { customer, api_key, signing_secret })
    }

    /// Whether a fanned-out event of this type goes to this customer.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type || e == ALL_EVENTS)
    }

    /// Sets (or, with `None`, clears) the webhook URL after checking its syntax. The SSRF check,
    /// which needs DNS, is the caller's ([`crate::netguard::NetworkPolicy::check_url`]).
    pub fn set_webhook_url(&mut self, url: Option<&str>) -> Result<()> {
        self.webhook_url = url.map(validate_webhook_url).transpose()?.map(String::from);
        self.touch();
        Ok(())
    }

    /// Replaces the subscriptions.
    pub fn set_events(&mut self, events: Vec<String>) -> Result<()> {
        self.events = normalize_events(events)?;
        self.touch();
        Ok(())
    }

    /// Sets the public key deliveries are encrypted to.
    pub fn set_public_key(&mut self, key: StoredPublicKey) {
        self.public_key = Some(key);
        self.touch();
    }

    /// Removes the public key: later deliveries are sent unencrypted.
    pub fn clear_public_key(&mut self) {
        self.public_key = None;
        self.touch();
    }

    /// Issues a new API key; the previous one stops working as soon as the record is written.
    pub fn reissue_api_key(&mut self) -> ApiKey {
        let (api_key, hash) = ApiKey::generate();
        self.api_key = Some(hash);
        self.touch();
        api_key
    }

    /// Adds a new signing secret, which signs from now on. Secrets already active keep signing
    /// for `grace` more (so receivers can switch over while both signatures are sent), then
    /// expire; secrets already expired are dropped. Returns the new secret and when the previous
    /// one expires.
    pub fn rotate_signing_secret(&mut self, master: &MasterKey, grace: Duration) -> (SigningSecret, Option<i64>) {
        let now = unix_now();
        let grace_end = now.saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        self.signing_secrets.retain(|s| s.is_active(now));
        let mut previous_expiry = None;
        for secret in &mut self.signing_secrets {
            let expiry = secret.expires_at.map_or(grace_end, |at| at.min(grace_end));
            secret.expires_at = Some(expiry);
            previous_expiry = previous_expiry.max(Some(expiry));
        }
        let secret = SigningSecret::generate();
        self.signing_secrets.insert(
            0,
            SealedSecret {
                sealed: master.seal(&secret_context(&self.id), secret.expose().as_bytes()),
                created_at: now,
                expires_at: None,
            },
        );
        self.touch();
        (secret, previous_expiry)
    }

    /// The signing secrets that sign a delivery made at `now` (Unix seconds), newest first,
    /// opened with `master`. An error means the record cannot be signed (wrong master key or a
    /// corrupt record): nothing must be sent unsigned.
    pub fn active_signing_secrets(&self, master: &MasterKey, now: i64) -> Result<Vec<SigningSecret>> {
        let context = secret_context(&self.id);
        self.signing_secrets
            .iter()
            .filter(|s| s.is_active(now))
            .map(|s| {
                let text = master.open_string(&context, &s.sealed)?;
                SigningSecret::parse(&text).map_err(wire_error)
            })
            .collect()
    }

    /// Encodes the record value for the customers topic in Avro single-object encoding. With a
    /// schema registry, use [`Codec::encode_customer`](crate::codec::Codec::encode_customer).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: the value is built field by field after the compiled-in schema, which the
        // codec's tests check against this type.
        crate::codec::encode_customer_single_object(self).expect("a customer record matches its schema")
    }

    /// Decodes a record value from the customers topic written without a schema registry (Avro
    /// single-object encoding or the JSON of older records); the key must match the id inside.
    pub fn from_record(key: &str, value: &[u8]) -> Result<Self> {
        let framing = crate::codec::Framing::of(value)
            .map_err(|e| Error::InvalidCustomer { key: key.to_owned(), reason: e.to_string() })?;
        crate::codec::decode_customer_offline(key, framing)
    }

    /// What the API and the CLI show of a customer: everything but credentials.
    pub fn view(&self) -> CustomerView {
        let now = unix_now();
        CustomerView {
            id: self.id.clone(),
            name: self.name.clone(),
            webhook_url: self.webhook_url.clone(),
            events: self.events.clone(),
            public_key: self.public_key.as_ref().map(|k| PublicKeyView { kid: k.kid.clone(), bits: k.bits }),
            encrypted: self.public_key.is_some(),
            has_api_key: self.api_key.is_some(),
            signing_secrets: self
                .signing_secrets
                .iter()
                .filter(|s| s.is_active(now))
                .map(|s| SecretView { created_at: s.created_at, expires_at: s.expires_at })
                .collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    fn touch(&mut self) {
        self.updated_at = unix_now().max(self.updated_at);
    }
}

/// A customer as shown to people: no key hash, no sealed secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub webhook_url: Option<String>,
    pub events: Vec<String>,
    pub public_key: Option<PublicKeyView>,
    /// Whether deliveries are encrypted (a public key is set).
    pub encrypted: bool,
    pub has_api_key: bool,
    /// Active signing secrets (metadata only), newest first.
    pub signing_secrets: Vec<SecretView>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Public key metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyView {
    pub kid: String,
    pub bits: usize,
}

/// Signing secret metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The associated data signing secrets are sealed under: a sealed secret copied into another
/// customer's record does not open.
fn secret_context(id: &str) -> String {
    format!("hookline/signing-secret/{id}")
}

fn wire_error(error: hookline_wire::Error) -> Error {
    match error {
        hookline_wire::Error::Invalid { field, reason } => Error::Invalid { field, reason },
        other => Error::Invalid { field: "key", reason: other.to_string() },
    }
}

/// Validates event types, trims them and drops repeats, keeping the given order.
pub fn normalize_events(events: Vec<String>) -> Result<Vec<String>> {
    if events.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::Invalid {
            field: "events",
            reason: format!("{} event types given; at most {MAX_SUBSCRIPTIONS} are allowed", events.len()),
        });
    }
    let mut normalized: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        let event = event.trim();
        validate_event_type(event).map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::Invalid { field: "events", reason },
            other => other,
        })?;
        if !normalized.iter().any(|seen| seen == event) {
            normalized.push(event.to_owned());
        }
    }
    Ok(normalized)
}

/// Checks a display name: 1..=200 characters, no control characters.
pub fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::Invalid {
            field: "name",
            reason: format!("must be 1 to {MAX_NAME_LEN} characters without control characters"),
        });
    }
    Ok(name.to_owned())
}

/// Checks a customer id: 1..=128 characters of `A-Z a-z 0-9 . _ - :`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(ok_char) {
        return Err(Error::Invalid {
            field: "id",
            reason: format!("`{id}` must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'"),
        });
    }
    Ok(())
}

/// Checks an event type: 1..=255 characters of `A-Z a-z 0-9 . _ - :`, or `*`.
pub fn validate_event_type(event_type: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if event_type == ALL_EVENTS {
        return Ok(());
    }
    if event_type.is_empty() || event_type.len() > MAX_EVENT_TYPE_LEN || !event_type.chars().all(ok_char) {
        return Err(Error::Invalid {
            field: "type",
            reason: format!(
                "`{event_type}` must be 1 to {MAX_EVENT_TYPE_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'"
            ),
        });
    }
    Ok(())
}

/// Checks a webhook URL: absolute `http`/`https` with a host and no credentials.
pub fn validate_webhook_url(raw: &str) -> Result<Url> {
    let invalid = |reason: String| Error::Invalid { field: "webhook_url", reason };
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(format!("the URL is longer than {MAX_URL_LEN} characters")));
    }
    let url = Url::parse(raw).map_err(|e| invalid(format!("`{raw}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme `{}` is not http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed".to_owned()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_inputs() {
        assert!(Customer::new("customer-1", "http://127.0.0.1:9000/webhook", vec!["a.b".into()]).is_ok());
        assert!(Customer::new("", "http://x/", vec![]).is_err());
        assert!(Customer::new("bad id", "http://x/", vec![]).is_err());
        assert!(Customer::new(&"x".repeat(129), "http://x/", vec![]).is_err());
        assert!(Customer::new("c", "ftp://x/", vec![]).is_err());
        assert!(Customer::new("c", "not a url", vec![]).is_err());
        assert!(Customer::new("c", "http://user:pw@x/", vec![]).is_err());
        assert!(Customer::new("c", "http://x/", vec!["bad type".into()]).is_err());
    }

    #[test]
    fn subscriptions_match_exactly_or_by_wildcard() {
        let c = Customer::new("c", "http://x/", vec!["order.created".into()]).unwrap();
        assert!(c.subscribes_to("order.created"));
        assert!(!c.subscribes_to("order.deleted"));
        let all = Customer::new("c", "http://x/", vec!["*".into()]).unwrap();
        assert!(all.subscribes_to("anything"));
    }

    #[test]
    fn onboarding_issues_credentials_stored_only_hashed_or_sealed() {
        let master = MasterKey::generate();
        let issued = Customer::onboard("acme", Some("  Acme  "), &master).unwrap();
        let customer = &issued.customer;
        assert_eq!(customer.name.as_deref(), Some("Acme"));
        assert!(customer.api_key.as_ref().unwrap().matches(issued.api_key.expose()));
        let stored = String::from_utf8_lossy(&customer.to_bytes()).into_owned();
        assert!(!stored.contains(issued.api_key.expose()), "{stored}");
        assert!(!stored.contains(issued.signing_secret.expose().trim_start_matches("whsec_")), "{stored}");
        let opened = customer.active_signing_secrets(&master, unix_now()).unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].expose(), issued.signing_secret.expose());
        // Another master key, or the sealed secret moved to another customer, does not open.
        assert!(customer.active_signing_secrets(&MasterKey::generate(), unix_now()).is_err());
        let mut moved = Customer::onboard("globex", None, &master).unwrap().customer;
        moved.signing_secrets = customer.signing_secrets.clone();
        assert!(moved.active_signing_secrets(&master, unix_now()).is_err());
        assert!(Customer::onboard("bad id", None, &master).is_err());
        assert!(Customer::onboard("c", Some("\u{7}"), &master).is_err());
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_the_grace_period() {
        let master = MasterKey::generate();
        let issued = Customer::onboard("acme", None, &master).unwrap();
        let mut customer = issued.customer;
        let (new, previous_expiry) = customer.rotate_signing_secret(&master, Duration::from_secs(3600));
        let now = unix_now();
        let expiry = previous_expiry.expect("the old secret expires");
        assert!((now + 3599..=now + 3601).contains(&expiry));
        let active: Vec<String> =
            customer.active_signing_secrets(&master, now).unwrap().iter().map(SigningSecret::expose).collect();
        assert_eq!(active, [new.expose(), issued.signing_secret.expose()], "newest first");
        let later: Vec<String> =
            customer.active_signing_secrets(&master, expiry).unwrap().iter().map(SigningSecret::expose).collect();
        assert_eq!(later, [new.expose()], "the old one stops signing at its expiry");
        // A second rotation keeps the earlier expiry and drops what has expired.
        let (_, second_expiry) = customer.rotate_signing_secret(&master, Duration::from_secs(7200));
        assert!(second_expiry.is_some());
        assert_eq!(customer.signing_secrets.len(), 3);
        assert_eq!(customer.signing_secrets[2].expires_at, Some(expiry));
        assert!(!format!("{:?}", customer.signing_secrets).contains(&customer.signing_secrets[0].sealed));
    }

    #[test]
    fn views_show_no_credentials() {
        let master = MasterKey::generate();
        let issued = Customer::onboard("acme", None, &master).unwrap();
        let view = serde_json::to_string(&issued.customer.view()).unwrap();
        assert!(!view.contains("sha256") && !view.contains("sealed") && !view.contains("v1:"), "{view}");
        assert!(view.contains(r#""has_api_key":true"#), "{view}");
    }

    #[test]
    fn events_are_validated_trimmed_and_deduplicated() {
        let raw: Vec<String> = ["b", " a", "b ", "c"].map(String::from).to_vec();
        assert_eq!(normalize_events(raw).unwrap(), ["b", "a", "c"]);
        let error = normalize_events(vec!["ok".into(), "not ok".into()]).unwrap_err();
        assert!(error.to_string().starts_with("invalid events"), "{error}");
        assert!(normalize_events(vec!["a".into(); MAX_SUBSCRIPTIONS + 1]).is_err());
    }

    #[test]
    fn record_key_must_match_id() {
        let c = Customer::new("c1", "http://x/", vec![]).unwrap();
        assert_eq!(Customer::from_record("c1", &c.to_bytes()).unwrap(), c);
        assert!(Customer::from_record("c2", &c.to_bytes()).is_err());
        assert!(Customer::from_record("c1", b"{").is_err());
        // Fields added by newer versions are ignored.
        let newer = br#"{"id":"c1","webhook_url":"http://x/","events":[],"added_in_a_later_version":"..."}"#;
        assert_eq!(Customer::from_record("c1", newer).unwrap().id, "c1");
    }
}

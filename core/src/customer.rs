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
//! An inbound *source* (an external sender whose webhooks Hookline receives, verifies and
//! delivers to an internal endpoint) is stored the same way, as a record with [`Customer::inbound`]
//! set: its `webhook_url` is the internal endpoint, its signing secrets are Hookline's own (they
//! sign the deliveries to that endpoint), and it has no API key and no subscriptions, so fan-out
//! never reaches it.
//!
//! Everything here is pure data manipulation; [`crate::tenants`] reads and writes the topic. The
//! record's Avro form (its [`AvroRecord`](crate::codec::AvroRecord) mapping, [`Customer::to_bytes`],
//! [`Customer::from_record`] and the codec's customer entry points) is in the `avro` submodule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookline_wire::keys::PublicKey;
use hookline_wire::signing::{SECRET_PREFIX, SigningSecret};
use serde::{Deserialize, Serialize};
use url::Url;
use zeroize::Zeroizing;

use crate::quote;
use crate::secrets::{ApiKey, ApiKeyHash, MasterKey};
use crate::{Error, Result};

mod avro;

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
/// Event types starting with this are Hookline's own (the operational events of the `notices`
/// module).
pub const RESERVED_PREFIX: &str = "hookline.";

/// Whether `event_type` is one of Hookline's own (not publishable, not matched by `*`).
pub fn is_reserved(event_type: &str) -> bool {
    event_type.starts_with(RESERVED_PREFIX)
}

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
    /// Set when this record is an inbound source rather than a customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundSource>,
    /// Set while the endpoint is disabled (after failing continuously for `--disable-after`):
    /// deliveries go to the DLQ (`endpoint_disabled`) without a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<EndpointDisabled>,
    /// Most deliveries per second to its endpoint (1 to [`MAX_RATE_LIMIT`]); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
}

/// The highest per-customer rate limit, in deliveries per second.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// When and why a customer's endpoint was disabled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDisabled {
    /// Unix seconds.
    pub at: i64,
    pub reason: String,
}

/// What makes a record an inbound source: how its sender signs, and the sender's secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSource {
    pub scheme: SignatureScheme,
    /// The sender's secret, sealed with the master key and bound to the source id.
    pub secret: String,
}

impl std::fmt::Debug for InboundSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSource").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

/// How an inbound source's sender signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`,
    /// with a `whsec_` secret and a 5-minute timestamp tolerance.
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
    /// GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(rename = "hub-signature-256")]
    HubSignature256,
}

impl SignatureScheme {
    /// The name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::HubSignature256 => "hub-signature-256",
        }
    }
}

impl std::fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SignatureScheme {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self> {
        match raw.trim() {
            "standard-webhooks" => Ok(Self::StandardWebhooks),
            "hub-signature-256" => Ok(Self::HubSignature256),
            other => Err(Error::Invalid {
                field: "scheme",
                reason: format!("`{}` is not `standard-webhooks` or `hub-signature-256`", quote::clip(other)),
            }),
        }
    }
}

/// Longest inbound secret accepted for `hub-signature-256`.
pub const MAX_INBOUND_SECRET_LEN: usize = 1024;

/// What a new inbound source is given, once: the sender's secret (when generated, or as given)
/// and the secret that signs deliveries to the internal endpoint.
#[derive(Debug)]
pub struct IssuedSource {
    pub source: Customer,
    pub inbound_secret: Zeroizing<String>,
    pub signing_secret: SigningSecret,
}

/// An inbound source as shown to people: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    pub id: String,
    pub scheme: SignatureScheme,
    /// The internal endpoint its events are delivered to.
    pub endpoint: Option<String>,
    /// Active signing secrets of the deliveries (metadata only), newest first.
    pub signing_secrets: Vec<SecretView>,
    pub created_at: i64,
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
    /// webhook URL or subscriptions yet: what an operator creates, before the customer configures
    /// itself.
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

    /// A new inbound source delivering to `endpoint` (operator-chosen, so only its syntax is
    /// checked: internal addresses are its purpose). `secret` is the sender's (checked for the
    /// scheme), generated when `None`; deliveries are signed with a fresh secret of our own.
    pub fn source(
        id: &str,
        scheme: SignatureScheme,
        endpoint: &str,
        secret: Option<&str>,
        master: &MasterKey,
    ) -> Result<IssuedSource> {
        validate_id(id)?;
        let endpoint = validate_webhook_url(endpoint).map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::Invalid { field: "endpoint", reason },
            other => other,
        })?;
        let inbound_secret = match secret {
            Some(given) => validate_inbound_secret(scheme, given)?,
            None => generate_inbound_secret(scheme),
        };
        let mut issued = Self::onboard(id, None, master)?;
        issued.customer.api_key = None;
        issued.customer.webhook_url = Some(endpoint.to_string());
        issued.customer.inbound =
            Some(InboundSource { scheme, secret: master.seal(&inbound_secret_context(id), inbound_secret.as_bytes()) });
        Ok(IssuedSource { source: issued.customer, inbound_secret, signing_secret: issued.signing_secret })
    }

    /// Whether this record is an inbound source rather than a customer.
    pub fn is_source(&self) -> bool {
        self.inbound.is_some()
    }

    /// The sender's secret of an inbound source, opened with `master` (`None` for a customer).
    pub fn inbound_secret(&self, master: &MasterKey) -> Result<Option<Zeroizing<String>>> {
        self.inbound
            .as_ref()
            .map(|inbound| master.open_string(&inbound_secret_context(&self.id), &inbound.secret))
            .transpose()
    }

    /// Whether a fanned-out event of this type goes to this customer (never to a source).
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        !self.is_source() && self.events.iter().any(|subscribed| subscription_matches(subscribed, event_type))
    }

    /// What the CLI shows of an inbound source (`None` for a customer).
    pub fn source_view(&self) -> Option<SourceView> {
        let inbound = self.inbound.as_ref()?;
        let view = self.view();
        Some(SourceView {
            id: view.id,
            scheme: inbound.scheme,
            endpoint: view.webhook_url,
            signing_secrets: view.signing_secrets,
            created_at: view.created_at,
            updated_at: view.updated_at,
        })
    }

    /// Sets (or, with `None`, clears) the webhook URL after checking its syntax. The SSRF check,
    /// which needs DNS, is the caller's ([`crate::netguard::NetworkPolicy::check_url`]).
    pub fn set_webhook_url(&mut self, url: Option<&str>) -> Result<()> {
        self.webhook_url = url.map(validate_webhook_url).transpose()?.map(String::from);
        if self.webhook_url.is_some() {
            // A new URL is a new endpoint: it gets its chance.
            self.disabled = None;
        }
        self.touch();
        Ok(())
    }

    /// Disables the endpoint at `at` (Unix seconds) for `reason`; an endpoint disabled already
    /// keeps its first time and reason. Whether it changed.
    pub fn disable(&mut self, at: i64, reason: &str) -> bool {
        if self.disabled.is_some() {
            return false;
        }
        self.disabled = Some(EndpointDisabled { at, reason: reason.to_owned() });
        self.touch();
        true
    }

    /// Enables the endpoint again. Whether it was disabled.
    pub fn enable(&mut self) -> bool {
        let was = self.disabled.take().is_some();
        if was {
            self.touch();
        }
        was
    }

    /// Sets (or, with `None`, removes) the most deliveries per second to its endpoint.
    pub fn set_rate_limit(&mut self, per_second: Option<u32>) -> Result<()> {
        if let Some(rate) = per_second
            && !(1..=MAX_RATE_LIMIT).contains(&rate)
        {
            return Err(Error::Invalid {
                field: "per_second",
                reason: format!(
                    "{rate} is not a rate limit: 1 to {MAX_RATE_LIMIT} deliveries per second, or null for none"
                ),
            });
        }
        self.rate_limit = per_second;
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
        self.active_sealed_secrets(now).map(|sealed| self.open_signing_secret(master, sealed)).collect()
    }

    /// The sealed signing secrets that sign a delivery made at `now`, newest first.
    pub fn active_sealed_secrets(&self, now: i64) -> impl Iterator<Item = &SealedSecret> {
        self.signing_secrets.iter().filter(move |s| s.is_active(now))
    }

    /// One of this customer's sealed signing secrets, opened with `master`.
    pub fn open_signing_secret(&self, master: &MasterKey, sealed: &SealedSecret) -> Result<SigningSecret> {
        let text = master.open_string(&secret_context(&self.id), &sealed.sealed)?;
        SigningSecret::parse(&text).map_err(wire_error)
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
            disabled: self.disabled.clone(),
            rate_limit: self.rate_limit,
        }
    }

    fn touch(&mut self) {
        self.updated_at = unix_now().max(self.updated_at);
    }
}

/// A customer as shown to people: no key hash, no sealed secrets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Set while the endpoint is disabled: deliveries go to the DLQ without a request until it
    /// is re-enabled (or given a new webhook URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<EndpointDisabled>,
    /// Most deliveries per second to its endpoint; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
}

/// Public key metadata.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyView {
    pub kid: String,
    pub bits: usize,
}

/// Signing secret metadata.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// The associated data a source's sender secret is sealed under.
fn inbound_secret_context(id: &str) -> String {
    format!("hookline/inbound-secret/{id}")
}

/// Checks a sender secret given by the operator: a `whsec_` secret for Standard Webhooks; for
/// `hub-signature-256`, 16 to 1024 bytes without whitespace or control characters at the ends
/// (a GitHub webhook secret is any string, but a short one is guessable).
fn validate_inbound_secret(scheme: SignatureScheme, secret: &str) -> Result<Zeroizing<String>> {
    let invalid = |reason: &str| Error::Invalid { field: "secret", reason: reason.to_owned() };
    match scheme {
        SignatureScheme::StandardWebhooks => {
            let parsed = SigningSecret::parse(secret).map_err(|e| match wire_error(e) {
                Error::Invalid { reason, .. } => invalid(&reason),
                other => other,
            })?;
            Ok(Zeroizing::new(parsed.expose()))
        }
        SignatureScheme::HubSignature256 => {
            if secret.len() < 16 || secret.len() > MAX_INBOUND_SECRET_LEN {
                return Err(invalid(&format!("must be 16 to {MAX_INBOUND_SECRET_LEN} bytes")));
            }
            if secret.trim() != secret || secret.chars().any(char::is_control) {
                return Err(invalid("must not start or end with whitespace or hold control characters"));
            }
            Ok(Zeroizing::new(secret.to_owned()))
        }
    }
}

/// A random sender secret: a `whsec_` secret, or for `hub-signature-256` the same 32 random bytes
/// as plain base64 text.
fn generate_inbound_secret(scheme: SignatureScheme) -> Zeroizing<String> {
    let secret = Zeroizing::new(SigningSecret::generate().expose());
    match scheme {
        SignatureScheme::StandardWebhooks => secret,
        SignatureScheme::HubSignature256 => Zeroizing::new(secret.trim_start_matches(SECRET_PREFIX).to_owned()),
    }
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
            reason: format!(
                "`{}` must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'",
                quote::clip(id)
            ),
        });
    }
    Ok(())
}

/// Whether a subscription to `subscribed` receives events of `event_type`: the same type, or
/// `*`, which matches every type but Hookline's own ([`is_reserved`]); those are received only
/// by name, since they tell of other tenants.
pub fn subscription_matches(subscribed: &str, event_type: &str) -> bool {
    subscribed == event_type || (subscribed == ALL_EVENTS && !is_reserved(event_type))
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
                "`{}` must be 1 to {MAX_EVENT_TYPE_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'",
                quote::clip(event_type)
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
    let url = Url::parse(raw).map_err(|e| invalid(format!("`{}` is not a URL ({e})", quote::url(raw))))?;
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
        // Operational events tell of other tenants: by name only.
        assert!(!all.subscribes_to("hookline.endpoint.parked"));
        let operator = Customer::new("ops", "http://x/", vec!["*".into(), "hookline.endpoint.parked".into()]).unwrap();
        assert!(operator.subscribes_to("hookline.endpoint.parked"));
        assert!(!operator.subscribes_to("hookline.endpoint.disabled"));
    }

    #[test]
    fn a_rate_limit_is_within_its_range_or_none() {
        let mut c = Customer::new("c", "http://x/", vec!["*".into()]).unwrap();
        c.set_rate_limit(Some(5)).unwrap();
        assert_eq!((c.rate_limit, c.view().rate_limit), (Some(5), Some(5)));
        for bad in [0, MAX_RATE_LIMIT + 1] {
            let error = c.set_rate_limit(Some(bad)).unwrap_err().to_string();
            assert!(error.contains("per_second"), "{error}");
        }
        assert_eq!(c.rate_limit, Some(5), "a refused limit changes nothing");
        c.set_rate_limit(Some(MAX_RATE_LIMIT)).unwrap();
        c.set_rate_limit(None).unwrap();
        assert_eq!(c.rate_limit, None);
    }

    #[test]
    fn a_disabled_endpoint_keeps_its_first_reason_until_enabled_or_given_a_new_url() {
        let mut c = Customer::new("c", "http://x/", vec!["*".into()]).unwrap();
        assert!(c.disable(100, "failing since t"));
        assert!(!c.disable(200, "again"), "disabled already");
        assert_eq!(c.disabled, Some(EndpointDisabled { at: 100, reason: "failing since t".into() }));
        assert_eq!(c.view().disabled.map(|d| d.at), Some(100));
        assert!(c.enable());
        assert!(!c.enable(), "enabled already");
        assert_eq!(c.disabled, None);

        c.disable(300, "failing");
        c.set_webhook_url(None).unwrap();
        assert!(c.disabled.is_some(), "removing the URL enables nothing");
        c.set_webhook_url(Some("https://new.example/hook")).unwrap();
        assert_eq!(c.disabled, None, "a new URL is a new endpoint");
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

    #[test]
    fn sources_are_records_that_fan_out_never_reaches() {
        let master = MasterKey::generate();
        let issued =
            Customer::source("github", SignatureScheme::HubSignature256, "http://10.1.2.3/in", None, &master).unwrap();
        let source = &issued.source;
        assert!(source.is_source() && source.api_key.is_none() && source.events.is_empty());
        assert_eq!(source.webhook_url.as_deref(), Some("http://10.1.2.3/in"));
        let mut subscribed = source.clone();
        subscribed.events = vec!["*".into()];
        assert!(!subscribed.subscribes_to("push"), "a source never receives fanned-out events");

        // Both secrets are sealed at rest, and open with the master key only.
        // The record is Avro; its strings stand in it as UTF-8.
        let stored = String::from_utf8_lossy(&source.to_bytes()).into_owned();
        assert!(!stored.contains(issued.inbound_secret.as_str()), "{stored}");
        assert!(stored.contains("hub-signature-256"), "{stored}");
        let opened = source.inbound_secret(&master).unwrap().unwrap();
        assert_eq!(opened.as_str(), issued.inbound_secret.as_str());
        assert!(source.inbound_secret(&MasterKey::generate()).is_err());
        let signing = source.active_signing_secrets(&master, unix_now()).unwrap();
        assert_eq!(signing[0].expose(), issued.signing_secret.expose());
        assert_eq!(Customer::from_record("github", &source.to_bytes()).unwrap(), *source);
        let view = source.source_view().unwrap();
        assert_eq!(
            (view.scheme, view.endpoint.as_deref()),
            (SignatureScheme::HubSignature256, Some("http://10.1.2.3/in"))
        );
        assert!(Customer::new("c", "http://x/", vec![]).unwrap().source_view().is_none());
        assert!(!format!("{source:?}").contains(&source.inbound.as_ref().unwrap().secret));

        // Generated Standard Webhooks secrets are `whsec_` secrets; given ones are checked.
        let standard =
            Customer::source("sw", SignatureScheme::StandardWebhooks, "http://internal/sw", None, &master).unwrap();
        assert!(standard.inbound_secret.starts_with("whsec_"));
        let given = SigningSecret::generate().expose();
        let kept =
            Customer::source("sw", SignatureScheme::StandardWebhooks, "http://i/", Some(&given), &master).unwrap();
        assert_eq!(kept.inbound_secret.as_str(), given);
        let field_of = |result: Result<IssuedSource>| match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let hub = SignatureScheme::HubSignature256;
        assert_eq!(
            field_of(Customer::source("sw", SignatureScheme::StandardWebhooks, "http://i/", Some("x"), &master)),
            "secret"
        );
        assert_eq!(field_of(Customer::source("g", hub, "http://i/", Some("short"), &master)), "secret");
        assert_eq!(field_of(Customer::source("g", hub, "http://i/", Some(" padded-secret-text "), &master)), "secret");
        assert_eq!(field_of(Customer::source("g", hub, "ftp://i/", None, &master)), "endpoint");
        assert_eq!(field_of(Customer::source("bad id", hub, "http://i/", None, &master)), "id");
        assert_eq!("hub-signature-256".parse::<SignatureScheme>().unwrap(), hub);
        assert!("sha1".parse::<SignatureScheme>().is_err());
    }
}

//! The demo's customers: who subscribes to what, and how each one's endpoint behaves.
//!
//! Every customer is onboarded through the publisher's onboarding API, as seed 003 describes: the
//! operator creates it (getting its API key and signing secret), then the customer, with its own
//! API key, uploads a public key (for the customers marked `encrypted`), subscribes and sets its
//! webhook URL. Each customer gets its own in-process [`hookline_receiver`] on `127.0.0.1:0` that
//! verifies every delivery's signature and decrypts encrypted ones, refusing anything else.
//! Four endpoints are healthy, one refuses the first two attempts of every event (so its
//! deliveries are retried, then succeed) and one refuses everything (so its deliveries end in
//! the DLQ). Besides them, the operator's own endpoint ([`OPERATOR`]) receives Hookline's
//! operational events (`hookline.endpoint.*`), such as the failing customer being parked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hookline_core::notices::EndpointEvent;
use hookline_receiver::verify::{DeliveryVerifier, Opened, Verifier};
use hookline_receiver::{Receiver, ReceiverConfig, ReceiverHandle, Stats};
use hookline_wire::keys::PrivateKey;
use hookline_wire::signing::{SignatureVerifier, SigningSecret};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::{Error, Result};

/// How a customer's endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts every delivery at once.
    Healthy,
    /// Answers 503 to the first `fail_first` attempts of every event, then accepts it.
    Flaky { fail_first: u32 },
    /// Answers 503 to every attempt.
    Failing,
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Flaky { fail_first } => write!(f, "flaky: first {fail_first} attempts fail"),
            Self::Failing => f.write_str("down: always 503"),
        }
    }
}

/// One demo customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub id: &'static str,
    /// Event types it subscribes to (`*` = all).
    pub events: &'static [&'static str],
    pub behaviour: Behaviour,
    /// Uploads an RSA public key, so its deliveries are JWE-encrypted.
    pub encrypted: bool,
}

impl Profile {
    /// Whether a fanned-out event of this type goes to this customer (the directory's rule).
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|subscribed| hookline_core::customer::subscription_matches(subscribed, event_type))
    }
}

/// Attempts the flaky customer refuses per event.
pub const FLAKY_FAILURES: u32 = 2;

/// The customers, in the order the summary lists them.
pub const CAST: &[Profile] = &[
    Profile { id: "acme", events: &["*"], behaviour: Behaviour::Healthy, encrypted: true },
    Profile {
        id: "globex",
        events: &["order.created", "order.shipped"],
        behaviour: Behaviour::Healthy,
        encrypted: false,
    },
    Profile { id: "initech", events: &["invoice.paid"], behaviour: Behaviour::Healthy, encrypted: true },
    Profile {
        id: "umbrella",
        events: &["order.created", "invoice.paid"],
        behaviour: Behaviour::Healthy,
        encrypted: false,
    },
    Profile {
        id: "hooli",
        events: &["refund.issued"],
        behaviour: Behaviour::Flaky { fail_first: FLAKY_FAILURES },
        encrypted: true,
    },
    Profile { id: "vandelay", events: &["account.closed"], behaviour: Behaviour::Failing, encrypted: false },
];

/// A customer with its running receiver.
#[derive(Debug)]
pub struct Member {
    pub profile: Profile,
    receiver: ReceiverHandle,
}

impl Member {
    /// The receiver's counters so far.
    pub fn stats(&self) -> Stats {
        self.receiver.stats()
    }

    /// The receiver's webhook URL.
    pub fn url(&self) -> String {
        self.receiver.url()
    }
}

/// The publisher's onboarding API, as the demo's operator and customers call it.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub admin_token: String,
    pub client: reqwest::Client,
}

impl Api {
    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Result<Value> {
        let response =
            self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            return Err(Error::Onboarding {
                path: path.to_owned(),
                status: status.as_u16(),
                answer: answer.to_string(),
            });
        }
        Ok(answer)
    }
}

/// Onboards every customer of [`CAST`] through the API, each with a receiver that verifies (and
/// where the customer uploaded a key, decrypts) what it gets. The customers are independent of
/// each other, so they are onboarded at the same time (listed in [`CAST`]'s order).
pub async fn onboard(api: &Api) -> Result<Vec<Member>> {
    futures::future::try_join_all(CAST.iter().map(|profile| onboard_one(api, profile))).await
}

async fn onboard_one(api: &Api, profile: &Profile) -> Result<Member> {
    use reqwest::Method;
    // Steps 1-3: the operator creates the customer; key and secret are shown this once.
    let (api_key, secret) = create(api, profile.id).await?;

    // Step 4: the customer makes a key pair (if it wants encryption) and runs its receiver.
    let private_key = match profile.encrypted {
        // Key generation takes a while and would hold up the other customers' onboarding.
        true => Some(
            tokio::task::spawn_blocking(|| PrivateKey::generate(2048))
                .await
                .map_err(|e| Error::Keys(e.to_string()))?
                .map_err(|e| Error::Keys(e.to_string()))?,
        ),
        false => None,
    };
    let mut verifier = DeliveryVerifier::new(SignatureVerifier::new(vec![secret]));
    if let Some(key) = &private_key {
        verifier = verifier.with_private_key(key.clone()).require_encryption(true);
    }
    let config = ReceiverConfig::named(profile.id);
    let config = match profile.behaviour {
        Behaviour::Healthy => config,
        Behaviour::Flaky { fail_first } => config.with_fail_first(fail_first),
        Behaviour::Failing => config.with_fail_rate(1.0),
    };
    let receiver = start_receiver(profile.id, config, Arc::new(verifier)).await?;

    // Steps 5-8, with the customer's own API key.
    if let Some(key) = &private_key {
        let upload = json!({ "public_key": key.public_key().to_spki_pem() });
        api.call(Method::PUT, "/v1/customer/public-key", &api_key, upload).await?;
    }
    api.call(Method::PUT, "/v1/customer/subscriptions", &api_key, json!({ "events": profile.events })).await?;
    api.call(Method::PUT, "/v1/customer/webhook", &api_key, json!({ "url": receiver.url() })).await?;
    Ok(Member { profile: *profile, receiver })
}

/// The admin creates customer `id`: its API key and signing secret, shown this once.
async fn create(api: &Api, id: &str) -> Result<(String, SigningSecret)> {
    let created = api.call(reqwest::Method::POST, "/v1/customers", &api.admin_token, json!({ "id": id })).await?;
    let text = |field: &str| created[field].as_str().map(str::to_owned);
    let (Some(api_key), Some(secret)) = (text("api_key"), text("signing_secret")) else {
        return Err(Error::Onboarding { path: "/v1/customers".into(), status: 201, answer: created.to_string() });
    };
    let secret = SigningSecret::parse(&secret).map_err(|e| Error::Keys(e.to_string()))?;
    Ok((api_key, secret))
}

/// Starts `id`'s receiver with `config` on a free loopback port, trusting what `verifier` lets
/// through.
async fn start_receiver(id: &str, mut config: ReceiverConfig, verifier: Arc<dyn Verifier>) -> Result<ReceiverHandle> {
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let receiver_error = |source| Error::Receiver { customer: id.to_owned(), source };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| receiver_error(hookline_receiver::Error::Bind { address: config.listen, source: e }))?;
    Receiver::start_with_verifier(config, listener, verifier).map_err(receiver_error)
}

/// The operator's own endpoint, subscribed to Hookline's operational events.
pub const OPERATOR: &str = "ops";

/// The operator's endpoint: a verifying receiver that also counts what it accepted by event type.
#[derive(Debug)]
pub struct Operator {
    receiver: ReceiverHandle,
    noted: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Operator {
    /// Operational events received (signature verified), by type.
    pub fn notices(&self) -> BTreeMap<String, u64> {
        self.noted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops its receiver.
    pub async fn stop(self) {
        if let Err(error) = self.receiver.shutdown().await {
            tracing::warn!(%error, "the operator's receiver did not stop cleanly");
        }
    }
}

/// Verifies like the customers' receivers, then notes the event type of what it let through.
#[derive(Debug)]
struct Noting {
    inner: DeliveryVerifier,
    noted: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Verifier for Noting {
    fn verify(&self, headers: &HeaderMap, body: Bytes) -> std::result::Result<Opened, String> {
        let opened = self.inner.verify(headers, body)?;
        let event_type = serde_json::from_slice::<Value>(&opened.body)
            .ok()
            .and_then(|body| body["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.noted.lock().unwrap_or_else(PoisonError::into_inner).entry(event_type).or_default() += 1;
        Ok(opened)
    }
}

/// Onboards the operator's endpoint: the admin creates it and subscribes it to every operational
/// event (`hookline.endpoint.*`, which only an operator can), then it sets its own webhook URL.
pub async fn onboard_operator(api: &Api) -> Result<Operator> {
    use reqwest::Method;
    let (api_key, secret) = create(api, OPERATOR).await?;
    let noted = Arc::new(Mutex::new(BTreeMap::new()));
    let verifier =
        Noting { inner: DeliveryVerifier::new(SignatureVerifier::new(vec![secret])), noted: Arc::clone(&noted) };
    let receiver = start_receiver(OPERATOR, ReceiverConfig::named(OPERATOR), Arc::new(verifier)).await?;
    let events: Vec<&str> = EndpointEvent::ALL.iter().map(|e| e.event_type()).collect();
    let path = format!("/v1/customers/{OPERATOR}/subscriptions");
    api.call(Method::PUT, &path, &api.admin_token, json!({ "events": events })).await?;
    api.call(Method::PUT, "/v1/customer/webhook", &api_key, json!({ "url": receiver.url() })).await?;
    Ok(Operator { receiver, noted })
}

/// Stops every receiver.
pub async fn stop_receivers(members: Vec<Member>) {
    for member in members {
        if let Err(error) = member.receiver.shutdown().await {
            tracing::warn!(customer = member.profile.id, %error, "receiver did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_is_valid_and_has_one_flaky_and_one_failing_customer() {
        use hookline_core::customer::Customer;
        for profile in CAST {
            let events = profile.events.iter().map(|e| (*e).to_owned()).collect();
            let customer = Customer::new(profile.id, "http://127.0.0.1:1/webhook", events).unwrap();
            for event_type in
                ["order.created", "invoice.paid", "refund.issued", "account.closed", "x", "hookline.endpoint.parked"]
            {
                assert_eq!(customer.subscribes_to(event_type), profile.subscribes_to(event_type));
            }
        }
        let count = |wanted: fn(&Behaviour) -> bool| CAST.iter().filter(|p| wanted(&p.behaviour)).count();
        assert_eq!(count(|b| matches!(b, Behaviour::Flaky { .. })), 1);
        assert_eq!(count(|b| matches!(b, Behaviour::Failing)), 1);
        assert_eq!(count(|b| matches!(b, Behaviour::Healthy)), 4);
    }
}

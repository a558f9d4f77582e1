//! The onboarding API over HTTP against a real tansu broker: credentials and roles, cross-tenant
//! isolation, input validation (PEM, key size, URLs, event types), the SSRF guard at
//! registration, signing-secret rotation, test events, and what reaches the customers topic.

mod common;

use common::*;
use hookline_core::customer::Customer;
use hookline_wire::keys::PublicKey;
use rdkafka::message::Message;
use reqwest::Method;
use serde_json::{Value, json};

/// An RSA key of 1024 bits: valid PEM, too small.
const SMALL_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDMZTxcXR7ZqCJT0aDEsTec0SOq
OCAE5KIegwvqttlYlKG/BsapMXfiiAuHRyq1f2mO2TcLmbJri8We+769t9cjHCB9
fyJc6GL4JpTzj55WgJcf0MZ9Sj70rkRmr4YcCghP1/W/9d/1sOKN5FKfUgYtTXnV
xUxG6brC+6D5HbBCiwIDAQAB
-----END PUBLIC KEY-----
";

/// A 2048-bit RSA public key in PKCS#1 form (`BEGIN RSA PUBLIC KEY`).
const PKCS1_KEY: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA3S4vzDPyb2rpILcHPAdaPuJAxvHDjsq4RTAUxJ5duV71490TtMn9
u8i/S7V1l9X+bIqWVm8Am5aTP+xE9PZnvZr2wFjy13ilCL6VuqDsnd4Ec4ruHlZe
mz+plFyE2DUbz1eYNmcthoe1mHvPxHQf6Rt2BcFk0bRbUMlZgjxETCqoKvtswN9t
q3dTa/mfqe4almiO3o/RrqxKq504KOAC0xx6rSySe0UQ5M6WpzpqkD2DfNS3lO3p
wt0nkeY9KSf/PGfNCpr72UzYm/HRbEASoh3xlmdpYow5Gb3rswgkp5zJWxSEh6zO
nTH8puUGKbVU2OtADnX+mfnlzFHyxbcVqwIDAQAB
-----END RSA PUBLIC KEY-----
";

/// Creates a customer as the admin; returns `(api_key, signing_secret)`.
async fn create(harness: &Harness, id: &str) -> (String, String) {
    let (status, body) = harness
        .call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": id, "name": "Acme Inc." })))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], id);
    let api_key = body["api_key"].as_str().expect("api_key").to_owned();
    let secret = body["signing_secret"].as_str().expect("signing_secret").to_owned();
    assert!(api_key.starts_with("hk_"), "{api_key}");
    assert!(secret.starts_with("whsec_"), "{secret}");
    (api_key, secret)
}

fn assert_error(status: u16, body: &Value, expected_status: u16, mentions: &str) {
    assert_eq!(status, expected_status, "{body}");
    let error = error_of(body);
    assert!(error.contains(mentions), "error {error:?} should mention {mentions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_onboard_themselves_and_stay_isolated() {
    let harness = Harness::start(&[], |_| {}).await;

    // Roles: nobody but an admin creates customers.
    let body = Some(json!({ "id": "acme" }));
    let (status, answer) = harness.call(Method::POST, "/v1/customers", None, body.clone()).await;
    assert_error(status, &answer, 401, "Authorization");
    let (status, answer) = harness.call(Method::POST, "/v1/customers", Some("not-a-token"), body.clone()).await;
    assert_error(status, &answer, 401, "invalid credentials");
    let (status, answer) = harness.call(Method::POST, "/v1/customers", Some(PRODUCER_TOKEN), body).await;
    assert_error(status, &answer, 403, "admin");
    let (status, answer) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": "bad id" }))).await;
    assert_error(status, &answer, 422, "id");
    let (status, answer) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "name": "no id" }))).await;
    assert_error(status, &answer, 422, "id");
    // Creation is all-or-nothing: a request refused for any field writes nothing, so the same
    // id is still free afterwards (created below).
    for (body, mentions) in [
        (json!({ "id": "acme", "name": " " }), "name"),
        (json!({ "id": "acme", "name": "x".repeat(201) }), "name"),
        (json!({ "id": "acme", "name": 7 }), "name"),
        (json!({ "id": "acme", "webhook_url": "http://127.0.0.1:9/hook" }), "webhook_url"),
    ] {
        let (status, answer) = harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(body.clone())).await;
        assert!((400..500).contains(&status) && error_of(&answer).contains(mentions), "{body}: {status} {answer}");
        let (status, answer) = harness.call(Method::GET, "/v1/customers/acme", Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 404, "{body} left a customer behind: {answer}");
    }

    let (acme_key, acme_secret) = create(&harness, "acme").await;
    let (globex_key, globex_secret) = create(&harness, "globex").await;
    assert_ne!(acme_secret, globex_secret);
    let (status, answer) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": "acme" }))).await;
    assert_error(status, &answer, 409, "already exists");

    // A customer sees its own record, without credentials.
    let (status, own) = harness.call(Method::GET, "/v1/customer", Some(&acme_key), None).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["id"], "acme");
    assert_eq!(own["name"], "Acme Inc.");
    assert_eq!(own["encrypted"], false);
    let text = own.to_string();
    assert!(!text.contains("sha256") && !text.contains("sealed") && !text.contains(&acme_key), "{text}");

    // Cross-tenant: a customer key opens no admin route, so no other tenant's record.
    for (method, path) in [(Method::GET, "/v1/customers/acme"), (Method::DELETE, "/v1/customers/acme")] {
        let (status, answer) = harness.call(method, path, Some(&globex_key), None).await;
        assert_error(status, &answer, 403, "admin");
    }
    let (status, answer) = harness.call(Method::GET, "/v1/customers", Some(&globex_key), None).await;
    assert_error(status, &answer, 403, "admin");
    // A key that looks right but is not issued, and an admin token on a customer route.
    let forged = format!("{}x", &acme_key[..acme_key.len() - 1]);
    let (status, answer) = harness.call(Method::GET, "/v1/customer", Some(&forged), None).await;
    assert_error(status, &answer, 401, "invalid credentials");
    let (status, answer) = harness.call(Method::GET, "/v1/customer", Some(ADMIN_TOKEN), None).await;
    assert_error(status, &answer, 403, "customer API key");
    let (status, globex) = harness.call(Method::GET, "/v1/customer", Some(&globex_key), None).await;
    assert_eq!((status, globex["id"].as_str()), (200, Some("globex")));

    // Only producers publish.
    for token in [None, Some(acme_key.as_str()), Some(ADMIN_TOKEN)] {
        let event = Some(json!({ "type": "order.created", "payload": {} }));
        let (status, answer) = harness.call(Method::POST, "/publish", token, event).await;
        assert!(status == 401 || status == 403, "publish with {token:?}: {status} {answer}");
    }

    // Public key: PEM body (SPKI or PKCS#1), or JSON; bad or small keys are 422.
    let spki = hookline_wire::keys::PrivateKey::generate(2048).expect("key").public_key();
    let (status, updated) = harness
        .call_raw(Method::PUT, "/v1/customer/public-key", Some(&acme_key), "application/x-pem-file", spki.to_spki_pem())
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["public_key"]["kid"], spki.kid());
    assert_eq!(updated["public_key"]["bits"], 2048);
    assert_eq!(updated["encrypted"], true);
    let (status, updated) = harness
        .call(Method::PUT, "/v1/customer/public-key", Some(&globex_key), Some(json!({ "public_key": PKCS1_KEY })))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["public_key"]["kid"], PublicKey::from_pem(PKCS1_KEY).expect("pkcs1").kid());
    let (status, answer) = harness
        .call_raw(Method::PUT, "/v1/customer/public-key", Some(&acme_key), "text/plain", "not a key".into())
        .await;
    assert_error(status, &answer, 422, "public_key");
    let (status, answer) =
        harness.call_raw(Method::PUT, "/v1/customer/public-key", Some(&acme_key), "text/plain", SMALL_KEY.into()).await;
    assert_error(status, &answer, 422, "2048");
    // A refused key left the previous one in place.
    let (_, own) = harness.call(Method::GET, "/v1/customer", Some(&acme_key), None).await;
    assert_eq!(own["public_key"]["kid"], spki.kid());

    // Subscriptions and webhook URL validation.
    let (status, answer) = harness
        .call(Method::PUT, "/v1/customer/subscriptions", Some(&acme_key), Some(json!({ "events": ["ok", "bad type"] })))
        .await;
    assert_error(status, &answer, 422, "events");
    // A rate limit: what the customer's endpoint can take, set by the customer or an admin.
    for bad in [json!({ "per_second": 0 }), json!({ "per_second": 10_001 }), json!({ "per_second": "fast" })] {
        let (status, answer) =
            harness.call(Method::PUT, "/v1/customer/rate-limit", Some(&acme_key), Some(bad.clone())).await;
        assert_error(status, &answer, 422, "per_second");
    }
    let (status, limited) =
        harness.call(Method::PUT, "/v1/customer/rate-limit", Some(&acme_key), Some(json!({ "per_second": 50 }))).await;
    assert_eq!((status, &limited["rate_limit"]), (200, &json!(50)), "{limited}");
    let (status, unlimited) = harness
        .call(Method::PUT, "/v1/customers/acme/rate-limit", Some(ADMIN_TOKEN), Some(json!({ "per_second": null })))
        .await;
    assert_eq!(status, 200, "{unlimited}");
    assert!(unlimited.get("rate_limit").is_none(), "{unlimited}");
    // Operational events tell of other tenants: a customer cannot subscribe itself to them.
    let (status, answer) = harness
        .call(
            Method::PUT,
            "/v1/customer/subscriptions",
            Some(&acme_key),
            Some(json!({ "events": ["order.created", "hookline.endpoint.disabled"] })),
        )
        .await;
    assert_error(status, &answer, 403, "events");
    // An operator can, through the admin route; the customer then keeps them.
    let operational = json!({ "events": ["order.created", "hookline.endpoint.disabled"] });
    let (status, updated) = harness
        .call(Method::PUT, "/v1/customers/acme/subscriptions", Some(ADMIN_TOKEN), Some(operational.clone()))
        .await;
    assert_eq!((status, &updated["events"]), (200, &operational["events"]), "{updated}");
    let (status, kept) =
        harness.call(Method::PUT, "/v1/customer/subscriptions", Some(&acme_key), Some(operational)).await;
    assert_eq!(status, 200, "{kept}");
    let (status, answer) = harness
        .call(Method::PUT, "/v1/customers/acme/subscriptions", Some(&acme_key), Some(json!({"events": []})))
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, updated) = harness
        .call(
            Method::PUT,
            "/v1/customer/subscriptions",
            Some(&acme_key),
            Some(json!({ "events": ["order.created", "order.created", "invoice.paid"] })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["events"], json!(["order.created", "invoice.paid"]));
    for bad in ["ftp://127.0.0.1/x", "not a url", "http://user:pw@127.0.0.1/x"] {
        let (status, answer) =
            harness.call(Method::PUT, "/v1/customer/webhook", Some(&acme_key), Some(json!({ "url": bad }))).await;
        assert_error(status, &answer, 422, "url");
    }
    let (status, answer) =
        harness.call(Method::PUT, "/v1/customer/webhook", Some(&acme_key), Some(json!({ "address": "x" }))).await;
    assert_error(status, &answer, 422, "url");

    // A test event needs a URL first; then it is queued for this customer only.
    let (status, answer) = harness.call(Method::POST, "/v1/customer/test-event", Some(&acme_key), None).await;
    assert_error(status, &answer, 409, "webhook URL");
    let (status, updated) = harness
        .call(Method::PUT, "/v1/customer/webhook", Some(&acme_key), Some(json!({ "url": "http://127.0.0.1:9/hook" })))
        .await;
    assert_eq!((status, updated["webhook_url"].as_str()), (200, Some("http://127.0.0.1:9/hook")), "{updated}");
    let (status, accepted) = harness.call(Method::POST, "/v1/customer/test-event", Some(&acme_key), None).await;
    assert_eq!((status, accepted["deliveries"].as_u64()), (202, Some(1)), "{accepted}");
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, "acme");
    assert_eq!(records[0].value.event_type, "hookline.test");
    assert_eq!(records[0].value.event_id, accepted["event_id"].as_str().unwrap());

    // Rotation: a new secret, the previous one kept with an expiry.
    let (status, rotated) =
        harness.call(Method::POST, "/v1/customer/signing-secret/rotate", Some(&acme_key), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["signing_secret"].as_str().expect("new secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != acme_secret);
    assert!(rotated["previous_expires_at"].as_i64().is_some(), "{rotated}");
    let secrets = rotated["customer"]["signing_secrets"].as_array().expect("secrets").clone();
    assert_eq!(secrets.len(), 2, "{rotated}");
    assert!(secrets[0]["expires_at"].is_null() && secrets[1]["expires_at"].is_i64(), "{rotated}");

    // Nothing secret reached the customers topic in the clear.
    let stored = hookline_testkit::kafka::read_topic(&harness.kafka, &harness.topics.customers).await;
    assert!(!stored.is_empty());
    for record in &stored {
        let text = String::from_utf8_lossy(record.payload().unwrap_or_default());
        for secret in [acme_key.as_str(), globex_key.as_str(), acme_secret.as_str(), globex_secret.as_str(), new_secret]
        {
            assert!(!text.contains(secret), "a credential is stored in the clear: {text}");
            let bare = secret.trim_start_matches("whsec_");
            assert!(!text.contains(bare), "a secret is stored in the clear: {text}");
        }
    }
    let last_acme = stored.iter().rev().find(|r| r.key() == Some(b"acme".as_slice())).expect("acme record");
    let customer = Customer::from_record("acme", last_acme.payload().expect("value")).expect("decodes");
    assert!(customer.api_key.as_ref().is_some_and(|hash| hash.matches(&acme_key)));
    assert_eq!(customer.signing_secrets.len(), 2);

    // Admin: list, reissue a key, delete; a deleted customer's key no longer works.
    let (status, listed) = harness.call(Method::GET, "/v1/customers", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["customers"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    let (status, reissued) = harness.call(Method::POST, "/v1/customers/globex/api-key", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{reissued}");
    let new_globex_key = reissued["api_key"].as_str().expect("new key");
    let (status, _) = harness.call(Method::GET, "/v1/customer", Some(&globex_key), None).await;
    assert_eq!(status, 401, "the replaced key must stop working");
    let (status, _) = harness.call(Method::GET, "/v1/customer", Some(new_globex_key), None).await;
    assert_eq!(status, 200);
    let (status, answer) = harness.call(Method::DELETE, "/v1/customers/acme", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = harness.call(Method::GET, "/v1/customers/acme", Some(ADMIN_TOKEN), None).await;
    assert_error(status, &answer, 404, "acme");
    let (status, _) = harness.call(Method::GET, "/v1/customer", Some(&acme_key), None).await;
    assert_eq!(status, 401);

    let (_, metrics) = harness.get("/metrics").await;
    assert!(
        metrics.contains(r#"hookline_api_requests_total{operation="create_customer",status="201"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hookline_publish_requests_total{outcome="unauthorized"} 3"#), "{metrics}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_reaching_internal_networks_are_refused() {
    // No allow-list: the guard's defaults, as in production.
    let harness = Harness::start(&[], |config| config.network = Default::default()).await;
    let (key, _) = create(&harness, "acme").await;
    for (url, why) in [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0/hook", ""),
        ("http://224.0.0.1/hook", "multicast"),
    ] {
        let (status, answer) =
            harness.call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(json!({ "url": url }))).await;
        assert_error(status, &answer, 422, "url");
        assert!(error_of(&answer).contains(why), "{url}: {answer}");
        // Every refusal says which setting allows it.
        assert!(error_of(&answer).contains("to HOOKLINE_ALLOW_NETWORKS"), "{url}: {answer}");
    }
    // The whole answer for the common case, a local receiver; the path and query (where tokens
    // travel) are not echoed.
    let url = "http://127.0.0.1:9000/webhook?token=s3cr3t";
    let (status, answer) =
        harness.call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(json!({ "url": url }))).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer,
        json!({ "error": "invalid url: 127.0.0.1 is a loopback address; to allow it, add 127.0.0.0/8 to \
                          HOOKLINE_ALLOW_NETWORKS on the publisher, consumer and setup CLI" })
    );
    // A refused scheme has no setting to name.
    let (status, answer) = harness
        .call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(json!({ "url": "file:///etc/passwd" })))
        .await;
    assert_error(status, &answer, 422, "http or https");
    assert!(!error_of(&answer).contains("HOOKLINE_ALLOW_NETWORKS"), "{answer}");
    // A public address is accepted (an IP literal: this machine has no public DNS).
    let (status, updated) = harness
        .call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(json!({ "url": "https://93.184.215.14/hook" })))
        .await;
    assert_eq!(status, 200, "{updated}");
    harness.stop().await;
}

/// A change reads its own write back without waiting for the fetch deadline of a broker that
/// answers a waiting fetch only then (tansu; librdkafka's mock cluster): ten changes in a row
/// take well under ten of librdkafka's default 500 ms deadlines, which each of them waited
/// before. The bound, 250 ms a change, is generous (a change costs a few broker round trips and
/// at most the followers' 100 ms deadline); it is not a benchmark (`make bench` has the figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_a_row_do_not_each_wait_for_a_fetch_deadline() {
    const CHANGES: u32 = 10;
    let harness = Harness::start(&[], |_| {}).await;
    let (key, _) = create(&harness, "acme").await;
    let started = std::time::Instant::now();
    for i in 0..CHANGES {
        let events = json!({ "events": [format!("order.v{i}")] });
        let (status, updated) = harness.call(Method::PUT, "/v1/customer/subscriptions", Some(&key), Some(events)).await;
        assert_eq!(status, 200, "{updated}");
        // The answer is the record as read back from the topic.
        assert_eq!(updated["events"], json!([format!("order.v{i}")]));
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(250) * CHANGES,
        "{CHANGES} subscription changes took {took:?}: each waits for a fetch deadline"
    );
    harness.stop().await;
}

/// A customer enables its own endpoint after the consumers disabled it, and sees the state on
/// its record; an admin does the same for any customer; a new URL enables it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_is_shown_and_enabled_again_by_its_customer_or_an_admin() {
    let harness = Harness::start(&[], |_| {}).await;
    let (key, _) = create(&harness, "acme").await;
    let disable = |reason: &'static str| {
        let harness = &harness;
        async move {
            let stored = hookline_testkit::kafka::read_topic(&harness.kafka, &harness.topics.customers).await;
            let last = stored.iter().rev().find(|r| r.key() == Some(b"acme".as_slice())).expect("acme record");
            let mut customer = Customer::from_record("acme", last.payload().expect("value")).expect("decodes");
            assert!(customer.disable(1_790_000_000, reason));
            hookline_core::directory::put_customer(&harness.kafka, &harness.topics.customers, &customer)
                .await
                .expect("put customer");
        }
    };

    disable("failing continuously since 2026-11-25T10:00:00Z").await;
    let shown = wait_for_disabled(&harness, &key).await;
    assert_eq!(shown["disabled"]["reason"], "failing continuously since 2026-11-25T10:00:00Z", "{shown}");
    assert_eq!(shown["disabled"]["at"], 1_790_000_000, "{shown}");
    let (status, answer) = harness.call(Method::POST, "/v1/customer/webhook/enable", Some(&key), None).await;
    assert_eq!((status, answer["was_disabled"].as_bool()), (200, Some(true)), "{answer}");
    assert!(answer.get("disabled").is_none(), "{answer}");
    let (status, answer) = harness.call(Method::POST, "/v1/customer/webhook/enable", Some(&key), None).await;
    assert_eq!((status, answer["was_disabled"].as_bool()), (200, Some(false)), "{answer}");
    let (status, answer) = harness.call(Method::POST, "/v1/customer/webhook/enable", Some("hk_wrong"), None).await;
    assert_error(status, &answer, 401, "");

    // An admin, by id; an unknown id is a 404.
    disable("again").await;
    wait_for_disabled(&harness, &key).await;
    let (status, answer) =
        harness.call(Method::POST, "/v1/customers/acme/webhook/enable", Some(ADMIN_TOKEN), None).await;
    assert_eq!((status, answer["was_disabled"].as_bool()), (200, Some(true)), "{answer}");
    let (status, answer) =
        harness.call(Method::POST, "/v1/customers/nobody/webhook/enable", Some(ADMIN_TOKEN), None).await;
    assert_error(status, &answer, 404, "nobody");
    let (status, _) = harness.call(Method::POST, "/v1/customers/acme/webhook/enable", Some(&key), None).await;
    assert_eq!(status, 403, "a customer's key is not an admin's");

    // A new webhook URL is a new endpoint.
    disable("once more").await;
    wait_for_disabled(&harness, &key).await;
    let url = json!({ "url": "http://127.0.0.1:9/new" });
    let (status, answer) = harness.call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(url)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("disabled").is_none(), "{answer}");
    harness.stop().await;
}

/// The customer's own record once it shows the endpoint disabled.
async fn wait_for_disabled(harness: &Harness, key: &str) -> Value {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, shown) = harness.call(Method::GET, "/v1/customer", Some(key), None).await;
        assert_eq!(status, 200, "{shown}");
        if !shown["disabled"].is_null() {
            return shown;
        }
        assert!(tokio::time::Instant::now() < until, "the endpoint never showed disabled: {shown}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

//! The customer portal in a real headless Chromium (Debian's, driven by `puppeteer-core` from
//! `interop/portal.mjs`) against a real publisher, a real consumer and a real broker (tansu):
//! sign in with a portal link, see a failed delivery, change the webhook URL, resend it and see it
//! delivered; another tenant's data is out of reach; an expired link is refused; an API key signs
//! in too. The test takes a screenshot (`target/portal.png`, out of git).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Harness};
use hookline_testkit::{Endpoint, tenants, unique_name};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The browser `make test` installs (`scripts/ensure-chromium.sh`), else the script's answer.
fn browser() -> String {
    if let Some(path) = std::env::var_os("HOOKLINE_CHROMIUM").filter(|p| !p.is_empty()) {
        return path.to_string_lossy().into_owned();
    }
    let script = hookline_testkit::interop::repo_root().join("scripts/ensure-chromium.sh");
    let output = std::process::Command::new(&script).output().expect("run ensure-chromium.sh");
    assert!(output.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("a path").trim().to_owned()
}

async fn customer(harness: &Harness, id: &str, url: &str) -> String {
    let (status, body) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": id }))).await;
    assert_eq!(status, 201, "{body}");
    let key = body["api_key"].as_str().unwrap().to_owned();
    let (status, body) =
        harness.call(Method::PUT, "/v1/customer/webhook", Some(&key), Some(json!({ "url": url }))).await;
    assert_eq!(status, 200, "{body}");
    let events = json!({ "events": ["order.created"] });
    let (status, body) = harness.call(Method::PUT, "/v1/customer/subscriptions", Some(&key), Some(events)).await;
    assert_eq!(status, 200, "{body}");
    key
}

async fn status_of(harness: &Harness, key: &str, event_id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) =
            harness.call(Method::GET, &format!("/v1/customer/deliveries/{event_id}"), Some(key), None).await;
        if body["delivery"]["status"] == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{event_id} never {wanted}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn link(harness: &Harness, customer: &str, ttl_seconds: u64) -> String {
    let path = format!("/v1/customers/{customer}/portal");
    let (status, body) =
        harness.call(Method::POST, &path, Some(ADMIN_TOKEN), Some(json!({ "ttl_seconds": ttl_seconds }))).await;
    assert_eq!(status, 201, "{body}");
    body["url"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_fixes_its_endpoint_and_resends_in_the_portal() {
    let browser = browser();
    let harness = Harness::start(&[], |_| {}).await;
    let failing = Endpoint::always(503).await;
    let working = Endpoint::ok().await;
    let acme = customer(&harness, "acme", &failing.url()).await;
    let globex = customer(&harness, "globex", &working.url()).await;

    // A consumer that gives up after two attempts, so a failure is dead-lettered quickly.
    let mut consumer = hookline_consumer::Config::new(harness.kafka.clone(), harness.topics.clone(), &unique_name("g"));
    consumer.delivery.max_attempts = 2;
    consumer.delivery.initial_backoff = Duration::from_millis(100);
    consumer.delivery.max_backoff = Duration::from_millis(200);
    consumer.master_key = tenants::master_key_args();
    consumer.network = tenants::loopback_network();
    let stop_consumer = CancellationToken::new();
    let consumer = tokio::spawn(hookline_consumer::run(consumer, stop_consumer.clone()));

    let (status, published) = harness
        .publish(json!({"type": "order.created", "payload": {"order": 1234, "total": "99.50"}, "target": "acme"}))
        .await;
    assert_eq!(status, 202, "{published}");
    let failed = published["event_id"].as_str().unwrap().to_owned();
    let (_, theirs) = harness.publish(json!({"type": "order.created", "payload": {}, "target": "globex"})).await;
    let other = theirs["event_id"].as_str().unwrap().to_owned();
    status_of(&harness, &acme, &failed, "dead_lettered").await;
    status_of(&harness, &globex, &other, "delivered").await;

    // The page and its assets carry the security headers.
    let page = harness.client.get(format!("{}/portal", harness.base)).send().await.unwrap();
    let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(header("content-security-policy").contains("script-src 'self'"), "{:?}", page.headers());
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!((header("x-frame-options"), header("cache-control")), ("DENY".into(), "no-store".into()));

    let good_link = link(&harness, "acme", 600).await;
    assert!(good_link.starts_with(&format!("{}/portal#token=hlp_", harness.base)), "{good_link}");
    let expired_link = link(&harness, "acme", 1).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../portal.png");
    let input = json!({
        "browser": browser,
        "base": harness.base,
        "link": good_link,
        "expiredLink": expired_link,
        "apiKey": globex,
        "otherEventId": other,
        "blockedUrl": "http://169.254.169.254/latest",
        "goodUrl": working.url(),
        "screenshot": screenshot,
    });
    let seen: Value = tokio::task::spawn_blocking(move || hookline_testkit::interop::node("portal.mjs", &input))
        .await
        .expect("the browser session");
    assert!(seen["error"].is_null(), "the browser session failed: {}", seen["error"]);

    assert_eq!(seen["who"], "acme");
    assert!(!seen["addressAfterSignIn"].as_str().unwrap().contains("token"), "{seen}");
    assert_eq!(seen["failedEventId"], failed.as_str(), "the failed delivery is listed: {seen}");
    assert!(seen["blockedUrlError"].as_str().unwrap().contains("169.254.169.254"), "{seen}");
    assert_eq!(seen["urlShown"], working.url().as_str());
    assert_eq!(seen["statusAfterResend"], "delivered", "{seen}");
    assert!(working.received().iter().any(|r| r.webhook_id() == failed), "the resend reached the fixed endpoint");
    assert!(seen["payloadShown"].as_str().unwrap().contains("\"order\": 1234"), "{seen}");
    assert!(seen["attemptsShown"].as_str().unwrap().contains("dead_lettered"), "{seen}");
    assert_eq!(seen["otherTenantStatus"], 404, "another tenant's delivery: {seen}");
    assert_eq!(seen["chartDrawn"], true);
    assert_eq!(seen["cspViolations"], json!([]));
    assert_eq!(seen["sectionsScrollingSideways"], json!([]), "the page is wider than an 800 px window");
    assert!(seen["expiredLinkError"].as_str().unwrap().contains("expired"), "{seen}");
    assert_eq!(seen["expiredPortalHidden"], true);
    assert_eq!(seen["apiKeyWho"], "globex");
    assert_eq!(seen["apiKeyRows"], 1, "globex sees its one delivery: {seen}");
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000), "{}", screenshot.display());

    stop_consumer.cancel();
    consumer.await.unwrap().unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_are_for_admins_and_bounded() {
    let harness = Harness::start(&[], |_| {}).await;
    let acme = customer(&harness, "acme", "http://127.0.0.1:9/webhook").await;
    let (status, _) = harness.call(Method::POST, "/v1/customers/acme/portal", Some(&acme), None).await;
    assert_eq!(status, 403, "a customer cannot mint links");
    let (status, _) = harness.call(Method::POST, "/v1/customers/nobody/portal", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404);
    let too_long = json!({ "ttl_seconds": 90_000 });
    let (status, body) =
        harness.call(Method::POST, "/v1/customers/acme/portal", Some(ADMIN_TOKEN), Some(too_long)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("invalid `ttl_seconds`"), "{body}");

    // A link's token is acme's credential on acme's routes, and nothing more.
    let url = link(&harness, "acme", 60).await;
    let token = url.split_once("#token=").unwrap().1.to_owned();
    let (status, me) = harness.call(Method::GET, "/v1/customer", Some(&token), None).await;
    assert_eq!((status, me["id"].clone()), (200, json!("acme")));
    let (status, _) = harness.call(Method::GET, "/v1/customers", Some(&token), None).await;
    assert_eq!(status, 403, "not an admin's");
    let altered = format!("{}x", &token[..token.len() - 1]);
    let (status, _) = harness.call(Method::GET, "/v1/customer", Some(&altered), None).await;
    assert_eq!(status, 401);
    harness.stop().await;
}

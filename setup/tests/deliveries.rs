//! `hookline-setup deliveries list|show|resend` against a real publisher on a real broker (tansu).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{args, create_topics, in_process};
use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use hookline_core::config::{SecretString, TopicArgs};
use hookline_core::envelope::headers;
use hookline_setup::EXIT_USAGE;
use hookline_testkit::kafka::{header, produce_raw, producer, read_topic};
use hookline_testkit::{Broker, init_test_logging, tenants, unique_name};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "setup-test-admin";

fn logged(event_id: &str, outcome: AttemptOutcome, attempt: u32, location: (&str, i32, i64)) -> AttemptRecord {
    AttemptRecord {
        event_id: event_id.into(),
        customer_id: "acme".into(),
        event_type: "order.created".into(),
        attempt,
        at_ms: u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap(),
        duration_ms: Some(3),
        status: Some(503),
        error_class: Some("5xx".into()),
        error: Some("HTTP 503 Service Unavailable".into()),
        response: None,
        outcome,
        reason: (outcome == AttemptOutcome::DeadLettered).then(|| "max_attempts".to_owned()),
        topic: location.0.into(),
        partition: location.1,
        offset: location.2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_show_and_resend_a_customers_deliveries() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("deliveries");
    create_topics(&brokers, &prefix).await;
    let topics = TopicArgs::with_prefix(&prefix);
    let kafka = broker.kafka_args();
    let (result, out) = in_process(&args(
        &brokers,
        &prefix,
        &["customers", "create", "--id", "acme", "--webhook-url", "http://127.0.0.1:9/webhook", "--events", "*"],
    ))
    .await;
    result.unwrap_or_else(|e| panic!("customers create: {e}\n{out}"));

    let mut config = hookline_publisher::Config::new(kafka.clone(), topics.clone());
    config.admin_tokens = vec![SecretString::new(ADMIN_TOKEN)];
    config.master_key = tenants::master_key_args();
    config.network = tenants::loopback_network();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let publisher = tokio::spawn(hookline_publisher::serve(config, listener, shutdown.clone()));

    // A delivery record, and what a consumer logged of it: a failure, then the dead letter.
    let event = hookline_core::envelope::EventRecord::new(
        "order.created",
        serde_json::value::to_raw_value(&serde_json::json!({"order": 7})).unwrap(),
    );
    let records = producer(&kafka);
    hookline_testkit::kafka::produce_record(&records, &topics.deliveries, "acme", &event).await;
    let written = read_topic(&kafka, &topics.deliveries).await;
    let location = (topics.deliveries.as_str(), written[0].partition(), written[0].offset());
    for entry in [
        logged(&event.event_id, AttemptOutcome::Failed, 1, location),
        logged(&event.event_id, AttemptOutcome::DeadLettered, 1, location),
    ] {
        produce_raw(&records, &topics.attempts, Some(b"acme"), &entry.to_value()).await;
    }

    let api = |command: &[&str]| {
        let mut all: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--api-url".to_owned(), api_url.clone(), "--admin-token".to_owned(), ADMIN_TOKEN.to_owned()]);
        all
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (result, out) = in_process(&api(&["deliveries", "list", "--customer", "acme"])).await;
        if result.is_ok() && out.contains("dead_lettered") {
            break out;
        }
        assert!(Instant::now() < deadline, "never listed: {result:?}\n{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        listed.contains(&format!("dead_lettered   1 attempt(s)  {}  order.created  HTTP 503", event.event_id)),
        "{listed}"
    );
    assert!(listed.ends_with("1 delivery\n"), "{listed}");

    let (result, shown) =
        in_process(&api(&["deliveries", "show", "--customer", "acme", "--event", &event.event_id])).await;
    result.unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(shown["payload"], serde_json::json!({"order": 7}));

    let (result, out) =
        in_process(&api(&["deliveries", "resend", "--customer", "acme", "--event", &event.event_id])).await;
    result.unwrap();
    assert!(out.starts_with(&format!("resent {} to acme (resend rs_", event.event_id)), "{out}");
    let copies = read_topic(&kafka, &topics.deliveries).await;
    assert_eq!(copies.len(), 2);
    assert!(header(&copies[1], headers::RESEND_ID).is_some_and(|id| out.contains(&id)), "{out}");

    // The operator's mistakes are usage errors (exit 2) naming what is wrong.
    let (result, _) = in_process(&api(&["deliveries", "list", "--customer", "nobody"])).await;
    let error = result.unwrap_err();
    assert_eq!(error.exit_code(), EXIT_USAGE);
    assert!(error.to_string().contains("404"), "{error}");
    let (result, _) = in_process(&api(&["deliveries", "list", "--customer", "acme", "--status", "lost"])).await;
    let error = result.unwrap_err();
    assert!(error.to_string().contains("invalid `status`") && error.exit_code() == EXIT_USAGE, "{error}");
    let (result, _) = in_process(&["deliveries".into(), "list".into(), "--customer".into(), "acme".into()]).await;
    let error = result.unwrap_err();
    assert!(error.to_string().contains("--admin-token") && error.exit_code() == EXIT_USAGE, "{error}");

    shutdown.cancel();
    publisher.await.unwrap().unwrap();
}

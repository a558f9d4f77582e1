//! Parking (`--park-after`) against a real broker (tansu): a failing customer's records go to the
//! retry topic in order while the other customers of its partition flow, it is probed on its
//! schedule and drained in order once it recovers, in both ordering modes; its schedule runs
//! out into the DLQ; its parked state survives a restart.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use common::{
    Env, Recording, assert_customer_order, assert_each_acked_once, customer_seq, customers, free_port, metric_value,
    publish, sample, scrape_until,
};
use hookline_consumer::config::{Ordering, ParkAfter, RetrySchedule, Window};
use hookline_core::deadletter;
use hookline_core::envelope::headers::EVENT_ID;
use hookline_core::notices::EndpointEvent;
use hookline_core::parking;
use hookline_testkit::kafka::{header, read_topic};
use hookline_testkit::{tenants, wait_until};
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(60);

/// One record per produce request, for every producer of the consumer under test: tansu 0.6
/// answers a fetch from an offset inside a batch with the next batch, skipping the rest of the
/// one asked for, and a parked customer's records are read back from their own offsets (Kafka
/// returns the whole batch, and the client skips what comes before). A workaround of the test
/// broker, not a setting Hookline needs.
const ONE_RECORD_BATCHES: (&str, &str) = ("batch.num.messages", "1");

/// Settings with parking after `park_after` attempts and `schedule`, in `ordering`.
fn parking_config(env: &Env, ordering: Ordering, park_after: u32, schedule: &str) -> hookline_consumer::Config {
    let mut config = env.config();
    config.kafka = config.kafka.with_property(ONE_RECORD_BATCHES.0, ONE_RECORD_BATCHES.1);
    config.ordering.ordering = ordering;
    config.parking.park_after = Some(ParkAfter(Some(park_after)));
    config.parking.retry_schedule = schedule.parse::<RetrySchedule>().expect("schedule");
    config
}

/// A `--retry-schedule` of `count` steps of `delay`.
fn steps(delay: &str, count: usize) -> String {
    vec![delay; count].join(",")
}

/// The `seq`s `endpoint` ACKed, in ACK order.
fn acked_seqs(endpoint: &Recording) -> Vec<i64> {
    endpoint.acks().iter().map(|r| customer_seq(r).1).collect()
}

/// An operator's endpoint: customer `ops`, subscribed by name to `events` (and to `*`, which
/// alone would not bring them).
async fn operator(env: &Env, events: &[EndpointEvent]) -> Recording {
    let endpoint = Recording::start(|_| hookline_testkit::Respond::ok()).await;
    let mut subscribed = vec!["*"];
    subscribed.extend(events.iter().map(|e| e.event_type()));
    let (ops, _) = tenants::signed_customer("ops", &endpoint.endpoint.url(), &subscribed);
    env.put(&ops).await;
    endpoint
}

/// The type and data of each operational event `endpoint` ACKed, in ACK order.
fn notices_of(endpoint: &Recording) -> Vec<(String, serde_json::Value)> {
    endpoint
        .acks()
        .iter()
        .map(|r| r.json())
        .filter(|body| body["type"].as_str().is_some_and(|t| t.starts_with("hookline.endpoint.")))
        .map(|body| (body["type"].as_str().unwrap_or_default().to_owned(), body["data"].clone()))
        .collect()
}

fn kinds(notices: &[(String, serde_json::Value)]) -> Vec<&str> {
    notices.iter().map(|(kind, _)| kind.as_str()).collect()
}

/// The event ids of `customer`'s records on the retry topic, in offset order.
async fn parked_ids(env: &Env, customer: &str) -> Vec<String> {
    read_topic(&env.kafka, &env.topics.retry)
        .await
        .iter()
        .filter(|m| m.key() == Some(customer.as_bytes()))
        .map(|m| {
            assert!(parking::parse(m).at.is_some(), "a parked record says when it was parked");
            header(m, EVENT_ID).expect("event id")
        })
        .collect()
}

async fn a_failing_customer_is_parked_then_drained_in_order_while_the_others_flow(ordering: Ordering) {
    let env = Env::new(1).await;
    let healthy = Recording::start(|_| hookline_testkit::Respond::ok()).await;
    let (down, up) = Recording::switchable().await;
    let others = customers(&env, "ok", 3, &healthy.endpoint.url()).await;
    let failing = customers(&env, "down", 1, &down.endpoint.url()).await;
    let operator = operator(&env, &[EndpointEvent::Parked, EndpointEvent::Recovered]).await;
    // A schedule long enough that the customer is still parked when it recovers.
    let consumer = env.start(parking_config(&env, ordering, 2, &steps("300ms", 30)));

    let mut all = failing.clone();
    all.extend(others.iter().cloned());
    // The failing customer's records first in each round, so that everyone else's are behind them.
    let published = publish(&env, &all, 0..10).await;
    assert_eq!(published.len(), 40);

    // Every other customer's records arrive while the failing one is still down.
    wait_until(WAIT, "the healthy customers' 30 deliveries", || healthy.acks().len() >= 30).await;
    assert!(!up.load(AtomicOrdering::SeqCst));
    assert_eq!(healthy.acks().len(), 30, "each healthy delivery once");
    wait_until(WAIT, "the failing customer's 10 records parked", || {
        sample(&consumer, "hookline_parked_records_total", &[]) >= 10
    })
    .await;
    assert_eq!(sample(&consumer, "hookline_parked_customers", &[]), 1);
    // The failing customer is first of each round of four.
    let failing_ids: Vec<String> = published.iter().step_by(4).cloned().collect();
    assert_eq!(parked_ids(&env, &failing[0]).await, failing_ids, "parked in order, once each");
    assert!(down.acks().is_empty());
    // Probed with one request per due time, not a storm: at most about one per 300 ms since.
    let failed_probes =
        metric_value(&consumer.metrics, "hookline_parking_transitions_total", &[("kind", "probe_failed")]);
    assert!(failed_probes >= 1, "the parked customer is probed");

    up.store(true, AtomicOrdering::SeqCst);
    wait_until(WAIT, "the failing customer's 10 deliveries", || down.acks().len() >= 10).await;
    assert_customer_order(&[&down, &healthy]);
    let seqs = acked_seqs(&down);
    assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "recovered customer's records in order, each once");
    wait_until(WAIT, "the customer unparked", || sample(&consumer, "hookline_parked_customers", &[]) == 0).await;
    assert_eq!(metric_value(&consumer.metrics, "hookline_parking_transitions_total", &[("kind", "recovered")]), 1);
    // The operator's endpoint heard of both changes, in order; the `*` subscribers of neither.
    wait_until(WAIT, "the operator's two notices", || operator.acks().len() >= 2).await;
    let notices = notices_of(&operator);
    assert_eq!(kinds(&notices), ["hookline.endpoint.parked", "hookline.endpoint.recovered"]);
    assert!(notices.iter().all(|(_, data)| data["customer_id"] == failing[0].as_str()), "{notices:?}");
    assert_eq!(notices[0].1["last_status"], 503, "{notices:?}");
    assert!(notices[0].1["next_attempt_at"].is_string(), "{notices:?}");
    assert_eq!(sample(&consumer, "hookline_notices_total", &[("type", "parked"), ("outcome", "published")]), 1);
    assert!(healthy.acks().iter().all(|r| !r.json()["type"].as_str().unwrap_or_default().starts_with("hookline.")));

    // Live records flow directly again: delivered, not parked.
    let later = publish(&env, &failing, 10..12).await;
    wait_until(WAIT, "the later deliveries", || down.acks().len() >= 12).await;
    assert_eq!(parked_ids(&env, &failing[0]).await.len(), 10, "nothing parked after the customer recovered");
    let acked: BTreeSet<String> = down.acked_ids();
    assert!(later.iter().all(|id| acked.contains(id)));
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty(), "nothing dead-lettered");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_mode_parks_a_failing_customer_and_drains_it_in_order_once_it_recovers() {
    a_failing_customer_is_parked_then_drained_in_order_while_the_others_flow(Ordering::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_mode_parks_a_failing_customer_and_drains_it_in_order_once_it_recovers() {
    a_failing_customer_is_parked_then_drained_in_order_while_the_others_flow(Ordering::Key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_record_whose_schedule_runs_out_is_dead_lettered_and_the_next_one_follows() {
    let env = Env::new(1).await;
    let down = Recording::start(|_| hookline_testkit::Respond::status(503)).await;
    let failing = customers(&env, "down", 1, &down.endpoint.url()).await;
    let consumer = env.start(parking_config(&env, Ordering::Partition, 1, "200ms,200ms"));
    let published = publish(&env, &failing, 0..3).await;

    wait_until(WAIT, "3 dead letters", || {
        metric_value(&consumer.metrics, "hookline_dlq_records_total", &[("reason", "retries_exhausted")]) >= 3
    })
    .await;
    let letters = read_topic(&env.kafka, &env.topics.dlq).await;
    let ids: Vec<String> = letters
        .iter()
        .map(|letter| {
            let parsed = deadletter::parse_message(letter);
            assert_eq!(parsed.reason.as_deref(), Some("retries_exhausted"), "{parsed:?}");
            assert!(
                parsed.error.as_deref().is_some_and(|e| e.contains("HTTP 503") || e.contains("parked behind")),
                "{parsed:?}"
            );
            assert_eq!(parsed.original_topic.as_deref(), Some(env.topics.retry.as_str()));
            assert!(parking::parse(letter).from.is_some_and(|from| from.starts_with(&env.topics.deliveries)));
            parsed.event_id.expect("event id")
        })
        .collect();
    assert_eq!(ids, published, "dead-lettered once each, in order");
    // The first record: one attempt in place, then one try per step of its schedule.
    let first = down.endpoint.received().iter().filter(|r| r.webhook_id() == published[0]).count();
    assert_eq!(first, 3, "1 attempt in place + 2 scheduled tries");
    let first_letter = deadletter::parse_message(&letters[0]);
    assert!(first_letter.error.as_deref().is_some_and(|e| e.contains("HTTP 503")), "{first_letter:?}");
    assert_eq!((first_letter.attempts, first_letter.last_status), (Some(3), Some(503)), "{first_letter:?}");
    // The records parked behind it had their schedules run out meanwhile (or nearly): at most
    // one try each, never a storm.
    assert!(down.endpoint.count() <= 5, "{} requests", down.endpoint.count());
    wait_until(WAIT, "the customer unparked", || sample(&consumer, "hookline_parked_customers", &[]) == 0).await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_consumer_finds_its_parked_customers_and_drains_them_in_order() {
    let env = Env::new(1).await;
    let (down, up) = Recording::switchable().await;
    let failing = customers(&env, "down", 1, &down.endpoint.url()).await;
    let schedule = &steps("500ms", 40);
    let first = env.start(parking_config(&env, Ordering::Key, 1, schedule));
    publish(&env, &failing, 0..6).await;
    wait_until(WAIT, "6 records parked", || sample(&first, "hookline_parked_records_total", &[]) >= 6).await;
    first.stop().await;

    // A new member of the group (this process restarted): the customer is parked, so a new
    // record is parked behind the others, and nothing is delivered before it recovers.
    let second = env.start(parking_config(&env, Ordering::Key, 1, schedule));
    publish(&env, &failing, 6..8).await;
    wait_until(WAIT, "the customer restored as parked", || sample(&second, "hookline_parked_customers", &[]) == 1)
        .await;
    wait_until(WAIT, "the new records parked behind", || sample(&second, "hookline_parked_records_total", &[]) >= 2)
        .await;
    // Failing since the first consumer parked it.
    wait_until(WAIT, "the parked age", || {
        sample(&second, "hookline_oldest_parked_age_seconds", &[("partition", "0")]) >= 1
    })
    .await;
    assert!(down.acks().is_empty());
    up.store(true, AtomicOrdering::SeqCst);
    wait_until(WAIT, "8 deliveries", || down.acks().len() >= 8).await;
    let seqs = acked_seqs(&down);
    assert_eq!(seqs, (0..8).collect::<Vec<_>>(), "in order across the restart, each once");
    wait_until(WAIT, "the customer unparked", || sample(&second, "hookline_parked_customers", &[]) == 0).await;
    assert_eq!(sample(&second, "hookline_oldest_parked_age_seconds", &[("partition", "0")]), 0);
    second.stop().await;
}

/// The seqs `endpoint` ACKed for `customer`, in ACK order, and each first ACK's seq in order.
fn first_acks(endpoint: &Recording) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    endpoint.acks().iter().filter(|r| seen.insert(r.webhook_id().to_owned())).map(|r| customer_seq(r).1).collect()
}

/// Real processes SIGKILLed twice: while a failing customer's records are being parked, and
/// while its parked records drain after it recovered. Nothing is lost, its first deliveries are
/// in publish order, and the ledger keeps what was delivered from being sent again (but for the
/// deliveries whose ledger entry was not acknowledged at a kill).
/// The failing customer's records in the SIGKILL test.
const FAILING: i64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_parking_and_while_draining_loses_nothing_and_keeps_order() {
    let env = Env::new(1).await;
    let slow_when_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = std::sync::Arc::clone(&slow_when_up);
    // Down: 503. Up: 200 after 30 ms, so that draining takes a while.
    let down = Recording::start(move |_| {
        if up.load(AtomicOrdering::SeqCst) {
            hookline_testkit::Respond::ok().delayed(Duration::from_millis(30))
        } else {
            hookline_testkit::Respond::status(503)
        }
    })
    .await;
    let healthy = Recording::start(|_| hookline_testkit::Respond::ok()).await;
    let failing = customers(&env, "down", 1, &down.endpoint.url()).await;
    let others = customers(&env, "ok", 2, &healthy.endpoint.url()).await;
    let process = |port: u16| {
        env.spawn_process(&[
            "--kafka-property",
            &format!("{}={}", ONE_RECORD_BATCHES.0, ONE_RECORD_BATCHES.1),
            "--park-after",
            "1",
            "--retry-schedule",
            &steps("300ms", 100),
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
    };
    let http = reqwest::Client::new();
    let mut all = failing.clone();
    all.extend(others.iter().cloned());
    let published = publish(&env, &all, 0..40).await;
    let mut failing_ids: Vec<String> = published.iter().step_by(3).cloned().collect();
    // Enough of the failing customer's records that parking them takes a while.
    failing_ids.extend(publish(&env, &failing, 40..FAILING).await);

    let port = free_port();
    let mut first = process(port);
    // Killed while the failing customer's records are being parked.
    scrape_until(&http, port, "hookline_parked_records_total", |n| n >= 10.0).await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("wait");
    let parked_before = parked_ids(&env, &failing[0]).await.len();
    assert!((10..FAILING as usize).contains(&parked_before), "killed while parking ({parked_before} parked)");

    let port = free_port();
    let mut second = process(port);
    wait_until(WAIT, "the other customers' deliveries", || healthy.acked_ids().len() == 80).await;
    scrape_until(&http, port, "hookline_parked_customers", |n| n >= 1.0).await;
    assert!(down.acks().is_empty());
    slow_when_up.store(true, AtomicOrdering::SeqCst);
    // Killed while the recovered customer's parked records drain.
    wait_until(WAIT, "part of the drain", || down.acks().len() >= 15).await;
    second.start_kill().expect("SIGKILL");
    second.wait().await.expect("wait");
    let drained_before = down.acked_ids().len();
    assert!(drained_before < FAILING as usize, "killed while draining ({drained_before} delivered)");

    let port = free_port();
    let mut third = process(port);
    wait_until(WAIT, "every event of the failing customer", || down.acked_ids().len() == FAILING as usize).await;
    scrape_until(&http, port, "hookline_parked_customers", |n| n == 0.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    third.start_kill().expect("SIGKILL");
    third.wait().await.expect("wait");

    assert_eq!(first_acks(&down), (0..FAILING).collect::<Vec<_>>(), "first deliveries in publish order");
    let acked: BTreeSet<String> = down.acked_ids();
    assert_eq!(acked, failing_ids.iter().cloned().collect(), "every record delivered");
    // Sent again: only deliveries ACKed whose ledger entry the broker had not acknowledged at a
    // kill (the window every delivery has), a few at most.
    let again = down.acks().len() - FAILING as usize;
    assert!(again <= 3, "{again} of the failing customer's sent again");
    assert_eq!(healthy.acked_ids().len(), 80);
    let healthy_again = healthy.acks().len() - 80;
    assert!(healthy_again <= 10, "{healthy_again} healthy deliveries sent again");
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
}

/// A member joins while a customer of each partition is parked: the partitions (with their
/// parked customers) move, the new owner reads their parking state back, and once the customers
/// recover everything arrives exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_with_parked_customers_moves_them_with_their_partitions() {
    let env = Env::new(2).await;
    let (down, up) = Recording::switchable().await;
    let failing = customers(&env, "down", 6, &down.endpoint.url()).await;
    let schedule = steps("500ms", 100);
    let first = env.start(parking_config(&env, Ordering::Key, 1, &schedule));
    let published = publish(&env, &failing, 0..5).await;
    wait_until(WAIT, "30 records parked", || sample(&first, "hookline_parked_records_total", &[]) >= 30).await;
    assert_eq!(sample(&first, "hookline_parked_customers", &[]), 6);

    let second = env.start(parking_config(&env, Ordering::Key, 1, &schedule));
    wait_until(WAIT, "the second member to restore parked customers", || {
        sample(&second, "hookline_parked_customers", &[]) >= 1
    })
    .await;
    wait_until(WAIT, "the parked customers shared out", || {
        sample(&first, "hookline_parked_customers", &[]) + sample(&second, "hookline_parked_customers", &[]) == 6
    })
    .await;
    assert!(sample(&first, "hookline_parked_customers", &[]) < 6, "partitions moved");
    assert!(down.acks().is_empty());
    up.store(true, AtomicOrdering::SeqCst);
    wait_until(WAIT, "every record delivered", || down.acked_ids().len() == published.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_each_acked_once(&[&down], &published);
    assert_customer_order(&[&down]);
    first.stop().await;
    second.stop().await;
}

/// A customer failing continuously for `--disable-after` is disabled in the customer directory:
/// its parked and new records go to the DLQ (`endpoint_disabled`) without a request; an admin
/// enables it again through the API, and its next records are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_failing_for_disable_after_is_disabled_until_enabled_again() {
    let env = Env::new(1).await;
    let (down, up) = Recording::switchable().await;
    let failing = customers(&env, "down", 1, &down.endpoint.url()).await;
    let operator = operator(&env, &EndpointEvent::ALL).await;
    let publisher = env.start_publisher().await;
    let mut config = parking_config(&env, Ordering::Key, 1, &steps("300ms", 100));
    config.parking.disable_after = Window(Some(Duration::from_secs(1)));
    let consumer = env.start(config);
    let published = publish(&env, &failing, 0..5).await;

    let disabled = |consumer: &common::Running| {
        metric_value(&consumer.metrics, "hookline_dlq_records_total", &[("reason", "endpoint_disabled")])
    };
    wait_until(WAIT, "5 dead letters of the disabled endpoint", || disabled(&consumer) >= 5).await;
    assert_eq!(metric_value(&consumer.metrics, "hookline_parking_transitions_total", &[("kind", "disabled")]), 1);
    assert_eq!(sample(&consumer, "hookline_disabled_endpoints", &[]), 1);
    let path = format!("/v1/customers/{}", failing[0]);
    let (status, record) = publisher.call(reqwest::Method::GET, &path, common::ADMIN_TOKEN, None).await;
    assert_eq!(status, 200, "{record}");
    let reason = record["disabled"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("failing continuously since") && reason.contains("HTTP 503"), "{record}");
    let requests = down.endpoint.count();
    assert!(requests >= 2, "probed until disabled: {requests}");

    // A record published while disabled: dead-lettered without a request.
    let while_disabled = publish(&env, &failing, 5..6).await;
    wait_until(WAIT, "the new record dead-lettered", || disabled(&consumer) >= 6).await;
    assert_eq!(down.endpoint.count(), requests, "no request to a disabled endpoint");
    let letters = read_topic(&env.kafka, &env.topics.dlq).await;
    let ids: BTreeSet<String> = letters
        .iter()
        .filter(|l| deadletter::parse_message(*l).reason.as_deref() == Some("endpoint_disabled"))
        .filter_map(|l| deadletter::parse_message(l).event_id)
        .collect();
    let expected: BTreeSet<String> = published.iter().chain(&while_disabled).cloned().collect();
    assert_eq!(ids, expected, "every record of the disabled endpoint in the DLQ");

    up.store(true, AtomicOrdering::SeqCst);
    let enable = format!("/v1/customers/{}/webhook/enable", failing[0]);
    let (status, answer) = publisher.call(reqwest::Method::POST, &enable, common::ADMIN_TOKEN, None).await;
    assert_eq!((status, answer["was_disabled"].as_bool()), (200, Some(true)), "{answer}");
    assert!(answer.get("disabled").is_none_or(serde_json::Value::is_null), "{answer}");
    let after = publish(&env, &failing, 6..8).await;
    wait_until(WAIT, "the records after the enable delivered", || {
        let acked = down.acked_ids();
        after.iter().all(|id| acked.contains(id))
    })
    .await;
    let (_, again) = publisher.call(reqwest::Method::POST, &enable, common::ADMIN_TOKEN, None).await;
    assert_eq!(again["was_disabled"].as_bool(), Some(false), "{again}");
    // The operator heard it parked, disabled (by the consumer) and enabled (by the publisher),
    // once each: an enable of an enabled endpoint is no news.
    wait_until(WAIT, "the operator's three notices", || operator.acks().len() >= 3).await;
    let notices = notices_of(&operator);
    assert_eq!(
        kinds(&notices),
        ["hookline.endpoint.parked", "hookline.endpoint.disabled", "hookline.endpoint.enabled"]
    );
    assert!(notices[1].1["error"].as_str().is_some_and(|e| e.contains("failing continuously")), "{notices:?}");
    assert!(notices.iter().all(|(_, data)| data["customer_id"] == failing[0].as_str()), "{notices:?}");
    assert_eq!(sample(&consumer, "hookline_disabled_endpoints", &[]), 0);
    consumer.stop().await;
    publisher.stop().await;
}

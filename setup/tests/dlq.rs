//! `dlq list`, `dlq replay` and `dlq purge` against a real broker (tansu), on dead letters written
//! by the real consumer running in this process against real HTTP endpoints.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::{args, assert_exit, binary, in_process, stderr, stdout};
use hookline_consumer::config::{ParkAfter, RetrySchedule, Window};
use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::deadletter::headers as dlq_headers;
use hookline_core::{directory, topics};
use hookline_setup::{EXIT_FAILURE, EXIT_USAGE, Error};
use hookline_testkit::kafka::{committed_offsets, header, produce_event, producer};
use hookline_testkit::{Broker, Endpoint, Respond, init_test_logging, tenants, unique_name, wait_until};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

struct Env {
    broker: Broker,
    kafka: KafkaArgs,
    prefix: String,
    topics: TopicArgs,
    producer: FutureProducer,
}

impl Env {
    async fn new(partitions: i32) -> Self {
        init_test_logging();
        let broker = Broker::start();
        let kafka = broker.kafka_args();
        let prefix = unique_name("dlq");
        let topics = TopicArgs::with_prefix(&prefix);
        topics::ensure_topics(&kafka, &topics::specs(&topics, partitions, 1)).await.expect("create topics");
        let producer = producer(&kafka);
        Self { broker, kafka, prefix, topics, producer }
    }

    /// The command line of `hookline-setup` for this environment.
    fn command(&self, extra: &[&str]) -> Vec<String> {
        args(&self.broker.bootstrap(), &self.prefix, extra)
    }

    /// Adds a customer subscribed to everything, delivered to `url`.
    async fn customer(&self, id: &str, url: &str) {
        let (customer, _) = tenants::signed_customer(id, url, &["*"]);
        directory::put_customer(&self.kafka, &self.topics.customers, &customer).await.expect("put customer");
    }

    async fn publish(&self, customer: &str, n: u32) -> String {
        produce_event(&self.producer, &self.topics.deliveries, customer, "order.created", serde_json::json!({ "n": n }))
            .await
    }

    /// Consumer settings for this environment: loopback endpoints, a test master key.
    fn consumer_config(&self) -> hookline_consumer::Config {
        let mut config = hookline_consumer::Config::new(self.kafka.clone(), self.topics.clone(), &unique_name("group"));
        config.delivery.request_timeout = Duration::from_secs(5);
        config.shutdown_grace = Duration::from_secs(5);
        config.master_key = tenants::master_key_args();
        config.network = tenants::loopback_network();
        config
    }

    /// Starts the real consumer in this process: two attempts, fast retries.
    fn start_consumer(&self) -> Consumer {
        let mut config = self.consumer_config();
        config.delivery.max_attempts = 2;
        config.delivery.initial_backoff = Duration::from_millis(50);
        config.delivery.max_backoff = Duration::from_millis(100);
        Consumer::start(config)
    }

    /// Starts the real consumer in key mode with parking after one attempt, probes every 300 ms,
    /// and endpoints disabled after `disable_after` of failure.
    fn start_parking_consumer(&self, disable_after: Duration) -> Consumer {
        let mut config = self.consumer_config();
        // One record per produce request: tansu 0.6 answers a fetch from inside a batch with the
        // next batch, and parked records are read back from their own offsets (see the
        // consumer's parking tests).
        config.kafka = config.kafka.with_property("batch.num.messages", "1");
        config.ordering.ordering = hookline_consumer::config::Ordering::Key;
        config.parking.park_after = Some(ParkAfter(Some(1)));
        config.parking.retry_schedule = vec!["300ms"; 100].join(",").parse::<RetrySchedule>().expect("schedule");
        config.parking.disable_after = Window(Some(disable_after));
        Consumer::start(config)
    }

    async fn read(&self, topic: &str) -> Vec<OwnedMessage> {
        read_if_exists(&self.kafka, topic).await
    }

    /// Waits until the DLQ holds `n` records.
    async fn wait_for_dead_letters(&self, n: usize) -> Vec<OwnedMessage> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self.read(&self.topics.dlq).await;
            if found.len() >= n {
                assert_eq!(found.len(), n, "more dead letters than expected");
                return found;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} of {n} dead letters after {WAIT:?}", found.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An endpoint answering `status` until the returned flag is set, then 200.
async fn switchable(status: u16) -> (Endpoint, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&healthy);
    let endpoint =
        Endpoint::start(move |_| if switch.load(Ordering::SeqCst) { Respond::ok() } else { Respond::status(status) })
            .await;
    (endpoint, healthy)
}

/// Reads a topic that may not exist yet (then empty).
async fn read_if_exists(kafka: &KafkaArgs, topic: &str) -> Vec<OwnedMessage> {
    match topics::describe_partitions(kafka, topic).await {
        Ok(_) => hookline_testkit::kafka::read_topic(kafka, topic).await,
        Err(hookline_core::Error::MissingTopic { .. }) => Vec::new(),
        Err(other) => panic!("metadata of {topic}: {other}"),
    }
}

struct Consumer {
    group: String,
    shutdown: CancellationToken,
    handle: JoinHandle<hookline_consumer::Result<()>>,
}

impl Consumer {
    fn start(config: hookline_consumer::Config) -> Self {
        let shutdown = CancellationToken::new();
        let group = config.group.clone();
        let handle = tokio::spawn(hookline_consumer::run(config, shutdown.clone()));
        Self { group, shutdown, handle }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("consumer stops within 60s")
            .expect("consumer task")
            .expect("consumer result");
    }
}

/// Runs a command in-process, panicking with its output unless it succeeds.
async fn ok(command: &[String]) -> String {
    let (result, out) = in_process(command).await;
    result.unwrap_or_else(|e| panic!("{command:?} failed: {e}\n{out}"));
    out
}

/// The table rows of `dlq list` (its header and summary lines dropped).
fn rows(out: &str) -> Vec<&str> {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2 && lines[0].starts_with("DEAD_LETTERED_AT"), "not a table: {out}");
    lines[1..lines.len() - 1].to_vec()
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_real_dead_letters_with_filters_and_json() {
    let env = Env::new(2).await;
    let failing = Endpoint::always(503).await;
    env.customer("acme", &failing.url()).await;
    let acme = [env.publish("acme", 1).await, env.publish("acme", 2).await];
    // No such customer: dead-lettered at once.
    let ghost = env.publish("ghost", 3).await;
    let consumer = env.start_consumer();
    env.wait_for_dead_letters(3).await;
    consumer.stop().await;

    let all = ok(&env.command(&["dlq", "list"])).await;
    assert_eq!(rows(&all).len(), 3, "{all}");
    assert!(all.ends_with(&format!("3 of 3 dead letters in {}\n", env.topics.dlq)), "{all}");
    let acme_rows: Vec<&str> = rows(&all).into_iter().filter(|r| r.contains(" acme ")).collect();
    assert_eq!(acme_rows.len(), 2, "{all}");
    for row in &acme_rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        // at, customer, event id, type, reason, attempts, last status, dlq partition/offset, replayed
        assert_eq!(cells.len(), 9, "{row}");
        assert_eq!(cells[3..7], ["order.created", "max_attempts", "2", "503"], "{row}");
        assert_eq!(cells[8], "-", "not replayed: {row}");
        assert!(acme.contains(&cells[2].to_owned()), "{row}");
    }

    let by_customer = ok(&env.command(&["dlq", "list", "--customer", "acme"])).await;
    assert_eq!(rows(&by_customer).len(), 2, "{by_customer}");
    let by_reason = ok(&env.command(&["dlq", "list", "--reason", "unknown_customer"])).await;
    assert_eq!(rows(&by_reason).len(), 1, "{by_reason}");
    assert!(rows(&by_reason)[0].contains(&ghost), "{by_reason}");
    let by_event = ok(&env.command(&["dlq", "list", "--event-id", &acme[1]])).await;
    assert_eq!(rows(&by_event).len(), 1, "{by_event}");
    assert!(rows(&by_event)[0].contains(&acme[1]), "{by_event}");
    let recent = ok(&env.command(&["dlq", "list", "--since", "1h", "--customer", "acme,ghost"])).await;
    assert_eq!(rows(&recent).len(), 3, "{recent}");
    let old = ok(&env.command(&["dlq", "list", "--until", "1h"])).await;
    assert_eq!(old, format!("no dead letters match (3 in {})\n", env.topics.dlq));
    let future = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let window = ok(&env.command(&["dlq", "list", "--since", "2020-01-01", "--until", &future])).await;
    assert_eq!(rows(&window).len(), 3, "{window}");

    // JSON lines, through the real binary.
    let output = binary(&env.command(&["dlq", "list", "--json"])).await;
    assert_exit(&output, 0);
    let objects: Vec<serde_json::Value> =
        stdout(&output).lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    assert_eq!(objects.len(), 3, "{}", stdout(&output));
    let ids: BTreeSet<&str> = objects.iter().filter_map(|o| o["event_id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([acme[0].as_str(), acme[1].as_str(), ghost.as_str()]));
    let ghost_object = objects.iter().find(|o| o["customer"] == "ghost").expect("the ghost's dead letter");
    assert_eq!(ghost_object["reason"], "unknown_customer");
    assert_eq!(ghost_object["original_topic"], env.topics.deliveries.as_str());
    assert_eq!(ghost_object["last_status"], serde_json::Value::Null);
    let acme_object = objects.iter().find(|o| o["customer"] == "acme").expect("an acme dead letter");
    assert_eq!((acme_object["attempts"].as_i64(), acme_object["last_status"].as_i64()), (Some(2), Some(503)));
    assert!(acme_object["dead_lettered_at"].as_str().is_some_and(|at| humantime::parse_rfc3339(at).is_ok()));
    let limited = binary(&env.command(&["dlq", "list", "--json", "--limit", "1"])).await;
    assert_eq!(stdout(&limited).lines().count(), 1, "{}", stdout(&limited));

    // Bad input exits 2 and says why.
    let bad_time = binary(&env.command(&["dlq", "list", "--since", "yesterday"])).await;
    assert_exit(&bad_time, 2);
    assert!(stderr(&bad_time).contains("is not a time"), "{}", stderr(&bad_time));
    let no_selector = binary(&env.command(&["dlq", "replay"])).await;
    assert_exit(&no_selector, 2);
    assert!(stderr(&no_selector).contains("--all"), "{}", stderr(&no_selector));
    let (result, _) = in_process(&env.command(&["dlq", "replay", "--all", "--customer", "acme"])).await;
    assert!(matches!(&result, Err(e @ Error::Usage(_)) if e.exit_code() == EXIT_USAGE), "{result:?}");
    assert_eq!(env.read(&env.topics.deliveries).await.len(), 3, "refused replays produce nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_redelivers_once_the_endpoint_recovers_keeping_the_event_id() {
    let env = Env::new(2).await;
    let (endpoint, healthy) = switchable(500).await;
    env.customer("acme", &endpoint.url()).await;
    let events = [env.publish("acme", 1).await, env.publish("acme", 2).await];
    env.publish("ghost", 3).await;
    let consumer = env.start_consumer();
    let dead_letters = env.wait_for_dead_letters(3).await;
    let originals = env.read(&env.topics.deliveries).await;
    assert_eq!(originals.len(), 3);

    // A dry run shows what would be replayed and produces nothing.
    let dry = ok(&env.command(&["dlq", "replay", "--customer", "acme", "--dry-run"])).await;
    assert!(dry.contains("dry run: would replay 2 dead letter(s)"), "{dry}");
    assert!(events.iter().all(|id| dry.contains(id.as_str())), "{dry}");
    assert_eq!(env.read(&env.topics.deliveries).await.len(), 3, "a dry run produces nothing");
    let state_topic = format!("{}.replayed", env.topics.dlq);
    assert!(env.read(&state_topic).await.is_empty(), "a dry run records nothing");

    // The endpoint recovers; the replay is delivered by the running consumer.
    healthy.store(true, Ordering::SeqCst);
    let failed_attempts = endpoint.count();
    let replayed = ok(&env.command(&["dlq", "replay", "--customer", "acme"])).await;
    assert!(replayed.starts_with("replayed 2 dead letter(s)"), "{replayed}");
    let delivered = || -> Vec<String> {
        endpoint.received()[failed_attempts..].iter().map(|r| r.webhook_id().to_owned()).collect::<Vec<_>>()
    };
    wait_until(WAIT, "both replayed events", || delivered().len() >= 2).await;

    // The replayed records are the originals, keyed by the customer, with a replay marker.
    let records = env.read(&env.topics.deliveries).await;
    assert_eq!(records.len(), 5, "two records replayed");
    let copies: Vec<&OwnedMessage> =
        records.iter().filter(|m| header(m, dlq_headers::REPLAYED_FROM).is_some()).collect();
    assert_eq!(copies.len(), 2);
    for copy in copies {
        assert_eq!(copy.key(), Some(b"acme".as_slice()));
        assert!(
            header(copy, dlq_headers::DLQ_REASON).is_none() && header(copy, dlq_headers::ORIGINAL_OFFSET).is_none()
        );
        assert!(header(copy, dlq_headers::REPLAYED_AT).is_some());
        let event_id = header(copy, "hookline-event-id").expect("event id header");
        let original = originals
            .iter()
            .find(|m| header(m, "hookline-event-id").as_deref() == Some(&event_id))
            .expect("the original record");
        assert_eq!(copy.payload(), original.payload(), "the value is unchanged");
        assert_eq!(copy.partition(), original.partition(), "the customer's partition");
        let from = header(copy, dlq_headers::REPLAYED_FROM).expect("replayed-from");
        let source = dead_letters
            .iter()
            .find(|m| from == format!("{}/{}/{}", env.topics.dlq, m.partition(), m.offset()))
            .expect("replayed-from names the dead letter");
        assert_eq!(header(source, "hookline-event-id"), Some(event_id));
    }

    // Running it again produces nothing: the marker topic says both were replayed.
    let again = ok(&env.command(&["dlq", "replay", "--customer", "acme"])).await;
    assert!(again.starts_with("nothing to replay (2 already replayed"), "{again}");
    assert_eq!(env.read(&env.topics.deliveries).await.len(), 5);
    let markers = env.read(&state_topic).await;
    assert_eq!(markers.len(), 2, "one marker per replayed dead letter");
    let listed = binary(&env.command(&["dlq", "list", "--json"])).await;
    assert_exit(&listed, 0);
    for line in stdout(&listed).lines() {
        let object: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let replayed = object["replayed_at"].as_str().is_some_and(|at| humantime::parse_rfc3339_weak(at).is_ok());
        assert_eq!(replayed, object["customer"] == "acme", "only acme's dead letters were replayed: {line}");
    }

    // A run interrupted after the broker acknowledged a record but before its marker was written
    // (here: the marker deleted) produces that record again; the consumer's delivery ledger skips
    // the second copy, so the customer still gets the event once.
    let marker_key = markers[0].key().expect("marker key").to_vec();
    env.producer
        .send(FutureRecord::<[u8], [u8]>::to(&state_topic).key(&marker_key), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("delete the marker");
    let rerun = ok(&env.command(&["dlq", "replay", "--customer", "acme"])).await;
    assert!(rerun.starts_with("replayed 1 dead letter(s)") && rerun.contains("(1 already replayed"), "{rerun}");
    let records = env.read(&env.topics.deliveries).await;
    assert_eq!(records.len(), 6);
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for record in &records {
        ends.insert(record.partition(), record.offset() + 1);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while committed_offsets(&env.kafka, &consumer.group, &env.topics.deliveries).await != ends {
        assert!(tokio::time::Instant::now() < deadline, "the consumer did not get through the second copy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consumer.stop().await;

    let mut sent = delivered();
    sent.sort();
    let mut expected = events.to_vec();
    expected.sort();
    assert_eq!(sent, expected, "each event delivered once, with its original id");
    assert_eq!(env.read(&env.topics.dlq).await.len(), 3, "nothing dead-lettered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_without_producing_twice() {
    let env = Env::new(1).await;
    let consumer = env.start_consumer();
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(env.publish("ghost", n).await);
    }
    env.wait_for_dead_letters(3).await;
    // Stopped, so the replayed records stay on the delivery topic to be counted.
    consumer.stop().await;

    // `--limit 1` stops after one record, as an interrupted run would.
    let first = ok(&env.command(&["dlq", "replay", "--reason", "unknown_customer", "--limit", "1"])).await;
    assert!(first.starts_with("replayed 1 dead letter(s)"), "{first}");
    let rest = ok(&env.command(&["dlq", "replay", "--reason", "unknown_customer"])).await;
    assert!(rest.starts_with("replayed 2 dead letter(s)") && rest.contains("(1 already replayed"), "{rest}");
    let done = ok(&env.command(&["dlq", "replay", "--all"])).await;
    assert!(done.starts_with("nothing to replay (3 already replayed"), "{done}");
    let dry = ok(&env.command(&["dlq", "replay", "--all", "--dry-run"])).await;
    assert!(dry.starts_with("dry run: nothing to replay (3 already replayed"), "{dry}");

    let replayed: Vec<String> = env
        .read(&env.topics.deliveries)
        .await
        .iter()
        .filter(|m| header(m, dlq_headers::REPLAYED_FROM).is_some())
        .filter_map(|m| header(m, "hookline-event-id"))
        .collect();
    assert_eq!(replayed, events, "each dead letter replayed once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_finds_old_dead_letters_and_reports_a_broker_without_delete_records() {
    let env = Env::new(1).await;
    let consumer = env.start_consumer();
    env.publish("ghost", 1).await;
    env.wait_for_dead_letters(1).await;
    // Record timestamps have millisecond resolution; leave clear gaps around the cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = rfc3339(SystemTime::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.publish("ghost", 2).await;
    env.wait_for_dead_letters(2).await;
    consumer.stop().await;

    let nothing = ok(&env.command(&["dlq", "purge", "--before", "1h"])).await;
    assert!(nothing.starts_with("nothing to purge"), "{nothing}");
    let dry = ok(&env.command(&["dlq", "purge", "--before", &cut, "--dry-run"])).await;
    assert!(dry.contains("partition   0: 1 dead letter(s) before"), "{dry}");
    assert!(dry.contains("dry run: would delete 1 dead letter(s)"), "{dry}");
    assert_eq!(env.read(&env.topics.dlq).await.len(), 2, "a dry run deletes nothing");

    let (result, out) = in_process(&env.command(&["dlq", "purge", "--before", &cut])).await;
    match result {
        // tansu 0.6 does not implement DeleteRecords: the refusal is clear and exits 1.
        Err(error @ Error::Purge { .. }) => {
            assert_eq!(error.exit_code(), EXIT_FAILURE);
            assert!(error.to_string().contains("DeleteRecords"), "{error}");
            assert_eq!(env.read(&env.topics.dlq).await.len(), 2);
        }
        Ok(()) => {
            assert!(out.contains("deleted 1 dead letter(s)"), "{out}");
            let left = env.read(&env.topics.dlq).await;
            assert_eq!(left.iter().map(Message::offset).collect::<Vec<_>>(), [1], "only the newer one is left");
        }
        Err(other) => panic!("unexpected purge failure: {other}\n{out}"),
    }
}

/// The number `text` starts with.
fn leading_count(text: &str) -> usize {
    text.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or_default()
}

/// A dead letter as the consumer writes it (the original record plus DLQ headers), produced
/// directly: this test needs thousands, more than a consumer dead-letters quickly.
async fn write_dead_letters(env: &Env, count: usize) -> Vec<String> {
    let mut pending = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let event_id = format!("evt_bulk_{n:05}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "hookline-event-id", value: Some(&event_id) })
            .insert(Header { key: "hookline-event-type", value: Some("order.created") })
            .insert(Header { key: dlq_headers::DLQ_REASON, value: Some("max_attempts") })
            .insert(Header { key: dlq_headers::DLQ_ATTEMPTS, value: Some("8") });
        let customer = format!("customer-{}", n % 5);
        let record = FutureRecord::to(&env.topics.dlq).key(&customer).payload("{}").headers(headers);
        pending.push(env.producer.send_result(record).map_err(|(e, _)| e).expect("enqueue a dead letter"));
        ids.push(event_id);
    }
    for delivery in pending {
        delivery.await.expect("delivery report").map_err(|(e, _)| e).expect("dead letter written");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_replay_that_a_rerun_finishes_without_duplicates() {
    let env = Env::new(2).await;
    let mut events = write_dead_letters(&env, 10_000).await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookline-setup"))
        .args(env.command(&["dlq", "replay", "--all"]))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn hookline-setup");
    // Interrupt it once records are arriving on the delivery topic.
    let log = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (kafka, deliveries) = (env.kafka.clone(), env.topics.deliveries.clone());
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = hookline_core::kafka::reader(&kafka, "hookline-test").expect("reader");
        let deadline = std::time::Instant::now() + WAIT;
        while [0, 1].iter().all(|p| reader.fetch_watermarks(&deliveries, *p, WAIT).is_ok_and(|(_, high)| high == 0)) {
            assert!(std::time::Instant::now() < deadline, "the replay never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("watermarks");
    let mut log = log;
    let pid = child.id().expect("pid").to_string();
    let signalled = tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.expect("run kill");
    assert!(signalled.success());
    let mut rest = String::new();
    while let Some(line) = log.next_line().await.expect("read stderr") {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(1), "an interrupted replay exits 1: {rest}");
    assert!(rest.contains("then failed: interrupted; run the same command again"), "{rest}");

    let first_run = leading_count(rest.split("error: replayed ").nth(1).unwrap_or_default());
    assert!(first_run > 0 && first_run < 10_000, "interrupted part-way: {rest}");

    let resumed = ok(&env.command(&["dlq", "replay", "--all"])).await;
    let second_run = leading_count(resumed.strip_prefix("replayed ").unwrap_or_default());
    assert!(resumed.contains(&format!("({first_run} already replayed")), "{resumed}");
    assert_eq!(first_run + second_run, 10_000, "{resumed}");

    let mut replayed: Vec<String> =
        env.read(&env.topics.deliveries).await.iter().filter_map(|m| header(m, "hookline-event-id")).collect();
    replayed.sort();
    events.sort();
    assert_eq!(replayed.len(), events.len(), "no dead letter produced twice");
    assert_eq!(replayed, events, "every dead letter replayed once");
}

/// The issue-15 way back for a customer whose endpoint the consumer disabled: its records went to
/// the DLQ as `endpoint_disabled`; an operator enables it with `customers enable` (an operator's
/// endpoint subscribed to the operational events hears of it) and replays them with `dlq replay`,
/// and they are delivered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_enabled_again_gets_its_dead_letters_back_with_replay() {
    let env = Env::new(1).await;
    let (endpoint, healthy) = switchable(503).await;
    env.customer("acme", &endpoint.url()).await;
    let operator = Endpoint::start(|_| Respond::ok()).await;
    let (ops, _) =
        tenants::signed_customer("ops", &operator.url(), &["hookline.endpoint.disabled", "hookline.endpoint.enabled"]);
    directory::put_customer(&env.kafka, &env.topics.customers, &ops).await.expect("put operator");
    let consumer = env.start_parking_consumer(Duration::from_secs(1));
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(env.publish("acme", n).await);
    }
    let dead_letters = env.wait_for_dead_letters(3).await;
    assert!(
        dead_letters.iter().all(|m| header(m, dlq_headers::DLQ_REASON).as_deref() == Some("endpoint_disabled")),
        "every record of the disabled endpoint dead-lettered as endpoint_disabled"
    );
    let notice_types = || -> Vec<String> {
        operator.received().iter().map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned()).collect()
    };
    wait_until(WAIT, "the operator hears of the disable", || !notice_types().is_empty()).await;
    assert_eq!(notice_types(), ["hookline.endpoint.disabled"]);

    // The customer fixed its endpoint; the operator enables it and replays what it missed.
    healthy.store(true, Ordering::SeqCst);
    let failed_attempts = endpoint.count();
    let enabled = ok(&env.command(&["customers", "enable", "acme"])).await;
    assert_eq!(enabled, "acme: endpoint enabled\n");
    wait_until(WAIT, "the operator hears of the enable", || notice_types().len() >= 2).await;
    assert_eq!(notice_types(), ["hookline.endpoint.disabled", "hookline.endpoint.enabled"]);
    assert_eq!(operator.received()[1].json()["data"]["customer_id"], "acme");
    let replayed = ok(&env.command(&["dlq", "replay", "--customer", "acme", "--reason", "endpoint_disabled"])).await;
    assert!(replayed.starts_with("replayed 3 dead letter(s)"), "{replayed}");
    let delivered = || -> Vec<String> {
        endpoint.received()[failed_attempts..].iter().map(|r| r.webhook_id().to_owned()).collect::<Vec<_>>()
    };
    wait_until(WAIT, "the three replayed events", || delivered().len() >= 3).await;
    assert_eq!(delivered(), events, "each replayed once, in the order published");
    assert_eq!(env.read(&env.topics.dlq).await.len(), 3, "nothing dead-lettered again");
    consumer.stop().await;
}

//! Shared set-up of the consumer's integration tests: a real tansu broker, unique topics per
//! test, customers in the directory topic, and the consumer either in-process or as a real
//! `hookline-consumer` process (for SIGKILL).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookline_consumer::config::Ordering;
use hookline_consumer::{Config, Metrics};
use hookline_core::config::{KafkaArgs, SecretString, TopicArgs};
use hookline_core::customer::Customer;
use hookline_core::envelope::EventRecord;
use hookline_core::{directory, topics};
use hookline_testkit::{Broker, Endpoint, Received, Respond, init_test_logging, kafka, tenants, unique_name};
use hookline_wire::signing::SigningSecret;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Group settings that make a killed member's partitions move within seconds.
pub const GROUP_PROPERTIES: &[(&str, &str)] =
    &[("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"), ("topic.metadata.refresh.interval.ms", "1000")];

pub struct Env {
    /// The tansu broker, unless the test runs on another cluster (see [`Env::on`]).
    pub broker: Option<Broker>,
    pub kafka: KafkaArgs,
    pub topics: TopicArgs,
    pub group: String,
    pub producer: FutureProducer,
}

impl Env {
    pub async fn new(partitions: i32) -> Self {
        let broker = Broker::start();
        let mut env = Self::on(broker.kafka_args(), partitions).await;
        env.broker = Some(broker);
        env
    }

    /// An environment on an already running cluster reachable with `kafka`.
    pub async fn on(kafka: KafkaArgs, partitions: i32) -> Self {
        let topics = TopicArgs::with_prefix(&unique_name("deliveries"));
        topics::ensure_topics(&kafka, &topics::specs(&topics, partitions, 1)).await.expect("create topics");
        Self::with_topics(kafka, topics)
    }

    /// An environment on librdkafka's mock cluster (which does not serve CreateTopics).
    pub fn on_mock(
        cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        partitions: i32,
    ) -> Self {
        let topics = TopicArgs::with_prefix(&unique_name("deliveries"));
        for spec in topics::specs(&topics, partitions, 1) {
            cluster.create_topic(&spec.name, spec.partitions, 1).expect("create mock topic");
        }
        Self::with_topics(KafkaArgs::new(cluster.bootstrap_servers()), topics)
    }

    fn with_topics(kafka: KafkaArgs, topics: TopicArgs) -> Self {
        init_test_logging();
        let broker = None;
        let producer = kafka::producer(&kafka);
        Self { broker, kafka, topics, group: unique_name("group"), producer }
    }

    /// Client settings for consumers of this environment.
    pub fn consumer_kafka(&self) -> KafkaArgs {
        GROUP_PROPERTIES.iter().fold(self.kafka.clone(), |args, (k, v)| args.with_property(k, v))
    }

    /// Adds a customer subscribed to everything, with a signing secret; returns the secret.
    pub async fn customer(&self, id: &str, url: &str) -> SigningSecret {
        let (customer, secret) = tenants::signed_customer(id, url, &["*"]);
        self.put(&customer).await;
        secret
    }

    /// Writes (upserts) a customer record.
    pub async fn put(&self, customer: &Customer) {
        directory::put_customer(&self.kafka, &self.topics.customers, customer).await.expect("put customer");
    }

    pub async fn publish(&self, customer: &str, payload: serde_json::Value) -> String {
        kafka::produce_event(&self.producer, &self.topics.deliveries, customer, "test.event", payload).await
    }

    /// In-process consumer settings with fast retries.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.consumer_kafka(), self.topics.clone(), &self.group);
        config.delivery.initial_backoff = Duration::from_millis(100);
        config.delivery.max_backoff = Duration::from_millis(400);
        config.delivery.max_attempts = 4;
        config.delivery.request_timeout = Duration::from_secs(5);
        config.shutdown_grace = Duration::from_secs(5);
        config.master_key = tenants::master_key_args();
        config.network = tenants::loopback_network();
        config
    }

    /// Starts a consumer in this process.
    pub fn start(&self, config: Config) -> Running {
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new().expect("metrics");
        let handle = tokio::spawn(hookline_consumer::run_with_metrics(config, shutdown.clone(), metrics.clone()));
        Running { shutdown, handle, metrics }
    }

    /// Starts a real `hookline-consumer` process with fast retries plus `extra` arguments.
    pub fn spawn_process(&self, extra: &[&str]) -> tokio::process::Child {
        self.spawn_process_with(extra, |_| {})
    }

    /// [`Env::spawn_process`] with `adjust` applied to the command last (to change its
    /// environment or capture its output).
    pub fn spawn_process_with(
        &self,
        extra: &[&str],
        adjust: impl FnOnce(&mut tokio::process::Command),
    ) -> tokio::process::Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookline-consumer"));
        command
            .args(["--brokers", &self.kafka.brokers])
            .args(["--topic", &self.topics.deliveries])
            .args(["--dlq-topic", &self.topics.dlq])
            .args(["--customers-topic", &self.topics.customers])
            .args(["--delivered-topic", &self.topics.delivered])
            .args(["--retry-topic", &self.topics.retry])
            .args(["--parking-topic", &self.topics.parking])
            .args(["--attempts-topic", &self.topics.attempts])
            .args(["--group", &self.group])
            .args(["--initial-backoff", "100ms", "--max-backoff", "400ms", "--request-timeout", "5s"]);
        for (key, value) in GROUP_PROPERTIES {
            command.args(["--kafka-property", &format!("{key}={value}")]);
        }
        command
            .args(extra)
            // An env default, so that a test can still pass `--metrics-listen`.
            .env("HOOKLINE_METRICS_LISTEN", "off")
            .env("HOOKLINE_MASTER_KEY", tenants::TEST_MASTER_KEY)
            .env("HOOKLINE_ALLOW_NETWORKS", tenants::LOOPBACK_NETWORKS)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        adjust(&mut command);
        command.spawn().expect("spawn hookline-consumer")
    }
}

/// The producer token of [`Env::start_publisher`]'s publisher.
pub const PRODUCER_TOKEN: &str = "test-producer-token";
/// The admin token of [`Env::start_publisher`]'s publisher.
pub const ADMIN_TOKEN: &str = "test-admin-token";

impl Env {
    /// Starts an in-process publisher on `127.0.0.1:0` (tokens above, the tests' master key,
    /// loopback allowed) and waits until it answers.
    pub async fn start_publisher(&self) -> Publisher {
        self.start_publisher_with(|_| {}).await
    }

    /// [`Env::start_publisher`] with `adjust` applied to its settings.
    pub async fn start_publisher_with(&self, adjust: impl FnOnce(&mut hookline_publisher::Config)) -> Publisher {
        let mut config = hookline_publisher::Config::new(self.kafka.clone(), self.topics.clone());
        config.producer_tokens = vec![SecretString::new(PRODUCER_TOKEN)];
        config.admin_tokens = vec![SecretString::new(ADMIN_TOKEN)];
        config.master_key = tenants::master_key_args();
        config.network = tenants::loopback_network();
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind publisher");
        let base = format!("http://{}", listener.local_addr().expect("publisher address"));
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let grpc = format!("http://{}", grpc_listener.local_addr().expect("gRPC address"));
        let shutdown = CancellationToken::new();
        let handle =
            tokio::spawn(hookline_publisher::serve_with_grpc(config, listener, Some(grpc_listener), shutdown.clone()));
        let http = reqwest::Client::new();
        let ready = tokio::time::Instant::now() + Duration::from_secs(60);
        // The publisher answers once its directory is loaded.
        while !http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(!handle.is_finished(), "the publisher stopped during start-up");
            assert!(tokio::time::Instant::now() < ready, "the publisher did not start within 60s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Publisher { base, grpc, http, shutdown, handle }
    }
}

/// An in-process publisher.
pub struct Publisher {
    pub base: String,
    /// The gRPC event broker, `http://127.0.0.1:<port>`.
    pub grpc: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<hookline_publisher::Result<()>>,
}

impl Publisher {
    /// A JSON request with a bearer token; the status and the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("publisher request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Publishes an event as a producer; panics unless it is accepted. Returns the answer.
    pub async fn publish(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, answer) = self.call(reqwest::Method::POST, "/publish", PRODUCER_TOKEN, Some(body)).await;
        assert_eq!(status, 202, "{answer}");
        answer
    }

    /// Stops the publisher and checks it ends cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.expect("publisher task").expect("publisher result");
    }
}

/// A consumer running in this process.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<hookline_consumer::Result<()>>,
    pub metrics: Metrics,
}

impl Running {
    /// Requests shutdown and waits for the consumer to drain, commit and leave.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("consumer stops within 60s")
            .expect("consumer task")
            .expect("consumer result");
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric_value(&self.metrics, name, labels)
    }
}

/// The value of a counter or gauge in `metrics` (summed over series matching `labels`).
pub fn metric_value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut total = 0.0;
    for family in metrics.registry.gather() {
        if family.name() != name {
            continue;
        }
        for metric in family.get_metric() {
            let matches =
                labels.iter().all(|(k, v)| metric.get_label().iter().any(|l| l.name() == *k && l.value() == *v));
            if matches {
                total += metric.get_counter().get_value() + metric.get_gauge().get_value();
            }
        }
    }
    total as u64
}

/// A `test.event` with payload `{"n": n}` and a new event id.
pub fn event(n: u32) -> EventRecord {
    EventRecord::new("test.event", serde_json::value::to_raw_value(&serde_json::json!({ "n": n })).expect("payload"))
}

/// How many times the endpoint received each `webhook-id`.
pub fn received_counts(endpoint: &Endpoint) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for request in endpoint.received() {
        *counts.entry(request.webhook_id().to_owned()).or_default() += 1;
    }
    counts
}

/// A free port on 127.0.0.1 (for a consumer process's `--metrics-listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Runs `hookline-consumer` with `args` (after an unreachable broker and no metrics), expects
/// the usage error's exit code 2 before any broker is contacted, and returns its stderr.
pub fn usage_error(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookline-consumer"))
        .args(["--brokers", "127.0.0.1:1", "--metrics-listen", "off"])
        .args(args)
        .env("HOOKLINE_MASTER_KEY", tenants::TEST_MASTER_KEY)
        .output()
        .expect("run hookline-consumer");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

/// After `second` joined `first`'s group: `first` gave partitions up, without its drain timing
/// out, and `second` delivered from them.
pub fn assert_handed_over(first: &Running, second: &Running) {
    assert!(
        first.counter("hookline_rebalances_total", &[("kind", "revoke")]) >= 1,
        "the first member gave up partitions"
    );
    assert!(
        second.counter("hookline_deliveries_total", &[("outcome", "delivered")]) >= 1,
        "the second member took some partitions over"
    );
    assert_eq!(first.counter("hookline_revoke_drain_timeouts_total", &[]), 0);
}

/// An endpoint answering as its script decides, which also keeps the requests it ACKed (answered
/// 2xx), in arrival order.
pub struct Recording {
    pub endpoint: Endpoint,
    pub acks: Arc<Mutex<Vec<Received>>>,
}

impl Recording {
    pub async fn start(script: impl Fn(&Received) -> Respond + Send + Sync + 'static) -> Self {
        let acks: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = Arc::clone(&acks);
        let endpoint = Endpoint::start(move |request| {
            let respond = script(request);
            if (200..300).contains(&respond.status) {
                kept.lock().unwrap_or_else(PoisonError::into_inner).push(request.clone());
            }
            respond
        })
        .await;
        Self { endpoint, acks }
    }

    /// An endpoint that answers 503 until the returned flag is set, then 200.
    pub async fn switchable() -> (Self, Arc<AtomicBool>) {
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&healthy);
        let recording =
            Self::start(move |_| if flag.load(AtomicOrdering::SeqCst) { Respond::ok() } else { Respond::status(503) })
                .await;
        (recording, healthy)
    }

    pub fn acks(&self) -> Vec<Received> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn acked_ids(&self) -> BTreeSet<String> {
        self.acks().iter().map(|r| r.webhook_id().to_owned()).collect()
    }
}

/// How many ACKs each `webhook-id` got, over `endpoints`.
pub fn ack_counts(endpoints: &[&Recording]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for endpoint in endpoints {
        for ack in endpoint.acks() {
            *counts.entry(ack.webhook_id().to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Asserts that every event was ACKed exactly once, over `endpoints`.
pub fn assert_each_acked_once(endpoints: &[&Recording], published: &[String]) {
    let counts = ack_counts(endpoints);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events ACKed more than once: {twice:?}");
    let acked: BTreeSet<&String> = counts.keys().collect();
    let published: BTreeSet<&String> = published.iter().collect();
    assert_eq!(acked, published, "the events ACKed are the events published");
}

/// The customer and seq of a request carrying `{"customer", "seq"}`.
pub fn customer_seq(request: &Received) -> (String, i64) {
    let data = &request.json()["data"];
    (data["customer"].as_str().expect("customer").to_owned(), data["seq"].as_i64().expect("seq"))
}

/// Asserts that each customer's ACKed seqs are strictly increasing in ACK order (each customer is
/// served by one endpoint, so each endpoint's ACK order is its customers' order).
pub fn assert_customer_order(endpoints: &[&Recording]) {
    for endpoint in endpoints {
        let mut last: HashMap<String, i64> = HashMap::new();
        for ack in endpoint.acks() {
            let (customer, seq) = customer_seq(&ack);
            let previous = last.insert(customer.clone(), seq);
            assert!(previous.is_none_or(|p| p < seq), "{customer}: seq {seq} ACKed after {previous:?}");
        }
    }
}

/// `customers` customers `<prefix>-<i>` at `url`.
pub async fn customers(env: &Env, prefix: &str, count: usize, url: &str) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    for name in &names {
        env.customer(name, url).await;
    }
    names
}

/// Publishes `{"customer", "seq"}` for each seq of `seqs` to each customer, seq by seq; the
/// event ids in publishing order.
pub async fn publish(env: &Env, customers: &[String], seqs: std::ops::Range<i64>) -> Vec<String> {
    let mut published = Vec::new();
    for seq in seqs {
        for customer in customers {
            published.push(env.publish(customer, serde_json::json!({"customer": customer, "seq": seq})).await);
        }
    }
    published
}

/// In-process consumer settings in key mode.
pub fn key_mode(env: &Env) -> hookline_consumer::Config {
    let mut config = env.config();
    config.ordering.ordering = Ordering::Key;
    config
}

/// A gauge or counter of an in-process consumer, with the gauges set at scrape time refreshed
/// first.
pub fn sample(consumer: &Running, name: &str, labels: &[(&str, &str)]) -> u64 {
    consumer.metrics.render();
    metric_value(&consumer.metrics, name, labels)
}

/// The value of `series` (`name` or `name{labels}`, as exported) at a process's `/metrics`; 0 if
/// absent or unreachable.
pub async fn scrape(http: &reqwest::Client, port: u16, series: &str) -> f64 {
    let text = match http.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `series` at a process's `/metrics` every 100 ms until `condition` holds on its value.
pub async fn scrape_until(http: &reqwest::Client, port: u16, series: &str, condition: impl Fn(f64) -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value = scrape(http, port, series).await;
        if condition(value) {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "timed out waiting on {series} (last {value})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

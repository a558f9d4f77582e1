//! Shared set-up of the publisher's integration tests: a real tansu broker with Hookline's topics,
//! customers, and a publisher serving on `127.0.0.1:0`.

#![allow(dead_code)]

pub mod openapi;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookline_core::config::{KafkaArgs, SecretString, TopicArgs};
use hookline_core::customer::Customer;
use hookline_core::directory::put_customer;
use hookline_core::envelope::EventRecord;
use hookline_core::topics::{ensure_topics, specs};
use hookline_publisher::Config;
use hookline_testkit::{Broker, init_test_logging, tenants, unique_name};
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 3;
/// The producer token the harness's publisher accepts.
pub const PRODUCER_TOKEN: &str = "test-producer-token";
/// The admin token the harness's publisher accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A broker with Hookline's topics, some customers, and a publisher on `127.0.0.1:0`.
pub struct Harness {
    pub broker: Broker,
    pub kafka: KafkaArgs,
    pub topics: TopicArgs,
    pub base: String,
    /// The gRPC event broker's address, `127.0.0.1:<port>`.
    pub grpc: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<hookline_publisher::Result<()>>,
    /// The publisher's `GET /openapi.json`, fetched on first use: every answer is checked
    /// against it ([`openapi::check_answer`]).
    pub openapi: tokio::sync::OnceCell<Value>,
}

impl Harness {
    /// `customers` are `(id, subscribed event types)`; `tweak` adjusts the publisher's config.
    pub async fn start(customers: &[(&str, &[&str])], tweak: impl FnOnce(&mut Config)) -> Self {
        init_test_logging();
        let broker = Broker::start();
        Self::start_on(broker, customers, tweak).await
    }

    pub async fn start_on(broker: Broker, customers: &[(&str, &[&str])], tweak: impl FnOnce(&mut Config)) -> Self {
        let kafka = broker.kafka_args();
        let topics = TopicArgs::with_prefix(&unique_name("publisher"));
        ensure_topics(&kafka, &specs(&topics, PARTITIONS, 1)).await.expect("create topics");
        for (id, events) in customers {
            add_customer(&kafka, &topics, id, events).await;
        }
        Self::restart_on(broker, kafka, topics, tweak).await
    }

    /// A publisher on topics that exist already (those of a harness stopped before).
    pub async fn restart_on(
        broker: Broker,
        kafka: KafkaArgs,
        topics: TopicArgs,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::new(kafka.clone(), topics.clone());
        config.producer_tokens = vec![SecretString::new(PRODUCER_TOKEN)];
        config.admin_tokens = vec![SecretString::new(ADMIN_TOKEN)];
        config.master_key = tenants::master_key_args();
        config.network = tenants::loopback_network();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind publisher");
        let base = format!("http://{}", listener.local_addr().expect("publisher address"));
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let grpc = grpc_listener.local_addr().expect("gRPC address").to_string();
        let shutdown = CancellationToken::new();
        let server =
            tokio::spawn(hookline_publisher::serve_with_grpc(config, listener, Some(grpc_listener), shutdown.clone()));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let openapi = tokio::sync::OnceCell::new();
        let mut harness = Self { broker, kafka, topics, base, grpc, client, shutdown, server, openapi };
        harness.wait_ready().await;
        harness
    }

    /// Waits for `/healthz`, surfacing the publisher's start-up error if it stopped instead.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.server.is_finished() {
                let outcome = (&mut self.server).await;
                panic!("the publisher stopped during start-up: {outcome:?}");
            }
            if let Ok(response) = self.client.get(format!("{}/healthz", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the publisher did not become ready within 60s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs `body` as JSON to `/publish`; returns the status and the decoded JSON body.
    pub async fn publish(&self, body: Value) -> (u16, Value) {
        self.post_raw("application/json", body.to_string()).await
    }

    pub async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/publish", self.base))
            .bearer_auth(PRODUCER_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("publish request");
        let (status, body) = decode(response).await;
        self.check_answer("POST", "/publish", status, &body).await;
        (status, body)
    }

    /// The publisher's OpenAPI document.
    pub async fn openapi(&self) -> &Value {
        self.openapi
            .get_or_init(|| async {
                let response =
                    self.client.get(format!("{}/openapi.json", self.base)).send().await.expect("GET /openapi.json");
                let (status, document) = decode(response).await;
                assert_eq!(status, 200, "GET /openapi.json: {document}");
                document
            })
            .await
    }

    /// Panics unless the answer is what the OpenAPI document says of `method path`.
    pub async fn check_answer(&self, method: &str, path: &str, status: u16, body: &Value) {
        openapi::check_answer(self.openapi().await, method, path, status, body);
    }

    /// A JSON request to the API with an optional bearer token; the status and the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        match body {
            Some(body) => self.call_raw(method, path, token, "application/json", body.to_string()).await,
            None => self.call_raw(method, path, token, "application/json", String::new()).await,
        }
    }

    /// Like [`Harness::call`] with any content type and body.
    pub async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: String,
    ) -> (u16, Value) {
        let name = method.as_str().to_owned();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_empty() {
            request = request.header("content-type", content_type).body(body);
        }
        let (status, body) = decode(request.send().await.expect("api request")).await;
        self.check_answer(&name, path, status, &body).await;
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.expect("get request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("response text"))
    }

    /// Cancels the shutdown token and checks that the publisher stops cleanly.
    pub async fn stop(self) {
        drop(self.client);
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(60), self.server)
            .await
            .expect("publisher stops after shutdown")
            .expect("publisher task did not panic");
        result.expect("publisher returns Ok");
        drop(self.broker);
    }
}

pub async fn add_customer(kafka: &KafkaArgs, topics: &TopicArgs, id: &str, events: &[&str]) {
    let customer = Customer::new(id, "http://127.0.0.1:9/webhook", events.iter().map(|e| (*e).to_owned()).collect())
        .expect("valid customer");
    put_customer(kafka, &topics.customers, &customer).await.expect("put customer");
}

/// Status and JSON body; every answer of the publisher, errors included, must be JSON.
pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("response body");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    assert!(content_type.starts_with("application/json"), "status {status}: content-type {content_type:?}");
    (status, body)
}

pub fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no string `error` in {body}"))
}

/// One record read back from the delivery topic.
#[derive(Debug)]
pub struct Delivered {
    pub key: String,
    pub value: EventRecord,
    pub headers: HashMap<String, String>,
}

/// Every record on `topic` (see `hookline_testkit::kafka::read_topic`), decoded.
pub async fn read_all(kafka: &KafkaArgs, topic: &str) -> Vec<Delivered> {
    hookline_testkit::kafka::read_topic(kafka, topic)
        .await
        .iter()
        .map(|message| {
            let key = String::from_utf8(message.key().expect("record key").to_vec()).expect("utf-8 key");
            let value = EventRecord::from_bytes(message.payload().expect("record value")).expect("record value");
            let mut headers = HashMap::new();
            if let Some(list) = message.headers() {
                for header in list.iter() {
                    let value = header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                    headers.insert(header.key.to_owned(), value);
                }
            }
            Delivered { key, value, headers }
        })
        .collect()
}

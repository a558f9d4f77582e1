//! Event-type schemas end to end, against a real tansu broker: payloads validated against Avro
//! and JSON Schema types from a directory and from a schema registry, `--require-schemas`,
//! `GET /v1/event-types` and its roles, and start-up errors for bad schemas.
//!
//! The registry is [`RegistryDouble`], a test double of the few Confluent Schema Registry REST
//! calls the publisher makes: the real registry (a JVM service) cannot run here.

use std::collections::BTreeMap;

use hookline_core::config::SchemaRegistryArgs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::topics::watermarks;
use hookline_publisher::Config;
use hookline_testkit::{tenants, unique_name};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod common;

use common::*;

const ORDER_AVSC: &str = r#"{
    "type": "record", "name": "OrderCreated", "namespace": "com.acme",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "items", "type": {"type": "array", "items": {
            "type": "record", "name": "Item",
            "fields": [{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}]
        }}},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]
}"#;

const INVOICE_SCHEMA: &str = r#"{
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["invoice"],
    "properties": {
        "invoice": {
            "type": "object",
            "required": ["id", "amount"],
            "properties": {"id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}
        }
    }
}"#;

/// A directory of schema files, removed when dropped.
struct SchemaDir(PathBuf);

impl SchemaDir {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(unique_name("hookline-event-schemas"));
        std::fs::create_dir_all(&dir).expect("create schema dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write schema");
        }
        Self(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Drop for SchemaDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Subject → every version's `(schema type, schema)`, oldest first.
type Subjects = BTreeMap<String, Vec<(String, String)>>;

/// A test double of the Confluent Schema Registry, serving only what the publisher reads:
/// `GET /subjects` and `GET /subjects/{subject}/versions/latest` (`{subject, id, version,
/// schema, schemaType}`, or 404 with error code 40401). Subjects can be registered while it runs.
#[derive(Clone, Default)]
struct RegistryDouble {
    subjects: Arc<Mutex<Subjects>>,
}

impl RegistryDouble {
    /// Serves on `127.0.0.1:0`; returns the base URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind registry double");
        let url = format!("http://{}", listener.local_addr().expect("registry address"));
        let app = axum::Router::new()
            .route("/subjects", get(Self::list))
            .route("/subjects/{subject}/versions/latest", get(Self::latest))
            // The publisher looks up the id of its delivery-record schema at start-up; any
            // version of the subject will do for this double.
            .route("/subjects/{subject}", axum::routing::post(Self::latest))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Registers a new version of `subject`.
    fn register(&self, subject: &str, schema_type: &str, schema: &str) {
        let mut subjects = self.subjects.lock().expect("registry lock");
        subjects.entry(subject.to_owned()).or_default().push((schema_type.to_owned(), schema.to_owned()));
    }

    async fn list(State(registry): State<Self>) -> Json<Vec<String>> {
        Json(registry.subjects.lock().expect("registry lock").keys().cloned().collect())
    }

    async fn latest(State(registry): State<Self>, UrlPath(subject): UrlPath<String>) -> Response {
        let subjects = registry.subjects.lock().expect("registry lock");
        let Some((index, (schema_type, schema))) =
            subjects.get(&subject).and_then(|v| v.iter().enumerate().next_back())
        else {
            let body = json!({"error_code": 40401, "message": format!("Subject '{subject}' not found.")});
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        };
        // Ids are global in a real registry; any distinct number per (subject, version) will do.
        let position = subjects.keys().position(|s| *s == subject).unwrap_or_default();
        let id = 100 * (position + 1) + index;
        let version = index + 1;
        Json(json!({"subject": subject, "id": id, "version": version, "schema": schema, "schemaType": schema_type}))
            .into_response()
    }
}

/// Creates a customer through the admin API and returns its API key.
async fn api_key(harness: &Harness, id: &str, events: &[&str]) -> String {
    let (status, body) =
        harness.call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": id }))).await;
    assert_eq!(status, 201, "{body}");
    let key = body["api_key"].as_str().expect("api_key").to_owned();
    let (status, body) =
        harness.call(Method::PUT, "/v1/customer/subscriptions", Some(&key), Some(json!({ "events": events }))).await;
    assert_eq!(status, 200, "{body}");
    key
}

/// `GET /v1/event-types` as `token`: the listed types by name.
async fn event_types(harness: &Harness, token: &str) -> BTreeMap<String, Value> {
    let (status, body) = harness.call(Method::GET, "/v1/event-types", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["event_types"]
        .as_array()
        .expect("event_types array")
        .iter()
        .map(|t| (t["type"].as_str().expect("type").to_owned(), t.clone()))
        .collect()
}

fn valid_order() -> Value {
    json!({"order_id": 42, "items": [{"sku": "a-1", "quantity": 2}], "note": null})
}

async fn nothing_produced(harness: &Harness) {
    let marks = watermarks(&harness.kafka, &harness.topics.deliveries).await.expect("watermarks");
    assert!(marks.iter().all(|(_, _, high)| *high == 0), "records were produced: {marks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_schemas_validate_payloads() {
    let dir = SchemaDir::new(&[("order.created.avsc", ORDER_AVSC), ("invoice.paid.schema.json", INVOICE_SCHEMA)]);
    let path = dir.path();
    let harness = Harness::start(&[("alice", &["*"])], |config| config.event_schemas_dir = Some(path)).await;

    // Invalid payloads: 422 naming the first offending path, and nothing on the topic.
    let cases = [
        (
            json!({"type": "order.created", "payload": {"order_id": 1, "items": [{"sku": 7, "quantity": 1}]}}),
            "invalid payload at /items/0/sku: expected string",
        ),
        (
            json!({"type": "order.created", "payload": {"items": []}}),
            "invalid payload at /order_id: missing required field",
        ),
        (
            json!({"type": "order.created", "payload": {"order_id": 1, "items": [], "colour": "red"}}),
            "invalid payload at /colour: unknown field",
        ),
        (json!({"type": "order.created", "payload": [1]}), "invalid payload: expected record com.acme.OrderCreated"),
        (
            json!({"type": "invoice.paid", "payload": {"invoice": {"id": "in_1", "amount": "12"}}}),
            r#"invalid payload at /invoice/amount: value is not of type "number""#,
        ),
        (
            json!({"type": "invoice.paid", "payload": {"invoice": {"amount": 12}}}),
            "invalid payload at /invoice/id: missing required property",
        ),
    ];
    for (request, expected) in &cases {
        let (status, answer) = harness.publish(request.clone()).await;
        assert_eq!(status, 422, "{request}: {answer}");
        let error = error_of(&answer);
        assert!(error.starts_with(expected), "{request}: {error:?} should start with {expected:?}");
    }
    nothing_produced(&harness).await;

    // Valid payloads, and a type without a schema, are published unchanged.
    let order = r#"{"order_id": 42,  "items": [{"sku": "a-1", "quantity": 2}]}"#;
    let (status, answer) =
        harness.post_raw("application/json", format!(r#"{{"type":"order.created","payload":{order}}}"#)).await;
    assert_eq!(status, 202, "{answer}");
    for request in [
        json!({"type": "invoice.paid", "payload": {"invoice": {"id": "in_1", "amount": 12.5}}}),
        json!({"type": "user.signed_up", "payload": "anything goes"}),
    ] {
        let (status, answer) = harness.publish(request.clone()).await;
        assert_eq!(status, 202, "{request}: {answer}");
        assert_eq!(answer["deliveries"], 1, "{answer}");
    }
    let records = read_all(&harness.kafka, &harness.topics.deliveries).await;
    let types: Vec<&str> = records.iter().map(|r| r.value.event_type.as_str()).collect();
    assert_eq!(records.len(), 3, "{types:?}");
    let produced_order = records.iter().find(|r| r.value.event_type == "order.created").expect("order record");
    assert_eq!(produced_order.value.payload.get(), order);

    // Every role may read the list; nobody else.
    let customer_key = api_key(&harness, "bob", &["order.created"]).await;
    let (status, answer) = harness.call(Method::GET, "/v1/event-types", None, None).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = harness.call(Method::GET, "/v1/event-types", Some("hk_nope_nope"), None).await;
    assert_eq!(status, 401, "{answer}");
    for token in [ADMIN_TOKEN, PRODUCER_TOKEN, customer_key.as_str()] {
        let listed = event_types(&harness, token).await;
        assert_eq!(listed.keys().collect::<Vec<_>>(), ["invoice.paid", "order.created"]);
        let order = &listed["order.created"];
        assert_eq!(order["format"], "avro");
        assert_eq!(order["source"], "directory");
        assert!(order.get("version").is_none(), "{order}");
        assert_eq!(order["schema"]["name"], "OrderCreated");
        let invoice = &listed["invoice.paid"];
        assert_eq!(invoice["format"], "json-schema");
        assert_eq!(invoice["schema"], serde_json::from_str::<Value>(INVOICE_SCHEMA).expect("schema"));
    }

    let (_, metrics) = harness.get("/metrics").await;
    for line in [
        r#"hookline_schema_validation_failures_total{format="avro"} 4"#,
        r#"hookline_schema_validation_failures_total{format="json-schema"} 2"#,
        r#"hookline_event_types{source="directory"} 2"#,
        r#"hookline_event_types{source="registry"} 0"#,
        r#"hookline_publish_requests_total{outcome="invalid"} 6"#,
        r#"hookline_publish_requests_total{outcome="accepted"} 3"#,
        r#"hookline_api_requests_total{operation="list_event_types",status="200"} 3"#,
        r#"hookline_api_requests_total{operation="list_event_types",status="401"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_schemas_refuses_types_without_one() {
    let dir = SchemaDir::new(&[("order.created.avsc", ORDER_AVSC)]);
    let path = dir.path();
    let harness = Harness::start(&[("alice", &["*"])], |config| {
        config.event_schemas_dir = Some(path);
        config.require_schemas = true;
    })
    .await;

    let (status, answer) = harness.publish(json!({"type": "user.signed_up", "payload": {}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_of(&answer), "no schema for event type user.signed_up");
    nothing_produced(&harness).await;

    let (status, answer) = harness.publish(json!({"type": "order.created", "payload": valid_order()})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(read_all(&harness.kafka, &harness.topics.deliveries).await.len(), 1);

    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_schemas_validate_payloads_and_follow_the_registry() {
    let registry = RegistryDouble::default();
    registry.register("hookline.event.order.created", "AVRO", r#""string""#);
    registry.register("hookline.event.order.created", "AVRO", ORDER_AVSC);
    registry.register("hookline.event.invoice.paid", "JSON", INVOICE_SCHEMA);
    // Not an event type's subject: ignored.
    registry.register("webhooks-value", "AVRO", r#""string""#);
    // Unusable: skipped, and with schemas required its type cannot be published (503).
    registry.register("hookline.event.bad.schema", "JSON", r#"{"type": 12}"#);
    // Shadowed by the directory, whose schema accepts any object.
    registry.register("hookline.event.shadowed", "JSON", r#"{"type": "object", "required": ["x"]}"#);
    let url = registry.start().await;
    let dir = SchemaDir::new(&[("shadowed.json", r#"{"type": "object"}"#)]);
    let path = dir.path();
    let records = registry.clone();
    let harness = Harness::start(&[("alice", &["*"])], |config| {
        // Records are written in the Confluent format through the same registry.
        let delivery_schema = include_str!("../../schemas/delivery.avsc");
        records.register(&format!("{}-value", config.topics.deliveries), "AVRO", delivery_schema);
        let customer_schema = include_str!("../../schemas/customer.avsc");
        records.register(&format!("{}-value", config.topics.customers), "AVRO", customer_schema);
        config.schema_registry = SchemaRegistryArgs::with_url(url);
        config.event_schemas_dir = Some(path);
        config.event_schemas_refresh = Duration::from_millis(200);
        config.require_schemas = true;
    })
    .await;

    let listed = event_types(&harness, ADMIN_TOKEN).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["invoice.paid", "order.created", "shadowed"]);
    assert_eq!(
        (&listed["order.created"]["format"], &listed["order.created"]["source"], &listed["order.created"]["version"]),
        (&json!("avro"), &json!("registry"), &json!(2))
    );
    assert_eq!(listed["invoice.paid"]["format"], "json-schema");
    assert_eq!(listed["shadowed"]["source"], "directory");

    let (status, answer) = harness
        .publish(json!({"type": "order.created", "payload": {"order_id": 1, "items": [{"sku": "a", "quantity": 1.5}]}}))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(error_of(&answer).starts_with("invalid payload at /items/0/quantity: expected int"), "{answer}");
    let (status, answer) =
        harness.publish(json!({"type": "invoice.paid", "payload": {"invoice": {"id": "i", "amount": -1}}})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(error_of(&answer).starts_with("invalid payload at /invoice/amount"), "{answer}");
    nothing_produced(&harness).await;

    for payload in
        [json!({"type": "order.created", "payload": valid_order()}), json!({"type": "shadowed", "payload": {}})]
    {
        let (status, answer) = harness.publish(payload.clone()).await;
        assert_eq!(status, 202, "{payload}: {answer}");
    }

    let (status, answer) = harness.publish(json!({"type": "bad.schema", "payload": {}})).await;
    assert_eq!(status, 503, "{answer}");
    assert!(error_of(&answer).contains("hookline.event.bad.schema: not a valid JSON Schema"), "{answer}");

    // A subject registered after start-up applies to the next publish.
    let (status, answer) = harness.publish(json!({"type": "late.arrival", "payload": {}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_of(&answer), "no schema for event type late.arrival");
    registry.register("hookline.event.brand.new", "JSON", r#"{"type": "object", "required": ["n"]}"#);
    let (status, answer) = harness.publish(json!({"type": "brand.new", "payload": {}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_of(&answer), "invalid payload at /n: missing required property");
    let (status, answer) = harness.publish(json!({"type": "brand.new", "payload": {"n": 1}})).await;
    assert_eq!(status, 202, "{answer}");

    // A new version is picked up by the periodic refresh.
    registry.register("hookline.event.invoice.paid", "JSON", r#"{"type": "string"}"#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = event_types(&harness, PRODUCER_TOKEN).await;
        if listed["invoice.paid"]["version"] == 2 {
            assert_eq!(listed["invoice.paid"]["schema"], json!({"type": "string"}));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the refresh did not pick up version 2: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = harness.publish(json!({"type": "invoice.paid", "payload": "in_1"})).await;
    assert_eq!(status, 202, "{answer}");

    // Confluent-format records: counted, not decoded (that needs the registry; see consumer/tests/avro.rs).
    assert_eq!(hookline_testkit::kafka::read_topic(&harness.kafka, &harness.topics.deliveries).await.len(), 4);
    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_event_types{source="registry"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_event_types{source="directory"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"hookline_schema_registry_requests_total{kind="lookup",result="ok"} 1"#), "{metrics}");

    harness.stop().await;
}

/// A recursive record whose links `{"N": ...}` each read both as the record `N` and as Avro-JSON's
/// wrapper for the union branch `N`: a checker that tries every reading does 2^depth work.
const RECURSIVE_AVSC: &str = r#"{"type": "record", "name": "N", "fields": [{"name": "N", "type": ["null", "N"]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_of_recursive_schemas_are_refused_promptly() {
    let dir = SchemaDir::new(&[("tree.grown.avsc", RECURSIVE_AVSC)]);
    let path = dir.path();
    let harness = Harness::start(&[("alice", &["*"])], |config| config.event_schemas_dir = Some(path)).await;
    // Generous: the design target is well under a second.
    let prompt = Duration::from_secs(5);
    let nest = |depth: usize, last: Value| (0..depth).fold(last, |inner, _| json!({ "N": inner }));

    // 60 levels, wrong at the bottom; more requests at once than there are cores.
    let hostile = json!({"type": "tree.grown", "payload": nest(60, json!(5))});
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let request = harness.client.post(format!("{}/publish", harness.base)).bearer_auth(PRODUCER_TOKEN);
            let body = hostile.clone();
            tokio::spawn(async move { decode(request.json(&body).send().await.expect("publish")).await })
        })
        .collect();
    // The server keeps answering meanwhile.
    let (status, _) = tokio::time::timeout(prompt, harness.get("/healthz")).await.expect("/healthz answers");
    assert_eq!(status, 200);
    for request in requests {
        let (status, answer) = tokio::time::timeout(prompt, request).await.expect("answered promptly").expect("task");
        assert_eq!(status, 422, "{answer}");
        let error = error_of(&answer);
        assert!(error.starts_with("invalid payload at /N"), "{error}");
        assert!(error.contains("too complex to validate against the schema"), "{error}");
    }
    nothing_produced(&harness).await;

    // Deep payloads the schema allows are accepted.
    let (status, answer) = harness.publish(json!({"type": "tree.grown", "payload": nest(100, Value::Null)})).await;
    assert_eq!(status, 202, "{answer}");
    let (_, metrics) = harness.get("/metrics").await;
    assert!(metrics.contains(r#"hookline_schema_validation_failures_total{format="avro"} 6"#), "{metrics}");
    harness.stop().await;
}

/// A publisher that must stop during start-up: its error.
async fn start_up_error(tweak: impl FnOnce(&mut Config)) -> String {
    // Nothing listens on port 1: the schemas must be refused before Kafka is needed.
    let mut config = Config::new(KafkaArgs::new("127.0.0.1:1"), TopicArgs::default());
    config.master_key = tenants::master_key_args();
    config.directory_load_timeout = Duration::from_secs(2);
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        hookline_publisher::serve(config, listener, CancellationToken::new()),
    )
    .await
    .expect("start-up ends");
    outcome.expect_err("start-up must fail").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schemas_stop_the_start_up() {
    let dir = SchemaDir::new(&[("order.created.avsc", ORDER_AVSC), ("broken.type.json", r#"{"type": 12}"#)]);
    let path = dir.path();
    let error = start_up_error(|config| config.event_schemas_dir = Some(path)).await;
    assert!(error.contains(&Path::new(&dir.0).join("broken.type.json").display().to_string()), "{error}");

    let error = start_up_error(|config| config.event_schemas_dir = Some(PathBuf::from("/nonexistent/schemas"))).await;
    assert!(error.contains("/nonexistent/schemas"), "{error}");

    let error =
        start_up_error(|config| config.schema_registry = SchemaRegistryArgs::with_url("http://127.0.0.1:1")).await;
    assert!(error.contains("schema registry: http://127.0.0.1:1: cannot list subjects"), "{error}");
}

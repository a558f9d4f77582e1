//! A test double of the Confluent Schema Registry REST API.
//!
//! The real registry is a JVM service (usually run with Docker), which cannot run here, so the
//! tests that exercise Hookline's registry path use this small in-memory stand-in instead. It
//! implements only what Hookline and `schema_registry_converter` call, with Confluent's paths,
//! content type (`application/vnd.schemaregistry.v1+json`) and error bodies
//! (`{"error_code", "message"}`):
//!
//! | Call | |
//! |---|---|
//! | `POST /subjects/{s}/versions` | register: `{"id"}`; the same schema again returns its id; `409` if not BACKWARD compatible with the latest version, `422` if not a valid Avro schema |
//! | `POST /subjects/{s}` | look up a schema under a subject: `{"subject", "id", "version", "schema"}`; `404` (40401 no subject, 40403 no such schema) |
//! | `GET /schemas/ids/{id}` | `{"schema"}`; `404` (40403) |
//! | `GET /subjects/{s}/versions/latest` | `{"subject", "id", "version", "schema"}` |
//! | `GET /subjects` | `["..."]` |
//! | `POST /compatibility/subjects/{s}/versions/latest` | `{"is_compatible"}` |
//!
//! Ids are global and one per distinct schema (by Parsing Canonical Form), as in the real
//! registry: the same schema under two subjects has one id. Compatibility is BACKWARD (the new
//! schema must read data written with the latest one), checked with apache-avro's
//! `SchemaCompatibility`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// A running registry double on `127.0.0.1:<free port>`; stops when dropped.
#[derive(Debug)]
pub struct SchemaRegistry {
    address: SocketAddr,
    store: Arc<Mutex<Store>>,
    _stop: oneshot::Sender<()>,
}

/// A refusal, as the registry answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error_code: u32,
    pub message: String,
}

#[derive(Debug, Default)]
struct Store {
    /// Schema text by id − 1.
    schemas: Vec<String>,
    /// Ids by version − 1, per subject.
    subjects: BTreeMap<String, Vec<u32>>,
}

impl SchemaRegistry {
    /// Starts the double.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the schema registry double");
        let address = listener.local_addr().expect("local address");
        let store = Arc::new(Mutex::new(Store::default()));
        let app = Router::new()
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup))
            .route("/subjects/{subject}/versions", post(register))
            .route("/subjects/{subject}/versions/latest", get(latest))
            .route("/schemas/ids/{id}", get(by_id))
            .route("/compatibility/subjects/{subject}/versions/latest", post(compatibility))
            .fallback(|| async { error(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found".to_owned()) })
            .with_state(Arc::clone(&store));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { address, store, _stop: stop }
    }

    /// `http://127.0.0.1:PORT`, for `--schema-registry-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Registers `schema` (Avro schema JSON) under `subject`, as `POST /subjects/{s}/versions`
    /// does, and returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, Refusal> {
        self.store().register(subject, schema)
    }

    /// The subjects, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.store().subjects.keys().cloned().collect()
    }

    /// The latest `(id, version)` under `subject`.
    pub fn latest(&self, subject: &str) -> Option<(u32, u32)> {
        let store = self.store();
        let ids = store.subjects.get(subject)?;
        Some((*ids.last()?, u32::try_from(ids.len()).ok()?))
    }

    /// The schema text registered with `id`.
    pub fn schema(&self, id: u32) -> Option<String> {
        self.store().schema(id).map(str::to_owned)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    fn schema(&self, id: u32) -> Option<&str> {
        self.schemas.get(usize::try_from(id).ok()?.checked_sub(1)?).map(String::as_str)
    }

    fn register(&mut self, subject: &str, text: &str) -> Result<u32, Refusal> {
        let schema = parse(text)?;
        let canonical = schema.canonical_form();
        let same = |id: &u32| self.schema(*id).and_then(|s| Schema::parse_str(s).ok()).map(|s| s.canonical_form());
        let versions = self.subjects.get(subject).cloned().unwrap_or_default();
        if let Some(id) = versions.iter().find(|id| same(id).as_deref() == Some(canonical.as_str())) {
            return Ok(*id);
        }
        if let Some(latest) = versions.last() {
            check_backward(subject, &schema, self.schema(*latest).unwrap_or_default())?;
        }
        let id = match (1..)
            .zip(&self.schemas)
            .find(|(_, s)| Schema::parse_str(s).is_ok_and(|s| s.canonical_form() == canonical))
        {
            Some((id, _)) => id,
            None => {
                self.schemas.push(text.to_owned());
                u32::try_from(self.schemas.len()).unwrap_or(u32::MAX)
            }
        };
        self.subjects.entry(subject.to_owned()).or_default().push(id);
        Ok(id)
    }

    /// `(id, version)` of `text` under `subject`.
    fn find(&self, subject: &str, text: &str) -> Result<(u32, u32), Refusal> {
        let versions = self.subjects.get(subject).ok_or_else(|| subject_not_found(subject))?;
        let canonical = parse(text)?.canonical_form();
        versions
            .iter()
            .zip(1..)
            .find(|(id, _)| {
                self.schema(**id)
                    .and_then(|s| Schema::parse_str(s).ok())
                    .is_some_and(|s| s.canonical_form() == canonical)
            })
            .map(|(id, version)| (*id, version))
            .ok_or_else(|| Refusal { status: 404, error_code: 40403, message: "Schema not found".to_owned() })
    }

    fn latest(&self, subject: &str) -> Result<Value, Refusal> {
        let versions = self.subjects.get(subject).ok_or_else(|| subject_not_found(subject))?;
        let id = *versions.last().ok_or_else(|| subject_not_found(subject))?;
        Ok(json!({ "subject": subject, "id": id, "version": versions.len(), "schema": self.schema(id) }))
    }
}

fn parse(text: &str) -> Result<Schema, Refusal> {
    Schema::parse_str(text).map_err(|e| Refusal {
        status: 422,
        error_code: 42201,
        message: format!("Invalid schema {text} with refs [] of type AVRO, details: {e}"),
    })
}

fn check_backward(subject: &str, new: &Schema, latest: &str) -> Result<(), Refusal> {
    let latest =
        Schema::parse_str(latest).map_err(|e| Refusal { status: 500, error_code: 50001, message: e.to_string() })?;
    SchemaCompatibility::can_read(&latest, new).map(|_| ()).map_err(|e| Refusal {
        status: 409,
        error_code: 409,
        message: format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: \
             [{{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'{e}'}}]"
        ),
    })
}

fn subject_not_found(subject: &str) -> Refusal {
    Refusal { status: 404, error_code: 40401, message: format!("Subject '{subject}' not found.") }
}

type Shared = State<Arc<Mutex<Store>>>;

fn lock(store: &Arc<Mutex<Store>>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, CONTENT_TYPE_V1)], body.to_string()).into_response()
}

fn error(status: StatusCode, error_code: u32, message: String) -> Response {
    answer(status, &json!({ "error_code": error_code, "message": message }))
}

fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, refusal.error_code, refusal.message)
}

/// The `schema` of a request body.
fn schema_of(body: &[u8]) -> Result<String, Refusal> {
    let bad = |message: String| Refusal { status: 422, error_code: 42201, message };
    let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("Invalid request body: {e}")))?;
    if let Some(kind) = request.get("schemaType").and_then(Value::as_str).filter(|kind| *kind != "AVRO") {
        return Err(bad(format!("This double only knows AVRO schemas, not {kind}")));
    }
    request.get("schema").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| bad("No `schema` given".to_owned()))
}

async fn register(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> Response {
    let registered = schema_of(&body).and_then(|schema| lock(&store).register(&subject, &schema));
    match registered {
        Ok(id) => answer(StatusCode::OK, &json!({ "id": id })),
        Err(refusal) => refused(refusal),
    }
}

async fn lookup(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> Response {
    let store = lock(&store);
    let found = schema_of(&body).and_then(|schema| store.find(&subject, &schema).map(|found| (found, schema)));
    match found {
        Ok(((id, version), schema)) => {
            answer(StatusCode::OK, &json!({ "subject": subject, "id": id, "version": version, "schema": schema }))
        }
        Err(refusal) => refused(refusal),
    }
}

async fn latest(State(store): Shared, Path(subject): Path<String>) -> Response {
    match lock(&store).latest(&subject) {
        Ok(body) => answer(StatusCode::OK, &body),
        Err(refusal) => refused(refusal),
    }
}

async fn by_id(State(store): Shared, Path(id): Path<String>) -> Response {
    let store = lock(&store);
    match id.parse().ok().and_then(|id| store.schema(id)) {
        Some(schema) => answer(StatusCode::OK, &json!({ "schema": schema })),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found".to_owned()),
    }
}

async fn list_subjects(State(store): Shared) -> Response {
    let subjects: Vec<String> = lock(&store).subjects.keys().cloned().collect();
    answer(StatusCode::OK, &json!(subjects))
}

async fn compatibility(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> Response {
    let store = lock(&store);
    let checked = schema_of(&body).and_then(|text| {
        let schema = parse(&text)?;
        let latest = store.latest(&subject)?;
        Ok(check_backward(&subject, &schema, latest["schema"].as_str().unwrap_or_default()).is_ok())
    });
    match checked {
        Ok(is_compatible) => answer(StatusCode::OK, &json!({ "is_compatible": is_compatible })),
        Err(refusal) => refused(refusal),
    }
}

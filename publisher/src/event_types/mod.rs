//! Event types and their payload schemas: the publisher validates an event's `payload` against
//! the schema of its `type` before producing anything, and lists the known types for
//! `GET /v1/event-types` ([`crate::api`]).
//!
//! Schemas come from two sources:
//! - a directory (`--event-schemas-dir`), read once at start-up: `<type>.avsc` is an Avro
//!   schema, `<type>.json` or `<type>.schema.json` a JSON Schema. Hidden files and other
//!   extensions are ignored; a file that cannot be read or compiled, a file name that is not an
//!   event type, or two files for one type stop the start-up with an error naming the file.
//! - a Confluent Schema Registry (`--schema-registry-url`, see [`registry`]): the latest version
//!   of each subject `hookline.event.<type>` with schema type `AVRO` or `JSON`, loaded at
//!   start-up, refreshed every `--event-schemas-refresh`, and looked up on a miss.
//!
//! The directory wins when both define a type: it is the operator's local, deliberate choice.
//!
//! A type without a schema is accepted as is, unless `--require-schemas` is set: then it is
//! refused (422 `no schema for event type x`). A payload that does not match is refused with 422
//! naming the JSON pointer of the first mismatch (`invalid payload at /items/0/sku: expected
//! string`); payload values are never quoted back (they may be personal data).
//!
//! Payloads are validated on Tokio's blocking pool, one per core at a time, so that a payload that
//! is costly to check never stalls the async workers; the Avro walker's work is bounded by the
//! payload's size ([`avro`]).

pub mod avro;
pub mod registry;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookline_core::customer::{ALL_EVENTS, validate_event_type};
use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{Error, Result};

pub use avro::AvroValidator;
pub use registry::Registry;

/// The shortest refresh period honoured.
const MIN_REFRESH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// The language a schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Format {
    #[serde(rename = "avro")]
    Avro,
    #[serde(rename = "json-schema")]
    JsonSchema,
}

impl Format {
    /// The name used in the API and as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "avro",
            Self::JsonSchema => "json-schema",
        }
    }
}

/// Where a schema was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Directory,
    Registry,
}

impl Source {
    /// The name used in the API and as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::Registry => "registry",
        }
    }
}

/// Why a payload does not match its schema: where (a JSON pointer, empty for the payload itself)
/// and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid payload: {}", self.reason)
        } else {
            write!(f, "invalid payload at {}: {}", self.path, self.reason)
        }
    }
}

/// The JSON pointer (RFC 6901) of `segments`.
pub(crate) fn pointer(segments: &[String]) -> String {
    segments.iter().fold(String::new(), |mut text, segment| {
        text.push('/');
        text.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        text
    })
}

/// A compiled schema.
enum Compiled {
    Avro(AvroValidator),
    JsonSchema(jsonschema::Validator),
}

/// An event type with its schema, compiled.
pub struct EventType {
    pub name: String,
    pub format: Format,
    pub source: Source,
    /// The registry's version of the subject.
    pub version: Option<u32>,
    /// The registry's global schema id.
    pub id: Option<u32>,
    /// The schema document, as shown on `GET /v1/event-types`.
    pub schema: Value,
    compiled: Compiled,
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventType")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl EventType {
    /// Compiles `text` as a schema of `format`. The error says what is wrong with it.
    ///
    /// JSON Schema `$ref`s to other documents are refused: the validator is built offline, so a
    /// schema never makes the publisher fetch anything.
    pub fn compile(name: &str, format: Format, source: Source, text: &str) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let compiled = match format {
            Format::Avro => Compiled::Avro(AvroValidator::parse(text)?),
            Format::JsonSchema => Compiled::JsonSchema(
                jsonschema::options().offline().build(&schema).map_err(|e| format!("not a valid JSON Schema: {e}"))?,
            ),
        };
        Ok(Self { name: name.to_owned(), format, source, version: None, id: None, schema, compiled })
    }

    /// Checks `payload`; the error names the first offending location.
    pub fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        match &self.compiled {
            Compiled::Avro(validator) => validator.validate(payload),
            Compiled::JsonSchema(validator) => validator.validate(payload).map_err(|error| {
                let path = error.instance_path().as_str().to_owned();
                // Point at the member concerned rather than at the object holding it.
                let member = |name: &str| format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
                match error.kind() {
                    ValidationErrorKind::Required { property } => PayloadError {
                        path: member(property.as_str().unwrap_or_default()),
                        reason: "missing required property".to_owned(),
                    },
                    ValidationErrorKind::AdditionalProperties { unexpected }
                    | ValidationErrorKind::UnevaluatedProperties { unexpected }
                        if !unexpected.is_empty() =>
                    {
                        PayloadError { path: member(&unexpected[0]), reason: "property not allowed".to_owned() }
                    }
                    // Masked: the message must not quote the payload's values.
                    _ => PayloadError { path, reason: error.masked().to_string() },
                }
            }),
        }
    }
}

/// Every event type with a schema, from the directory and the registry.
pub(crate) struct EventTypes {
    directory: HashMap<String, Arc<EventType>>,
    registry: Option<Registry>,
    require_schemas: bool,
    metrics: Metrics,
    /// Payload validations that may run at once: one per core.
    validations: Arc<Semaphore>,
}

impl fmt::Debug for EventTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventTypes")
            .field("directory", &self.directory.len())
            .field("registry", &self.registry)
            .field("require_schemas", &self.require_schemas)
            .finish()
    }
}

impl EventTypes {
    /// Reads the schema directory and the registry, as configured.
    pub async fn load(config: &Config, metrics: Metrics) -> Result<Self> {
        let directory = match &config.event_schemas_dir {
            Some(dir) => load_directory(dir)?,
            None => HashMap::new(),
        };
        let settings = hookline_core::codec::registry_settings(&config.schema_registry, registry::REQUEST_TIMEOUT)
            .map_err(|e| Error::SchemaRegistry(e.to_string()))?;
        let registry = match settings {
            Some((url, settings)) => {
                Some(Registry::connect(&url, settings, config.event_schemas_refresh, metrics.clone()).await?)
            }
            None => None,
        };
        let types = Self {
            directory,
            registry,
            require_schemas: config.require_schemas,
            metrics,
            validations: Arc::new(Semaphore::new(validation_slots())),
        };
        if types.require_schemas && types.directory.is_empty() && types.registry.as_ref().is_none_or(Registry::is_empty)
        {
            tracing::warn!("--require-schemas is set but no event type has a schema yet: every publish is refused");
        }
        types.observe();
        for shadowed in types.shadowed() {
            tracing::info!(event_type = %shadowed, "the schema directory's schema replaces the registry's");
        }
        tracing::info!(
            directory = types.directory.len(),
            registry = types.registry.as_ref().map_or(0, Registry::len),
            require_schemas = types.require_schemas,
            "event type schemas loaded"
        );
        Ok(types)
    }

    /// Keeps the registry's schemas fresh until `stop` is cancelled (nothing to do without one).
    pub fn spawn_refresh(self: &Arc<Self>, stop: CancellationToken) {
        if let Some(registry) = &self.registry {
            // A zero period would spin on the registry.
            let period = registry.refresh_period().max(MIN_REFRESH_PERIOD);
            let types = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(period) => {}
                    }
                    if let Some(registry) = &types.registry {
                        registry.refresh().await;
                    }
                    types.observe();
                }
            });
        }
    }

    /// Checks `payload` against the schema of `event_type`: 422 if it does not match, or if the
    /// type has no schema and schemas are required.
    ///
    /// Parsing and validating run on Tokio's blocking pool, at most one per core at a time
    /// (requests beyond wait their turn): a payload that is costly to check (bounded,
    /// see [`avro`]; the `jsonschema` crate can be slow on hostile input too) then never holds up
    /// the async workers that serve every other request, and a flood of them cannot start more
    /// threads than there are cores.
    pub async fn check(&self, event_type: &str, payload: &RawValue) -> Result<()> {
        let Some(schema) = self.find(event_type).await? else {
            if self.require_schemas {
                return Err(Error::InvalidRequest(format!("no schema for event type {event_type}")));
            }
            return Ok(());
        };
        // Never closed, so acquiring only waits.
        let permit = Arc::clone(&self.validations)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the payload validation pool is closed".into()))?;
        // A copy for the blocking thread, taken once a slot is free, so that waiting requests
        // hold no more than their body.
        let text = payload.get().to_owned();
        let format = schema.format;
        let checked = tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the request is dropped meanwhile.
            let _permit = permit;
            let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            schema.validate(&value).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| Error::Internal(format!("the payload validation failed: {error}")))?;
        checked.map_err(|error| {
            self.metrics.schema_validation_failed(format.as_str());
            Error::InvalidRequest(error)
        })
    }

    /// The schema of `event_type`: the directory's, else the registry's (asking it on a miss).
    async fn find(&self, event_type: &str) -> Result<Option<Arc<EventType>>> {
        if let Some(found) = self.directory.get(event_type) {
            return Ok(Some(Arc::clone(found)));
        }
        let Some(registry) = &self.registry else {
            return Ok(None);
        };
        // The `hookline_event_types` gauge counts a type found this way at the next refresh.
        match registry.find(event_type).await {
            Ok(found) => Ok(found),
            // Unknown is not the same as absent: with schemas required that is the registry's
            // fault (503), not the producer's; without, the event is as acceptable as any other
            // type without a schema, and the registry's own failures are logged and counted.
            Err(reason) if self.require_schemas => Err(Error::SchemaRegistry(reason)),
            Err(_) => Ok(None),
        }
    }

    /// Every type with a schema, by name.
    pub fn list(&self) -> Vec<Arc<EventType>> {
        let mut all: Vec<Arc<EventType>> = self.directory.values().cloned().collect();
        if let Some(registry) = &self.registry {
            all.extend(registry.all().into_iter().filter(|t| !self.directory.contains_key(&t.name)));
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Registry types the directory overrides.
    fn shadowed(&self) -> Vec<String> {
        let Some(registry) = &self.registry else { return Vec::new() };
        registry.all().into_iter().filter(|t| self.directory.contains_key(&t.name)).map(|t| t.name.clone()).collect()
    }

    /// Updates the `hookline_event_types` gauge.
    fn observe(&self) {
        let registry = self
            .registry
            .as_ref()
            .map_or(0, |registry| registry.all().iter().filter(|t| !self.directory.contains_key(&t.name)).count());
        self.metrics.event_types(Source::Directory.as_str(), self.directory.len());
        self.metrics.event_types(Source::Registry.as_str(), registry);
    }
}

/// How many payload validations may run at once: one per core (the blocking pool would otherwise
/// start up to 512 threads under a flood of costly payloads).
fn validation_slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Reads every schema of `dir` (see the module docs for the file names).
pub(crate) fn load_directory(dir: &Path) -> Result<HashMap<String, Arc<EventType>>> {
    let file_error = |path: &Path, reason: String| Error::EventSchema { file: path.display().to_string(), reason };
    let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, format!("cannot read the directory: {e}")))?;
    let mut types: HashMap<String, Arc<EventType>> = HashMap::new();
    let mut files: HashMap<String, PathBuf> = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| file_error(dir, format!("cannot read the directory: {e}")))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(file_error(&path, "the file name is not UTF-8".into()));
        };
        if file_name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Some((name, format)) = schema_file(file_name) else {
            tracing::warn!(file = %path.display(), "ignoring a file that is not .avsc, .json or .schema.json");
            continue;
        };
        if name == ALL_EVENTS {
            return Err(file_error(&path, format!("`{ALL_EVENTS}` is not an event type")));
        }
        validate_event_type(name).map_err(|e| file_error(&path, format!("the file name is not an event type: {e}")))?;
        if let Some(other) = files.get(name) {
            return Err(file_error(&path, format!("event type {name} also has the schema {}", other.display())));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, format!("cannot read: {e}")))?;
        let compiled = EventType::compile(name, format, Source::Directory, &text).map_err(|e| file_error(&path, e))?;
        files.insert(name.to_owned(), path);
        types.insert(name.to_owned(), Arc::new(compiled));
    }
    Ok(types)
}

/// The event type and format a schema file name stands for.
fn schema_file(file_name: &str) -> Option<(&str, Format)> {
    if let Some(name) = file_name.strip_suffix(".avsc") {
        return Some((name, Format::Avro));
    }
    let name = file_name.strip_suffix(".schema.json").or_else(|| file_name.strip_suffix(".json"))?;
    Some((name, Format::JsonSchema))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ORDER_JSON_SCHEMA: &str = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["order"],
        "additionalProperties": false,
        "properties": {
            "order": {
                "type": "object",
                "required": ["id", "items"],
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"enum": ["new", "paid"]},
                    "ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "items": {"type": "array", "items": {
                        "type": "object",
                        "required": ["sku"],
                        "properties": {"sku": {"type": "string"}, "a/b": {"type": "boolean"}}
                    }}
                }
            }
        }
    }"#;

    fn json_type() -> EventType {
        EventType::compile("order.created", Format::JsonSchema, Source::Directory, ORDER_JSON_SCHEMA).unwrap()
    }

    #[test]
    fn json_schema_errors_name_the_path() {
        let schema = json_type();
        schema.validate(&json!({"order": {"id": 1, "items": [{"sku": "a"}]}})).unwrap();
        schema.validate(&json!({"order": {"id": 1, "items": [], "status": "paid", "ref": "r-1"}})).unwrap();
        schema.validate(&json!({"order": {"id": 1, "items": [], "ref": 7}})).unwrap();
        let cases = [
            (json!({"order": {"id": 1, "items": [{"sku": 5}]}}), "/order/items/0/sku", "not of type \"string\""),
            (json!({"order": {"id": 1, "items": [{"sku": "a"}, {}]}}), "/order/items/1/sku", "missing required"),
            (json!({"order": {"items": []}}), "/order/id", "missing required"),
            (json!({"order": {"id": 1, "items": []}, "x": 1}), "/x", "not allowed"),
            (json!({"order": {"id": 1, "items": [{"sku": "a", "a/b": 1}]}}), "/order/items/0/a~1b", "boolean"),
            (json!([]), "", "not of type \"object\""),
            (json!({"order": {"id": 1, "items": [], "status": "lost"}}), "/order/status", "is not one of"),
            (json!({"order": {"id": 1, "items": [], "ref": 1.5}}), "/order/ref", "not valid under any of the schemas"),
        ];
        for (payload, path, reason) in cases {
            let error = schema.validate(&payload).expect_err(&payload.to_string());
            assert_eq!(error.path, path, "{payload}: {error}");
            assert!(error.reason.contains(reason), "{payload}: {error:?} should mention {reason:?}");
        }
    }

    #[test]
    fn payload_values_are_not_quoted() {
        let error = json_type().validate(&json!({"order": {"id": "secret-value", "items": []}})).unwrap_err();
        assert_eq!(error.path, "/order/id");
        assert!(!error.to_string().contains("secret-value"), "{error}");
        assert_eq!(error.to_string(), r#"invalid payload at /order/id: value is not of type "integer""#);
    }

    #[test]
    fn bad_json_schemas_are_refused() {
        for text in ["{", r#"{"type": 12}"#, r#"{"$ref": "https://example.com/schema.json"}"#] {
            let error = EventType::compile("t", Format::JsonSchema, Source::Directory, text).unwrap_err();
            assert!(!error.is_empty(), "{text}");
        }
    }

    #[test]
    fn messages() {
        let root = PayloadError { path: String::new(), reason: "expected record".into() };
        assert_eq!(root.to_string(), "invalid payload: expected record");
        let deep = PayloadError { path: pointer(&["a/b".into(), "c~d".into(), "0".into()]), reason: "x".into() };
        assert_eq!(deep.to_string(), "invalid payload at /a~1b/c~0d/0: x");
    }

    #[test]
    fn file_names() {
        assert_eq!(schema_file("order.created.avsc"), Some(("order.created", Format::Avro)));
        assert_eq!(schema_file("order.created.json"), Some(("order.created", Format::JsonSchema)));
        assert_eq!(schema_file("order.created.schema.json"), Some(("order.created", Format::JsonSchema)));
        assert_eq!(schema_file("README.md"), None);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookline-schemas-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_directory() {
        let dir = temp_dir("ok");
        std::fs::write(dir.join("order.created.schema.json"), ORDER_JSON_SCHEMA).unwrap();
        std::fs::write(dir.join("user:signed-up.avsc"), r#"{"type": "record", "name": "U", "fields": []}"#).unwrap();
        std::fs::write(dir.join("README.md"), "ignored").unwrap();
        std::fs::write(dir.join(".hidden.json"), "ignored").unwrap();
        std::fs::create_dir(dir.join("nested.json")).unwrap();
        let types = load_directory(&dir).unwrap();
        let mut names: Vec<_> = types.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["order.created", "user:signed-up"]);
        assert_eq!(types["user:signed-up"].format, Format::Avro);
        assert_eq!(types["order.created"].source, Source::Directory);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_name_the_file() {
        let cases = [
            ("broken", vec![("a.avsc", r#"{"type": "record"}"#)], "a.avsc"),
            ("not-json", vec![("b.json", "{")], "b.json"),
            ("bad-name", vec![("has space.json", "{}")], "has space.json"),
            ("duplicate", vec![("c.json", "{}"), ("c.avsc", r#""string""#)], "event type c also has the schema"),
        ];
        for (name, files, mentions) in cases {
            let dir = temp_dir(name);
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            let error = load_directory(&dir).unwrap_err().to_string();
            assert!(error.contains(mentions), "{name}: {error}");
            std::fs::remove_dir_all(dir).unwrap();
        }
        let missing = load_directory(Path::new("/nonexistent/hookline")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/hookline"), "{missing}");
    }
}

//! Event-type schemas from a Confluent Schema Registry, through `schema_registry_converter`'s
//! async client.
//!
//! The schema of event type `x` is the latest version of the subject `hookline.event.x`, of
//! schema type `AVRO` or `JSON` (`PROTOBUF` and schemas with references are not supported and
//! are skipped with an error in the log). All of them are loaded at start-up (the start-up fails
//! if the registry cannot list its subjects), then refreshed every `--event-schemas-refresh`:
//! new subjects and versions are picked up, deleted subjects dropped, and a subject that cannot be
//! fetched keeps its previous schema. A type not known yet is looked up on its first publish, so
//! a schema registered a moment ago applies at once; a miss is remembered for [`MISS_TTL`] so
//! that publishing a type without a schema does not cost a registry round trip every time.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_schema_by_subject_and_version,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, RegisteredSchema, SchemaType};

use super::{EventType, Format, Source};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// Subjects holding event-type schemas: this prefix, then the event type.
pub const SUBJECT_PREFIX: &str = "hookline.event.";
/// How long a type the registry did not have is not asked for again.
pub const MISS_TTL: Duration = Duration::from_secs(10);
/// Remembered misses at most; beyond, they are forgotten (types come from producers).
const MAX_MISSES: usize = 10_000;
/// Timeout of one registry request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Subjects fetched at once during a refresh.
const CONCURRENT_FETCHES: usize = 8;

/// The registry's event types, as last fetched.
pub struct Registry {
    settings: SrSettings,
    url: String,
    refresh: Duration,
    types: RwLock<HashMap<String, Arc<EventType>>>,
    /// Types the registry did not have (`None`) or could not give (`Some(reason)`), and when.
    misses: Mutex<HashMap<String, (Instant, Option<String>)>>,
    metrics: Metrics,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).field("types", &self.len()).finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects to the registry at `url` and loads every event-type schema.
    pub async fn connect(url: &str, settings: SrSettings, refresh: Duration, metrics: Metrics) -> Result<Self> {
        let url = hookline_core::quote::url(url);
        let registry = Self { settings, url, refresh, types: RwLock::default(), misses: Mutex::default(), metrics };
        registry.load_all().await.map_err(|reason| Error::SchemaRegistry(format!("{}: {reason}", registry.url)))?;
        Ok(registry)
    }

    /// How often [`Registry::refresh`] should run.
    pub fn refresh_period(&self) -> Duration {
        self.refresh
    }

    /// How many types the registry has a schema for.
    pub fn len(&self) -> usize {
        self.types.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether the registry has no event-type schema.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every type the registry has a schema for.
    pub fn all(&self) -> Vec<Arc<EventType>> {
        self.types.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Reloads every schema; failures are logged and counted, and the previous schemas stay.
    pub async fn refresh(&self) {
        if let Err(reason) = self.load_all().await {
            tracing::warn!(url = %self.url, %reason, "cannot refresh event-type schemas from the schema registry");
        }
    }

    /// The schema of `event_type`, asking the registry if it was not known.
    pub async fn find(&self, event_type: &str) -> Result<Option<Arc<EventType>>, String> {
        if let Some(found) = self.types.read().unwrap_or_else(PoisonError::into_inner).get(event_type) {
            return Ok(Some(Arc::clone(found)));
        }
        if let Some((at, error)) = self.misses.lock().unwrap_or_else(PoisonError::into_inner).get(event_type)
            && at.elapsed() < MISS_TTL
        {
            return error.clone().map_or(Ok(None), Err);
        }
        let subject = format!("{SUBJECT_PREFIX}{event_type}");
        let found = match self.fetch(&subject).await {
            Ok(Some(raw)) => compile(event_type, &raw).map(Some),
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
        };
        let result = match &found {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        self.metrics.schema_registry_request("lookup", result);
        match found {
            Ok(Some(compiled)) => {
                let compiled = Arc::new(compiled);
                tracing::info!(%subject, version = ?compiled.version, "event-type schema loaded from the schema registry");
                self.types
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(event_type.to_owned(), Arc::clone(&compiled));
                Ok(Some(compiled))
            }
            Ok(None) => {
                self.remember_miss(event_type, None);
                Ok(None)
            }
            Err(reason) => {
                tracing::warn!(%subject, %reason, "cannot get an event-type schema from the schema registry");
                self.remember_miss(event_type, Some(reason.clone()));
                Err(format!("{subject}: {reason}"))
            }
        }
    }

    fn remember_miss(&self, event_type: &str, error: Option<String>) {
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() >= MAX_MISSES {
            misses.clear();
        }
        misses.insert(event_type.to_owned(), (Instant::now(), error));
    }

    /// Lists the subjects and fetches the latest version of each event-type subject.
    async fn load_all(&self) -> Result<(), String> {
        let subjects = match get_all_subjects(&self.settings).await {
            Ok(subjects) => subjects,
            Err(error) => {
                self.metrics.schema_registry_request("refresh", "error");
                return Err(format!("cannot list subjects: {}", describe(&error)));
            }
        };
        let previous = self.types.read().unwrap_or_else(PoisonError::into_inner).clone();
        let fetched: Vec<(String, Result<Option<RegisteredSchema>, String>)> =
            futures::stream::iter(subjects.into_iter().filter_map(|subject| {
                let event_type = subject.strip_prefix(SUBJECT_PREFIX)?.to_owned();
                Some(async move { (event_type, self.fetch(&subject).await) })
            }))
            .buffer_unordered(CONCURRENT_FETCHES)
            .collect()
            .await;

        let mut types = HashMap::with_capacity(fetched.len());
        let mut failed = false;
        for (event_type, raw) in fetched {
            let old = previous.get(&event_type);
            let compiled = match raw {
                // Unchanged: keep the compiled schema.
                Ok(Some(raw)) if old.is_some_and(|o| o.id == Some(raw.id) && o.version == raw.version) => {
                    old.map(Arc::clone)
                }
                Ok(Some(raw)) => match compile(&event_type, &raw) {
                    Ok(compiled) => Some(Arc::new(compiled)),
                    Err(reason) => {
                        failed = true;
                        tracing::error!(%event_type, %reason, "ignoring an unusable schema in the schema registry");
                        None
                    }
                },
                // Deleted between the listing and the fetch.
                Ok(None) => None,
                Err(reason) => {
                    failed = true;
                    tracing::warn!(%event_type, %reason, "cannot fetch an event-type schema; keeping the previous one");
                    old.map(Arc::clone)
                }
            };
            if let Some(compiled) = compiled {
                types.insert(event_type, compiled);
            }
        }
        self.metrics.schema_registry_request("refresh", if failed { "error" } else { "ok" });
        *self.types.write().unwrap_or_else(PoisonError::into_inner) = types;
        // The listing is fresh: every remembered miss is either still a miss or now loaded.
        self.misses.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }

    /// The latest version of `subject`, `None` if the registry does not have it.
    async fn fetch(&self, subject: &str) -> Result<Option<RegisteredSchema>, String> {
        match get_schema_by_subject_and_version(&self.settings, subject, None).await {
            Ok(schema) => Ok(Some(schema)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(describe(&error)),
        }
    }
}

/// Compiles a registered schema for `event_type`.
fn compile(event_type: &str, raw: &RegisteredSchema) -> Result<EventType, String> {
    let format = match &raw.schema_type {
        SchemaType::Avro => Format::Avro,
        SchemaType::Json => Format::JsonSchema,
        other => return Err(format!("schema type {other:?} is not supported (only AVRO and JSON)")),
    };
    if !raw.references.is_empty() {
        return Err("schemas with references are not supported".into());
    }
    let mut compiled = EventType::compile(event_type, format, Source::Registry, &raw.schema)?;
    compiled.version = raw.version;
    compiled.id = Some(raw.id);
    Ok(compiled)
}

/// Whether the registry answered "no such subject or version" (404, error codes 404xx).
fn is_not_found(error: &SRCError) -> bool {
    let raw = error.source().and_then(|source| source.downcast_ref::<RawError>());
    raw.is_some_and(|raw| raw.error_code / 100 == 404) || error.error.contains("status 404")
}

/// A one-line description of a client error (its `Display` is verbose).
fn describe(error: &SRCError) -> String {
    match &error.cause {
        Some(cause) => format!("{}: {cause}", error.error),
        None => error.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_schemas_compile_by_type() {
        // Deserialized: the struct is non-exhaustive.
        let raw = |schema_type: SchemaType, schema: &str| -> RegisteredSchema {
            serde_json::from_value(serde_json::json!({
                "id": 7, "schema_type": schema_type, "schema": schema, "references": [], "properties": null,
                "tags": null, "subject": "hookline.event.t", "version": 3, "guid": null,
            }))
            .unwrap()
        };
        let avro = compile("t", &raw(SchemaType::Avro, r#""string""#)).unwrap();
        assert_eq!(
            (avro.format, avro.source, avro.version, avro.id),
            (Format::Avro, Source::Registry, Some(3), Some(7))
        );
        let json = compile("t", &raw(SchemaType::Json, r#"{"type": "string"}"#)).unwrap();
        assert_eq!(json.format, Format::JsonSchema);
        assert!(
            compile("t", &raw(SchemaType::Protobuf, "syntax = \"proto3\";")).unwrap_err().contains("not supported")
        );
        assert!(compile("t", &raw(SchemaType::Avro, r#"{"type": "record"}"#)).is_err());
    }
}

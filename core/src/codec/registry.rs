//! The Confluent Schema Registry client: its settings (shared with everything that talks to the
//! registry), the look-up and registration of the compiled-in schemas, the writer ids cached by
//! subject, the writer schemas fetched by id, and the mapping of its errors.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, perform_sr_call, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SrCall, SuppliedSchema};

use super::catalog::RecordType;
use crate::config::SchemaRegistryArgs;
use crate::{Error, Result};

/// How long one call to the schema registry may take.
pub(crate) const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// A schema as the registry holds it under a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: Option<u32>,
}

/// The registry client settings for `args` (its URL without a trailing `/`, checked, and the
/// client settings), or `None` without a URL. Shared by everything that talks to the registry, so
/// that credentials, the timeout and the proxy rule are the same everywhere.
pub fn registry_settings(args: &SchemaRegistryArgs, timeout: Duration) -> Result<Option<(String, SrSettings)>> {
    let Some(url) = args.url.as_deref().map(|u| u.trim_end_matches('/')) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(url).map_err(|e| Error::Invalid {
        field: "schema-registry-url",
        reason: format!("`{}`: {e}", crate::quote::url(url)),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Invalid {
            field: "schema-registry-url",
            reason: format!("`{}` is not an http or https URL", crate::quote::url(url)),
        });
    }
    let mut builder = SrSettings::new_builder(url.to_owned());
    // The registry is reached at exactly the configured URL, as Kafka is: an HTTP(S)_PROXY set in
    // the environment for other tools does not silently reroute schema look-ups.
    builder.set_timeout(timeout).no_proxy();
    if let Some(credentials) = &args.basic_auth {
        let (user, password) = credentials.expose().split_once(':').ok_or_else(|| Error::Invalid {
            field: "schema-registry-basic-auth",
            reason: "expected USER:PASSWORD".to_owned(),
        })?;
        builder.set_basic_authorization(user, Some(password));
    }
    let settings = builder.build().map_err(|e| Error::Invalid {
        field: "schema-registry-url",
        reason: format!("cannot build the registry client: {}", e.error),
    })?;
    Ok(Some((url.to_owned(), settings)))
}

/// A registry client with its caches.
pub(crate) struct Registry {
    pub(crate) url: String,
    settings: SrSettings,
    /// Fetches writer schemas by id, caching them.
    decoder: AvroDecoder,
    /// Schema id of the compiled-in schema, by subject.
    writer_ids: RwLock<HashMap<String, u32>>,
}

impl Registry {
    pub(crate) fn new(url: String, settings: SrSettings) -> Self {
        Self { url, decoder: AvroDecoder::new(settings.clone()), settings, writer_ids: RwLock::default() }
    }

    /// The id of the compiled-in schema of `record` under `subject`, looked up once.
    pub(crate) async fn writer_id(&self, subject: &str, record: RecordType) -> Result<u32> {
        if let Some(id) = self.writer_ids.read().unwrap_or_else(PoisonError::into_inner).get(subject) {
            return Ok(*id);
        }
        let registered = self.lookup(subject, record).await?;
        self.remember(subject, &registered);
        Ok(registered.id)
    }

    /// `POST /subjects/{subject}` with the compiled-in schema of `record`.
    pub(crate) async fn lookup(&self, subject: &str, record: RecordType) -> Result<Registered> {
        let body = serde_json::json!({ "schema": record.registered_form(), "schemaType": "AVRO" }).to_string();
        match perform_sr_call(&self.settings, SrCall::PostForVersion(subject, &body)).await {
            Ok(found) => {
                let id = found.id.ok_or_else(|| Error::RegistryRefused {
                    error_code: 0,
                    message: format!("no schema id in the answer for subject `{subject}`"),
                })?;
                Ok(Registered { id, version: found.version })
            }
            Err(error) => Err(match registry_error(error) {
                Error::RegistryRefused { error_code, .. } if error_code / 100 == 404 || error_code == 404 => {
                    Error::SchemaNotRegistered { subject: subject.to_owned(), url: self.url.clone() }
                }
                other => other,
            }),
        }
    }

    /// `POST /subjects/{subject}/versions` with the compiled-in schema of `record`.
    pub(crate) async fn register(&self, subject: &str, record: RecordType) -> Result<Registered> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, record.registered_form().to_owned());
        post_schema(&self.settings, subject.to_owned(), supplied).await.map_err(registry_error)?;
        // The registration answer carries the id only; the look-up adds the version.
        let registered = self.lookup(subject, record).await?;
        self.remember(subject, &registered);
        Ok(registered)
    }

    /// Reads `body`, written with the schema of registry id `id`, as `record`'s compiled-in
    /// schema (Avro schema resolution).
    pub(crate) async fn read(&self, record: RecordType, id: u32, body: &[u8]) -> Result<Value> {
        let writer = self.decoder.get_schema(id).await.map_err(|error| match registry_error(error) {
            Error::RegistryRefused { message, .. } => Error::Undecodable {
                reason: "unknown_schema",
                detail: format!("schema id {id} is not known to the schema registry: {message}"),
            },
            other => other,
        })?;
        let mut cursor = Cursor::new(body);
        let value = GenericDatumReader::builder(&writer.parsed)
            .reader_schema(record.schema())
            .build()
            .and_then(|reader| reader.read_value(&mut cursor))
            .map_err(|e| Error::Undecodable {
                reason: "invalid_avro",
                detail: format!("cannot read the record with schema id {id} as {}: {e}", record.full_name()),
            })?;
        Ok(value)
    }

    fn remember(&self, subject: &str, registered: &Registered) {
        self.writer_ids.write().unwrap_or_else(PoisonError::into_inner).insert(subject.to_owned(), registered.id);
    }
}

/// Maps a schema-registry client error: transport failures and 502/503 are transient; an answer
/// of the registry carries its error code and message.
fn registry_error(error: SRCError) -> Error {
    let raw = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<RawError>());
    match raw {
        Some(raw) if !error.retriable => {
            Error::RegistryRefused { error_code: raw.error_code, message: raw.message.clone() }
        }
        _ if error.retriable => Error::RegistryUnavailable(describe(&error)),
        _ => Error::RegistryRefused { error_code: 0, message: describe(&error) },
    }
}

fn describe(error: &SRCError) -> String {
    match &error.cause {
        Some(cause) => format!("{} ({cause})", error.error),
        None => error.error.clone(),
    }
}

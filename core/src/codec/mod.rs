//! How record values are encoded on the delivery, dead-letter and customers topics: Avro, with
//! or without a Confluent Schema Registry.
//!
//! The schemas are the `.avsc` files in `schemas/`, compiled in: `DeliveryRecord` (the delivery
//! topic and, unchanged, the DLQ) and `Customer` (the compacted customers topic), namespace
//! `dev.hookline`.
//!
//! # Writing
//! - Without a registry (the default): Avro *single-object encoding*: `C3 01`, the 8-byte
//!   little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, then
//!   the Avro binary datum.
//! - With `--schema-registry-url`: the Confluent wire format: `00`, the 4-byte big-endian schema
//!   id, then the Avro binary datum. The id is the one the registry holds for the compiled-in
//!   schema under the subject `<topic>-value` (TopicNameStrategy), looked up once and cached.
//!   Writers never register schemas themselves: a schema that is not registered is an error
//!   ([`Error::SchemaNotRegistered`]) naming `hookline-setup schemas register`, which does.
//!
//! # Reading
//! Readers accept all three forms, told apart by the first byte: `00` Confluent, `C3 01`
//! single-object, `{` the JSON records written before Avro (so existing topics keep working).
//! The writer's schema is resolved against the compiled-in reader schema with Avro's schema
//! resolution (fields matched by name, defaults filled in, unknown fields dropped):
//! - Confluent: the writer schema is fetched from the registry by id (cached). An unreachable
//!   registry is [`Error::RegistryUnavailable`], which callers retry; an unknown id is an error.
//! - Single-object: a known fingerprint names the writer schema exactly: the compiled-in schema
//!   or one of its earlier versions (kept compiled in, see `RecordType::history`), so a newer
//!   reader resolves older records.
//!
//! # Schema evolution
//! The rule for these records is: **a new version only appends optional fields at the end of the
//! top-level record** (a union with `null` first and `"default": null`). Under that rule:
//! - with a registry, readers fetch the newer writer schema by id and resolve it: the new field
//!   is dropped by older readers, defaulted by newer ones reading older records;
//! - without one, a reader that does not know a fingerprint (a record written by a newer
//!   version) decodes the datum with its own schema: the Avro binary of a record is the
//!   concatenation of its fields, so the older schema reads exactly the fields it knows, and the
//!   appended fields are the bytes left over. A record of an unknown fingerprint that leaves *no*
//!   bytes over, or that does not decode, is refused (`unknown_schema`): it was not written under
//!   the rule. The fingerprint of the *other* compiled-in record type is refused at once, so a
//!   customer record on the delivery topic is not misread.
//!
//! The alternative considered, a Kafka-native store of writer schemas keyed by fingerprint (a
//! compacted topic every writer publishes its schemas to), decodes any change but adds a topic,
//! a start-up write and a look-up on the delivery path; with a registry available for deployments
//! that need arbitrary evolution, the append-only rule is the smaller sound design. When a
//! schema changes, keep the rule, and keep the previous version compiled in as history: a newer
//! reader meeting an older record resolves it exactly instead of guessing.
//!
//! # Layout
//! This module is the [`Codec`]: encoding through the configured framing, decoding any framing.
//! `catalog` holds the compiled-in schemas, their history and fingerprints; `registry` the
//! schema registry client; `framing` the framings and the single-object reads; `mapping` the
//! [`AvroRecord`] trait. The record types implement the trait beside their definitions (the
//! `customer` and `envelope` modules), which also give the codec its per-record entry points
//! (`Codec::encode_delivery`, `Codec::decode_customer`, ...): the codec names no record type.

mod catalog;
mod framing;
pub(crate) mod mapping;
mod registry;

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::schema_registry_common::get_payload;

pub use catalog::{CUSTOMER_SCHEMA, DELIVERY_SCHEMA, RecordType, fingerprint, subjects};
// For the record types' tests, which check their mapping against the schema and read their
// records with schemas of other versions.
#[cfg(test)]
pub(crate) use catalog::{Known, assert_schema_fields};
#[cfg(test)]
pub(crate) use framing::read_single_object;
pub use framing::{CONFLUENT_MAGIC, Framing, SINGLE_OBJECT_MAGIC};
pub use mapping::AvroRecord;
use registry::{REGISTRY_TIMEOUT, Registry};
pub use registry::{Registered, registry_settings};

use crate::config::SchemaRegistryArgs;
use crate::{Error, Result};

/// Encodes and decodes record values. Cheap to clone; without a registry it needs no I/O.
#[derive(Clone, Default)]
pub struct Codec {
    registry: Option<Arc<Registry>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("schema_registry", &self.registry.as_ref().map(|r| &r.url)).finish()
    }
}

impl Codec {
    /// Single-object encoding, no registry.
    pub fn single_object() -> Self {
        Self::default()
    }

    /// A codec for these settings: the Confluent wire format when a registry URL is given.
    pub fn new(args: &SchemaRegistryArgs) -> Result<Self> {
        let Some((url, settings)) = registry_settings(args, REGISTRY_TIMEOUT)? else {
            return Ok(Self::default());
        };
        Ok(Self { registry: Some(Arc::new(Registry::new(url, settings))) })
    }

    /// The registry's URL, when records go through one.
    pub fn registry_url(&self) -> Option<&str> {
        self.registry.as_ref().map(|r| r.url.as_str())
    }

    /// Encodes `record` for `topic`: single-object without a registry, else the Confluent wire
    /// format with the id of the schema registered under `<topic>-value`.
    pub async fn encode<R: AvroRecord>(&self, topic: &str, record: &R) -> Result<Vec<u8>> {
        let Some(registry) = &self.registry else {
            return encode_single_object(record);
        };
        let datum = avro_datum(R::TYPE.schema(), record.to_value())?;
        let id = registry.writer_id(&format!("{topic}-value"), R::TYPE).await?;
        Ok(get_payload(id, datum))
    }

    /// Decodes a record in any of the accepted forms, checked against `key`.
    pub async fn decode<R: AvroRecord>(&self, key: &R::Key, bytes: &[u8]) -> Result<R> {
        match Framing::of(bytes)? {
            Framing::Confluent { id, body } => R::from_value(key, self.read_confluent(R::TYPE, id, body).await?),
            framing => decode_offline(key, framing),
        }
    }

    /// [`Codec::decode`] for a thread outside the async runtime (the customer directory's
    /// follower): only a registry look-up, when needed, runs on `runtime`.
    pub fn decode_blocking<R: AvroRecord>(
        &self,
        runtime: &tokio::runtime::Handle,
        key: &R::Key,
        bytes: &[u8],
    ) -> Result<R> {
        match Framing::of(bytes)? {
            Framing::Confluent { .. } => runtime.block_on(self.decode(key, bytes)),
            framing => decode_offline(key, framing),
        }
    }

    /// The id the registry holds for the compiled-in schema of `record` under `subject`, looked
    /// up once (never registered: see [`Codec::register`]).
    pub async fn writer_id(&self, subject: &str, record: RecordType) -> Result<u32> {
        self.require_registry()?.writer_id(subject, record).await
    }

    /// Looks up the compiled-in schema of `record` under `subject` (`POST /subjects/{subject}`).
    pub async fn lookup(&self, subject: &str, record: RecordType) -> Result<Registered> {
        self.require_registry()?.lookup(subject, record).await
    }

    /// Registers the compiled-in schema of `record` under `subject`
    /// (`POST /subjects/{subject}/versions`; the registry checks compatibility) and returns its
    /// id and version.
    pub async fn register(&self, subject: &str, record: RecordType) -> Result<Registered> {
        self.require_registry()?.register(subject, record).await
    }

    async fn read_confluent(&self, record: RecordType, id: u32, body: &[u8]) -> Result<Value> {
        let registry = self.registry.as_ref().ok_or_else(|| Error::Undecodable {
            reason: "no_registry",
            detail: format!(
                "the record is in the Confluent Schema Registry wire format (schema id {id}) but no \
                 --schema-registry-url is configured"
            ),
        })?;
        registry.read(record, id, body).await
    }

    fn require_registry(&self) -> Result<&Registry> {
        self.registry.as_deref().ok_or_else(|| Error::Invalid {
            field: "schema-registry-url",
            reason: "no schema registry is configured (--schema-registry-url / SCHEMA_REGISTRY_URL)".to_owned(),
        })
    }
}

/// Encodes `record` in single-object encoding (no registry needed).
pub fn encode_single_object<R: AvroRecord>(record: &R) -> Result<Vec<u8>> {
    let datum = avro_datum(R::TYPE.schema(), record.to_value())?;
    Ok(framing::frame_single_object(R::TYPE, &datum))
}

/// Decodes a record written without a registry (single-object or legacy JSON), checked against
/// `key`.
pub fn decode_offline<R: AvroRecord>(key: &R::Key, framing: Framing<'_>) -> Result<R> {
    match framing {
        Framing::Json(bytes) => R::from_json(key, bytes),
        framing => R::from_value(key, framing::read_offline(R::TYPE, framing)?),
    }
}

/// Encodes `value` (built from `schema`) as an Avro binary datum.
pub fn avro_datum(schema: &Schema, value: Value) -> Result<Vec<u8>> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| Error::Avro(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_settings_are_checked() {
        let args = |url: &str, auth: Option<&str>| SchemaRegistryArgs {
            url: Some(url.to_owned()),
            basic_auth: auth.map(crate::config::SecretString::new),
        };
        assert!(Codec::new(&SchemaRegistryArgs::default()).unwrap().registry_url().is_none());
        let codec = Codec::new(&args("http://r:8081/", Some("key:se:cret"))).unwrap();
        assert_eq!(codec.registry_url(), Some("http://r:8081"));
        assert!(!format!("{codec:?}").contains("se:cret"));
        for bad in [args("r:8081", None), args("ftp://r/", None), args("http://r:8081", Some("no-colon"))] {
            assert!(matches!(Codec::new(&bad), Err(Error::Invalid { .. })), "{bad:?}");
        }
    }
}

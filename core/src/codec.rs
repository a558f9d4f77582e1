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

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use hookline_wire::hex;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, perform_sr_call, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SrCall, SuppliedSchema, get_payload};
use serde_json::value::RawValue;

use crate::config::{SchemaRegistryArgs, TopicArgs};
use crate::customer::{Customer, EndpointDisabled, InboundSource, SealedSecret, StoredPublicKey};
use crate::envelope::EventRecord;
use crate::secrets::ApiKeyHash;
use crate::{Error, Result};

/// The delivery record schema (`schemas/delivery.avsc`).
pub const DELIVERY_SCHEMA: &str = include_str!("../../schemas/delivery.avsc");
/// The customer record schema (`schemas/customer.avsc`).
pub const CUSTOMER_SCHEMA: &str = include_str!("../../schemas/customer.avsc");

/// First bytes of a single-object encoded value.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// First byte of a value in the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0x00;

/// How long one call to the schema registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which record a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// `dev.hookline.DeliveryRecord`: the delivery topic and the DLQ.
    Delivery,
    /// `dev.hookline.Customer`: the customers topic.
    Customer,
}

impl RecordType {
    /// The compiled-in schema, parsed.
    pub fn schema(self) -> &'static Schema {
        &self.compiled().schema
    }

    /// The `.avsc` text as compiled in.
    pub fn schema_text(self) -> &'static str {
        match self {
            Self::Delivery => DELIVERY_SCHEMA,
            Self::Customer => CUSTOMER_SCHEMA,
        }
    }

    /// The schema as registered in a schema registry: the `.avsc` document on one line (docs
    /// included), the same text for registering and looking up.
    pub fn registered_form(self) -> &'static str {
        &self.compiled().registered
    }

    /// The CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, as the
    /// single-object header carries it (little-endian).
    pub fn fingerprint(self) -> [u8; 8] {
        self.compiled().fingerprint
    }

    /// `dev.hookline.DeliveryRecord` or `dev.hookline.Customer`.
    pub fn full_name(self) -> &'static str {
        match self {
            Self::Delivery => "dev.hookline.DeliveryRecord",
            Self::Customer => "dev.hookline.Customer",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Delivery => Self::Customer,
            Self::Customer => Self::Delivery,
        }
    }

    /// Earlier versions of the schema, so that records they wrote are resolved exactly (a reader
    /// cannot tell an older record from a garbled one by the append-only rule). Empty until a
    /// schema changes: then keep the previous `.avsc` as `schemas/history/<name>.vN.avsc` and
    /// list it here.
    fn history(self) -> &'static [Compiled] {
        const DELIVERY_HISTORY: &[&str] = &[];
        const CUSTOMER_HISTORY: &[&str] = &[
            include_str!("../../schemas/history/customer.v1.avsc"),
            include_str!("../../schemas/history/customer.v2.avsc"),
        ];
        static DELIVERY: LazyLock<Vec<Compiled>> =
            LazyLock::new(|| DELIVERY_HISTORY.iter().map(|text| Compiled::new(text)).collect());
        static CUSTOMER: LazyLock<Vec<Compiled>> =
            LazyLock::new(|| CUSTOMER_HISTORY.iter().map(|text| Compiled::new(text)).collect());
        match self {
            Self::Delivery => &DELIVERY,
            Self::Customer => &CUSTOMER,
        }
    }

    fn compiled(self) -> &'static Compiled {
        static DELIVERY: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(DELIVERY_SCHEMA));
        static CUSTOMER: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(CUSTOMER_SCHEMA));
        match self {
            Self::Delivery => &DELIVERY,
            Self::Customer => &CUSTOMER,
        }
    }
}

/// A compiled-in schema with what is derived from it once.
struct Compiled {
    schema: Schema,
    fingerprint: [u8; 8],
    registered: String,
}

impl Compiled {
    fn new(text: &str) -> Self {
        // The files are compiled in and parsed by this module's tests: a failure is a bug in the
        // build, not bad input.
        let schema = Schema::parse_str(text).expect("compiled-in schema parses");
        let document: serde_json::Value = serde_json::from_str(text).expect("compiled-in schema is JSON");
        Self { fingerprint: fingerprint(&schema), registered: document.to_string(), schema }
    }

    fn known(&self) -> Known<'_> {
        Known { schema: &self.schema, fingerprint: self.fingerprint }
    }
}

/// The CRC-64-AVRO fingerprint of `schema`'s Parsing Canonical Form, little-endian.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let digest = schema.fingerprint::<Rabin>();
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&digest.bytes[..8]);
    bytes
}

/// The subjects (TopicNameStrategy, `<topic>-value`) of the three topics, with their records.
pub fn subjects(topics: &TopicArgs) -> [(String, RecordType); 3] {
    [
        (format!("{}-value", topics.deliveries), RecordType::Delivery),
        (format!("{}-value", topics.dlq), RecordType::Delivery),
        (format!("{}-value", topics.customers), RecordType::Customer),
    ]
}

/// A schema as the registry holds it under a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: Option<u32>,
}

/// Encodes and decodes record values. Cheap to clone; without a registry it needs no I/O.
#[derive(Clone, Default)]
pub struct Codec {
    registry: Option<Arc<Registry>>,
}

struct Registry {
    url: String,
    settings: SrSettings,
    /// Fetches writer schemas by id, caching them.
    decoder: AvroDecoder,
    /// Schema id of the compiled-in schema, by subject.
    writer_ids: RwLock<HashMap<String, u32>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("schema_registry", &self.registry.as_ref().map(|r| &r.url)).finish()
    }
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
        Ok(Self {
            registry: Some(Arc::new(Registry {
                url,
                decoder: AvroDecoder::new(settings.clone()),
                settings,
                writer_ids: RwLock::default(),
            })),
        })
    }

    /// The registry's URL, when records go through one.
    pub fn registry_url(&self) -> Option<&str> {
        self.registry.as_ref().map(|r| r.url.as_str())
    }

    /// Encodes a delivery record for `topic` (the delivery topic).
    pub async fn encode_delivery(&self, topic: &str, record: &EventRecord) -> Result<Vec<u8>> {
        self.encode(RecordType::Delivery, topic, delivery_to_value(record)).await
    }

    /// Encodes a customer record for `topic` (the customers topic).
    pub async fn encode_customer(&self, topic: &str, customer: &Customer) -> Result<Vec<u8>> {
        self.encode(RecordType::Customer, topic, customer_to_value(customer)).await
    }

    /// Decodes a delivery record in any of the accepted forms.
    pub async fn decode_delivery(&self, bytes: &[u8]) -> Result<EventRecord> {
        match Framing::of(bytes)? {
            Framing::Confluent { id, body } => {
                delivery_from_value(self.read_confluent(RecordType::Delivery, id, body).await?)
            }
            framing => decode_delivery_offline(framing),
        }
    }

    /// Decodes a customer record in any of the accepted forms; `key` must match its id.
    pub async fn decode_customer(&self, key: &str, bytes: &[u8]) -> Result<Customer> {
        match Framing::of(bytes)? {
            Framing::Confluent { id, body } => {
                customer_from_value(key, self.read_confluent(RecordType::Customer, id, body).await?)
            }
            framing => decode_customer_offline(key, framing),
        }
    }

    /// [`Codec::decode_customer`] for a thread outside the async runtime (the directory's
    /// follower): only a registry look-up, when needed, runs on `runtime`.
    pub fn decode_customer_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        key: &str,
        bytes: &[u8],
    ) -> Result<Customer> {
        match Framing::of(bytes)? {
            Framing::Confluent { .. } => runtime.block_on(self.decode_customer(key, bytes)),
            framing => decode_customer_offline(key, framing),
        }
    }

    /// The id the registry holds for the compiled-in schema of `record` under `subject`, looked
    /// up once (never registered: see [`Codec::register`]).
    pub async fn writer_id(&self, subject: &str, record: RecordType) -> Result<u32> {
        let registry = self.require_registry()?;
        if let Some(id) = registry.writer_ids.read().unwrap_or_else(PoisonError::into_inner).get(subject) {
            return Ok(*id);
        }
        let registered = self.lookup(subject, record).await?;
        registry.writer_ids.write().unwrap_or_else(PoisonError::into_inner).insert(subject.to_owned(), registered.id);
        Ok(registered.id)
    }

    /// Looks up the compiled-in schema of `record` under `subject` (`POST /subjects/{subject}`).
    pub async fn lookup(&self, subject: &str, record: RecordType) -> Result<Registered> {
        let registry = self.require_registry()?;
        let body = serde_json::json!({ "schema": record.registered_form(), "schemaType": "AVRO" }).to_string();
        match perform_sr_call(&registry.settings, SrCall::PostForVersion(subject, &body)).await {
            Ok(found) => {
                let id = found.id.ok_or_else(|| Error::RegistryRefused {
                    error_code: 0,
                    message: format!("no schema id in the answer for subject `{subject}`"),
                })?;
                Ok(Registered { id, version: found.version })
            }
            Err(error) => Err(match registry_error(error) {
                Error::RegistryRefused { error_code, .. } if error_code / 100 == 404 || error_code == 404 => {
                    Error::SchemaNotRegistered { subject: subject.to_owned(), url: registry.url.clone() }
                }
                other => other,
            }),
        }
    }

    /// Registers the compiled-in schema of `record` under `subject`
    /// (`POST /subjects/{subject}/versions`; the registry checks compatibility) and returns its
    /// id and version.
    pub async fn register(&self, subject: &str, record: RecordType) -> Result<Registered> {
        let registry = self.require_registry()?;
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, record.registered_form().to_owned());
        post_schema(&registry.settings, subject.to_owned(), supplied).await.map_err(registry_error)?;
        // The registration answer carries the id only; the look-up adds the version.
        let registered = self.lookup(subject, record).await?;
        registry.writer_ids.write().unwrap_or_else(PoisonError::into_inner).insert(subject.to_owned(), registered.id);
        Ok(registered)
    }

    async fn encode(&self, record: RecordType, topic: &str, value: Value) -> Result<Vec<u8>> {
        let datum = avro_datum(record.schema(), value)?;
        if self.registry.is_none() {
            return Ok(frame_single_object(record, &datum));
        }
        let id = self.writer_id(&format!("{topic}-value"), record).await?;
        Ok(get_payload(id, datum))
    }

    async fn read_confluent(&self, record: RecordType, id: u32, body: &[u8]) -> Result<Value> {
        let registry = self.registry.as_ref().ok_or_else(|| Error::Undecodable {
            reason: "no_registry",
            detail: format!(
                "the record is in the Confluent Schema Registry wire format (schema id {id}) but no \
                 --schema-registry-url is configured"
            ),
        })?;
        let writer = registry.decoder.get_schema(id).await.map_err(|error| match registry_error(error) {
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

    fn require_registry(&self) -> Result<&Registry> {
        self.registry.as_deref().ok_or_else(|| Error::Invalid {
            field: "schema-registry-url",
            reason: "no schema registry is configured (--schema-registry-url / SCHEMA_REGISTRY_URL)".to_owned(),
        })
    }
}

/// Encodes a delivery record in single-object encoding (no registry needed).
pub fn encode_delivery_single_object(record: &EventRecord) -> Result<Vec<u8>> {
    let datum = avro_datum(RecordType::Delivery.schema(), delivery_to_value(record))?;
    Ok(frame_single_object(RecordType::Delivery, &datum))
}

/// Encodes a customer record in single-object encoding (no registry needed).
pub fn encode_customer_single_object(customer: &Customer) -> Result<Vec<u8>> {
    let datum = avro_datum(RecordType::Customer.schema(), customer_to_value(customer))?;
    Ok(frame_single_object(RecordType::Customer, &datum))
}

/// Decodes a delivery record written without a registry (single-object or legacy JSON).
pub fn decode_delivery_offline(framing: Framing<'_>) -> Result<EventRecord> {
    match framing {
        Framing::Json(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| Error::Undecodable { reason: "invalid_json", detail: format!("invalid JSON record: {e}") }),
        framing => delivery_from_value(read_offline(RecordType::Delivery, framing)?),
    }
}

/// Decodes a customer record written without a registry (single-object or legacy JSON).
pub fn decode_customer_offline(key: &str, framing: Framing<'_>) -> Result<Customer> {
    let customer = match framing {
        Framing::Json(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidCustomer { key: key.to_owned(), reason: e.to_string() })?,
        framing => customer_from_value(key, read_offline(RecordType::Customer, framing)?)?,
    };
    check_key(key, customer)
}

/// Encodes `value` (built from `schema`) as an Avro binary datum.
pub fn avro_datum(schema: &Schema, value: Value) -> Result<Vec<u8>> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| Error::Avro(e.to_string()))
}

/// `C3 01`, the fingerprint, the datum.
fn frame_single_object(record: RecordType, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&record.fingerprint());
    out.extend_from_slice(datum);
    out
}

/// How a record value is framed, told by its first bytes.
#[derive(Debug, Clone, Copy)]
pub enum Framing<'a> {
    /// `00`, 4-byte big-endian schema id, datum.
    Confluent { id: u32, body: &'a [u8] },
    /// `C3 01`, 8-byte little-endian Rabin fingerprint, datum.
    SingleObject { fingerprint: [u8; 8], body: &'a [u8] },
    /// A JSON object (records written before Avro).
    Json(&'a [u8]),
}

impl<'a> Framing<'a> {
    /// Tells the framing of `bytes`.
    pub fn of(bytes: &'a [u8]) -> Result<Self> {
        let unknown = |detail: String| Error::Undecodable { reason: "unknown_format", detail };
        match bytes {
            [CONFLUENT_MAGIC, a, b, c, d, body @ ..] => {
                Ok(Self::Confluent { id: u32::from_be_bytes([*a, *b, *c, *d]), body })
            }
            [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
                let (fingerprint, body) = rest.split_at(8);
                let mut bytes = [0; 8];
                bytes.copy_from_slice(fingerprint);
                Ok(Self::SingleObject { fingerprint: bytes, body })
            }
            [b'{', ..] => Ok(Self::Json(bytes)),
            [] => Err(unknown("empty record value".to_owned())),
            [first, ..] => Err(unknown(format!(
                "record value starting with byte 0x{first:02x} ({} bytes) is neither Avro (Confluent 0x00 or \
                 single-object 0xC3 0x01) nor a JSON object",
                bytes.len()
            ))),
        }
    }
}

/// Reads a single-object datum as `record` (see the module docs for unknown fingerprints).
fn read_offline(record: RecordType, framing: Framing<'_>) -> Result<Value> {
    let Framing::SingleObject { fingerprint, body } = framing else {
        return Err(Error::Undecodable { reason: "unknown_format", detail: "not a single-object record".to_owned() });
    };
    if fingerprint == record.other().fingerprint() {
        return Err(Error::Undecodable {
            reason: "wrong_record_type",
            detail: format!("a {} record where a {} was expected", record.other().full_name(), record.full_name()),
        });
    }
    let earlier: Vec<Known<'_>> = record.history().iter().map(Compiled::known).collect();
    read_single_object(record.full_name(), record.compiled().known(), &earlier, fingerprint, body)
}

/// A schema a reader knows, with its fingerprint.
#[derive(Clone, Copy)]
struct Known<'a> {
    schema: &'a Schema,
    fingerprint: [u8; 8],
}

/// Reads `body`, written with the schema of `fingerprint`, as `reader`: exactly when the
/// fingerprint is the reader's or one of the `earlier` versions' (resolved to the reader's
/// schema), else under the append-only rule.
fn read_single_object(
    name: &str,
    reader: Known<'_>,
    earlier: &[Known<'_>],
    fingerprint: [u8; 8],
    body: &[u8],
) -> Result<Value> {
    let writer = if fingerprint == reader.fingerprint {
        Some(reader)
    } else {
        earlier.iter().copied().find(|known| known.fingerprint == fingerprint)
    };
    let unknown_schema = |detail: String| Error::Undecodable {
        reason: "unknown_schema",
        detail: format!(
            "single-object record with unknown schema fingerprint {} (not an append-only extension of {name}): \
             {detail}",
            hex::encode(&fingerprint)
        ),
    };
    let mut cursor = Cursor::new(body);
    let decoded = match writer {
        Some(writer) if writer.fingerprint != reader.fingerprint => GenericDatumReader::builder(writer.schema)
            .reader_schema(reader.schema)
            .build()
            .and_then(|datum_reader| datum_reader.read_value(&mut cursor)),
        Some(_) | None => GenericDatumReader::builder(reader.schema)
            .build()
            .and_then(|datum_reader| datum_reader.read_value(&mut cursor)),
    };
    let value = decoded.map_err(|e| match writer {
        Some(_) => Error::Undecodable { reason: "invalid_avro", detail: format!("invalid {name}: {e}") },
        None => unknown_schema(e.to_string()),
    })?;
    let left_over = body.len() - usize::try_from(cursor.position()).unwrap_or(body.len()).min(body.len());
    match (writer.is_some(), left_over) {
        (true, 0) | (false, 1..) => Ok(value),
        (true, n) => Err(Error::Undecodable {
            reason: "invalid_avro",
            detail: format!("{n} bytes left over after the {name} datum"),
        }),
        (false, 0) => Err(unknown_schema("no appended fields".to_owned())),
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

// --- Values <-> domain types -------------------------------------------------------------------

fn string(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// A `["null", T]` union.
fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(value) => Value::Union(1, Box::new(value)),
    }
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
}

fn delivery_to_value(event: &EventRecord) -> Value {
    let EventRecord { event_id, event_type, timestamp, payload } = event;
    record(vec![
        ("event_id", string(event_id)),
        ("type", string(event_type)),
        ("timestamp", string(timestamp)),
        ("payload", string(payload.get())),
    ])
}

fn customer_to_value(customer: &Customer) -> Value {
    // Destructured without `..`: a field added to `Customer` must be given its Avro form here
    // (and in `schemas/customer.avsc`, which the tests compare).
    let Customer {
        id,
        name,
        webhook_url,
        events,
        api_key,
        public_key,
        signing_secrets,
        created_at,
        updated_at,
        inbound,
        disabled,
        rate_limit,
    } = customer;
    record(vec![
        ("id", string(id)),
        ("name", optional(name.as_deref().map(string))),
        ("webhook_url", optional(webhook_url.as_deref().map(string))),
        ("events", Value::Array(events.iter().map(|e| string(e)).collect())),
        (
            "api_key",
            optional(api_key.as_ref().map(|ApiKeyHash { key_id, sha256 }| {
                record(vec![("key_id", string(key_id)), ("sha256", string(sha256))])
            })),
        ),
        (
            "public_key",
            optional(public_key.as_ref().map(|StoredPublicKey { pem, kid, bits }| {
                record(vec![
                    ("pem", string(pem)),
                    ("kid", string(kid)),
                    ("bits", Value::Long(i64::try_from(*bits).unwrap_or(i64::MAX))),
                ])
            })),
        ),
        (
            "signing_secrets",
            Value::Array(
                signing_secrets
                    .iter()
                    .map(|SealedSecret { sealed, created_at, expires_at }| {
                        record(vec![
                            ("sealed", string(sealed)),
                            ("created_at", Value::Long(*created_at)),
                            ("expires_at", optional(expires_at.map(Value::Long))),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("created_at", Value::Long(*created_at)),
        ("updated_at", Value::Long(*updated_at)),
        (
            "inbound",
            optional(inbound.as_ref().map(|InboundSource { scheme, secret }| {
                record(vec![("scheme", string(scheme.as_str())), ("secret", string(secret))])
            })),
        ),
        (
            "disabled",
            optional(disabled.as_ref().map(|EndpointDisabled { at, reason }| {
                record(vec![("at", Value::Long(*at)), ("reason", string(reason))])
            })),
        ),
        ("rate_limit", optional(rate_limit.map(|rate| Value::Int(i32::try_from(rate).unwrap_or(i32::MAX))))),
    ])
}

/// The fields of a decoded (reader-schema resolved) record, taken by name.
struct Fields {
    record: &'static str,
    fields: HashMap<String, Value>,
}

impl Fields {
    fn of(record: &'static str, value: Value) -> Result<Self> {
        match value {
            Value::Record(fields) => Ok(Self { record, fields: fields.into_iter().collect() }),
            other => Err(invalid_record(record, format!("expected a record, got {other:?}"))),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        self.fields.remove(name).ok_or_else(|| invalid_record(self.record, format!("missing field `{name}`")))
    }

    fn string(&mut self, name: &str) -> Result<String> {
        let record = self.record;
        as_string(record, name, self.take(name)?)
    }

    fn long(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(invalid_record(self.record, format!("`{name}` is not a long: {other:?}"))),
        }
    }

    fn optional(&mut self, name: &str) -> Result<Option<Value>> {
        Ok(match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => None,
                value => Some(value),
            },
            Value::Null => None,
            value => Some(value),
        })
    }

    fn array(&mut self, name: &str) -> Result<Vec<Value>> {
        match self.take(name)? {
            Value::Array(items) => Ok(items),
            other => Err(invalid_record(self.record, format!("`{name}` is not an array: {other:?}"))),
        }
    }
}

fn as_string(record: &'static str, name: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(invalid_record(record, format!("`{name}` is not a string: {other:?}"))),
    }
}

fn invalid_record(record: &str, detail: String) -> Error {
    Error::Undecodable { reason: "invalid_record", detail: format!("invalid {record}: {detail}") }
}

fn delivery_from_value(value: Value) -> Result<EventRecord> {
    let mut fields = Fields::of("DeliveryRecord", value)?;
    let payload = fields.string("payload")?;
    let payload = RawValue::from_string(payload)
        .map_err(|e| invalid_record("DeliveryRecord", format!("`payload` is not JSON text: {e}")))?;
    Ok(EventRecord {
        event_id: fields.string("event_id")?,
        event_type: fields.string("type")?,
        timestamp: fields.string("timestamp")?,
        payload,
    })
}

fn customer_from_value(key: &str, value: Value) -> Result<Customer> {
    let invalid = |error: Error| Error::InvalidCustomer { key: key.to_owned(), reason: error.to_string() };
    let mut fields = Fields::of("Customer", value).map_err(invalid)?;
    let parse = |fields: &mut Fields| -> Result<Customer> {
        let strings = |items: Vec<Value>| -> Result<Vec<String>> {
            items.into_iter().map(|item| as_string("Customer", "events", item)).collect()
        };
        Ok(Customer {
            id: fields.string("id")?,
            name: fields.optional("name")?.map(|v| as_string("Customer", "name", v)).transpose()?,
            webhook_url: fields
                .optional("webhook_url")?
                .map(|v| as_string("Customer", "webhook_url", v))
                .transpose()?,
            events: strings(fields.array("events")?)?,
            api_key: fields
                .optional("api_key")?
                .map(|v| {
                    let mut key = Fields::of("ApiKeyHash", v)?;
                    Ok::<_, Error>(ApiKeyHash { key_id: key.string("key_id")?, sha256: key.string("sha256")? })
                })
                .transpose()?,
            public_key: fields
                .optional("public_key")?
                .map(|v| {
                    let mut key = Fields::of("StoredPublicKey", v)?;
                    let bits = usize::try_from(key.long("bits")?)
                        .map_err(|_| invalid_record("StoredPublicKey", "negative `bits`".to_owned()))?;
                    Ok::<_, Error>(StoredPublicKey { pem: key.string("pem")?, kid: key.string("kid")?, bits })
                })
                .transpose()?,
            signing_secrets: fields
                .array("signing_secrets")?
                .into_iter()
                .map(|v| {
                    let mut secret = Fields::of("SealedSecret", v)?;
                    let expires_at = match secret.optional("expires_at")? {
                        None => None,
                        Some(Value::Long(at)) => Some(at),
                        Some(other) => {
                            return Err(invalid_record("SealedSecret", format!("`expires_at`: {other:?}")));
                        }
                    };
                    Ok(SealedSecret {
                        sealed: secret.string("sealed")?,
                        created_at: secret.long("created_at")?,
                        expires_at,
                    })
                })
                .collect::<Result<_>>()?,
            created_at: fields.long("created_at")?,
            updated_at: fields.long("updated_at")?,
            inbound: fields
                .optional("inbound")?
                .map(|v| {
                    let mut source = Fields::of("InboundSource", v)?;
                    let scheme = source.string("scheme")?;
                    let scheme = scheme
                        .parse()
                        .map_err(|_| invalid_record("InboundSource", format!("unknown `scheme` `{scheme}`")))?;
                    Ok::<_, Error>(InboundSource { scheme, secret: source.string("secret")? })
                })
                .transpose()?,
            disabled: fields
                .optional("disabled")?
                .map(|v| {
                    let mut disabled = Fields::of("EndpointDisabled", v)?;
                    Ok::<_, Error>(EndpointDisabled { at: disabled.long("at")?, reason: disabled.string("reason")? })
                })
                .transpose()?,
            rate_limit: match fields.optional("rate_limit")? {
                None => None,
                Some(Value::Int(rate)) => {
                    Some(u32::try_from(rate).map_err(|_| invalid_record("Customer", format!("`rate_limit`: {rate}")))?)
                }
                Some(other) => return Err(invalid_record("Customer", format!("`rate_limit`: {other:?}"))),
            },
        })
    };
    let customer = parse(&mut fields).map_err(invalid)?;
    check_key(key, customer)
}

fn check_key(key: &str, customer: Customer) -> Result<Customer> {
    if customer.id != key {
        return Err(Error::InvalidCustomer {
            key: key.to_owned(),
            reason: format!("record id `{}` does not match its key", customer.id),
        });
    }
    Ok(customer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    fn full_customer() -> Customer {
        let master = MasterKey::generate();
        let mut customer = Customer::onboard("acme", Some("Acme Inc."), &master).unwrap().customer;
        customer.set_webhook_url(Some("https://hooks.acme.example/in")).unwrap();
        customer.set_events(vec!["order.created".into(), "*".into()]).unwrap();
        customer.set_public_key(StoredPublicKey {
            pem: "-----BEGIN PUBLIC KEY-----\n...".into(),
            kid: "kid-1".into(),
            bits: 4096,
        });
        customer.rotate_signing_secret(&master, Duration::from_secs(60));
        customer.created_at = 1_790_000_000;
        customer.disable(1_790_000_100, "failing since 2026-11-25T10:00:00Z");
        customer.set_rate_limit(Some(25)).unwrap();
        customer
    }

    fn event() -> EventRecord {
        let payload = RawValue::from_string(r#"{"b":1,  "a":[2,3], "s":"é"}"#.to_owned()).unwrap();
        EventRecord::new("order.created", payload)
    }

    fn assert_same_event(a: &EventRecord, b: &EventRecord) {
        assert_eq!(
            (&a.event_id, &a.event_type, &a.timestamp, a.payload.get()),
            (&b.event_id, &b.event_type, &b.timestamp, b.payload.get())
        );
    }

    #[test]
    fn compiled_in_schemas_parse_with_the_expected_names() {
        for record in [RecordType::Delivery, RecordType::Customer] {
            let Schema::Record(schema) = record.schema() else { panic!("{record:?} is not a record") };
            assert_eq!(schema.name.fullname(None), record.full_name());
            assert_eq!(record.fingerprint(), fingerprint(&Schema::parse_str(record.registered_form()).unwrap()));
        }
        assert_ne!(RecordType::Delivery.fingerprint(), RecordType::Customer.fingerprint());
    }

    /// The schemas of released versions, by fingerprint. Records written with them may be on the
    /// topics, so each must stay readable exactly: it is the current schema or in its history.
    /// A schema change makes this fail until the previous version is kept as history.
    #[test]
    fn released_schemas_stay_readable() {
        const RELEASED: [(RecordType, &str); 3] = [
            (RecordType::Delivery, "0f5c70171ce4c987"),
            (RecordType::Customer, "32f2573fce9761bb"),
            (RecordType::Customer, "72a6e6aa573c98f8"),
        ];
        for (record, released) in RELEASED {
            let known: Vec<String> = std::iter::once(record.compiled())
                .chain(record.history())
                .map(|c| hex::encode(&c.fingerprint))
                .collect();
            assert!(
                known.iter().any(|k| k == released),
                "{} {released} is neither the current schema nor in its history (known: {known:?}); keep the \
                 released .avsc in schemas/history/ and list it in RecordType::history (a version never released, e.g. \
                 changed again before a release, may instead be replaced here)",
                record.full_name()
            );
        }
    }

    /// The Rust types and the `.avsc` files agree: every field survives a round trip, and every
    /// field the stored JSON form has (the serde representation) is a field of the schema.
    #[test]
    fn schemas_and_types_agree() {
        let customer = full_customer();
        assert!(customer.name.is_some() && customer.api_key.is_some() && customer.public_key.is_some());
        assert!(customer.signing_secrets.iter().any(|s| s.expires_at.is_some()));
        let bytes = encode_customer_single_object(&customer).unwrap();
        assert_eq!(decode_customer_offline("acme", Framing::of(&bytes).unwrap()).unwrap(), customer);
        let empty = Customer { id: "c".into(), ..Customer::default() };
        let bytes = encode_customer_single_object(&empty).unwrap();
        assert_eq!(decode_customer_offline("c", Framing::of(&bytes).unwrap()).unwrap(), empty);

        let event = event();
        let bytes = encode_delivery_single_object(&event).unwrap();
        assert_same_event(&decode_delivery_offline(Framing::of(&bytes).unwrap()).unwrap(), &event);

        // Field names, recursively: the JSON form of a fully populated value against the schema.
        fn assert_fields(schema: &Schema, json: &serde_json::Value, path: &str) {
            match (schema, json) {
                (Schema::Record(record), serde_json::Value::Object(object)) => {
                    let names: std::collections::BTreeSet<&str> =
                        record.fields.iter().map(|f| f.name.as_str()).collect();
                    let keys: std::collections::BTreeSet<&str> = object.keys().map(String::as_str).collect();
                    assert!(keys.is_subset(&names), "fields of {path}: Rust {keys:?}, schema {names:?}");
                    // Fields the JSON form leaves out are those it skips when `None`.
                    for field in record.fields.iter().filter(|f| !keys.contains(f.name.as_str())) {
                        assert!(
                            matches!(&field.schema, Schema::Union(u) if u.variants()[0] == Schema::Null),
                            "{path}.{} is in the schema but not in the Rust type",
                            field.name
                        );
                    }
                    for field in &record.fields {
                        if let Some(value) = object.get(&field.name) {
                            assert_fields(&field.schema, value, &format!("{path}.{}", field.name));
                        }
                    }
                }
                (Schema::Union(union), value) if !value.is_null() => {
                    let inner = union.variants().iter().find(|v| **v != Schema::Null).unwrap();
                    assert_fields(inner, value, path);
                }
                (Schema::Array(array), serde_json::Value::Array(items)) => {
                    for item in items {
                        assert_fields(&array.items, item, &format!("{path}[]"));
                    }
                }
                _ => {}
            }
        }
        assert_fields(RecordType::Customer.schema(), &serde_json::to_value(&customer).unwrap(), "Customer");
        assert_fields(RecordType::Delivery.schema(), &serde_json::to_value(&event).unwrap(), "DeliveryRecord");
    }

    #[test]
    fn single_object_header_is_magic_and_little_endian_rabin() {
        let bytes = encode_delivery_single_object(&event()).unwrap();
        assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
        assert_eq!(bytes[2..10], RecordType::Delivery.fingerprint());
        // The Avro spec's CRC-64-AVRO of the canonical form, computed here independently.
        let canonical = RecordType::Delivery.schema().canonical_form();
        let mut table = [0_u64; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (0xc15d_213a_a4d7_a795 & (fp & 1).wrapping_neg());
            }
            *entry = fp;
        }
        let mut fp = 0xc15d_213a_a4d7_a795_u64;
        for byte in canonical.bytes() {
            fp = (fp >> 8) ^ table[((fp ^ u64::from(byte)) & 0xff) as usize];
        }
        assert_eq!(bytes[2..10], fp.to_le_bytes());
    }

    #[test]
    fn legacy_json_records_still_decode() {
        let json = br#"{"event_id":"evt_1","type":"a.b","timestamp":"t","payload":{"x": 1}}"#;
        let event = decode_delivery_offline(Framing::of(json).unwrap()).unwrap();
        assert_eq!((event.event_id.as_str(), event.payload.get()), ("evt_1", r#"{"x": 1}"#));
        let customer = br#"{"id":"c1","webhook_url":"http://x/","events":[],"added_later":"..."}"#;
        assert_eq!(decode_customer_offline("c1", Framing::of(customer).unwrap()).unwrap().id, "c1");
        assert!(decode_customer_offline("c2", Framing::of(customer).unwrap()).is_err());
    }

    #[test]
    fn garbage_is_an_error_with_a_reason_not_a_panic() {
        let reason = |bytes: &[u8]| match Framing::of(bytes).and_then(decode_delivery_offline) {
            Err(Error::Undecodable { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b""), "unknown_format");
        assert_eq!(reason(b"not json"), "unknown_format");
        assert_eq!(reason(b"{}"), "invalid_json");
        assert_eq!(reason(&[0xC3, 0x01, 1]), "unknown_format");
        let mut good = encode_delivery_single_object(&event()).unwrap();
        good.truncate(good.len() - 3);
        // (apache-avro reads a truncated last field as null, which the mapping refuses.)
        assert!(matches!(reason(&good), "invalid_avro" | "invalid_record"));
        let customer = encode_customer_single_object(&full_customer()).unwrap();
        assert_eq!(reason(&customer), "wrong_record_type");
        let mut unknown = encode_delivery_single_object(&event()).unwrap();
        unknown[5] ^= 0xff;
        assert_eq!(reason(&unknown), "unknown_schema", "unknown fingerprint, nothing appended");
        // A Confluent record without a registry needs one.
        let codec = Codec::single_object();
        let confluent = [0, 0, 0, 0, 7, 2, b'x'];
        let error = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(codec.decode_delivery(&confluent))
            .unwrap_err();
        assert_eq!(error.decode_reason(), "no_registry", "{error}");
        assert!(!error.is_transient());
    }

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

    /// v2 = v1 plus an optional field at the end: a v1 reader decodes what a v2 writer wrote,
    /// without knowing v2's fingerprint.
    #[test]
    fn a_newer_writer_that_appended_an_optional_field_is_read() {
        let v2 = Schema::parse_str(&delivery_v2()).unwrap();
        let event = event();
        let Value::Record(mut fields) = delivery_to_value(&event) else { unreachable!() };
        fields.push(("trace_id".into(), Value::Union(1, Box::new(Value::String("trace-1".into())))));
        let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
        bytes.extend_from_slice(&fingerprint(&v2));
        bytes.extend(avro_datum(&v2, Value::Record(fields)).unwrap());
        assert_same_event(&decode_delivery_offline(Framing::of(&bytes).unwrap()).unwrap(), &event);
    }

    /// A newer reader resolves a record of an earlier version it keeps as history; without the
    /// history it could not tell the older record from a garbled one, and refuses it.
    #[test]
    fn a_newer_reader_resolves_an_earlier_version_kept_as_history() {
        let v2 = Schema::parse_str(&delivery_v2()).unwrap();
        let v2 = Known { schema: &v2, fingerprint: fingerprint(&v2) };
        let v1 = RecordType::Delivery.compiled().known();
        let event = event();
        let bytes = encode_delivery_single_object(&event).unwrap();
        let Framing::SingleObject { fingerprint, body } = Framing::of(&bytes).unwrap() else { unreachable!() };
        let value = read_single_object("DeliveryRecord", v2, &[v1], fingerprint, body).unwrap();
        let Value::Record(fields) = &value else { panic!("{value:?}") };
        assert_eq!(
            fields.last().map(|(name, v)| (name.as_str(), v)),
            Some(("trace_id", &Value::Union(0, Box::new(Value::Null))))
        );
        assert_same_event(&delivery_from_value(value).unwrap(), &event);
        let refused = read_single_object("DeliveryRecord", v2, &[], fingerprint, body).unwrap_err();
        assert_eq!(refused.decode_reason(), "unknown_schema", "{refused}");
    }

    /// Customer records of each earlier version (v1: before `disabled`, v2: before `rate_limit`)
    /// are read exactly by this one, and this version's records by a reader of each (the
    /// appended fields left over).
    #[test]
    fn customer_records_of_earlier_versions_and_this_one_read_both_ways() {
        let current = RecordType::Customer.compiled().known();
        let appended_since: [&[&str]; 2] = [&["disabled", "rate_limit"], &["rate_limit"]];
        for (earlier, appended) in RecordType::Customer.history().iter().zip(appended_since) {
            let mut customer = full_customer();
            // What the earlier version cannot hold is at its default.
            if appended.contains(&"disabled") {
                customer.enable();
            }
            customer.rate_limit = None;
            // A record as the earlier version wrote it: every field but the appended ones.
            let Value::Record(mut fields) = customer_to_value(&customer) else { unreachable!() };
            let dropped: Vec<String> = fields.drain(fields.len() - appended.len()..).map(|(name, _)| name).collect();
            assert_eq!(dropped, appended, "appended fields come last");
            let datum = avro_datum(&earlier.schema, Value::Record(fields)).unwrap();
            let read =
                read_single_object("Customer", current, &[earlier.known()], earlier.fingerprint, &datum).unwrap();
            assert_eq!(customer_from_value("acme", read).unwrap(), customer);

            // This version's record of a disabled, rate-limited customer, read by the earlier reader.
            let bytes = encode_customer_single_object(&full_customer()).unwrap();
            let Framing::SingleObject { fingerprint, body } = Framing::of(&bytes).unwrap() else { unreachable!() };
            let old = read_single_object("Customer", earlier.known(), &[], fingerprint, body).unwrap();
            let Value::Record(old_fields) = &old else { panic!("{old:?}") };
            assert!(old_fields.iter().all(|(name, _)| !appended.contains(&name.as_str())));
            assert!(
                old_fields
                    .iter()
                    .any(|(name, v)| name == "webhook_url" && *v != Value::Union(0, Box::new(Value::Null)))
            );
        }
    }

    /// `schemas/delivery.avsc` plus an optional `trace_id` at the end (tests of schema evolution).
    fn delivery_v2() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(DELIVERY_SCHEMA).unwrap();
        schema["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "trace_id", "type": ["null", "string"], "default": null}));
        schema.to_string()
    }
}

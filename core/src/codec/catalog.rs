//! The schema catalog: the compiled-in schemas of the two record types, their earlier versions
//! (kept so that older records are resolved exactly), their fingerprints and the registry
//! subjects they are registered under.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;

use crate::config::TopicArgs;

/// The delivery record schema (`schemas/delivery.avsc`).
pub const DELIVERY_SCHEMA: &str = include_str!("../../../schemas/delivery.avsc");
/// The customer record schema (`schemas/customer.avsc`).
pub const CUSTOMER_SCHEMA: &str = include_str!("../../../schemas/customer.avsc");

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

    pub(crate) fn other(self) -> Self {
        match self {
            Self::Delivery => Self::Customer,
            Self::Customer => Self::Delivery,
        }
    }

    /// Earlier versions of the schema, so that records they wrote are resolved exactly (a reader
    /// cannot tell an older record from a garbled one by the append-only rule). Empty until a
    /// schema changes: then keep the previous `.avsc` as `schemas/history/<name>.vN.avsc` and
    /// list it here.
    pub(crate) fn history(self) -> &'static [Compiled] {
        const DELIVERY_HISTORY: &[&str] = &[];
        const CUSTOMER_HISTORY: &[&str] = &[
            include_str!("../../../schemas/history/customer.v1.avsc"),
            include_str!("../../../schemas/history/customer.v2.avsc"),
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

    pub(crate) fn compiled(self) -> &'static Compiled {
        static DELIVERY: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(DELIVERY_SCHEMA));
        static CUSTOMER: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(CUSTOMER_SCHEMA));
        match self {
            Self::Delivery => &DELIVERY,
            Self::Customer => &CUSTOMER,
        }
    }
}

/// A compiled-in schema with what is derived from it once.
pub(crate) struct Compiled {
    pub(crate) schema: Schema,
    pub(crate) fingerprint: [u8; 8],
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

    pub(crate) fn known(&self) -> Known<'_> {
        Known { schema: &self.schema, fingerprint: self.fingerprint }
    }
}

/// A schema a reader knows, with its fingerprint.
#[derive(Clone, Copy)]
pub(crate) struct Known<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) fingerprint: [u8; 8],
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

/// Checks that every field of `json` (the serde form of a fully populated record) is a field of
/// `schema`, recursively, and that the fields it leaves out are those it skips when `None`: the
/// record types' tests compare their Rust type with its `.avsc` with it.
#[cfg(test)]
pub(crate) fn assert_schema_fields(schema: &Schema, json: &serde_json::Value, path: &str) {
    match (schema, json) {
        (Schema::Record(record), serde_json::Value::Object(object)) => {
            let names: std::collections::BTreeSet<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
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
                    assert_schema_fields(&field.schema, value, &format!("{path}.{}", field.name));
                }
            }
        }
        (Schema::Union(union), value) if !value.is_null() => {
            let inner = union.variants().iter().find(|v| **v != Schema::Null).unwrap();
            assert_schema_fields(inner, value, path);
        }
        (Schema::Array(array), serde_json::Value::Array(items)) => {
            for item in items {
                assert_schema_fields(&array.items, item, &format!("{path}[]"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use hookline_wire::hex;

    use super::*;

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
}

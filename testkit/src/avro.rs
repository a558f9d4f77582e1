//! Schema evolution for tests: a "v2" of a compiled-in schema (v1 plus an optional field at the
//! end, the evolution rule of [`hookline_core::codec`]) and records written with it, framed as
//! single-object or Confluent records.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use hookline_core::codec::{self, CONFLUENT_MAGIC, RecordType, SINGLE_OBJECT_MAGIC};

/// A compiled-in schema with one optional string field appended.
#[derive(Debug, Clone)]
pub struct Evolved {
    /// The v2 schema document (register it in a registry under the topic's subject).
    pub schema_json: String,
    pub schema: Schema,
    field: String,
}

impl Evolved {
    /// `record`'s schema plus `{"name": field, "type": ["null", "string"], "default": null}`.
    pub fn with_optional_field(record: RecordType, field: &str) -> Self {
        let mut document: serde_json::Value = serde_json::from_str(record.schema_text()).expect("schema JSON");
        document["fields"].as_array_mut().expect("record fields").push(serde_json::json!({
            "name": field, "type": ["null", "string"], "default": null, "doc": "Added in v2 (tests)."
        }));
        let schema_json = document.to_string();
        let schema = Schema::parse_str(&schema_json).expect("v2 schema parses");
        Self { schema_json, schema, field: field.to_owned() }
    }

    /// The v2 datum of a record given in v1 single-object encoding (`EventRecord::to_bytes`,
    /// `Customer::to_bytes`), with `value` in the new field.
    pub fn datum(&self, record: RecordType, v1_single_object: &[u8], value: &str) -> Vec<u8> {
        let mut body = v1_single_object.get(10..).expect("a single-object record");
        let v1 = GenericDatumReader::builder(record.schema()).build().expect("reader");
        let Value::Record(mut fields) = v1.read_value(&mut body).expect("v1 datum") else { panic!("not a record") };
        fields.push((self.field.clone(), Value::Union(1, Box::new(Value::String(value.to_owned())))));
        codec::avro_datum(&self.schema, Value::Record(fields)).expect("v2 datum")
    }

    /// `C3 01`, v2's fingerprint, `datum`.
    pub fn single_object(&self, datum: &[u8]) -> Vec<u8> {
        let mut out = SINGLE_OBJECT_MAGIC.to_vec();
        out.extend_from_slice(&codec::fingerprint(&self.schema));
        out.extend_from_slice(datum);
        out
    }
}

/// `00`, `id` big-endian, `datum`: the Confluent wire format.
pub fn confluent(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![CONFLUENT_MAGIC];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

//! The mapping between record types and Avro values: the [`AvroRecord`] trait a record type
//! implements beside its definition (the codec is generic over it, and so names no record type),
//! and the helpers those implementations build and take apart values with.

use std::collections::HashMap;

use apache_avro::types::Value;

use super::catalog::RecordType;
use crate::{Error, Result};

/// A record type with an Avro form: its schema, and its value under that schema both ways.
pub trait AvroRecord: Sized {
    /// The schema it is written with.
    const TYPE: RecordType;

    /// What a decoded record is checked against: the record key where the key is part of the
    /// record's identity (a customer's id), `()` where it is not.
    type Key: ?Sized;

    /// The value under the compiled-in schema of [`Self::TYPE`].
    fn to_value(&self) -> Value;

    /// The record from a value already resolved to the compiled-in schema.
    fn from_value(key: &Self::Key, value: Value) -> Result<Self>;

    /// The record from the JSON written before Avro.
    fn from_json(key: &Self::Key, json: &[u8]) -> Result<Self>;
}

pub(crate) fn string(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// A `["null", T]` union.
pub(crate) fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(value) => Value::Union(1, Box::new(value)),
    }
}

pub(crate) fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
}

/// The fields of a decoded (reader-schema resolved) record, taken by name.
pub(crate) struct Fields {
    record: &'static str,
    fields: HashMap<String, Value>,
}

impl Fields {
    pub(crate) fn of(record: &'static str, value: Value) -> Result<Self> {
        match value {
            Value::Record(fields) => Ok(Self { record, fields: fields.into_iter().collect() }),
            other => Err(invalid_record(record, format!("expected a record, got {other:?}"))),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        self.fields.remove(name).ok_or_else(|| invalid_record(self.record, format!("missing field `{name}`")))
    }

    pub(crate) fn string(&mut self, name: &str) -> Result<String> {
        let record = self.record;
        as_string(record, name, self.take(name)?)
    }

    pub(crate) fn long(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(invalid_record(self.record, format!("`{name}` is not a long: {other:?}"))),
        }
    }

    pub(crate) fn optional(&mut self, name: &str) -> Result<Option<Value>> {
        Ok(match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => None,
                value => Some(value),
            },
            Value::Null => None,
            value => Some(value),
        })
    }

    pub(crate) fn array(&mut self, name: &str) -> Result<Vec<Value>> {
        match self.take(name)? {
            Value::Array(items) => Ok(items),
            other => Err(invalid_record(self.record, format!("`{name}` is not an array: {other:?}"))),
        }
    }
}

pub(crate) fn as_string(record: &'static str, name: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(invalid_record(record, format!("`{name}` is not a string: {other:?}"))),
    }
}

pub(crate) fn invalid_record(record: &str, detail: String) -> Error {
    Error::Undecodable { reason: "invalid_record", detail: format!("invalid {record}: {detail}") }
}

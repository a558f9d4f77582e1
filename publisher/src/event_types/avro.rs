//! Validates a JSON payload against an Avro schema and reports the JSON pointer of the first
//! mismatch.
//!
//! No crate does this: `apache-avro` validates its own `Value` type (built from Rust data or by
//! decoding Avro binary), and converting arbitrary JSON into it loses the path of what was wrong.
//! So `apache-avro` only parses the schema (and resolves its named types) and this walker checks
//! the JSON against it, following Avro's JSON conventions:
//!
//! - `null`, `boolean`, `string` are the JSON kinds of the same name; `int` and `long` are JSON
//!   integers within 32 and 64 bits (`1.0` is not an integer); `float` and `double` any number.
//! - `bytes` is any string; `fixed` a string of exactly `size` characters (Avro's JSON encoding
//!   writes each byte as one ISO-8859-1 character).
//! - `enum` is a string among the symbols.
//! - `array` is a JSON array, `map` a JSON object, their items and values checked one by one.
//! - `record` is a JSON object. A field is required unless it has a `default` or its type is a
//!   union containing `null`. Unknown members are rejected: an Avro record is closed, and a
//!   member the schema does not name would be dropped (or break) on encoding.
//! - A union accepts the value if its first matching branch does. Avro's JSON encoding wraps
//!   non-null union values as `{"<type name>": value}`; such a wrapper is accepted too, when the
//!   plain value matches no branch.
//! - Logical types are checked loosely, by their underlying type: `date`, `time-millis` are ints;
//!   `time-micros` and the timestamps longs; `uuid` a string; `decimal` a string (its bytes or
//!   fixed form) or, leniently, a number.
//!
//! Fields are checked in schema order, then unknown members in key order, so "first" is
//! deterministic.

use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, UnionSchema};
use serde_json::{Map, Value};

use super::{PayloadError, pointer};

/// A parsed Avro schema, ready to validate JSON values.
#[derive(Debug)]
pub struct AvroValidator {
    root: Schema,
    /// Named types (records, enums, fixed) by full name, for `Schema::Ref`.
    names: HashMap<Name, Schema>,
}

impl AvroValidator {
    /// Parses an Avro schema (`.avsc` text). The error explains what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let root = Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let names = ResolvedSchema::try_from(&root)
            .map_err(|e| format!("not a valid Avro schema: {e}"))?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(Self { root, names })
    }

    /// Checks `value`; the error names the first offending location.
    pub fn validate(&self, value: &Value) -> Result<(), PayloadError> {
        let mut path = Vec::new();
        self.check(&self.root, value, &mut path).map_err(|reason| PayloadError { path: pointer(&path), reason })
    }

    /// Checks `value` against `schema` at `path`. On a mismatch `path` is left pointing at it.
    fn check(&self, schema: &Schema, value: &Value, path: &mut Vec<String>) -> Result<(), String> {
        match schema {
            Schema::Decimal(_) => expect(value.is_string() || value.is_number(), "decimal (a string or a number)"),
            Schema::Fixed(fixed) | Schema::Duration(fixed) => match value.as_str() {
                Some(text) if text.chars().count() == fixed.size => Ok(()),
                Some(_) => Err(format!("expected fixed {} of {} characters", fixed.name, fixed.size)),
                None => Err(format!("expected fixed {} (a string)", fixed.name)),
            },
            Schema::Enum(schema) => match value.as_str() {
                Some(symbol) if schema.symbols.iter().any(|s| s == symbol) => Ok(()),
                _ => Err(format!("expected one of the symbols {}", list(&schema.symbols))),
            },
            Schema::Array(array) => {
                let items = value.as_array().ok_or_else(|| "expected array".to_owned())?;
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    self.check(&array.items, item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Schema::Map(map) => {
                let entries = value.as_object().ok_or_else(|| "expected map (a JSON object)".to_owned())?;
                for (key, item) in entries {
                    path.push(key.clone());
                    self.check(&map.types, item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Schema::Record(record) => self.record(record, value, path),
            Schema::Union(union) => self.union(union, value, path),
            Schema::Ref { name } => match self.names.get(name) {
                Some(named) => self.check(named, value, path),
                // ResolvedSchema checked every reference at parse time.
                None => Err(format!("the schema refers to an unknown type {name}")),
            },
            other => match primitive(other) {
                Some("null") => expect(value.is_null(), "null"),
                Some("boolean") => expect(value.is_boolean(), "boolean"),
                Some("int") => integer(value, "int", i64::from(i32::MIN), i64::from(i32::MAX)),
                Some("long") => integer(value, "long", i64::MIN, i64::MAX),
                Some(number @ ("float" | "double")) => expect(value.is_number(), &format!("{number} (a number)")),
                Some(text) => expect(value.is_string(), text),
                None => Err("unsupported schema type".to_owned()),
            },
        }
    }

    fn record(&self, record: &RecordSchema, value: &Value, path: &mut Vec<String>) -> Result<(), String> {
        let object: &Map<String, Value> =
            value.as_object().ok_or_else(|| format!("expected record {} (a JSON object)", record.name))?;
        for field in &record.fields {
            path.push(field.name.clone());
            match object.get(&field.name) {
                Some(item) => self.check(&field.schema, item, path)?,
                None if field.default.is_some() || is_nullable(&field.schema) => {}
                None => return Err("missing required field".to_owned()),
            }
            path.pop();
        }
        if let Some(unknown) = object.keys().find(|key| !record.lookup.contains_key(key.as_str())) {
            path.push(unknown.clone());
            return Err(format!("unknown field: record {} has no such field (Avro records are closed)", record.name));
        }
        Ok(())
    }

    fn union(&self, union: &UnionSchema, value: &Value, path: &mut Vec<String>) -> Result<(), String> {
        let branches = union.variants();
        let depth = path.len();
        let mut errors = Vec::with_capacity(branches.len());
        for branch in branches {
            match self.check(branch, value, path) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    errors.push((path[depth..].to_vec(), error));
                    path.truncate(depth);
                }
            }
        }
        // Avro's JSON encoding: `{"<branch type name>": value}`.
        if let Some((type_name, inner)) = value.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next())
            && let Some(branch) = branches.iter().find(|b| self.type_name(b) == *type_name)
        {
            path.push(type_name.clone());
            return self.check(branch, inner, path);
        }
        // When only one branch takes this kind of JSON value (say, the record of a nullable
        // record), its error points deeper and says more than "no branch matched".
        let mut plausible = branches.iter().zip(errors).filter(|(branch, _)| self.accepts_kind(branch, value));
        if let (Some((_, (rest, error))), None) = (plausible.next(), plausible.next()) {
            path.extend(rest);
            return Err(error);
        }
        let names: Vec<String> = branches.iter().map(|b| self.type_name(b)).collect();
        Err(format!("matches no branch of the union [{}]", names.join(", ")))
    }

    /// Whether `value` has the JSON kind `schema` is written as (ignoring its content).
    fn accepts_kind(&self, schema: &Schema, value: &Value) -> bool {
        match schema {
            Schema::Fixed(_) | Schema::Duration(_) | Schema::Enum(_) => value.is_string(),
            Schema::Decimal(_) => value.is_string() || value.is_number(),
            Schema::Array(_) => value.is_array(),
            Schema::Map(_) | Schema::Record(_) => value.is_object(),
            Schema::Union(_) => true,
            Schema::Ref { name } => self.names.get(name).is_some_and(|named| self.accepts_kind(named, value)),
            other => match primitive(other) {
                Some("null") => value.is_null(),
                Some("boolean") => value.is_boolean(),
                Some("int" | "long" | "float" | "double") => value.is_number(),
                _ => value.is_string(),
            },
        }
    }

    /// The name a union branch goes by in Avro's JSON encoding: the full name of a named type,
    /// else the (underlying) type name.
    fn type_name(&self, schema: &Schema) -> String {
        match schema {
            Schema::Record(RecordSchema { name, .. }) | Schema::Ref { name } => name.fullname(None),
            Schema::Enum(schema) => schema.name.fullname(None),
            Schema::Fixed(fixed) | Schema::Duration(fixed) => fixed.name.fullname(None),
            other => kind_name(other).to_owned(),
        }
    }
}

/// The Avro type name of an unnamed schema, as written in a schema.
fn kind_name(schema: &Schema) -> &'static str {
    primitive(schema).unwrap_or(match schema {
        Schema::Decimal(_) => "bytes",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Fixed(_) | Schema::Duration(_) => "fixed",
        _ => "ref",
    })
}

/// The primitive type a primitive or a logical type over a primitive is written as in JSON.
fn primitive(schema: &Schema) -> Option<&'static str> {
    Some(match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::String | Schema::Uuid(_) => "string",
        Schema::Bytes | Schema::BigDecimal => "bytes",
        _ => return None,
    })
}

fn is_nullable(schema: &Schema) -> bool {
    matches!(schema, Schema::Union(union) if union.variants().iter().any(|b| matches!(b, Schema::Null)))
}

fn expect(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(format!("expected {what}")) }
}

fn integer(value: &Value, what: &str, min: i64, max: i64) -> Result<(), String> {
    let Value::Number(number) = value else {
        return Err(format!("expected {what}"));
    };
    match number.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(()),
        Some(_) => Err(format!("{what} out of range ({min} to {max})")),
        // A u64 beyond i64, or a number with a fraction or exponent.
        None if number.is_u64() => Err(format!("{what} out of range ({min} to {max})")),
        None => Err(format!("expected {what} (an integer)")),
    }
}

/// The first few of `items`, for messages.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, ", … ({} in all)", items.len());
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ORDER: &str = r#"{
        "type": "record", "name": "Order", "namespace": "com.acme",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "note", "type": ["null", "string"]},
            {"name": "currency", "type": "string", "default": "EUR"},
            {"name": "items", "type": {"type": "array", "items": {
                "type": "record", "name": "Item",
                "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "quantity", "type": "int"},
                    {"name": "price", "type": "double"}
                ]}}},
            {"name": "tags", "type": {"type": "map", "values": "boolean"}, "default": {}},
            {"name": "digest", "type": ["null", {"type": "fixed", "name": "Digest", "size": 4}], "default": null},
            {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 0},
            {"name": "next", "type": ["null", "Item"], "default": null}
        ]
    }"#;

    fn order() -> Value {
        json!({
            "id": 42,
            "status": "NEW",
            "note": null,
            "items": [{"sku": "a-1", "quantity": 2, "price": 9.5}, {"sku": "b-2", "quantity": 1, "price": 3}],
            "tags": {"gift": true},
        })
    }

    /// `(description, change to a valid order, expected path, expected words in the reason)`.
    type Case = (&'static str, fn(&mut Value), &'static str, &'static str);

    #[test]
    fn valid_orders_pass() {
        let validator = AvroValidator::parse(ORDER).unwrap();
        validator.validate(&order()).unwrap();
        let mut full = order();
        full["note"] = json!("leave at the door");
        full["currency"] = json!("USD");
        full["digest"] = json!("\u{00e9}abc");
        full["placed_at"] = json!(1_700_000_000_000_i64);
        full["next"] = json!({"sku": "c", "quantity": -3, "price": 0.1});
        full["id"] = json!(i64::MAX);
        validator.validate(&full).unwrap();
        // Avro's JSON encoding of union values is accepted too.
        full["note"] = json!({"string": "wrapped"});
        full["next"] = json!({"com.acme.Item": {"sku": "c", "quantity": 1, "price": 1}});
        validator.validate(&full).unwrap();
    }

    #[test]
    fn mismatches_name_the_first_offending_path() {
        let cases: [Case; 14] = [
            ("not an object", |v| *v = json!([1]), "", "expected record com.acme.Order"),
            (
                "missing required field",
                |v| drop(v.as_object_mut().unwrap().remove("id")),
                "/id",
                "missing required field",
            ),
            ("wrong primitive", |v| v["id"] = json!("42"), "/id", "expected long"),
            ("fraction for long", |v| v["id"] = json!(1.5), "/id", "expected long (an integer)"),
            ("long beyond 64 bits", |v| v["id"] = json!(u64::MAX), "/id", "long out of range"),
            ("unknown symbol", |v| v["status"] = json!("LOST"), "/status", "symbols NEW, PAID"),
            ("nested array item", |v| v["items"][1]["sku"] = json!(7), "/items/1/sku", "expected string"),
            (
                "int beyond 32 bits",
                |v| v["items"][0]["quantity"] = json!(1_i64 << 40),
                "/items/0/quantity",
                "int out of range",
            ),
            (
                "missing nested field",
                |v| drop(v["items"][0].as_object_mut().unwrap().remove("price")),
                "/items/0/price",
                "missing",
            ),
            ("unknown field", |v| v["extra"] = json!(1), "/extra", "unknown field"),
            (
                "unknown nested field",
                |v| v["items"][0]["colour"] = json!("red"),
                "/items/0/colour",
                "Avro records are closed",
            ),
            ("map value", |v| v["tags"]["a/b"] = json!("yes"), "/tags/a~1b", "expected boolean"),
            ("fixed size", |v| v["digest"] = json!("abc"), "/digest", "fixed com.acme.Digest of 4 characters"),
            ("record in a nullable union", |v| v["next"] = json!({"sku": 1}), "/next/sku", "expected string"),
        ];
        let validator = AvroValidator::parse(ORDER).unwrap();
        for (name, change, path, reason) in cases {
            let mut value = order();
            change(&mut value);
            let error = validator.validate(&value).expect_err(name);
            assert_eq!(error.path, path, "{name}: {error}");
            assert!(error.reason.contains(reason), "{name}: {error:?} should mention {reason:?}");
        }
    }

    #[test]
    fn unions_try_every_branch() {
        let validator =
            AvroValidator::parse(r#"["null", "int", "string", {"type": "array", "items": "int"}]"#).unwrap();
        for ok in [json!(null), json!(1), json!("x"), json!([1, 2]), json!({"int": 5}), json!({"array": [1]})] {
            validator.validate(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let error = validator.validate(&json!(true)).unwrap_err();
        assert_eq!(error.path, "");
        assert_eq!(error.reason, "matches no branch of the union [null, int, string, array]");
        // The only branch taking arrays explains the failure, at the item.
        let error = validator.validate(&json!([1, "two"])).unwrap_err();
        assert_eq!((error.path.as_str(), error.reason.as_str()), ("/1", "expected int"));
        // A wrapper whose content does not match its branch.
        let error = validator.validate(&json!({"int": "five"})).unwrap_err();
        assert_eq!((error.path.as_str(), error.reason.as_str()), ("/int", "expected int"));
    }

    #[test]
    fn primitives_and_logical_types() {
        let cases = [
            (r#""null""#, json!(null), json!(0)),
            (r#""boolean""#, json!(false), json!("false")),
            (r#""int""#, json!(-2147483648), json!(2147483648_i64)),
            (r#""long""#, json!(-1), json!(1e3)),
            (r#""float""#, json!(1.25), json!("1.25")),
            (r#""double""#, json!(7), json!(null)),
            (r#""bytes""#, json!("\u{0000}\u{00ff}"), json!([0, 255])),
            (r#""string""#, json!(""), json!({})),
            (r#"{"type": "int", "logicalType": "date"}"#, json!(19000), json!("2024-01-01")),
            (r#"{"type": "string", "logicalType": "uuid"}"#, json!("0190-..."), json!(1)),
            (
                r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}"#,
                json!("\u{0001}"),
                json!([]),
            ),
            (r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}"#, json!(12.5), json!(true)),
        ];
        for (schema, good, bad) in cases {
            let validator = AvroValidator::parse(schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
            validator.validate(&good).unwrap_or_else(|e| panic!("{schema} should accept {good}: {e}"));
            let error = validator.validate(&bad).expect_err(schema);
            assert_eq!(error.path, "", "{schema}");
        }
    }

    #[test]
    fn recursive_named_types_resolve() {
        let validator = AvroValidator::parse(
            r#"{"type": "record", "name": "Node", "namespace": "t", "fields": [
                {"name": "value", "type": "int"},
                {"name": "children", "type": {"type": "array", "items": "t.Node"}, "default": []}
            ]}"#,
        )
        .unwrap();
        validator.validate(&json!({"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]})).unwrap();
        let error = validator.validate(&json!({"value": 1, "children": [{"value": 2, "children": [{}]}]})).unwrap_err();
        assert_eq!(error.path, "/children/0/children/0/value");
    }

    #[test]
    fn bad_schemas_are_refused() {
        for text in [
            "",
            "{",
            r#"{"type": "record", "name": "R"}"#,
            r#""nope""#,
            r#"["int", "int"]"#,
            r#"{"type": "array", "items": "Missing"}"#,
        ] {
            assert!(AvroValidator::parse(text).is_err(), "{text:?} should be refused");
        }
    }
}

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
//! - A union accepts the value if one of its branches does. Avro's JSON encoding wraps non-null
//!   union values as `{"<type name>": value}`; such a wrapper is accepted too, when the plain
//!   value matches no branch.
//! - Logical types are checked loosely, by their underlying type: `date`, `time-millis` are ints;
//!   `time-micros` and the timestamps longs; `uuid` a string; `decimal` a string (its bytes or
//!   fixed form) or, leniently, a number.
//!
//! Fields are checked in schema order, then unknown members in key order, so "first" is
//! deterministic.
//!
//! # Bounded work
//!
//! Payloads come from producers and may be hostile. Trying every branch of a union, recursively,
//! is exponential in the payload's depth with a recursive schema (`{"name": "N", "fields":
//! [{"name": "next", "type": ["null", "N", ...]}]}`), so a union only tries the branches that can
//! take the value: those of its JSON kind (null, boolean, number, string, array, object) and, for
//! an object, only the records whose fields it fits (every required field present, no member the
//! record does not name), then the wrapper form. That is one branch for almost every schema.
//! Where several still remain (records of the same shape), the walk is bounded anyway: it may take
//! [`STEPS_PER_VALUE`] steps (schema nodes checked) per JSON value of the payload, and at least
//! [`MIN_STEPS`]; beyond that the payload is refused as too complex, at the path where the work ran
//! out. A valid payload needs a few steps per value, whatever its size. Depth needs no bound of
//! its own: `serde_json` refuses JSON nested more than 128 levels deep.

use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordField, RecordSchema, ResolvedSchema, UnionSchema};
use serde_json::{Map, Value};

use super::{PayloadError, pointer};

/// The steps a validation may take per JSON value of the payload: a linear walk takes one to
/// four (a union, a named reference, the record, a scalar branch tried before the right one).
pub const STEPS_PER_VALUE: usize = 16;

/// The steps a validation may take whatever the payload's size, so that small payloads of
/// schemas with wide unions are never refused for their cost.
pub const MIN_STEPS: usize = 10_000;

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

    /// Checks `value`; the error names the first offending location. The work is bounded by the
    /// size of `value` (see the module documentation).
    pub fn validate(&self, value: &Value) -> Result<(), PayloadError> {
        let steps = count_values(value).saturating_mul(STEPS_PER_VALUE).max(MIN_STEPS);
        self.validate_within(value, steps)
    }

    /// [`AvroValidator::validate`] with at most `steps` steps.
    fn validate_within(&self, value: &Value, steps: usize) -> Result<(), PayloadError> {
        let mut walk =
            Walk { validator: self, path: Vec::new(), steps: Steps { left: steps, limit: steps, ran_out: false } };
        walk.check(&self.root, value).map_err(|reason| PayloadError { path: pointer(&walk.path), reason })
    }

    /// `schema`, or the named type it refers to.
    fn resolve<'s>(&'s self, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => self.names.get(name).unwrap_or(schema),
            other => other,
        }
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

    /// Whether `schema` may match `value` as a plain (unwrapped) union branch: its JSON kind and,
    /// for a record, its members. `false` means [`Walk::check`] would refuse it.
    fn may_match(&self, schema: &Schema, value: &Value) -> bool {
        match (self.resolve(schema), value) {
            (Schema::Record(record), Value::Object(object)) => fits(record, object),
            (other, _) => self.accepts_kind(other, value),
        }
    }

    /// `value` in Avro's JSON encoding of a union value, `{"<branch type name>": inner}`: the
    /// type name, the branch and the inner value.
    fn wrapped<'v>(&self, branches: &'v [Schema], value: &'v Value) -> Option<(&'v String, &'v Schema, &'v Value)> {
        let (type_name, inner) = value.as_object().filter(|o| o.len() == 1)?.iter().next()?;
        let branch = branches.iter().find(|b| self.type_name(b) == *type_name)?;
        Some((type_name, branch, inner))
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

/// The work left to a validation.
#[derive(Debug)]
struct Steps {
    left: usize,
    limit: usize,
    /// A step was refused: every check from then on fails, and no other union branch is tried.
    ran_out: bool,
}

impl Steps {
    fn take(&mut self) -> Result<(), String> {
        if self.left == 0 {
            self.ran_out = true;
            return Err(format!("too complex to validate against the schema (gave up after {} steps)", self.limit));
        }
        self.left -= 1;
        Ok(())
    }
}

/// One validation: where it is in the payload and the work it may still do.
struct Walk<'a> {
    validator: &'a AvroValidator,
    /// The path of the value being checked; on a mismatch, left pointing at it.
    path: Vec<String>,
    steps: Steps,
}

impl Walk<'_> {
    /// Checks `value` against `schema` at `self.path`.
    fn check(&mut self, schema: &Schema, value: &Value) -> Result<(), String> {
        self.steps.take()?;
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
                    self.path.push(index.to_string());
                    self.check(&array.items, item)?;
                    self.path.pop();
                }
                Ok(())
            }
            Schema::Map(map) => {
                let entries = value.as_object().ok_or_else(|| "expected map (a JSON object)".to_owned())?;
                for (key, item) in entries {
                    self.path.push(key.clone());
                    self.check(&map.types, item)?;
                    self.path.pop();
                }
                Ok(())
            }
            Schema::Record(record) => self.record(record, value),
            Schema::Union(union) => self.union(union, value),
            Schema::Ref { name } => match self.validator.names.get(name) {
                Some(named) => self.check(named, value),
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

    fn record(&mut self, record: &RecordSchema, value: &Value) -> Result<(), String> {
        let object: &Map<String, Value> =
            value.as_object().ok_or_else(|| format!("expected record {} (a JSON object)", record.name))?;
        for field in &record.fields {
            self.path.push(field.name.clone());
            match object.get(&field.name) {
                Some(item) => self.check(&field.schema, item)?,
                None if !required(field) => {}
                None => return Err("missing required field".to_owned()),
            }
            self.path.pop();
        }
        if let Some(unknown) = object.keys().find(|key| !record.lookup.contains_key(key.as_str())) {
            self.path.push(unknown.clone());
            return Err(format!("unknown field: record {} has no such field (Avro records are closed)", record.name));
        }
        Ok(())
    }

    /// Tries the branches that may take `value` (see the module documentation), then the wrapper
    /// form. A failure is explained by the one branch that was tried, or by the one branch of the
    /// value's kind, when there is one.
    fn union(&mut self, union: &UnionSchema, value: &Value) -> Result<(), String> {
        let validator = self.validator;
        let branches = union.variants();
        let depth = self.path.len();
        let mut tried = 0;
        let mut failure = None;
        for branch in branches.iter().filter(|b| validator.may_match(b, value)) {
            tried += 1;
            match self.check(branch, value) {
                Ok(()) => return Ok(()),
                // Out of steps: stop, pointing where the work ran out.
                Err(error) if self.steps.ran_out => return Err(error),
                Err(error) => failure = Some((self.path.split_off(depth), error)),
            }
        }
        if let Some((type_name, branch, inner)) = validator.wrapped(branches, value) {
            self.path.push(type_name.clone());
            return self.check(branch, inner);
        }
        // The error of the only branch that fits the value (say, the record of a nullable
        // record) points deeper and says more than "no branch matched"; so does that of the only
        // branch of the value's JSON kind, if none fits.
        match (tried, failure) {
            (1, Some((rest, error))) => {
                self.path.extend(rest);
                return Err(error);
            }
            (0, _) => {
                let mut by_kind = branches.iter().filter(|b| validator.accepts_kind(b, value));
                if let (Some(branch), None) = (by_kind.next(), by_kind.next()) {
                    return self.check(branch, value);
                }
            }
            _ => {}
        }
        let names: Vec<String> = branches.iter().map(|b| validator.type_name(b)).collect();
        Err(format!("matches no branch of the union [{}]", names.join(", ")))
    }
}

/// Whether a record's field must be present: it has no default and cannot be null.
fn required(field: &RecordField) -> bool {
    field.default.is_none() && !is_nullable(&field.schema)
}

/// Whether `object` has every field `record` requires and no member it does not name: exactly
/// what the record check refuses at the top level, without walking the members' values.
fn fits(record: &RecordSchema, object: &Map<String, Value>) -> bool {
    record.fields.iter().all(|field| !required(field) || object.contains_key(&field.name))
        && object.keys().all(|key| record.lookup.contains_key(key.as_str()))
}

/// How many JSON values `value` holds, itself included.
fn count_values(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(members) => members.values().map(count_values).sum(),
        _ => 0,
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

    /// Links of two record types with different fields, each checking its link first: trying
    /// both at every level takes 2^depth steps on a chain whose last link is wrong.
    const TWO_LINKS: &str = r#"{"type": "record", "name": "A", "fields": [
        {"name": "next", "type": ["null", "A", {"type": "record", "name": "B", "fields": [
            {"name": "next", "type": ["null", "A", "B"]},
            {"name": "b", "type": "int"}
        ]}]},
        {"name": "a", "type": "int"}
    ]}"#;

    /// `depth` links `{"next": ..., <field>: 1}`, the innermost with `{"next": null, <field>: last}`.
    fn chain(depth: usize, field: &str, last: Value) -> Value {
        let mut value = json!({"next": null, field: last});
        for _ in 1..depth {
            value = json!({"next": value, field: 1});
        }
        value
    }

    #[test]
    fn unions_try_only_the_branches_the_value_fits() {
        let validator = AvroValidator::parse(TWO_LINKS).unwrap();
        validator.validate(&chain(100, "a", json!(7))).unwrap();
        // A `B` link among `A`s.
        let mut mixed = chain(30, "a", json!(7));
        mixed["next"] = json!({"next": mixed["next"].take(), "b": 2});
        validator.validate(&mixed).unwrap();

        // Deep and wrong at the bottom: found in one pass, and explained by the only fitting branch.
        let error = validator.validate(&chain(100, "a", json!("seven"))).unwrap_err();
        assert_eq!(error.path, format!("{}/a", "/next".repeat(99)));
        assert_eq!(error.reason, "expected int");
        // No branch fits: the message says so.
        let error = validator.validate(&json!({"next": {"next": null, "a": 1, "b": 2}, "a": 1})).unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason.as_str()),
            ("/next", "matches no branch of the union [null, A, B]")
        );
    }

    #[test]
    fn ambiguous_recursive_unions_run_out_of_steps() {
        // `{"N": x}` is both a record N and Avro-JSON's wrapper for the branch N, at every level.
        let wrapped = AvroValidator::parse(
            r#"{"type": "record", "name": "N", "fields": [{"name": "N", "type": ["null", "N"]}]}"#,
        )
        .unwrap();
        let nest = |depth: usize, last: Value| (0..depth).fold(last, |inner, _| json!({ "N": inner }));
        wrapped.validate(&nest(100, json!(null))).unwrap();
        // Two records of the same shape: both fit every link.
        let twins = AvroValidator::parse(
            r#"{"type": "record", "name": "A", "fields": [{"name": "next", "type": ["null", "A",
                {"type": "record", "name": "B", "fields": [{"name": "next", "type": ["null", "A", "B"]}]}]}]}"#,
        )
        .unwrap();
        let link = |depth: usize, last: Value| (0..depth).fold(last, |inner, _| json!({ "next": inner }));
        twins.validate(&link(100, json!(null))).unwrap();

        // Wrong at the bottom of a deep payload: 2^depth ways to read it, refused once the steps run out.
        for (validator, payload, first) in [(&wrapped, nest(60, json!(5)), "/N"), (&twins, link(60, json!(5)), "/next")]
        {
            let error = validator.validate(&payload).unwrap_err();
            assert!(error.reason.starts_with("too complex to validate against the schema"), "{error}");
            assert!(error.reason.contains(&format!("after {MIN_STEPS} steps")), "{error}");
            assert!(error.path.starts_with(first), "{error}");
        }
    }

    #[test]
    fn steps_grow_with_the_payload() {
        let validator = AvroValidator::parse(r#"{"type": "array", "items": ["null", "int"]}"#).unwrap();
        // Far more values than the minimum: a valid payload never runs out.
        let large = Value::Array((0..100_000).map(|n| if n % 2 == 0 { json!(n) } else { json!(null) }).collect());
        validator.validate(&large).unwrap();
        // The array, then a union and its branch per item.
        let small = json!([1, null, 3]);
        validator.validate_within(&small, 7).unwrap();
        let error = validator.validate_within(&small, 6).unwrap_err();
        assert_eq!(error.path, "/2");
        assert_eq!(error.reason, "too complex to validate against the schema (gave up after 6 steps)");
        assert_eq!(count_values(&small), 4);
        assert_eq!(count_values(&json!({"a": [1, {"b": null}]})), 5);
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

//! The customer record's Avro form (`dev.hookline.Customer`, `schemas/customer.avsc`): its
//! mapping to and from Avro values, its single-object bytes, and the codec's entry points for it.

use apache_avro::types::Value;

use super::{Customer, EndpointDisabled, InboundSource, SealedSecret, StoredPublicKey};
use crate::codec::mapping::{Fields, as_string, invalid_record, optional, record, string};
use crate::codec::{self, AvroRecord, Codec, Framing, RecordType};
use crate::secrets::ApiKeyHash;
use crate::{Error, Result};

impl AvroRecord for Customer {
    const TYPE: RecordType = RecordType::Customer;
    /// A customer record is keyed by its id, which the key must match.
    type Key = str;

    fn to_value(&self) -> Value {
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
        } = self;
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

    fn from_value(key: &str, value: Value) -> Result<Self> {
        let invalid = |error: Error| invalid_customer(key, error);
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
                        Ok::<_, Error>(EndpointDisabled {
                            at: disabled.long("at")?,
                            reason: disabled.string("reason")?,
                        })
                    })
                    .transpose()?,
                rate_limit: match fields.optional("rate_limit")? {
                    None => None,
                    Some(Value::Int(rate)) => Some(
                        u32::try_from(rate).map_err(|_| invalid_record("Customer", format!("`rate_limit`: {rate}")))?,
                    ),
                    Some(other) => return Err(invalid_record("Customer", format!("`rate_limit`: {other:?}"))),
                },
            })
        };
        let customer = parse(&mut fields).map_err(invalid)?;
        check_key(key, customer)
    }

    fn from_json(key: &str, json: &[u8]) -> Result<Self> {
        let customer = serde_json::from_slice(json).map_err(|e| invalid_customer(key, e))?;
        check_key(key, customer)
    }
}

impl Customer {
    /// Encodes the record value for the customers topic in Avro single-object encoding. With a
    /// schema registry, use [`Codec::encode_customer`].
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: the value is built field by field after the compiled-in schema, which the
        // tests below check against this type.
        codec::encode_single_object(self).expect("a customer record matches its schema")
    }

    /// Decodes a record value from the customers topic written without a schema registry (Avro
    /// single-object encoding or the JSON of older records); the key must match the id inside.
    pub fn from_record(key: &str, value: &[u8]) -> Result<Self> {
        let framing = Framing::of(value).map_err(|e| invalid_customer(key, e))?;
        codec::decode_offline(key, framing)
    }
}

/// The codec's entry points for customer records.
impl Codec {
    /// Encodes a customer record for `topic` (the customers topic).
    pub async fn encode_customer(&self, topic: &str, customer: &Customer) -> Result<Vec<u8>> {
        self.encode(topic, customer).await
    }

    /// Decodes a customer record in any of the accepted forms; `key` must match its id.
    pub async fn decode_customer(&self, key: &str, bytes: &[u8]) -> Result<Customer> {
        self.decode(key, bytes).await
    }

    /// [`Codec::decode_customer`] for a thread outside the async runtime (the directory's
    /// follower): only a registry look-up, when needed, runs on `runtime`.
    pub fn decode_customer_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        key: &str,
        bytes: &[u8],
    ) -> Result<Customer> {
        self.decode_blocking(runtime, key, bytes)
    }
}

fn invalid_customer(key: &str, error: impl std::fmt::Display) -> Error {
    Error::InvalidCustomer { key: key.to_owned(), reason: error.to_string() }
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
    use std::time::Duration;

    use super::*;
    use crate::codec::{assert_schema_fields, avro_datum, read_single_object};
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

    fn decode_customer_offline(key: &str, framing: Framing<'_>) -> Result<Customer> {
        codec::decode_offline(key, framing)
    }

    /// The Rust type and `schemas/customer.avsc` agree: every field survives a round trip, and
    /// every field the stored JSON form has (the serde representation) is a field of the schema.
    #[test]
    fn schema_and_type_agree() {
        let customer = full_customer();
        assert!(customer.name.is_some() && customer.api_key.is_some() && customer.public_key.is_some());
        assert!(customer.signing_secrets.iter().any(|s| s.expires_at.is_some()));
        let bytes = codec::encode_single_object(&customer).unwrap();
        assert_eq!(decode_customer_offline("acme", Framing::of(&bytes).unwrap()).unwrap(), customer);
        let empty = Customer { id: "c".into(), ..Customer::default() };
        let bytes = codec::encode_single_object(&empty).unwrap();
        assert_eq!(decode_customer_offline("c", Framing::of(&bytes).unwrap()).unwrap(), empty);
        assert_schema_fields(RecordType::Customer.schema(), &serde_json::to_value(&customer).unwrap(), "Customer");
    }

    #[test]
    fn legacy_json_records_still_decode() {
        let customer = br#"{"id":"c1","webhook_url":"http://x/","events":[],"added_later":"..."}"#;
        assert_eq!(decode_customer_offline("c1", Framing::of(customer).unwrap()).unwrap().id, "c1");
        assert!(decode_customer_offline("c2", Framing::of(customer).unwrap()).is_err());
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
            let Value::Record(mut fields) = customer.to_value() else { unreachable!() };
            let dropped: Vec<String> = fields.drain(fields.len() - appended.len()..).map(|(name, _)| name).collect();
            assert_eq!(dropped, appended, "appended fields come last");
            let datum = avro_datum(&earlier.schema, Value::Record(fields)).unwrap();
            let read =
                read_single_object("Customer", current, &[earlier.known()], earlier.fingerprint, &datum).unwrap();
            assert_eq!(Customer::from_value("acme", read).unwrap(), customer);

            // This version's record of a disabled, rate-limited customer, read by the earlier reader.
            let bytes = codec::encode_single_object(&full_customer()).unwrap();
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
}

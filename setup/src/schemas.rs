//! `schemas register` / `check` / `show`: the Avro schemas of the three topics in the Confluent
//! Schema Registry (subjects `<topic>-value`, TopicNameStrategy; the DLQ carries delivery
//! records unchanged, so its subject holds the delivery schema, under the same id).
//!
//! Writers only look schemas up, never register them: registering is this explicit step, so a
//! schema change reaches the registry (and its compatibility check) when an operator decides.

use std::io::Write;
use std::time::Duration;

use hookline_core::codec::{self, Codec, RecordType};
use hookline_core::config::{SchemaRegistryArgs, TopicArgs};
use hookline_wire::hex;

use crate::broker::bounded;
use crate::{Error, Result, SchemasCommand};

/// Runs one `schemas` subcommand.
pub async fn run<W: Write + Send>(
    topics: &TopicArgs,
    registry: &SchemaRegistryArgs,
    command: SchemasCommand,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    if let SchemasCommand::Show = command {
        for record in [RecordType::Delivery, RecordType::Customer] {
            let subjects: Vec<String> =
                codec::subjects(topics).into_iter().filter(|(_, r)| *r == record).map(|(s, _)| s).collect();
            writeln!(out, "{} (subjects {})", record.full_name(), subjects.join(", "))?;
            writeln!(out, "fingerprint (CRC-64-AVRO, little-endian): {}", hex::encode(&record.fingerprint()))?;
            writeln!(out, "{}", record.schema_text().trim_end())?;
        }
        return Ok(());
    }
    let codec = Codec::new(registry)?;
    if codec.registry_url().is_none() {
        return Err(Error::NoSchemaRegistry);
    }
    let mut missing = Vec::new();
    for (subject, record) in codec::subjects(topics) {
        let answered = match command {
            SchemasCommand::Register => bounded(timeout, "the schema registry", codec.register(&subject, record)).await,
            _ => bounded(timeout, "the schema registry", codec.lookup(&subject, record)).await,
        };
        match answered {
            Ok(registered) => {
                let version = registered.version.map_or_else(|| "?".to_owned(), |v| v.to_string());
                writeln!(out, "{subject}: {} id {} version {version}", record.full_name(), registered.id)?;
            }
            Err(Error::Core(error @ hookline_core::Error::SchemaNotRegistered { .. })) => {
                writeln!(out, "{subject}: not registered")?;
                missing.push(Error::Schema { subject, source: error });
            }
            Err(Error::Core(source)) => return Err(Error::Schema { subject, source }),
            Err(other) => return Err(other),
        }
    }
    out.flush()?;
    missing.into_iter().next().map_or(Ok(()), Err)
}

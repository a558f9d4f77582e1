//! How a record value is framed (Confluent `00` and a schema id, single-object `C3 01` and a
//! fingerprint, or the legacy JSON `{`), and the reading of single-object values without a
//! registry: by a known fingerprint exactly, else under the append-only rule.

use std::io::Cursor;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use hookline_wire::hex;

use super::catalog::{Compiled, Known, RecordType};
use crate::{Error, Result};

/// First bytes of a single-object encoded value.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// First byte of a value in the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0x00;

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

/// `C3 01`, the fingerprint, the datum.
pub(crate) fn frame_single_object(record: RecordType, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&record.fingerprint());
    out.extend_from_slice(datum);
    out
}

/// Reads a single-object datum as `record` (see the module docs of `codec` for unknown
/// fingerprints).
pub(crate) fn read_offline(record: RecordType, framing: Framing<'_>) -> Result<Value> {
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

/// Reads `body`, written with the schema of `fingerprint`, as `reader`: exactly when the
/// fingerprint is the reader's or one of the `earlier` versions' (resolved to the reader's
/// schema), else under the append-only rule.
pub(crate) fn read_single_object(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_header_is_magic_and_little_endian_rabin() {
        let bytes = frame_single_object(RecordType::Delivery, b"any datum");
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
}

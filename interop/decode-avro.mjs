// Decodes Hookline's Avro record values with avsc (an independent Avro implementation).
// Input: {"schema": <.avsc JSON, as text or object>, "records": [<base64 value>...],
//         "encoding": "single-object" | "confluent"}.
// Output: {"canonical": <Parsing Canonical Form>, "fingerprint": <hex, little-endian>,
//          "records": [{"value": <decoded>, "schemaId"?: <Confluent id>}]}.
// A single-object header whose fingerprint is not the CRC-64-AVRO (Rabin) of the schema's
// canonical form, computed here from the Avro specification, is an error.
import avro from "avsc";
import { readInput, writeOutput } from "./io.mjs";

const EMPTY = 0xc15d213aa4d7a795n;
const MASK = (1n << 64n) - 1n;
const TABLE = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) {
    fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  }
  return fp & MASK;
});

function rabin(text) {
  let fp = EMPTY;
  for (const byte of Buffer.from(text, "utf8")) {
    fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(byte)) & 0xffn)];
  }
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp & MASK);
  return out;
}

const input = readInput();
const schema = typeof input.schema === "string" ? JSON.parse(input.schema) : input.schema;
const type = avro.Type.forSchema(schema);
// getSchema() without options is the Parsing Canonical Form (as an object).
const canonical = JSON.stringify(type.getSchema());
const fingerprint = rabin(canonical);

const records = input.records.map((encoded, index) => {
  const bytes = Buffer.from(encoded, "base64");
  if (input.encoding === "single-object") {
    if (bytes[0] !== 0xc3 || bytes[1] !== 0x01) {
      throw new Error(`record ${index}: no single-object marker C3 01`);
    }
    const found = bytes.subarray(2, 10);
    if (!found.equals(fingerprint)) {
      throw new Error(`record ${index}: fingerprint ${found.toString("hex")} is not ${fingerprint.toString("hex")}`);
    }
    return { value: type.fromBuffer(bytes.subarray(10)) };
  }
  if (input.encoding === "confluent") {
    if (bytes[0] !== 0x00) {
      throw new Error(`record ${index}: no Confluent magic byte 0x00`);
    }
    return { schemaId: bytes.readUInt32BE(1), value: type.fromBuffer(bytes.subarray(5)) };
  }
  throw new Error(`unknown encoding ${input.encoding}`);
});

writeOutput({ canonical, fingerprint: fingerprint.toString("hex"), records });

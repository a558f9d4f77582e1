// Encrypts with panva's `jose` to an RSA public key: compact JWE, RSA-OAEP-256 + A256GCM.
// Input: {"publicKey": "<SPKI PEM>", "plaintext": "<base64>", "kid": "<optional>"}.
// Output: {"jwe": "<compact JWE>"}.
import { CompactEncrypt, importSPKI } from "jose";
import { readInput, writeOutput } from "./io.mjs";

const { publicKey, plaintext, kid } = readInput();
const key = await importSPKI(publicKey, "RSA-OAEP-256");
const header = { alg: "RSA-OAEP-256", enc: "A256GCM", ...(kid ? { kid } : {}) };
const jwe = await new CompactEncrypt(Buffer.from(plaintext, "base64")).setProtectedHeader(header).encrypt(key);
writeOutput({ jwe });

// Decrypts compact JWEs with panva's `jose`, allowing only RSA-OAEP-256 and A256GCM.
// Input: {"privateKey": "<PKCS#8 PEM>", "jwes": ["<compact JWE>", ...]}.
// Output: {"results": [{"plaintext": "<base64>", "protectedHeader": {...}}, ...]}.
import { compactDecrypt, importPKCS8 } from "jose";
import { readInput, writeOutput } from "./io.mjs";

const { privateKey, jwes } = readInput();
const key = await importPKCS8(privateKey, "RSA-OAEP-256");
const results = [];
for (const jwe of jwes) {
  const { plaintext, protectedHeader } = await compactDecrypt(jwe, key, {
    keyManagementAlgorithms: ["RSA-OAEP-256"],
    contentEncryptionAlgorithms: ["A256GCM"],
  });
  results.push({ plaintext: Buffer.from(plaintext).toString("base64"), protectedHeader });
}
writeOutput({ results });

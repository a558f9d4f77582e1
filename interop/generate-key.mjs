// Generates an RSA key pair with Node's OpenSSL, as a customer would, in every PEM form Hookline
// reads, with its RFC 7638 thumbprint computed by panva's `jose`.
// Input: {"bits": 2048}. Output: {"spki", "pkcs1Public", "pkcs8", "pkcs1Private", "thumbprint"}.
import { generateKeyPairSync } from "node:crypto";
import { calculateJwkThumbprint } from "jose";
import { readInput, writeOutput } from "./io.mjs";

const { bits } = readInput();
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: bits });
writeOutput({
  spki: publicKey.export({ type: "spki", format: "pem" }),
  pkcs1Public: publicKey.export({ type: "pkcs1", format: "pem" }),
  pkcs8: privateKey.export({ type: "pkcs8", format: "pem" }),
  pkcs1Private: privateKey.export({ type: "pkcs1", format: "pem" }),
  thumbprint: await calculateJwkThumbprint(publicKey.export({ format: "jwk" }), "sha256"),
});

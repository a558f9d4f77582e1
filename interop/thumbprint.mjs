// Computes an RSA public key's RFC 7638 JWK thumbprint with panva's `jose`.
// Input: {"publicKey": "<SPKI PEM>"}. Output: {"thumbprint": "<base64url SHA-256>"}.
import { calculateJwkThumbprint, exportJWK, importSPKI } from "jose";
import { readInput, writeOutput } from "./io.mjs";

const { publicKey } = readInput();
const key = await importSPKI(publicKey, "RSA-OAEP-256", { extractable: true });
writeOutput({ thumbprint: await calculateJwkThumbprint(await exportJWK(key), "sha256") });

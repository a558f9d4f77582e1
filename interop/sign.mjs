// Signs a delivery with the official `standardwebhooks` package.
// Input: {"secret": "whsec_...", "msgId": "...", "timestamp": <Unix seconds>, "body": "<body text>"}.
// Output: {"signature": "v1,<base64>"}.
import { Webhook } from "standardwebhooks";
import { readInput, writeOutput } from "./io.mjs";

const { secret, msgId, timestamp, body } = readInput();
writeOutput({ signature: new Webhook(secret).sign(msgId, new Date(timestamp * 1000), body) });

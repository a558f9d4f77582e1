// Verifies a delivery's Standard Webhooks signature with the official `standardwebhooks` package.
// Input: {"secret": "whsec_...", "headers": {"webhook-id", "webhook-timestamp", "webhook-signature"},
// "body": "<exact body text>"}.
// Output: {"verified": true} or {"verified": false, "error": "<the library's message>"}.
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { readInput, writeOutput } from "./io.mjs";

const { secret, headers, body } = readInput();
try {
  // jsonParse: false, because an encrypted delivery's body is a JWE, not JSON.
  new Webhook(secret).verify(body, headers, { jsonParse: false });
  writeOutput({ verified: true });
} catch (error) {
  if (!(error instanceof WebhookVerificationError)) throw error;
  writeOutput({ verified: false, error: error.message });
}

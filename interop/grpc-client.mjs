// Calls Hookline's gRPC event broker with the off-the-shelf `@grpc/grpc-js` client, loading the
// repository's .proto at run time with `@grpc/proto-loader` (no generated code).
// Input: {"address": "127.0.0.1:9620", "protoPath": "/.../event_broker.proto",
//         "method": "SendOutgoingEvent" | "HandleIncomingEvent", "request": {...},
//         "token": "<producer token>" (optional: sent as `authorization: Bearer <token>`)}.
// Output: the response message ({"event_id", ...}), or {"code": <number>, "codeName": "...",
// "details": "..."} when the call fails.
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { readInput, writeOutput } from "./io.mjs";

const { address, protoPath, method, request, token } = readInput();
const definition = protoLoader.loadSync(path.basename(protoPath), {
  includeDirs: [path.dirname(protoPath)],
  keepCase: true,
  longs: String,
  defaults: true,
});
const { EventBroker } = grpc.loadPackageDefinition(definition).hookline.v1;
const client = new EventBroker(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (token !== undefined) {
  metadata.set("authorization", `Bearer ${token}`);
}
const deadline = new Date(Date.now() + 30_000);
client[method](request, metadata, { deadline }, (error, response) => {
  if (error) {
    writeOutput({ code: error.code, codeName: grpc.status[error.code], details: error.details });
  } else {
    writeOutput(response);
  }
  client.close();
});

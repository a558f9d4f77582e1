// Shared plumbing of the interop scripts: each reads one JSON object on stdin and writes one
// JSON object on stdout, so the Rust tests drive them without shell quoting or temp files.
import { readFileSync } from "node:fs";

export function readInput() {
  return JSON.parse(readFileSync(0, "utf8"));
}

export function writeOutput(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

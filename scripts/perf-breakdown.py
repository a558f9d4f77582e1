#!/usr/bin/env python3
"""Where a process's CPU went, by component, from `perf script` output with call graphs.

Each sample goes to the first component (in the order below) with a frame in its stack, so the
shares add up to 100 %. Used by scripts/profile-consumer.sh; BENCHMARKS.md quotes its output.
"""
import collections
import re
import sys

COMPONENTS = [
    ("seal: JWE, HMAC signatures, secrets", r"Sealer::seal"),
    ("record decoding (Avro)", r"codec|decode_delivery|apache_avro"),
    ("tracing spans, trace context", r"tracing::span::|tracing_core::|hookline_core::telemetry|tracing_opentelemetry"),
    ("HTTP attempt: request building, reqwest", r"webhook.*attempt"),
    ("pipeline (rest of processing a record)", r"Pipeline::process"),
    ("delivery ledger", r"ledger"),
    ("partition worker, offset store", r"run_partition"),
    ("librdkafka (fetch, produce, queues)", r"rd_kafka|rdkafka"),
    ("metrics", r"prometheus|hookline_consumer::metrics"),
    ("HTTP connection (hyper), sockets", r"hyper|reqwest|h2::"),
    ("Tokio scheduler", r"tokio::runtime"),
]


def samples(path):
    stack = None
    with open(path, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                if stack is not None:
                    yield stack
                stack = None
            elif line[0] in "\t ":
                parts = line.strip().split(" ", 1)
                if stack is not None and len(parts) == 2:
                    stack.append(parts[1])
            else:
                stack = []
    if stack is not None:
        yield stack


def main():
    patterns = [(name, re.compile(pattern)) for name, pattern in COMPONENTS]
    counts = collections.Counter()
    total = 0
    for stack in samples(sys.argv[1]):
        total += 1
        for name, pattern in patterns:
            if any(pattern.search(frame) for frame in stack):
                counts[name] += 1
                break
        else:
            counts["other (kernel, libc, threads)"] += 1
    print(f"{total} samples")
    for name, count in counts.most_common():
        print(f"{100 * count / max(total, 1):6.1f} %  {name}")


if __name__ == "__main__":
    main()

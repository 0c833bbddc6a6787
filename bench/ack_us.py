#!/usr/bin/env python3
"""Percentiles of `ack_us` (publish -> last acknowledgement, microseconds) from the
arena-server JSON logs on stdin: one debug line per acknowledged revocation."""
import json
import sys


def find(obj, key):
    """The value of `key` anywhere in a JSON log record (tracing nests fields)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = find(v, key)
            if found is not None:
                return found
    return None


samples = []
for line in sys.stdin:
    if "ack_us" not in line:
        continue
    try:
        value = find(json.loads(line), "ack_us")
    except ValueError:
        continue
    if isinstance(value, (int, float)):
        samples.append(value)

if not samples:
    print("   no ack_us lines in the node logs")
    sys.exit(0)
samples.sort()


def at(q):
    return samples[round((len(samples) - 1) * q)] / 1000.0


print(
    f"   ack_us from the node logs: {len(samples)} revocations, "
    f"p50 {at(0.5):.3f} ms p99 {at(0.99):.3f} ms max {at(1.0):.3f} ms"
)
print(json.dumps({"ack_ms": {"count": len(samples), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)}}))

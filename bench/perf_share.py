#!/usr/bin/env python3
"""Shares of a node's CPU samples by path, from `perf script` output on stdin.

Usage: perf script -i perf.data -F comm,tid,ip,sym,dso | bench/perf_share.py

Each sample is classified twice:
- by its leaf frame (where the CPU was: exact, whatever the unwinding), and
- by its whole call chain (the first frame, leaf upwards, that names a known path). The
  chain is only as good as the unwinding: without frame pointers (a plain release build)
  user-space chains are often cut short, so chain shares are lower bounds for the paths
  they find.
Paths: backplane (the redis crate, arena_server::cluster, the relay fan-out in
arena_server::game::rooms::on_relay), websocket (tungstenite, tokio-tungstenite,
arena_server::ws), game (arena_server::game other than on_relay), kernel, other.
"""

import re
import sys
from collections import Counter

BACKPLANE = re.compile(r"redis::|arena_server::cluster|on_relay|combine::")
WEBSOCKET = re.compile(r"tungstenite|arena_server::ws::|arena_server::frame")
GAME = re.compile(r"arena_server::game")


def path_of(sym, dso):
    if BACKPLANE.search(sym):
        return "backplane"
    if WEBSOCKET.search(sym):
        return "websocket"
    if GAME.search(sym):
        return "game"
    if "kernel" in dso:
        return "kernel"
    return None


def samples(lines):
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
        elif line.startswith((" ", "\t")):
            parts = line.strip().split(None, 1)
            rest = parts[1] if len(parts) > 1 else ""
            m = re.match(r"(.*) \((.*)\)$", rest)
            sym, dso = (m.group(1), m.group(2)) if m else (rest, "")
            stack.append((sym, dso))
        # header lines (comm tid) start a sample; nothing to keep from them
    if stack:
        yield stack


def main():
    leaf = Counter()
    chain = Counter()
    kernel_by_chain = Counter()
    top = Counter()
    total = 0
    for stack in samples(sys.stdin):
        total += 1
        sym, dso = stack[0]
        top[f"{sym} ({dso.rsplit('/', 1)[-1]})"] += 1
        leaf[path_of(sym, dso) or "other"] += 1
        found = None
        for s, d in stack:
            p = path_of(s, d)
            if p and p != "kernel":
                found = p
                break
        whole = found or ("kernel" if "kernel" in dso else "other")
        chain[whole] += 1
        if "kernel" in dso:
            kernel_by_chain[found or "unattributed"] += 1
    if not total:
        print("no samples")
        return
    pct = lambda n: f"{100.0 * n / total:5.1f}%"
    print(f"{total} samples")
    print("by leaf frame:  " + ", ".join(f"{k} {pct(v)}" for k, v in leaf.most_common()))
    print("by call chain:  " + ", ".join(f"{k} {pct(v)}" for k, v in chain.most_common()))
    print("kernel samples by the user path above them: "
          + ", ".join(f"{k} {pct(v)}" for k, v in kernel_by_chain.most_common()))
    print("top leaf symbols:")
    for s, n in top.most_common(25):
        print(f"  {pct(n)}  {s}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Arena against the usual Node.js stack (ws + jsonwebtoken), one after the other, with
# the same arena-client load scenarios; then the table and chart in docs/benchmarks.md.
# Usage: bench/run.sh            (from a clean checkout; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/bench/results"
mkdir -p "$out"
: > "$out/arena.jsonl"; : > "$out/node.jsonl"

command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
(cd bench/node-server && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release -q -p arena-server -p arena-client
client="$root/target/release/arena-client"

wait_listening() { # file
  for _ in $(seq 1 100); do grep -q "listening on" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start" >&2; return 1
}

scenarios() { # name base pid
  local name=$1 base=$2 pid=$3 file="$out/$1.jsonl"
  echo "== $name: connect"
  "$client" --server "$base" load connect --users 200 --sockets 25 --server-pid "$pid" >> "$file"
  echo "== $name: revoke"
  "$client" --server "$base" load revoke --users 100 --sockets 10 >> "$file"
  echo "== $name: broadcast"
  "$client" --server "$base" load broadcast --rooms 20 --players 16 --seconds 10 --server-pid "$pid" >> "$file"
  echo "== $name: churn"
  "$client" --server "$base" load churn --users 50 --seconds 20 --server-pid "$pid" >> "$file"
}

data=$(mktemp -d)
"$root/target/release/arena-server" --listen 127.0.0.1:18181 --data-dir "$data" \
  --auth-rate-limit 0 --max-sockets-per-user 64 > "$data/stdout" 2> "$data/stderr" &
arena=$!
wait_listening "$data/stdout"
scenarios arena http://127.0.0.1:18181 "$arena"
kill -TERM "$arena"; wait "$arena" || true
rm -rf "$data"

# Let TIME_WAIT sockets from the first run drain a little before the second.
sleep 5
log=$(mktemp)
node bench/node-server/server.js 18182 > "$log" 2>&1 &
nodepid=$!
wait_listening "$log"
scenarios node http://127.0.0.1:18182 "$nodepid"
kill -TERM "$nodepid"; wait "$nodepid" || true
rm -f "$log"

python3 bench/report.py "$out" docs/benchmarks.md docs/benchmark-comparison.svg
echo "wrote docs/benchmarks.md and docs/benchmark-comparison.svg"

#!/usr/bin/env bash
# Arena against the usual Node.js stack (ws + jsonwebtoken), one after the other, with
# the same arena-client load scenarios; then the tables and charts in docs/benchmarks.md
# (docs/benchmark-comparison.svg, docs/benchmark-capacity.svg).
#
# Usage: bench/run.sh                 (from a checkout; installs what it needs, builds)
#        NO_BUILD=1 bench/run.sh      (use the binaries already in $CARGO_TARGET_DIR/release)
# Knobs (environment): FANOUT_SECONDS (15), CURVE_ROOMS (10,25,50,100), CURVE_SECONDS (10),
# CHURN_SECONDS (15), ONLY (arena or node: run one server, keep the other's results),
# QUIET_WAIT (60: seconds to wait at most, before each step, for the machine to be idle).
#
# Per server: connect (400 users × 25 = 10,000 idle sockets: memory and handshake CPU),
# revoke (100 users × 10 sockets logged out one by one), churn, broadcast at 50 rooms × 20
# players chatting 1/s (fan-out), broadcast at CURVE_ROOMS × 20 chatting 5/s (capacity).
# Each client run dials from its own loopback source address (127.0.0.2, .3, …), so the
# TIME_WAIT ports of one run never starve the next of ephemeral ports. The load users are
# registered once per server (an --accounts file in a scratch directory, removed at the
# end), since password hashing would otherwise take minutes: the same 400 users hold the
# 10,000 idle sockets and play every broadcast run, each in several rooms (never twice
# in one room). revoke registers its own 100, since it logs them out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/bench/results"
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$root/$target" ;; esac
bin="$target/release"
FANOUT_SECONDS=${FANOUT_SECONDS:-15}
CURVE_ROOMS=${CURVE_ROOMS:-10,25,50,100}
CURVE_SECONDS=${CURVE_SECONDS:-10}
CHURN_SECONDS=${CHURN_SECONDS:-15}
ONLY=${ONLY:-}
QUIET_WAIT=${QUIET_WAIT:-60}
mkdir -p "$out"

command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
(cd bench/node-server && npm ci --no-audit --no-fund --loglevel=error)
if [ "${NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p arena-server -p arena-client
fi
for b in arena-server arena-client; do
  [ -x "$bin/$b" ] || { echo "no $bin/$b: build it, or set CARGO_TARGET_DIR" >&2; exit 1; }
done
client="$bin/arena-client"

server_pid=""
scratch=$(mktemp -d)
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; fi
  rm -rf "$scratch" "$out/arena.jsonl.new" "$out/node.jsonl.new"
}
trap cleanup EXIT

wait_listening() { # file pid
  for _ in $(seq 1 150); do
    grep -q "listening on" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start:" >&2; tail -20 "$1" >&2; return 1
}

# Wait until the machine is idle (85% of its CPU over two 5 s samples in a row): a
# compile or another benchmark on the same cores would be measured too. Called before
# each step, as such work comes and goes; each broadcast line still reports the load that
# was neither server nor client ("other_cores").
wait_quiet() {
  local waited=0 calm=0 a b idle total
  while [ "$waited" -lt "$QUIET_WAIT" ]; do
    read -r -a a < /proc/stat; sleep 5; read -r -a b < /proc/stat
    idle=$(( b[4] + b[5] - a[4] - a[5] ))
    total=0; for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    if [ $(( idle * 100 )) -ge $(( total * 85 )) ]; then
      calm=$(( calm + 1 ))
      if [ "$calm" -ge 2 ]; then
        [ "$waited" -gt 5 ] && echo "   the machine is idle after ${waited} s" >&2
        quiet_secs=$(( quiet_secs + waited + 5 ))
        return 0
      fi
      waited=$(( waited + 5 ))
      continue
    fi
    calm=0
    [ "$waited" -eq 0 ] && echo "   waiting (at most ${QUIET_WAIT} s) for the machine to be idle: $(( 100 - idle * 100 / total ))% busy" >&2
    waited=$(( waited + 5 ))
  done
  echo "   the machine is still busy after ${QUIET_WAIT} s; measuring anyway" >&2
  quiet_secs=$(( quiet_secs + waited ))
}

source_n=2
quiet_secs=0
failures=()
step() { # what -- arena-client load arguments…
  local what=$1; shift
  local addr="127.0.0.$source_n" t0
  source_n=$((source_n + 1))
  wait_quiet
  t0=$SECONDS
  echo "== $name: $what (from $addr)" >&2
  if ! "$client" --server "$base" load "$@" --source "$addr" >> "$file"; then
    echo "!! $name: $what failed; its JSON line, if it printed one, is kept" >&2
    failures+=("$name $what")
  fi
  echo "   $what took $((SECONDS - t0)) s" >&2
}

scenarios() { # uses name base pid file
  local pool="$scratch/$name-accounts.jsonl" pid=$server_pid
  step "connect" connect --users 400 --sockets 25 --server-pid "$pid" \
    --accounts "$pool" --label idle-10k
  step "revoke" revoke --users 100 --sockets 10 --label logout
  step "churn" churn --users 50 --seconds "$CHURN_SECONDS" --server-pid "$pid" \
    --accounts "$pool" --label churn
  step "fan-out" broadcast --rooms 50 --players 20 --users 400 --chat-rate 1 \
    --seconds "$FANOUT_SECONDS" --server-pid "$pid" --accounts "$pool" --label fanout
  step "capacity curve" broadcast --rooms "$CURVE_ROOMS" --players 20 --users 400 \
    --chat-rate 5 --seconds "$CURVE_SECONDS" --server-pid "$pid" --accounts "$pool" \
    --label capacity
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
started=$SECONDS
load_before=$(loadavg)
arena_secs=null node_secs=null

if [ "$ONLY" != node ]; then
  # Lines go to a new file, put in place when the server's run is over: an interrupted
  # run leaves the last complete results.
  name=arena base=http://127.0.0.1:18181 file="$out/arena.jsonl.new"
  : > "$file"
  t0=$SECONDS
  # Limits: the defaults already fit 100 rooms × 20 (1,000 rooms, capacity up to 64,
  # 19,000 sockets, 60 messages/s per socket against the players' 25); the load users
  # hold up to 25 sockets each and create up to 2 rooms each, and logins come from one
  # address: those limits are raised or turned off.
  "$bin/arena-server" --listen 127.0.0.1:18181 --data-dir "$scratch/arena-data" \
    --auth-rate-limit 0 --max-sockets-per-user 64 --max-rooms 1000 \
    --max-rooms-per-user 16 --room-create-rate 0 \
    > "$scratch/arena.log" 2>&1 &
  server_pid=$!
  wait_listening "$scratch/arena.log" "$server_pid"
  scenarios
  stop_server
  mv "$file" "$out/arena.jsonl"
  arena_secs=$((SECONDS - t0))
  # Let the machine settle between the two servers.
  sleep 5
fi

if [ "$ONLY" != arena ]; then
  name=node base=http://127.0.0.1:18182 file="$out/node.jsonl.new"
  : > "$file"
  t0=$SECONDS
  node bench/node-server/server.js 18182 > "$scratch/node.log" 2>&1 &
  server_pid=$!
  wait_listening "$scratch/node.log" "$server_pid"
  scenarios
  stop_server
  mv "$file" "$out/node.jsonl"
  node_secs=$((SECONDS - t0))
fi

cat > "$out/run.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%MZ)", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "cpus": $(nproc), "bench_secs": $((SECONDS - started)), "quiet_wait_secs": $quiet_secs, "arena_secs": $arena_secs, "node_secs": $node_secs,
 "loadavg_before": "$load_before", "loadavg_after": "$(loadavg)",
 "failures": $(printf '%s\n' "${failures[@]+"${failures[@]}"}" | python3 -c 'import json,sys; print(json.dumps([l for l in sys.stdin.read().splitlines() if l]))')}
EOF
python3 bench/report.py "$out" docs/benchmarks.md docs/benchmark-comparison.svg docs/benchmark-capacity.svg
echo "wrote docs/benchmarks.md, docs/benchmark-comparison.svg and docs/benchmark-capacity.svg ($((SECONDS - started)) s)"
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed steps: ${failures[*]}" >&2
  exit 1
fi

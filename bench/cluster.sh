#!/usr/bin/env bash
# Three arena-server nodes on 127.0.0.1 sharing one PostgreSQL database and, when the
# server has --redis-url, one Redis backplane; the load client's cross-node scenarios
# against them; then everything is torn down (nodes, Redis, the database).
#
# Usage: bench/cluster.sh [revoke|kick|hold|rooms|rooms-local|all]...   (default: all)
#   revoke  200 users × 2 sockets (logout on the node holding none) and × 10 sockets
#   kick    100 users × 10 sockets kicked one at a time
#   hold    3 × 19,000 sockets (three client processes), then 100 users kicked
#   rooms   20 rooms × 16 players, player i of room r on node (r + i) mod 3 and room r
#           run by node r mod 3: state-frame latency owner → other nodes, each node's
#           CPU and Redis's while measuring (needs the backplane)
#   rooms-local  the same load with every player on its room's node (no cross-node
#           traffic), to compare the nodes' CPU
# Environment:
#   BACKPLANE=auto|on|off  use Redis when the server knows --redis-url (auto), insist, or
#                          measure the database log-poll path only (off)
#   BIN=dir                where arena-server and arena-client are (default: the release
#                          build of $CARGO_TARGET_DIR or ./target); NO_BUILD=1 skips the build
#   OUT=file               JSON lines, one per scenario (default bench/results/cluster.jsonl)
#   KEEP_LOGS=1            keep the nodes' logs (the run directory is printed)
#   ROOMS_SECONDS=30       rooms: seconds measured (after a 3 s warm-up)
#   ROOMS_ARGS="..."       rooms: more flags for `load rooms` (e.g. "--owner-node 0")
#   PROFILE="0 1"          rooms: `perf record -e cpu-clock -g` these nodes (index 0-2)
#                          for PROFILE_SECS (15) once measuring has begun; the perf.data
#                          files and `perf report` summaries go to bench/results/
#   NODE_ARGS="..."        more flags for every node (hold: "--heartbeat-secs 0", since
#                          client processes holding 19,000 sockets each on two shared
#                          cores answer the server's pings too late and are dropped)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(revoke kick hold rooms rooms-local)
[ "${scenarios[*]}" = all ] && scenarios=(revoke kick hold rooms rooms-local)

target=${CARGO_TARGET_DIR:-$root/target}
bin=${BIN:-$target/release}
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p arena-server -p arena-client
server="$bin/arena-server"
client="$bin/arena-client"
out=${OUT:-$root/bench/results/cluster.jsonl}
mkdir -p "$(dirname "$out")"

ports=(18301 18302 18303)
metrics=(18311 18312 18313)
redis_port=18379
secret="cluster-bench-secret-0123456789abcdefghij"
admin=bench-admin
admin_password=bench-admin-password
export ARENA_LOAD_ADMIN=$admin ARENA_LOAD_ADMIN_PASSWORD=$admin_password
servers=$(printf 'http://127.0.0.1:%s,' "${ports[@]}")
servers=${servers%,}

backplane=${BACKPLANE:-auto}
has_redis_flag=no
"$server" --help | grep -q -- '--redis-url' && has_redis_flag=yes
case "$backplane" in
  on) [ $has_redis_flag = yes ] || { echo "this arena-server has no --redis-url" >&2; exit 1; } ;;
  auto) backplane=$([ $has_redis_flag = yes ] && echo on || echo off) ;;
  off) ;;
  *) echo "BACKPLANE must be auto, on or off" >&2; exit 2 ;;
esac
label="$([ "$backplane" = on ] && echo backplane || echo log-poll)"

run=$(mktemp -d /tmp/arena-cluster.XXXXXX)
db="arena_cluster_$$"
node_pids=()
redis_pid=
teardown() {
  set +e
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null; done
  [ -n "$redis_pid" ] && { kill -TERM "$redis_pid"; wait "$redis_pid" 2>/dev/null; }
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db" >/dev/null
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $run"; else rm -rf "$run"; fi
}
trap teardown EXIT

wait_for() { # what command...
  local what=$1; shift
  for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$what did not come up" >&2; return 1
}

psql -q -h 127.0.0.1 -U postgres -d postgres -c "create database $db" >/dev/null
redis_args=()
if [ "$backplane" = on ]; then
  redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no \
    > "$run/redis.log" 2>&1 &
  redis_pid=$!
  wait_for redis redis-cli -p $redis_port ping
fi

# At debug level a node logs one line per acknowledged revocation with ack_us (backplane).
log_filter=info
[ "$backplane" = on ] && log_filter=info,arena_server=debug
# One node after the other: the first creates the schema and the admin.
for k in 0 1 2; do
  mkdir -p "$run/node$k"
  [ "$backplane" = on ] && redis_args=(--redis-url "redis://127.0.0.1:$redis_port" --node-id "node$k")
  ARENA_LOG=${ARENA_LOG:-$log_filter} "$server" \
    --listen "127.0.0.1:${ports[$k]}" --metrics-listen "127.0.0.1:${metrics[$k]}" \
    --data-dir "$run/node$k" --database-url "postgres://postgres@127.0.0.1:5432/$db" \
    --jwt-secret "$secret" --revocation-poll-ms 100 \
    --auth-rate-limit 0 --max-connections 20000 --max-sockets 19500 \
    --max-sockets-per-user 64 --admin-username $admin --admin-password $admin_password \
    --log-format json "${redis_args[@]}" ${NODE_ARGS:-} \
    > "$run/node$k.out" 2> "$run/node$k.log" &
  node_pids+=($!)
  wait_for "node $k" grep -q "listening on" "$run/node$k.out"
done
echo "three nodes up ($label): $servers; run directory $run"

# The nodes' live sockets, summed.
live_sockets() {
  local total=0 n
  for m in "${metrics[@]}"; do
    n=$(curl -s "http://127.0.0.1:$m/metrics" | awk '$1 == "arena_sockets_live" {print int($2)}')
    total=$((total + ${n:-0}))
  done
  echo $total
}

# Tag each JSON line with the mode and append it to $out.
record() { # name
  while IFS= read -r line; do
    case "$line" in
      \{*) printf '{"run":"%s","mode":"%s",%s\n' "$1" "$label" "${line#\{}" | tee -a "$out" ;;
      *) echo "$line" ;;
    esac
  done
}

client_at() { # source-address args...
  local source=$1; shift
  "$client" --server "$servers" "$@" --source "$source"
}

scenario_revoke() {
  echo "== revoke: 200 users × 2 sockets (the logout goes to the node holding none)"
  client_at 127.0.0.2 load revoke --users 200 --sockets 2 | record revoke-2
  echo "== revoke: 200 users × 10 sockets (every node holds some)"
  client_at 127.0.0.3 load revoke --users 200 --sockets 10 | record revoke-10
}

scenario_kick() {
  echo "== kick: 100 users × 10 sockets"
  client_at 127.0.0.4 load kick --users 100 --sockets 10 | record kick-100x10
}

# 3 × 19,000 sockets: one client process per 19,000 (a process may open 20,000 files),
# each from its own source address (ports are per source address), each spreading its
# sockets over the three nodes. Two hold; the third opens its own and kicks 100 users.
scenario_hold() {
  local holders=() want=38000 tries=0
  for src in 127.0.0.11 127.0.0.12; do
    client_at $src load connect --users 760 --sockets 25 --hold 3600 \
      > "$run/hold-$src.json" 2> "$run/hold-$src.err" &
    holders+=($!)
  done
  echo "== hold: two client processes opening 2 × 19,000 sockets"
  while [ "$(live_sockets)" -lt $want ]; do
    for pid in "${holders[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a holder exited early:" >&2; cat "$run"/hold-*.err >&2; return 1; }
    done
    tries=$((tries + 1)); [ $tries -gt 1200 ] && { echo "holders too slow" >&2; return 1; }
    sleep 1
  done
  echo "   $(live_sockets) sockets live; third process: 19,000 more, then 100 users kicked"
  client_at 127.0.0.13 load kick --users 760 --sockets 25 --kick 100 | record hold-kick
  for m in "${metrics[@]}"; do
    echo "   node :$m sockets live: $(curl -s "http://127.0.0.1:$m/metrics" | awk '$1 == "arena_sockets_live" {print int($2)}')"
  done
  for pid in "${holders[@]}"; do kill -INT "$pid"; done
  for pid in "${holders[@]}"; do wait "$pid" || true; done
  for src in 127.0.0.11 127.0.0.12; do
    grep -h "open,\|answered" "$run/hold-$src.err" | sed 's/^/   holder: /'
    record hold-connect < "$run/hold-$src.json"
  done
}

# Rooms over the cluster: `load rooms` with the nodes' and Redis's pids (their CPU is
# read while it measures), and optionally perf on some nodes during the measurement.
rooms_run() { # name placement
  local name=$1 placement=$2 pids seconds=${ROOMS_SECONDS:-30} client_pid perf_pids=() k
  [ "$backplane" = on ] || { echo "rooms needs the backplane (BACKPLANE=on)" >&2; return 1; }
  pids=$(IFS=,; echo "${node_pids[*]}")
  client_at 127.0.0.5 load rooms --rooms 20 --players 16 --seconds "$seconds" \
    --placement "$placement" --node-pids "$pids" --redis-pid "$redis_pid" ${ROOMS_ARGS:-} \
    > "$run/$name.json" 2> >(tee "$run/$name.err" >&2) &
  client_pid=$!
  if [ -n "${PROFILE:-}" ]; then
    # Measuring starts 3 s (the warm-up) after the client reports its sockets joined.
    while ! grep -q "sockets:" "$run/$name.err" 2>/dev/null; do
      kill -0 $client_pid 2>/dev/null || break
      sleep 0.5
    done
    sleep 5
    for k in $PROFILE; do
      perf record -q -e cpu-clock -g -p "${node_pids[$k]}" -o "$root/bench/results/perf-$name-node$k.data" \
        -- sleep "${PROFILE_SECS:-15}" 2> "$run/perf-$k.err" &
      perf_pids+=($!)
    done
  fi
  wait $client_pid
  for p in "${perf_pids[@]}"; do wait "$p" || true; done
  record "$name" < "$run/$name.json"
  for k in ${PROFILE:-}; do
    local data="$root/bench/results/perf-$name-node$k.data"
    [ -f "$data" ] || continue
    perf report -i "$data" --no-children --sort dso,sym --percent-limit 0.5 --stdio 2>/dev/null \
      > "$root/bench/results/perf-$name-node$k.txt" || true
    echo "   perf node$k: $root/bench/results/perf-$name-node$k.txt"
  done
}

scenario_rooms() {
  echo "== rooms: 20 rooms × 16 players spread over three nodes"
  rooms_run rooms spread
}

scenario_rooms-local() {
  echo "== rooms-local: 20 rooms × 16 players, every player on its room's node"
  rooms_run rooms-local owner
}

for s in "${scenarios[@]}"; do
  "scenario_$s"
done

# The server's own view of the acknowledgement round trip (backplane only).
if [ "$backplane" = on ]; then
  echo "== arena_cluster_ack_seconds"
  for m in "${metrics[@]}"; do
    curl -s "http://127.0.0.1:$m/metrics" | grep -E '^arena_cluster_ack_seconds(_count|_sum|\{quantile)' \
      | sed "s/^/   :$m /" || true
  done
  cat "$run"/node*.log | python3 "$root/bench/ack_us.py" || true
fi

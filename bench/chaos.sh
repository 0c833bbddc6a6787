#!/usr/bin/env bash
# The long randomized fault run (tests/src/chaos.rs): three nodes, PostgreSQL, Redis with
# RDB snapshots, players and an admin, and a nemesis (nodes killed and paused, Redis
# killed and restored from its snapshot, database links cut, the database restored from
# a dump) for CHAOS_SECS seconds (default 1800). Writes the JSON report (every fault,
# counts by kind, operations, violations) to bench/results/chaos-<date>.json and fails
# on any violation. Usage: bench/chaos.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${CHAOS_SECS:-1800}}"
mkdir -p bench/results
report="bench/results/chaos-$(date -u +%Y%m%dT%H%M%SZ).json"
cargo build -p arena-server
ARENA_CHAOS_SECS="$secs" ARENA_CHAOS_REPORT="$PWD/$report" \
  cargo test -p arena-tests --test chaos -- --nocapture
echo "report: $report"

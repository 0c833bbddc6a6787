#!/usr/bin/env bash
# Fuzz the HTTP API with schemathesis (PyPI, pinned in requirements.txt) against a live,
# throwaway arena-server, with the OpenAPI description the server serves at
# /openapi.json (the same as docs/openapi.json). Every check is on (--checks all: no 500,
# status codes, content types, headers and bodies as described, valid data accepted and
# invalid data refused, authentication not ignored, unsupported methods 405 ...); any
# finding fails this script. Run by scripts/test; on its own:
#
#   tests/schemathesis/run.sh            # ARENA_FUZZ_EXAMPLES=N for more cases per route
#
# The server (its own port and a fresh --data-dir, removed afterwards) has an admin, a
# second admin the auth hook keeps to repair the first (hooks.py), and a player `alice`
# with two sessions (the description's example account: the examples phase logs in as
# her, and GET /admin/users/@alice lists sessions its link can end until the fuzzer
# kicks her). Limits
# lifted, because the fuzzer would only meet them and then see 429s instead of the
# route's real answers (a 429 is still described and checked wherever it can occur):
#   --auth-rate-limit 0       login/register per address and name (the hook logs in again
#                             after every revocation the fuzzer causes)
#   --refresh-rate-limit 0    refresh per address
#   --room-create-rate 0, --max-rooms-per-user 1000000, --max-rooms 1000000
#                             the admin creates every room the fuzzer asks for
#   --max-sessions-per-user 10000
#                             every re-login is a session; the oldest would be revoked
# Nothing else is changed; no route is excluded.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
examples=${ARENA_FUZZ_EXAMPLES:-100}
seed=${ARENA_FUZZ_SEED:-14}
# Its event stream (every request and answer); kept only when asked for.
report=${ARENA_FUZZ_REPORT_DIR:-}

# The fuzzer, in a venv under target/ (reinstalled when requirements.txt changes). Debian
# ships venv and ensurepip apart from python3: install them where they are missing.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv
fi
venv=$root/target/schemathesis-venv
stamp=$venv/.requirements
if ! cmp -s tests/schemathesis/requirements.txt "$stamp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
  cp tests/schemathesis/requirements.txt "$stamp"
fi

cargo build --quiet -p arena-server --bin arena-server
server_bin=$root/target/debug/arena-server

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
report=${report:-$work/report}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export ARENA_FUZZ_URL=$url
export ARENA_FUZZ_ADMIN=fuzz-admin ARENA_FUZZ_ADMIN_PASSWORD=fuzz-admin-pass-1
export ARENA_FUZZ_KEEPER=fuzz-keeper ARENA_FUZZ_KEEPER_PASSWORD=fuzz-keeper-pass-1

"$server_bin" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --admin-username "$ARENA_FUZZ_ADMIN" --admin-password "$ARENA_FUZZ_ADMIN_PASSWORD" \
  --auth-rate-limit 0 --refresh-rate-limit 0 \
  --room-create-rate 0 --max-rooms-per-user 1000000 --max-rooms 1000000 \
  --max-sessions-per-user 10000 \
  >"$work/server.log" 2>&1 &
server_pid=$!

# Ready, then the accounts: the keeper promoted by the admin, and alice.
"$venv/bin/python" - <<'PY'
import os, time, requests
base = os.environ["ARENA_FUZZ_URL"]
for _ in range(300):
    try:
        if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
            break
    except requests.RequestException:
        pass
    time.sleep(0.1)
else:
    raise SystemExit(f"arena-server did not answer {base}/healthz")
def post(path, body, token=None, method="POST"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.request(method, base + path, json=body, headers=headers, timeout=10)
    assert r.status_code < 300, (path, r.status_code, r.text)
    return r.json() if r.text else None
admin = post("/auth/login", {"username": os.environ["ARENA_FUZZ_ADMIN"],
                             "password": os.environ["ARENA_FUZZ_ADMIN_PASSWORD"]})["access_token"]
keeper = post("/auth/register", {"username": os.environ["ARENA_FUZZ_KEEPER"],
                                 "password": os.environ["ARENA_FUZZ_KEEPER_PASSWORD"]})["user"]["id"]
post(f"/admin/users/{keeper}/role", {"role": "admin"}, admin, method="PUT")
post("/auth/register", {"username": "alice", "password": "alice-pass-1"})
for _ in range(2):
    post("/auth/login", {"username": "alice", "password": "alice-pass-1"})
PY

# One worker: schemathesis is bound by its own CPU (one core, the GIL) rather than by the
# server, and CPython 3.11's ast module is not thread-safe (hypothesis parses lambdas while
# generating: "SystemError: AST constructor recursion depth mismatch" with two workers).
echo "schemathesis: fuzzing $url/openapi.json ($examples examples per operation, seed $seed)"
started=$(date +%s)
status=0
# Run from target/schemathesis-run: schemathesis keeps its crash cache (`st replay`) in the
# working directory.
mkdir -p "$root/target/schemathesis-run"
cd "$root/target/schemathesis-run"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=$root/tests/schemathesis \
  "$venv/bin/schemathesis" --config-file "$root/tests/schemathesis/schemathesis.toml" \
    run "$url/openapi.json" \
  --checks all \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 1 \
  --header "Origin: $url" \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  --report ndjson --report-dir "$report" || status=$?
took=$(( $(date +%s) - started ))

# How many requests the fuzzer sent, from its event stream.
requests_sent=$("$venv/bin/python" - "$report" <<'PY' || echo "?"
import json, pathlib, sys
n = 0
for path in pathlib.Path(sys.argv[1]).glob("*.ndjson"):
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for value in event.values():
            if isinstance(value, dict) and "recorder" in value:
                n += len(value["recorder"].get("interactions", {}))
print(n)
PY
)
# And how many the server answered in all (the hook's logins and repairs included), from
# its own metrics.
served=$("$venv/bin/python" - <<'PY' || echo "?"
import os, requests
text = requests.get(os.environ["ARENA_FUZZ_URL"] + "/metrics", timeout=10).text
print(int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("arena_http_request_duration_seconds_count"))))
PY
)
echo "schemathesis: $requests_sent requests generated in ${took}s ($served HTTP requests served by arena-server in all), exit status $status"
if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis: the server panicked:" >&2
  grep -A5 panicked "$work/server.log" >&2
  status=1
fi
exit "$status"

"""Schemathesis hooks for Arena: authenticate every request as an admin.

Loaded by run.sh through SCHEMATHESIS_HOOKS. The server under test is a throwaway one
with two admin accounts:

- ARENA_FUZZ_ADMIN (the server's --admin-username): the account whose access token the
  fuzzer sends, as `Authorization: Bearer <token>` (admins may call every route);
- ARENA_FUZZ_KEEPER: a second admin the hook only uses to repair the first.

The fuzzer calls the destructive routes too (logout, kick, ban, role, ending sessions),
and may aim them at the admin itself (`GET /admin/users` tells it the admin's id). Nothing
is excluded for that; instead:

- a token the fuzzer revoked (logout, kick, a session ended, a role change) answers 401,
  and a banned admin's token 403 `banned` (the server checks the ban before the
  revocation); on either, schemathesis' reactive re-authentication (`retry_on`) calls
  `get` again and replays the request, and `get` logs in afresh;
- if the fuzzer banned the admin or made it a player, `get` has the keeper unban or
  re-promote it before logging in (and the other way round if the keeper was hit).
"""

import os
import threading

import requests
import schemathesis

BASE = os.environ["ARENA_FUZZ_URL"]
ACCOUNTS = [
    (os.environ["ARENA_FUZZ_ADMIN"], os.environ["ARENA_FUZZ_ADMIN_PASSWORD"]),
    (os.environ["ARENA_FUZZ_KEEPER"], os.environ["ARENA_FUZZ_KEEPER_PASSWORD"]),
]
ORIGIN = BASE.rstrip("/")
TIMEOUT = 10
_lock = threading.Lock()


def _login(username, password):
    """(status, session JSON or error JSON)."""
    r = requests.post(
        f"{BASE}/auth/login",
        json={"username": username, "password": password},
        timeout=TIMEOUT,
    )
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {}


def _repair(target, helper_token):
    """Unban `target` and make it an admin again, with a helper admin's token."""
    headers = {"Authorization": f"Bearer {helper_token}", "Origin": ORIGIN}
    requests.delete(f"{BASE}/admin/users/@{target}/ban", headers=headers, timeout=TIMEOUT)
    requests.put(
        f"{BASE}/admin/users/@{target}/role",
        json={"role": "admin"},
        headers=headers,
        timeout=TIMEOUT,
    )


def admin_token():
    """An access token of an admin, repairing the accounts the fuzzer damaged."""
    with _lock:
        for attempt in range(3):
            results = [_login(u, p) for u, p in ACCOUNTS]
            good = [
                s for status, s in results if status == 200 and s["user"]["role"] == "admin"
            ]
            if good and len(good) == len(ACCOUNTS):
                return good[0]["access_token"]
            if not good:
                break
            # One is banned or a player: the other repairs it, then log in again.
            for (username, _), (status, session) in zip(ACCOUNTS, results):
                if not (status == 200 and session["user"]["role"] == "admin"):
                    _repair(username, good[0]["access_token"])
        raise RuntimeError(f"no admin account can log in: {results}")


@schemathesis.auth(refresh_interval=240, retry_on=[401, 403])
class ArenaAdmin:
    """Bearer token of the fuzz admin; fetched again on a 401 or 403, or every 4 minutes."""

    def get(self, case, context):
        return admin_token()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

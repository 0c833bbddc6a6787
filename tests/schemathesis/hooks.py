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
  re-promote it before logging in (and the other way round if the keeper was hit);
- schemathesis replays only in its example, coverage and fuzzing phases: its stateful
  phase keeps sending a token the scenario itself revoked or banned. So `after_call`
  also watches every answer, and when it says the hook's own token was revoked or its
  account banned or demoted, drops the token: the next request of the scenario logs in
  afresh (and repairs) instead of meeting the same 401/403 for minutes.
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


class _Token:
    """The admin token in use, and whether an answer showed it no longer works.

    schemathesis caches what `get` returns and asks again on a 401/403 it replays; this
    cache decides whether that ask logs in: only when the token was seen failing, so the
    replay after `after_call` already logged in does not log in a second time.
    """

    value = None
    stale = True
    lock = threading.Lock()

    @classmethod
    def current(cls):
        with cls.lock:
            if cls.stale:  # also before the first login
                cls.value, cls.stale = admin_token(), False
            return cls.value

    @classmethod
    def drop(cls):
        with cls.lock:
            cls.stale = True


# Answers that mean the account or the token itself was hit, not the request: a revoked
# or expired token (logout, kick, a session ended, a role change, theft detection), a ban,
# and `forbidden` (only an admin route answers it, and only to a demoted admin).
_TOKEN_FAILURES = {401: {"token_revoked", "token_expired"}, 403: {"banned", "forbidden"}}


@schemathesis.hook
def after_call(context, case, response):
    codes = _TOKEN_FAILURES.get(response.status_code)
    if not codes:
        return
    sent = response.request.headers.get("Authorization", "")
    if sent != f"Bearer {_Token.value}":
        return  # the fuzzer's own (negated or missing) credentials
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return
    if code in codes:
        _Token.drop()
        schemathesis.auths.refresh_auth(case)


@schemathesis.auth(refresh_interval=240, retry_on=[401, 403])
class ArenaAdmin:
    """Bearer token of the fuzz admin. schemathesis asks again on a 401/403 it replays and
    every 4 minutes; `_Token` logs in only when the token was seen failing."""

    def get(self, case, context):
        return _Token.current()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

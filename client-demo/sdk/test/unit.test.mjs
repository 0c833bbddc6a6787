// The SDK's rules that need no server: 503 retries (bounded, each one an `unavailable`
// event, Retry-After honoured), 429 as `rate_limited`, the error body as ArenaError,
// and the backoff's bounds.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Arena, ArenaError, backoffDelay } from "../src/index.js";

/** A fetch that answers from `replies` in turn, recording each request. */
function fakeFetch(replies) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const r = replies[Math.min(calls.length - 1, replies.length - 1)];
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status, headers: r.headers });
  };
  return { fn, calls };
}

const session = {
  access_token: "a.eyJleHAiOjQxMDI0NDQ4MDB9.s", token_type: "Bearer", expires_in: 900,
  refresh_token: "r".repeat(43), refresh_expires_in: 86400, session_id: "s1",
  user: { id: "u1", username: "alice", role: "player" },
};
const unavailable = { status: 503, headers: { "Retry-After": "0" }, body: { error: { code: "unavailable", message: "not current" } } };

test("503 on HTTP is retried with backoff, each retry an unavailable event, then it answers", async () => {
  const { fn, calls } = fakeFetch([unavailable, unavailable, { status: 200, body: session }]);
  const arena = new Arena({ baseUrl: "http://arena.test", fetch: fn, autoRefresh: false });
  const seen = [];
  arena.on("unavailable", (e) => seen.push(e));
  const s = await arena.login("alice", "alice-pass-1");
  assert.equal(s.session_id, "s1");
  assert.equal(calls.length, 3);
  assert.deepEqual(seen.map((e) => [e.source, e.path, e.attempt]), [["http", "/auth/login", 1], ["http", "/auth/login", 2]]);
  // Node sends the Origin of the base URL on a POST (PROTOCOL.md's Origin rule).
  assert.equal(calls[0].init.headers.Origin, "http://arena.test");
  assert.equal(calls[0].init.headers["Content-Type"], "application/json");
  arena.close();
});

test("503 retries are bounded: the last answer is thrown as ArenaError", async () => {
  const { fn, calls } = fakeFetch([unavailable]);
  const arena = new Arena({ baseUrl: "http://arena.test", fetch: fn, unavailableRetries: 2 });
  let events = 0;
  arena.on("unavailable", () => events++);
  await assert.rejects(arena.login("alice", "alice-pass-1"), (e) =>
    e instanceof ArenaError && e.status === 503 && e.code === "unavailable" && e.retryAfter === 0);
  assert.equal(calls.length, 3, "one try and two retries");
  assert.equal(events, 2);
});

test("429 is rate_limited (with Retry-After) and thrown, not retried", async () => {
  const { fn, calls } = fakeFetch([{ status: 429, headers: { "Retry-After": "7" }, body: { error: { code: "rate_limited", message: "slow down" } } }]);
  const arena = new Arena({ baseUrl: "http://arena.test", fetch: fn });
  const limited = [];
  arena.on("rate_limited", (e) => limited.push(e));
  await assert.rejects(arena.login("alice", "x"), (e) => e.status === 429 && e.retryAfter === 7);
  assert.equal(calls.length, 1);
  assert.deepEqual(limited, [{ source: "http", code: 429, reason: "slow down", retryAfter: 7 }]);
});

test("a ban is ArenaError banned with bannedUntil, and a banned event", async () => {
  const until = Date.now() + 3600_000;
  const { fn } = fakeFetch([{ status: 403, body: { error: { code: "banned", message: "banned until …", banned_until: until } } }]);
  const arena = new Arena({ baseUrl: "http://arena.test", fetch: fn });
  const banned = [];
  arena.on("banned", (e) => banned.push(e));
  await assert.rejects(arena.login("alice", "x"), (e) =>
    e instanceof ArenaError && e.status === 403 && e.code === "banned" && e.bannedUntil === until);
  assert.deepEqual(banned, [{ code: 403, reason: "banned until …", bannedUntil: until }]);
});

test("backoff doubles from the initial delay, is capped, and is spread by the jitter", () => {
  const o = { initialDelayMs: 500, maxDelayMs: 5000, jitter: 0.2 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, o, () => 0.5)), [500, 1000, 2000, 4000, 5000, 5000]);
  assert.equal(backoffDelay(1, o, () => 0), 400);
  assert.equal(backoffDelay(1, o, () => 1), 600);
});

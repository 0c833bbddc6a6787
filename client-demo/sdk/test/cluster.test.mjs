// The SDK on `503 unavailable` from a real cluster: two arena-server nodes sharing a fresh
// PostgreSQL database and a Redis of this file's own. What makes a node answer 503 is
// losing track of revocations, and only the database's revocation log counts for that
// (PROTOCOL.md, "Running a cluster": "cut off from Redis alone it keeps serving"). So:
// - node A's link to the database is cut: past --cluster-stale-secs it closes its
//   sockets with 1001 and answers HTTP and upgrades 503; the SDK retries both with
//   backoff, saying `unavailable`, keeps the session, and comes back on its own once A
//   is current again. Node B, which kept its database, serves on meanwhile;
// - the cut lasts past `reconnect.maxUnavailable`: the SDK stops (`closed`,
//   `unavailable`) and stays stopped, HTTP retries end in a thrown 503, and the session
//   still stands for a later connect();
// - Redis is killed: no 503 at all (the node reads the log from the database), but rooms
//   cannot run, so a member is taken out (`left` `unavailable`) and a join is answered
//   `unavailable`, retried by the SDK, and gets in once Redis is back.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { ArenaError, memoryStore } from "../src/index.js";
import * as h from "./harness.mjs";

const STALE_SECS = 2;
// Short enough that fail-closed happens within a couple of seconds and a dead room's
// join is answered within --room-lease-ms and a second; the poll is at most half the
// stale time, as the server requires.
const CLUSTER_FLAGS = ["--cluster-stale-secs", String(STALE_SECS), "--revocation-poll-ms", "200",
  "--cluster-heartbeat-ms", "300", "--room-lease-ms", "1000", "--database-timeout-ms", "500",
  "--refresh-rate-limit", "0"];

let redis, db, link, a, b, adminToken;

before(async () => {
  h.serverBinary();
  redis = await h.startRedis();
  db = h.createDatabase();
  // Node A reaches the database only through this link, so it alone can be cut off.
  link = await h.startLink("127.0.0.1:5432");
  const node = (id, dbPort) => Object.assign(new h.Server(["--database-url", h.databaseUrl(db, dbPort),
    "--redis-url", redis.url, "--node-id", id, "--admin-username", h.ADMIN[0],
    "--admin-password", h.ADMIN[1], ...CLUSTER_FLAGS]), { id });
  a = node("node-a", link.port);
  b = node("node-b", 5432);
  await Promise.all([a.start(), b.start()]);
  const r = await a.call("POST", "/auth/login", { body: { username: h.ADMIN[0], password: h.ADMIN[1] } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  adminToken = r.body.access_token;
});

after(h.cleanUp);

// Each test starts from a whole cluster: both nodes current, on the backplane, and each
// seeing the other.
beforeEach(async () => {
  for (const n of [a, b]) {
    await h.until(async () => {
      const health = await n.call("GET", "/healthz");
      if (health.status !== 200 || health.body.backplane !== "ok") return false;
      const nodes = await n.call("GET", "/admin/nodes", { token: adminToken });
      return nodes.status === 200 && nodes.body.nodes.length === 2;
    }, `${n.id} is healthy and sees both nodes`, 20_000);
  }
});

/** A registered, logged-in SDK instance on `server` with its own store, its events recorded. */
async function player(server, options = {}) {
  const store = memoryStore();
  const client = h.arena(server, { tokenStore: store, ...options });
  const events = h.record(client);
  const name = h.username("c");
  await client.register(name, name + "-password");
  await client.login(name, name + "-password");
  return { client, events, store, name };
}

/** The session is whole: never ended, its newest refresh token still in the store, a token held. */
async function assertSessionStands({ client, events, store }, sessionId, what) {
  assert.equal(events.count("session_ended"), 0, `${what}: ${events.types().join(",")}`);
  assert.equal(events.count("revoked"), 0, what);
  const newest = events.events.filter((e) => e.type === "session").at(-1).payload.refresh_token;
  assert.equal(await store.get(), newest, `${what}: the refresh token is still in the store`);
  assert.equal(client.sessionId, sessionId, what);
  assert.ok(client.accessToken, what);
}

/** `GET /auth/me` answered by `server` with its status and code (no SDK, no retries). */
async function meStatus(server, token) {
  const r = await server.call("GET", "/auth/me", { token });
  return { status: r.status, code: r.body?.error?.code, message: r.body?.error?.message };
}

describe("a node cut off from the database (its revocation log)", () => {
  test("503 on HTTP and on the upgrade: retried with backoff, the session kept, back on its own", async () => {
    // Long enough that the SDK does not give up during the cut (the next test is about that).
    const p = await player(a, { reconnect: { initialDelayMs: 200, maxDelayMs: 600, maxUnavailable: 100 }, unavailableRetries: 10 });
    const { client, events } = p;
    const witness = await player(b);
    await client.connect();
    await witness.client.connect();
    const room = await client.createRoom("cut off " + p.name);
    await client.join(room.id);
    const sessionId = client.sessionId;

    let rooms; // an HTTP call made during the cut, awaited after it
    const since = events.mark();
    const cutAt = Date.now();
    link.cutOff();
    try {
      // Fail closed for the live socket: A cannot tell whether its token was revoked
      // elsewhere, so it closes it with 1001 (reconnect) once the stale time has passed.
      const dropped = await events.next("disconnected", { since });
      assert.equal(dropped.code, 1001, JSON.stringify(dropped));
      assert.equal(dropped.wasOpen, true);
      // Not at the first failed read but at the stale time (counted from A's last good
      // read, which may have started up to a poll or so before the cut).
      assert.ok(Date.now() - cutAt >= STALE_SECS * 1000 - 1000, `closed ${Date.now() - cutAt} ms after the cut`);
      assert.equal((await events.next("reconnecting", { since })).code, 1001);

      // The reconnects land on A again and its upgrades are answered 503.
      const firstRefusal = events.mark();
      const u1 = await events.next("unavailable", { since, match: (e) => e.source === "socket" });
      const u2 = await events.next("unavailable", { since, match: (e) => e.source === "socket" && e.attempt > u1.attempt });
      assert.equal(u2.attempt, u1.attempt + 1);
      for (const u of [u1, u2]) {
        // Backoff: 200 ms × 2^(attempt-1), capped at 600 ms, ± 20%.
        const base = Math.min(600, 200 * 2 ** (u.attempt - 1));
        assert.ok(u.delayMs >= base * 0.8 - 1 && u.delayMs <= base * 1.2 + 1, JSON.stringify(u));
      }
      // Each refusal is followed by a reconnecting announcing the same wait, and the next
      // try comes no sooner than that.
      const refusals = events.events.slice(firstRefusal);
      const u1Index = refusals.findIndex((e) => e.type === "unavailable" && e.payload === u1);
      const u1At = refusals[u1Index].at;
      assert.deepEqual(refusals[u1Index + 1]?.type, "reconnecting");
      assert.equal(refusals[u1Index + 1].payload.delayMs, u1.delayMs);
      const nextTry = refusals.find((e) => e.type === "disconnected" && e.at > u1At);
      assert.ok(nextTry.at - u1At >= u1.delayMs - 5, `retried ${nextTry.at - u1At} ms after a ${u1.delayMs} ms backoff`);
      assert.equal(events.count("welcome"), 1, "no upgrade got in");
      // A direct look: the 503 is the stale one, not a database timeout (/auth/me reads none).
      const seen = await meStatus(a, client.accessToken);
      assert.equal(seen.status, 503);
      assert.equal(seen.code, "unavailable");
      assert.match(seen.message, /cannot confirm it has every revocation/);

      // An HTTP call through the SDK meanwhile: answered 503, retried after Retry-After.
      rooms = client.rooms();
      const httpSince = events.mark();
      const h1 = await events.next("unavailable", { since: httpSince, match: (e) => e.source === "http" });
      assert.deepEqual([h1.method, h1.path, h1.attempt], ["GET", "/lobby/rooms", 1]);
      assert.ok(h1.delayMs >= 900 && h1.delayMs <= 1100, `Retry-After: 1 ± 10%, not ${h1.delayMs} ms`);

      // The other node kept its database: its client never noticed.
      assert.ok((await witness.client.rooms()).some((r) => r.id === room.id));
      await witness.client.ping();
      assert.equal(witness.events.count("disconnected"), 0, witness.events.types().join(","));
      assert.equal(witness.events.count("unavailable"), 0);

      // The whole outage long, the session stood.
      await assertSessionStands(p, sessionId, "during the cut");
      assert.equal(events.count("closed"), 0, events.types().join(","));
      assert.equal(client.state, "reconnecting");
    } finally {
      // The link returns: A reads the log to its end and counts itself current.
      link.restore();
    }
    // The SDK, still retrying, gets in: a welcome on the same session, back in the room.
    const back = await events.next("welcome", { since });
    assert.equal(back.session_id, sessionId);
    const rejoined = await events.next("rejoined", { since });
    assert.equal(rejoined.room.id, room.id);
    const listed = await rooms;
    assert.ok(listed.some((r) => r.id === room.id), "the retried rooms() answered after all");
    assert.ok(events.count("unavailable") >= 3);
    assert.equal(client.state, "open");
    await client.ping();
    await assertSessionStands(p, sessionId, "after the cut");
    // The access token still works everywhere: nothing was revoked.
    assert.equal((await meStatus(b, client.accessToken)).status, 200);
    const chat = events.next("chat", { match: (m) => m.text === "back from the cut" });
    client.chat("back from the cut");
    await chat;
    client.close();
    witness.client.close();
  });

  test("past reconnect.maxUnavailable the SDK stops trying; HTTP retries end in a 503; the session stands", async () => {
    const maxUnavailable = 2;
    const p = await player(a, { reconnect: { initialDelayMs: 100, maxDelayMs: 200, maxUnavailable }, unavailableRetries: 2 });
    const { client, events } = p;
    await client.connect();
    const sessionId = client.sessionId;
    const since = events.mark();
    link.cutOff();
    try {
      assert.equal((await events.next("disconnected", { since })).code, 1001);
      const closed = await events.next("closed", { since });
      assert.equal(closed.cause, "unavailable", JSON.stringify(closed));
      assert.equal(client.state, "closed");
      // maxUnavailable refusals are retried (each an `unavailable`); the next one ends it.
      const after = events.events.slice(since);
      const socketUnavailable = after.filter((e) => e.type === "unavailable" && e.payload.source === "socket");
      const refusedUpgrades = after.filter((e) => e.type === "disconnected" && !e.payload.wasOpen);
      assert.equal(socketUnavailable.length, maxUnavailable, events.types().join(","));
      assert.equal(refusedUpgrades.length, maxUnavailable + 1, events.types().join(","));
      assert.equal(after.filter((e) => e.type === "reconnecting").length, maxUnavailable + 1,
        "the 1001 and each retried refusal were announced");

      // And it stays stopped: several of its (≤ 200 ms) backoffs pass without a try.
      const stoppedAt = events.mark();
      await h.sleep(1000);
      assert.deepEqual(events.types().slice(stoppedAt), [], "nothing after closed");
      assert.equal(client.state, "closed");

      // HTTP through the SDK: the stale 503, retried unavailableRetries times after
      // Retry-After, then thrown as the server's error.
      const httpSince = events.mark();
      const startedAt = Date.now();
      await assert.rejects(client.me(), (e) => e instanceof ArenaError && e.status === 503
        && e.code === "unavailable" && /cannot confirm it has every revocation/.test(e.message) && e.retryAfter === 1);
      const retries = events.events.slice(httpSince).filter((e) => e.type === "unavailable");
      assert.deepEqual(retries.map((e) => [e.payload.source, e.payload.path, e.payload.attempt]),
        [["http", "/auth/me", 1], ["http", "/auth/me", 2]]);
      assert.ok(Date.now() - startedAt >= 2 * 900, `two Retry-After waits, not ${Date.now() - startedAt} ms`);

      await assertSessionStands(p, sessionId, "after giving up");
    } finally {
      link.restore();
    }

    // Once A is current again, connect() is all it takes: same session, no new login.
    await h.until(async () => (await meStatus(a, client.accessToken)).status === 200, "node A is current again");
    const welcome = await client.connect();
    assert.equal(welcome.session_id, sessionId);
    assert.equal(client.state, "open");
    assert.equal((await client.me()).session_id, sessionId);
    await assertSessionStands(p, sessionId, "after connecting again");
    client.close();
  });
});

describe("Redis killed", () => {
  test("no 503 (the database's log keeps the node current); a join answered unavailable is retried until Redis is back", async () => {
    const p = await player(a);
    const { client, events } = p;
    await client.connect();
    const room = await client.createRoom("redis away " + p.name);
    await client.join(room.id);
    const sessionId = client.sessionId;

    const since = events.mark();
    const killedAt = Date.now();
    await redis.stop();
    try {
      // Rooms run under leases in Redis: without it nobody may run this one (fail closed:
      // never two runs of a room), so its member is taken out, saying why.
      const left = await events.next("left", { since, match: (m) => m.room === room.id });
      assert.equal(left.reason, "unavailable");
      assert.equal(client.room, null);
      assert.equal(client.wantRoom, null, "a room the server took us out of is not rejoined");

      // Joining again: the room's node cannot be had, so the join is answered
      // `unavailable`, and the SDK tries again with backoff.
      const joined = client.join(room.id);
      const retry = await events.next("unavailable", { since, match: (e) => e.source === "join" });
      assert.equal(retry.room, room.id);
      assert.equal(retry.attempt, 1);

      // Past the stale time without Redis (usually long past by now), the node still
      // answers: no 503 anywhere, the socket never dropped, the session stands.
      await h.until(() => Date.now() - killedAt > STALE_SECS * 1000 + 1000, "past the stale time without Redis");
      const health = await a.call("GET", "/healthz");
      assert.equal(health.status, 200, JSON.stringify(health.body));
      assert.equal(health.body.backplane, "degraded");
      assert.ok((await client.rooms()).some((r) => r.id === room.id));
      await client.ping();
      assert.equal(events.events.slice(since).filter((e) => e.type === "unavailable" && e.payload.source !== "join").length, 0,
        events.types().join(","));
      assert.equal(events.count("disconnected"), 0, events.types().join(","));
      await assertSessionStands(p, sessionId, "without Redis");

      // Redis back (empty): the node takes the room's lease once the new lease era has
      // waited out one lease, and the retried join gets in.
      await redis.start();
      const answer = await joined;
      assert.equal(answer.room.id, room.id);
      assert.equal(client.room.id, room.id);
      assert.equal(events.count("join_failed"), 0);
      const chat = events.next("chat", { match: (m) => m.text === "redis is back" });
      client.chat("redis is back");
      await chat;
      assert.equal(events.count("disconnected"), 0);
      await assertSessionStands(p, sessionId, "after Redis came back");
    } finally {
      if (!redis.running) await redis.start();
    }
    client.close();
  });
});

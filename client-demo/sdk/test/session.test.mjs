// The SDK against real arena-server processes: login and connect, a token refreshed and
// reauthed under a live socket, a restart reconnected (and the room rejoined), the ends
// of a session (logout elsewhere, kick, ban, single-session replacement, expiry) and two
// instances sharing one refresh token.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ArenaError, jwtExp, memoryStore } from "../src/index.js";
import { ADMIN, Server, arena, cleanUp, nextEvent, record, sleep, until, username } from "./harness.mjs";

after(cleanUp);

/** A registered and logged-in SDK instance, its events recorded. */
async function player(server, options = {}, name = username()) {
  const client = arena(server, options);
  const events = record(client);
  await client.register(name, name + "-password");
  await client.login(name, name + "-password");
  return { client, events, name };
}

describe("one server", () => {
  /** @type {Server} */
  let server;
  before(async () => {
    server = await new Server([...adminFlags()]).start();
  });

  test("login and connect: welcome, join, chat, ping, input", async () => {
    const { client, events, name } = await player(server);
    assert.equal(client.user.username, name);
    const welcome = await client.connect();
    assert.equal(welcome.user.username, name);
    assert.equal(welcome.session_id, client.sessionId);
    assert.equal(client.state, "open");
    assert.ok(client.connected);

    const joined = await client.join("main-hall");
    assert.equal(joined.room.id, "main-hall");
    assert.equal(client.room.id, "main-hall");
    assert.ok(joined.members.some((m) => m.username === name));

    const chat = events.next("chat", { match: (m) => m.text === "hello from the sdk" });
    assert.equal(client.chat("hello from the sdk"), true);
    assert.equal((await chat).from.username, name);
    assert.throws(() => client.chat(""), RangeError);
    assert.throws(() => client.chat("x".repeat(281)), RangeError);

    const pong = await client.ping();
    assert.ok(pong.rtt >= 0 && pong.server_time > 0);

    // Inputs are numbered by the SDK and the room applies them (last_seq catches up).
    const seq = client.input(1, 0);
    assert.ok(seq >= 1);
    await nextEvent(client, "state", (m) => m.players.some((p) => p.username === name && p.last_seq >= seq));
    client.input(0, 0);

    const left = await client.leave();
    assert.equal(left.room, "main-hall");
    assert.equal(client.room, null);
    client.disconnect();
    assert.equal(client.state, "closed");
    assert.equal(events.count("reconnecting"), 0);
  });

  test("a wrong password is an ArenaError with PROTOCOL.md's code", async () => {
    const client = arena(server);
    await assert.rejects(client.login("nobody_here", "wrong-password"), (e) =>
      e instanceof ArenaError && e.status === 401 && e.code === "invalid_credentials");
    await assert.rejects(client.connect(), (e) => e instanceof ArenaError && e.code === "no_session");
  });

  test("login keeps the known-device token and sends it with the next login", async () => {
    const devices = memoryStore();
    /** @type {any[]} */
    const sent = [];
    /** @type {typeof fetch} */
    const watching = (url, init) => {
      if (String(url).endsWith("/auth/login")) sent.push(JSON.parse(String(init?.body)));
      return fetch(url, init);
    };
    const { client, name } = await player(server, { deviceTokenStore: devices, fetch: watching });
    const first = await devices.get();
    assert.ok(first && first.startsWith("d1."), `a device token: ${first}`);
    assert.equal(sent[0].device_token, undefined);
    await client.logout();
    await client.login(name, name + "-password");
    assert.equal(sent[1].device_token, first);
    assert.ok(await devices.get(), "renewed");
  });

  test("a stored session the server refuses (logged out meanwhile): resume ends it and clears the store", async () => {
    const store = memoryStore();
    const { client: a } = await player(server, { tokenStore: store });
    const stale = await store.get();
    await a.logout();
    // A reload: a new instance finds the old refresh token in the store.
    await store.set(stale);
    const b = arena(server, { tokenStore: store });
    const eb = record(b);
    await assert.rejects(b.resume(), (e) => e instanceof ArenaError && e.status === 401);
    assert.equal((await eb.next("session_ended", { since: 0 })).cause, "refresh_invalid");
    await until(async () => (await store.get()) === null, "the refused token is cleared from the store");
    assert.equal(await b.resume(), null, "nothing left to resume");
  });

  test("logout elsewhere (another tab of the session) ends with revoked and no reconnect", async () => {
    const store = memoryStore();
    const { client: a, events: ea, name } = await player(server, { tokenStore: store });
    const b = arena(server, { tokenStore: store });
    const eb = record(b);
    await b.resume();
    await Promise.all([a.connect(), b.connect()]);
    await a.join("main-hall");

    // The 204 comes after the sockets are closed: look from before the call.
    const since = ea.mark();
    await b.logout();
    const revoked = await ea.next("revoked", { since });
    assert.equal(revoked.code, 4001);
    const closed = await ea.next("closed", { since });
    assert.equal(closed.cause, "revoked");
    assert.equal((await ea.next("session_ended", { since })).cause, "revoked");
    // The tab that logged out says logout, not revoked.
    assert.equal(eb.count("revoked"), 0);
    assert.equal((await eb.next("session_ended", { since: 0 })).cause, "logout");
    // No reconnect: longer than the first backoff (200 ms ± 20%) and then some.
    await sleep(800);
    assert.equal(ea.count("reconnecting"), 0, ea.types().join(","));
    assert.equal(ea.count("open"), 1);
    assert.equal(a.state, "closed");
    assert.equal(a.accessToken, null);
    assert.equal(await store.get(), null, "the shared store is cleared");
    const sockets = await adminCall(server, "GET", "/admin/connections");
    assert.ok(!sockets.body.connections.some((c) => c.username === name), "no socket of the user is left");
  });

  test("kick ends with kicked and the reason, and no reconnect", async () => {
    const { client, events, name } = await player(server);
    await client.connect();
    const since = events.mark();
    const r = await adminCall(server, "POST", `/admin/users/@${name}/kick`, { reason: "spam in chat" });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const kicked = await events.next("kicked", { since });
    assert.deepEqual(kicked, { code: 4003, reason: "spam in chat" });
    assert.equal((await events.next("closed", { since })).cause, "kicked");
    assert.equal(events.count("banned"), 0);
    await sleep(800);
    assert.equal(events.count("reconnecting"), 0);
    assert.equal(client.state, "closed");
  });

  test("ban ends with banned, the reason and until when", async () => {
    const { client, events, name } = await player(server);
    await client.connect();
    const before = Date.now();
    const since = events.mark();
    const r = await adminCall(server, "POST", `/admin/users/@${name}/ban`, { reason: "cheating", duration_secs: 3600 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const banned = await events.next("banned", { since });
    assert.equal(banned.reason, "cheating");
    assert.ok(Math.abs(banned.bannedUntil - (before + 3600_000)) < 60_000, String(banned.bannedUntil));
    assert.equal((await events.next("closed", { since })).cause, "banned");
    assert.equal(events.count("kicked"), 0);
    await assert.rejects(client.login(name, name + "-password"), (e) =>
      e.code === "banned" && e.status === 403 && e.bannedUntil === banned.bannedUntil);
  });

  test("two instances sharing a refresh token refresh at once and both stay logged in", async () => {
    const store = memoryStore();
    const { client: a, events: ea } = await player(server, { tokenStore: store, autoRefresh: false });
    const b = arena(server, { tokenStore: store, autoRefresh: false });
    const eb = record(b);
    await b.resume(); // the second tab: the token A's login stored, rotated by B
    await Promise.all([a.connect(), b.connect()]);

    for (let round = 0; round < 3; round++) {
      // At once: one rotates, the other presents the same token within the grace window
      // and gets the very same pair.
      const [sa, sb] = await Promise.all([a.refresh(), b.refresh()]);
      assert.equal(sa.refresh_token, sb.refresh_token, "the grace rule answered both alike");
      assert.equal(sa.session_id, sb.session_id);
      assert.equal(await store.get(), sa.refresh_token);
      // Past the grace window (1 s on this server), one after the other: each must
      // present the newest token from the store, or the server sees theft.
      await sleep(1200);
      await a.refresh();
      await b.refresh();
    }
    assert.equal((await a.me()).user.id, a.user.id);
    assert.equal((await b.me()).user.id, b.user.id);
    await Promise.all([a.ping(), b.ping()]);
    for (const e of [ea, eb]) {
      assert.equal(e.count("disconnected"), 0, e.types().join(","));
      assert.equal(e.count("session_ended"), 0);
      assert.equal(e.count("welcome"), 1);
    }
    a.disconnect();
    b.disconnect();
    // close(): no socket, no refresh timer, and the session still lives for a resume().
    b.close();
    assert.equal(b.state, "closed");
    const c = arena(server, { tokenStore: store });
    assert.equal((await c.resume()).session_id, a.sessionId);
    c.close();
  });
});

describe("short tokens", () => {
  let server;
  before(async () => {
    server = await new Server(["--access-ttl", "3", "--token-expiring-secs", "1", "--jwt-leeway", "0"]).start();
  });

  test("a token that expires while connected is refreshed and reauthed without dropping the socket", async () => {
    const { client, events } = await player(server);
    const welcome = await client.connect();
    await client.join("main-hall");
    // Well past the first token's end: the socket must still be the same one.
    await events.next("reauthed");
    await until(() => Date.now() > welcome.expires_at + 2500, "past the first token's expiry");
    await events.next("reauthed", { since: 0, match: (m) => m.expires_at > welcome.expires_at + 2000 });
    const pong = await client.ping();
    assert.ok(pong.server_time > welcome.expires_at);
    assert.equal(events.count("welcome"), 1, events.types().join(","));
    assert.equal(events.count("disconnected"), 0, events.types().join(","));
    assert.equal(events.count("expired"), 0);
    assert.ok(events.count("session") >= 3, "login and at least two refreshes");
    assert.equal(client.room.id, "main-hall");
    client.disconnect();
  });

  test("without refreshing, 4002 expired: refresh, then reconnect and rejoin", async () => {
    const { client, events } = await player(server, { autoRefresh: false });
    await client.connect();
    await client.join("main-hall");
    const expired = await events.next("expired");
    assert.equal(expired.code, 4002);
    await events.next("welcome", { since: 0, match: () => events.count("welcome") >= 2 });
    await events.next("rejoined", { since: 0 });
    assert.equal(client.room.id, "main-hall");
    assert.equal(events.count("session_ended"), 0);
    client.disconnect();
  });
});

describe("short tokens, more", () => {
  let server;
  before(async () => {
    server = await new Server(["--access-ttl", "2", "--jwt-leeway", "0"]).start();
  });

  test("logout with an access token past exp (a laptop that slept): refreshed, then logged out", async () => {
    const { client, events } = await player(server, { autoRefresh: false });
    // Past `exp` as the server counts it: whole seconds, and a token is good through the
    // second of its `exp` (the JWT library's `exp < now`).
    const exp = /** @type {number} */ (jwtExp(client.accessToken));
    await until(() => Date.now() > (exp + 1) * 1000 + 100, "past the token's exp");
    await client.logout();
    assert.equal((await events.next("session_ended", { since: 0 })).cause, "logout");
    assert.equal(events.count("session"), 2, "the login and the refresh logout needed: " + events.types().join(","));
  });

  test("a direction held when a session ends is not sent into the next session's room", async () => {
    const store = memoryStore();
    const name = username();
    const { client } = await player(server, { tokenStore: store }, name);
    await client.connect();
    await client.join("main-hall");
    assert.ok(client.input(1, 0) > 0);
    await client.logout();
    const events = record(client);
    await client.login(name, name + "-password");
    await client.connect();
    // A resend to the new seat would go out in the same turn as the `joined` that resolves this.
    await client.join("main-hall");
    assert.equal(events.count("input"), 0, "no input went to the new seat: " + events.types().join(","));
    client.disconnect();
  });
});

describe("restarts", () => {
  let server;
  before(async () => {
    server = await new Server([]).start();
  });

  test("a server restart reconnects and rejoins the room", async () => {
    const { client, events, name } = await player(server);
    await client.connect();
    const room = await client.createRoom("sdk restart " + name);
    await client.join(room.id);
    const since = events.mark();
    await server.stop("SIGTERM");
    const lost = await events.next("disconnected", { since });
    assert.equal(lost.code, 1001);
    await events.next("reconnecting", { since });
    assert.equal(client.state, "reconnecting");
    await server.start(); // same port, same data dir: the room and the session survive
    await events.next("welcome", { since });
    const rejoined = await events.next("rejoined", { since });
    assert.equal(rejoined.room.id, room.id);
    assert.equal(client.room.id, room.id);
    const chat = events.next("chat", { match: (m) => m.text === "back again" });
    client.chat("back again");
    await chat;
    client.disconnect();
  });
});

describe("single session", () => {
  let server;
  before(async () => {
    server = await new Server(["--single-session"]).start();
  });

  test("a login elsewhere ends with replaced and no reconnect", async () => {
    const { client, events, name } = await player(server);
    await client.connect();
    const other = arena(server);
    const since = events.mark();
    await other.login(name, name + "-password");
    const replaced = await events.next("replaced", { since });
    assert.equal(replaced.code, 4004);
    assert.equal((await events.next("closed", { since })).cause, "replaced");
    await sleep(800);
    assert.equal(events.count("reconnecting"), 0);
  });
});

// ---------- helpers ----------

function adminFlags() {
  return ["--admin-username", ADMIN[0], "--admin-password", ADMIN[1], "--refresh-grace-secs", "1"];
}

let adminToken = null;
async function adminCall(server, method, path, body) {
  if (!adminToken) {
    const r = await server.call("POST", "/auth/login", { body: { username: ADMIN[0], password: ADMIN[1] } });
    assert.equal(r.status, 200);
    adminToken = r.body.access_token;
  }
  return server.call(method, path, { token: adminToken, body });
}

describe("socket cap", () => {
  let server;
  before(async () => {
    server = await new Server(["--max-sockets-per-user", "1"]).start();
  });

  test("an upgrade refused with 429 is rate_limited and retried with backoff, then gets in", async () => {
    const { client: a, name } = await player(server);
    await a.connect();
    const b = arena(server);
    const eb = record(b);
    await b.login(name, name + "-password");
    const welcomed = b.connect();
    const limited = await eb.next("rate_limited", { since: 0 });
    assert.equal(limited.source, "upgrade");
    assert.equal(limited.code, 429);
    await eb.next("reconnecting", { since: 0 });
    assert.equal(eb.count("closed"), 0, "a 429 is not the end");
    a.disconnect(); // the cap frees up: B's next attempt gets in
    assert.equal((await welcomed).user.username, name);
    b.disconnect();
  });
});

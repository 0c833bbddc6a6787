// What the SDK tests share: arena-server processes of their own (a fresh data dir and a
// free port each; stop and start again on the same port and data dir), a wait for an
// event with a deadline, and SDK instances for Node (the ws package).
//
// The server binary is ARENA_SERVER_BIN when set, else the debug build (built here if
// needed) under CARGO_TARGET_DIR or target/, as tests/browser/harness.mjs finds it.
//
// For clusters (test/cluster.test.mjs): a PostgreSQL database of the test's own on the
// machine's server, a redis-server of its own, and a TCP link that can be cut, so that
// one node can lose its database (what makes a node stop being current) while the
// others keep theirs.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { Arena } from "../src/index.js";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
/** How long any one awaited event may take (the machine may be busy with builds). */
export const DEADLINE = 15_000;
export const ADMIN = ["admin", "admin-password-1"];

const children = new Set();
const dirs = new Set();
const databases = new Set();
const links = new Set();
function cleanUpNow() {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  for (const link of links) link.close();
  links.clear();
  dropDatabases();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
process.on("exit", cleanUpNow);
// A run cut short (Ctrl-C, the runner's timeout) must not leave databases behind.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => { cleanUpNow(); process.exit(128 + (signal === "SIGINT" ? 2 : 15)); });
}

let binary = process.env.ARENA_SERVER_BIN || null;
export function serverBinary() {
  if (!binary) {
    const build = spawnSync("cargo", ["build", "-q", "-p", "arena-server"], { cwd: root, stdio: "inherit" });
    assert.equal(build.status, 0, "cargo build failed");
    const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, "target");
    binary = join(target, "debug/arena-server");
  }
  return binary;
}

export function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

const exited = (child) => child.exitCode !== null || child.signalCode !== null
  ? Promise.resolve() : new Promise((ok) => child.once("exit", () => ok()));

/** One arena-server; `args` are its flags beyond --listen, --data-dir and --web-dir. */
export class Server {
  constructor(args = []) {
    this.args = args;
    this.dataDir = mkdtempSync(join(tmpdir(), "arena-sdk-"));
    dirs.add(this.dataDir);
    this.port = 0;
    this.base = null;
    this.child = null;
    this.log = "";
  }

  async start() {
    const args = ["--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir,
      "--web-dir", join(root, "client-demo/web"), "--auth-rate-limit", "0", ...this.args];
    const child = spawn(serverBinary(), args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ARENA_LOG: process.env.ARENA_LOG || "warn" },
    });
    children.add(child);
    this.child = child;
    child.stderr.on("data", (d) => { this.log = (this.log + d).slice(-4000); });
    child.once("exit", () => { children.delete(child); if (this.child === child) this.child = null; });
    this.base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error("arena-server did not start:\n" + this.log)), 60_000);
      let out = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const m = out.match(/listening on (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); ok(m[1]); }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`arena-server exited with ${signal || code} before listening:\n${this.log}`));
      });
    });
    this.port = Number(new URL(this.base).port);
    return this;
  }

  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    await exited(child);
    this.child = null;
  }

  /** A plain HTTP call (not through the SDK): the parsed body and status. */
  async call(method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }
}

export async function cleanUp() {
  // A test that failed half-way leaves its clients reconnecting: stop them, or their
  // timers keep the test process alive.
  for (const client of clients) client.close();
  clients.clear();
  await Promise.all([...children].map((c) => { c.kill("SIGKILL"); return exited(c); }));
  cleanUpNow();
}

/** An SDK instance for Node against `server` (or a base URL). */
export function arena(server, options = {}) {
  const baseUrl = typeof server === "string" ? server : server.base;
  const client = new Arena({ baseUrl, WebSocket, reconnect: { initialDelayMs: 200, maxDelayMs: 1000 }, ...options });
  clients.add(client);
  return client;
}
const clients = new Set();

/**
 * Record every event of `client` (in order) so a test can wait for one with a deadline
 * and check what happened before it.
 */
export function record(client) {
  const events = [];
  const waiters = [];
  const types = ["open", "welcome", "disconnected", "reconnecting", "closed", "session", "session_ended",
    "revoked", "kicked", "banned", "expired", "replaced", "rate_limited", "unavailable", "joined",
    "rejoined", "left", "join_failed", "reauthed", "reauth_failed", "token_expiring", "chat", "pong", "error"];
  for (const type of types) {
    client.on(type, (payload) => {
      events.push({ type, payload, at: Date.now() });
      for (const w of [...waiters]) if (w.type === type && w.match(payload)) { waiters.splice(waiters.indexOf(w), 1); w.ok(payload); }
    });
  }
  return {
    events,
    count: (type) => events.filter((e) => e.type === type).length,
    types: () => events.map((e) => e.type),
    /** Where the record is now: pass as `since` to wait for an event after this point. */
    mark: () => events.length,
    /**
     * The first `type` event matching `match` at index `since` or later (default: from
     * now on), waiting for it until the deadline.
     */
    next(type, { match = () => true, deadline = DEADLINE, since = events.length } = {}) {
      const found = events.slice(since).find((e) => e.type === type && match(e.payload));
      if (found) return Promise.resolve(found.payload);
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          fail(new Error(`no ${type} event within ${deadline} ms; events: ${events.map((e) => e.type).join(", ")}`));
        }, deadline);
        const w = { type, match, ok: (p) => { clearTimeout(timer); ok(p); } };
        waiters.push(w);
      });
    },
  };
}

/** Poll `probe` every 50 ms until it is truthy or the deadline passes. */
export async function until(probe, what, deadline = DEADLINE) {
  const end = Date.now() + deadline;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting until " + what);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

let users = 0;
/** A fresh user name. */
export const username = (prefix = "p") => `${prefix}${process.pid % 10000}_${++users}`;

/** The next `type` event of `client` matching `match`, within the deadline. */
export function nextEvent(client, type, match = () => true, deadline = DEADLINE) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { off(); fail(new Error(`no matching ${type} within ${deadline} ms`)); }, deadline);
    const off = client.on(type, (payload) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      off();
      ok(payload);
    });
  });
}

// ---------- clusters: PostgreSQL, Redis, a link that can be cut ----------

/** Run SQL with psql on the machine's PostgreSQL (127.0.0.1:5432, trust auth). */
export function psql(database, sql) {
  const r = spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", database,
    "-v", "ON_ERROR_STOP=1", "-tAqc", sql], { encoding: "utf8" });
  assert.equal(r.status, 0, `psql -d ${database} ${sql}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

let dbCount = 0;
/** A fresh database on the machine's PostgreSQL (dropped by cleanUp); its name. */
export function createDatabase() {
  const name = `arena_sdk_${process.pid}_${++dbCount}`;
  psql("test", `CREATE DATABASE ${name}`);
  databases.add(name);
  return name;
}

/** The URL of database `name`, through `port` (a Link's) or PostgreSQL's own. */
export const databaseUrl = (name, port = 5432) => `postgres://postgres@127.0.0.1:${port}/${name}`;

function dropDatabases() {
  for (const name of databases) {
    spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
      `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
  }
  databases.clear();
}

function redisPing(port) {
  return new Promise((ok) => {
    const s = connect(port, "127.0.0.1");
    const done = (v) => { s.destroy(); ok(v); };
    s.setTimeout(1000, () => done(false));
    s.once("error", () => done(false));
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => done(String(d).startsWith("+PONG")));
  });
}

/**
 * A redis-server of the test's own on a free port (killed by cleanUp). `stop()`
 * SIGKILLs it; `start()` brings it back on the same port, empty (it keeps nothing).
 */
export async function startRedis() {
  const port = await freePort();
  let child = null;
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() { return child !== null; },
    async stop() {
      if (!child) return;
      child.kill("SIGKILL");
      await exited(child);
      child = null;
    },
    async start() {
      assert.equal(child, null, "redis-server already runs");
      child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no"], { stdio: "ignore" });
      const c = child;
      children.add(c);
      c.once("exit", () => children.delete(c));
      await until(() => redisPing(port), "redis-server answers PING");
    },
  };
  await redis.start();
  return redis;
}

/**
 * A TCP forwarder from a free local port to `target` (host:port). `cut()` drops every
 * link at once and refuses new ones (a connection is closed as soon as it is accepted:
 * the far side looks gone, without waiting for TCP timeouts); `restore()` forwards
 * again. Closed by cleanUp.
 */
export async function startLink(target) {
  const [host, targetPort] = target.split(":");
  const open = new Set();
  let cut = false;
  const server = createServer((client) => {
    if (cut) { client.destroy(); return; }
    const upstream = connect(Number(targetPort), host);
    const pair = [client, upstream];
    open.add(pair);
    const drop = () => { client.destroy(); upstream.destroy(); open.delete(pair); };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((ok, fail) => { server.once("error", fail); server.listen(0, "127.0.0.1", ok); });
  const link = {
    port: server.address().port,
    get cut() { return cut; },
    cutOff() {
      cut = true;
      for (const [a, b] of [...open]) { a.destroy(); b.destroy(); }
      open.clear();
    },
    restore() { cut = false; },
    close() {
      link.cutOff();
      server.close();
      links.delete(link);
    },
  };
  links.add(link);
  return link;
}

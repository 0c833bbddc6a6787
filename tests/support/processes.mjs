// What the JavaScript tests (tests/browser, client-demo/sdk/test) share to run real
// services: arena-server processes that can be killed and started again on the same port
// and data dir, a PostgreSQL database and a redis-server of the test's own, a TCP link
// that can be cut, and a poll with a deadline. Node built-ins only, so that every test
// package can import it whatever it depends on.
//
// Every process, database, link and temporary directory made here is recorded and
// removed by `cleanUpProcesses()`; a test process that exits without calling it (a
// failure, the runner's timeout, Ctrl-C) still kills its children and drops its databases.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** How long any one awaited event may take (the machine may be busy with builds). */
export const DEADLINE = 15_000;

const children = new Set();
const tempDirs = new Set();
const databases = new Set();
const links = new Set();

/** Kill and remove everything at once, synchronously (an exiting process can wait for nothing). */
function cleanUpNow() {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  for (const link of links) link.close();
  links.clear();
  for (const name of databases) {
    spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
      `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
  }
  databases.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on("exit", cleanUpNow);
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
  process.once(signal, () => { cleanUpNow(); process.exit(128 + number); });
}

/** Kill every process started here, wait for them, then remove the rest. */
export async function cleanUpProcesses() {
  await Promise.all([...children].map((child) => { child.kill("SIGKILL"); return exited(child); }));
  cleanUpNow();
}

/** Record `child` so that cleanUp kills it; it leaves the record when it exits. */
function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

let built = process.env.ARENA_SERVER_BIN || null;
/** The debug arena-server, built if needed (or the binary named by ARENA_SERVER_BIN). */
export function serverBinary() {
  if (!built) {
    const build = spawnSync("cargo", ["build", "-q", "-p", "arena-server"], { cwd: root, stdio: "inherit" });
    assert.equal(build.status, 0, "cargo build failed");
    // Where cargo put it: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
    const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, "target");
    built = join(target, "debug/arena-server");
  }
  return built;
}

/** A TCP port that was free a moment ago. */
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

export function exited(child) {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((ok) => child.once("exit", () => ok()));
}

/** Poll `probe` (maybe async; truthy when done) every 50 ms until the deadline. */
export async function until(probe, what, deadline = DEADLINE) {
  const end = Date.now() + deadline;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting until " + what);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

/**
 * One arena-server process. `args` are its flags except `--listen`, `--data-dir` and
 * `--web-dir` (given here: a fresh data dir; the first start picks a free port, a restart
 * takes the same port and data dir again). `log`, if given, gets every line of stderr;
 * the end of it is kept for the error when the server exits before listening.
 */
export class ArenaProcess {
  constructor(name, args = [], { env = {}, log = null } = {}) {
    this.name = name;
    this.args = args;
    this.env = env;
    this.logSink = log;
    this.dataDir = tempDir(`arena-${name}-`);
    this.port = 0;
    this.base = null;
    this.child = null;
    this.stderrTail = "";
  }

  async start() {
    assert.equal(this.child, null, `${this.name} already runs`);
    const args = ["--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir,
      "--web-dir", join(root, "client-demo/web"), ...this.args];
    this.logSink?.write(`--- start ${new Date().toISOString()}: ${args.join(" ")}\n`);
    const child = track(spawn(serverBinary(), args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ARENA_LOG: process.env.ARENA_LOG || "info", ...this.env },
    }));
    this.child = child;
    child.stderr.on("data", (chunk) => {
      this.logSink?.write(chunk);
      this.stderrTail = (this.stderrTail + chunk).slice(-4000);
    });
    child.once("exit", (code, signal) => {
      this.logSink?.write(`--- exited ${new Date().toISOString()}: ${signal || code}\n`);
      if (this.child === child) this.child = null;
    });
    this.base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`${this.name} did not start:\n${this.stderrTail.trim()}`)), 60_000);
      let out = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const m = out.match(/listening on (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); ok(m[1]); }
      });
      // The real cause (a taken port, a bad flag, an unreachable database) belongs in the
      // test's output.
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`${this.name} exited with ${signal || code} before listening:\n${this.stderrTail.trim()}`));
      });
    });
    this.port = Number(new URL(this.base).port);
    return this;
  }

  /** Send `signal` and wait until the process has exited. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    await exited(child);
    this.child = null;
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  /** A plain HTTP call: the status and the parsed body. */
  async call(method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }
}

// ---------- PostgreSQL, Redis, a link that can be cut ----------

/** Run SQL with psql on the machine's PostgreSQL (127.0.0.1:5432, trust auth). */
export function psql(database, sql) {
  const r = spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", database,
    "-v", "ON_ERROR_STOP=1", "-tAqc", sql], { encoding: "utf8" });
  assert.equal(r.status, 0, `psql -d ${database} ${sql}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

let dbCount = 0;
/** A fresh database on the machine's PostgreSQL (dropped by cleanUp); its name. */
export function createDatabase(prefix = "arena_js") {
  const name = `${prefix}_${process.pid}_${++dbCount}`;
  psql("test", `CREATE DATABASE ${name}`);
  databases.add(name);
  return name;
}

/** The URL of database `name`, through `port` (a link's) or PostgreSQL's own. */
export const databaseUrl = (name, port = 5432) => `postgres://postgres@127.0.0.1:${port}/${name}`;

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
      child = track(spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no"], { stdio: "ignore" }));
      await until(() => redisPing(port), "redis-server answers PING");
    },
  };
  await redis.start();
  return redis;
}

/**
 * A TCP forwarder from a free local port to `target` (host:port). `cutOff()` drops every
 * connection at once and refuses new ones (closed as soon as accepted: the far side looks
 * gone, without waiting for TCP timeouts); `restore()` forwards again. Closed by cleanUp.
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

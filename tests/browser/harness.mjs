// What the browser tests share: arena-server processes that can be killed and started
// again on the same port (with the same data dir), a Redis and a PostgreSQL database of
// the test's own, headless Chromium, and a few page helpers.
//
// Every process, database and temporary directory made here is recorded and removed by
// `cleanUp()` (call it from `after`); a test process that exits without calling it still
// kills its children.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const artifacts = join(root, "artifacts");
export const logs = join(artifacts, "logs");
export const ADMIN = ["admin", "admin-password-1"];
/** How long any one awaited event may take (the machine may be busy with builds). */
export const DEADLINE = 15_000;

const children = new Set();
const tempDirs = new Set();
const databases = new Set();
// A run cut short (a timeout, Ctrl-C) still leaves nothing behind.
function cleanUpNow() {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  dropDatabases();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on("exit", cleanUpNow);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => { cleanUpNow(); process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1)); });
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

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
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

function waitExit(child) {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((ok) => child.once("exit", () => ok()));
}

/**
 * One arena-server process. `args` are its flags except `--listen` and `--data-dir`
 * (given here: a fresh data dir; the first start picks a free port, a restart takes
 * the same port and data dir again). Its stderr goes to artifacts/logs/<name>.log.
 */
export class ArenaServer {
  constructor(name, args, { env = {} } = {}) {
    this.name = name;
    this.args = args;
    this.env = env;
    this.dataDir = tempDir(`arena-browser-${name}-`);
    this.port = 0;
    this.base = null;
    this.child = null;
    mkdirSync(logs, { recursive: true });
    this.log = createWriteStream(join(logs, `${name}.log`), { flags: "w" });
  }

  async start() {
    assert.equal(this.child, null, `${this.name} already runs`);
    const args = ["--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir,
      "--web-dir", join(root, "client-demo/web"), ...this.args];
    this.log.write(`--- start ${new Date().toISOString()}: ${args.join(" ")}\n`);
    const child = spawn(serverBinary(), args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ARENA_LOG: process.env.ARENA_LOG || "info", ...this.env },
    });
    children.add(child);
    this.child = child;
    // The end of stderr, for the error when it exits before listening: the real cause
    // (a taken port, a bad flag, an unreachable database) belongs in the test's output.
    let stderrTail = "";
    child.stderr.on("data", (chunk) => {
      this.log.write(chunk);
      stderrTail = (stderrTail + chunk).slice(-2000);
    });
    child.once("exit", (code, signal) => {
      children.delete(child);
      this.log.write(`--- exited ${new Date().toISOString()}: ${signal || code}\n`);
      if (this.child === child) this.child = null;
    });
    this.base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`${this.name} did not start (see ${logs})`)), 60_000);
      let out = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const m = out.match(/listening on (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); ok(m[1]); }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`${this.name} exited with ${signal || code} before listening (log in ${logs}):\n${stderrTail.trim()}`));
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
    await waitExit(child);
    this.child = null;
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  /** GET/POST on this server; the parsed body (and status). */
  async call(method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(this.base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  async register(username, password = username + "-password") {
    const r = await this.call("POST", "/auth/register", { body: { username, password } });
    assert.equal(r.status, 201, `register ${username}: ${JSON.stringify(r.body)}`);
  }

  async token(username, password = username + "-password") {
    const r = await this.call("POST", "/auth/login", { body: { username, password } });
    assert.equal(r.status, 200, `login ${username}: ${JSON.stringify(r.body)}`);
    return r.body.access_token;
  }
}

// ---------- PostgreSQL and Redis ----------

/** Run SQL with psql on the machine's PostgreSQL (127.0.0.1:5432, trust auth). */
export function psql(database, sql) {
  const r = spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", database,
    "-v", "ON_ERROR_STOP=1", "-tAqc", sql], { encoding: "utf8" });
  assert.equal(r.status, 0, `psql -d ${database} ${sql}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

let dbCount = 0;
/** A fresh database (dropped by cleanUp); its name. */
export function createDatabase() {
  const name = `arena_browser_${process.pid}_${++dbCount}`;
  psql("test", `CREATE DATABASE ${name}`);
  databases.add(name);
  return name;
}

export const databaseUrl = (name) => `postgres://postgres@127.0.0.1:5432/${name}`;

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

/** A redis-server of the test's own on a free port (killed by cleanUp); it can be
 * SIGKILLed and started again on the same port (empty: it keeps nothing). */
export async function startRedis() {
  const port = await freePort();
  let child = null;
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (!child) return;
      child.kill("SIGKILL");
      await waitExit(child);
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

/** Poll `probe` (async, truthy when done) every 50 ms until DEADLINE. */
export async function until(probe, what, deadline = DEADLINE) {
  const end = Date.now() + deadline;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting until " + what);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

// ---------- the browser ----------

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Every URL any page requested: the tests check that no token ever rode in one. */
export const pageUrls = [];

/** What the pages' Content-Security-Policy refused: the pages must need nothing it forbids. */
export const cspViolations = [];

export async function newPage(browser, context) {
  const page = await (context || await browser.newContext()).newPage();
  page.on("request", (req) => pageUrls.push(req.url()));
  page.on("pageerror", (err) => console.error("page error:", err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) {
      cspViolations.push(page.url() + ": " + msg.text());
    }
  });
  return page;
}

export function assertNoTokenInUrls() {
  for (const url of pageUrls) {
    assert.ok(!/eyJ[\w-]+\.[\w-]+\./.test(url) && !/token=/i.test(url), "token in URL: " + url);
  }
  assert.deepEqual(cspViolations, [], "the Content-Security-Policy refused something a page needs");
}

/** Open `base` and log in as `name`; returns once the lobby is up and the socket welcomed. */
export async function logIn(page, base, name, password = name + "-password") {
  await page.goto(base + "/");
  await page.fill("#username", name);
  await page.fill("#password", password);
  await page.click("#login-button");
  await page.waitForSelector("#lobby-view:not([hidden])", { timeout: DEADLINE });
  await page.waitForFunction(() => window.arena.snapshot().connected, null, { timeout: DEADLINE });
}

/** Create a room from the lobby form; the page ends in the game view. The room id. */
export async function createRoom(page, name) {
  await page.fill("#room-name", name);
  await page.click("#create-room button[type=submit]");
  await page.waitForSelector("#game-view:not([hidden])", { timeout: DEADLINE });
  return (await snapshot(page)).room;
}

/** Join room `id` from the lobby (its row appears within the lobby's refresh). */
export async function joinFromLobby(page, id) {
  await page.click(`#rooms li[data-room='${id}'] button`, { timeout: DEADLINE });
  await page.waitForFunction((room) => {
    const s = window.arena.snapshot();
    return s.view === "game" && s.room === room;
  }, id, { timeout: DEADLINE });
}

export const snapshot = (page) => page.evaluate(() => window.arena.snapshot());
export const playerOf = (snap, name) => snap.players.find((p) => p.username === name);

/** Wait until `page` shows `name` at a position, and return it. */
export async function positionOf(page, name) {
  const handle = await page.waitForFunction(
    (n) => window.arena.snapshot().players.find((p) => p.username === n) || null,
    name, { timeout: DEADLINE });
  return handle.jsonValue();
}

/**
 * Hold an arrow key on `mover` until `watcher` shows `name` moved by more than `by`
 * along `axis`, towards the middle of the arena (so no wall is in the way); then let go.
 * Proof that input reaches the room and its state reaches the watcher.
 */
export async function seesMove(mover, watcher, name, { axis = "x", by = 60 } = {}) {
  const start = (await positionOf(watcher, name))[axis];
  const sign = start < (axis === "x" ? 480 : 270) ? 1 : -1;
  const key = axis === "x" ? (sign > 0 ? "ArrowRight" : "ArrowLeft") : (sign > 0 ? "ArrowDown" : "ArrowUp");
  await mover.evaluate(() => document.activeElement?.blur()); // keys typed into the chat do not move
  await mover.keyboard.down(key);
  try {
    await watcher.waitForFunction(({ n, axis, start, sign, by }) => {
      const p = window.arena.snapshot().players.find((q) => q.username === n);
      return !!p && (p[axis] - start) * sign > by;
    }, { n: name, axis, start, sign, by }, { timeout: DEADLINE });
  } finally {
    await mover.keyboard.up(key);
  }
}

/** Text of the page's chat log (system lines included). */
export const chatText = (page) => page.textContent("#chat-log");

export async function cleanUp(...browsers) {
  for (const b of browsers) await b?.close().catch(() => {});
  await Promise.all([...children].map((child) => { child.kill("SIGKILL"); return waitExit(child); }));
  cleanUpNow();
}

function dropDatabases() {
  for (const name of databases) {
    spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
      `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
  }
  databases.clear();
}

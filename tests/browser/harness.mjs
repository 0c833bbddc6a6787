// What the browser tests share: arena-server processes that can be killed and started
// again on the same port (with the same data dir), a Redis and a PostgreSQL database of
// the test's own (all three from tests/support/processes.mjs, which the SDK's tests use
// too), headless Chromium, and a few page helpers.
//
// Every process, database and temporary directory is recorded and removed by
// `cleanUp()` (call it from `after`); a test process that exits without calling it still
// kills its children.

import assert from "node:assert/strict";
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ArenaProcess, DEADLINE, cleanUpProcesses, createDatabase as createDb, root } from "../support/processes.mjs";

export {
  DEADLINE, root, serverBinary, tempDir, freePort, until, psql, databaseUrl, startRedis, startLink,
} from "../support/processes.mjs";
export const artifacts = join(root, "artifacts");
export const logs = join(artifacts, "logs");
export const ADMIN = ["admin", "admin-password-1"];

/**
 * One arena-server process (tests/support/processes.mjs) whose stderr goes to
 * artifacts/logs/<name>.log, with the calls the tests make of it.
 */
export class ArenaServer extends ArenaProcess {
  constructor(name, args, { env = {} } = {}) {
    mkdirSync(logs, { recursive: true });
    super(name, args, { env, log: createWriteStream(join(logs, `${name}.log`), { flags: "w" }) });
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

/** A fresh database (dropped by cleanUp); its name. */
export const createDatabase = () => createDb("arena_browser");

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
  await cleanUpProcesses();
}

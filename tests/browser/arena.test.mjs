// Arena in a real browser: headless Chromium (Debian's package) driven by playwright-core,
// against a real arena-server. Two players see each other move and chat; a logout on one
// page closes the other page of the same session; an admin kicks a player from the
// console. Screenshots land in artifacts/ at the repository root.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const artifacts = join(root, "artifacts");
const ADMIN = ["admin", "admin-password-1"];
const DEADLINE = 15_000;

let server, base, dataDir, browser;
const pageUrls = [];

function serverBinary() {
  const bin = join(root, "target/debug/arena-server");
  const build = spawnSync("cargo", ["build", "-q", "-p", "arena-server"], { cwd: root, stdio: "inherit" });
  assert.equal(build.status, 0, "cargo build failed");
  return bin;
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), "arena-browser-"));
  server = spawn(serverBinary(), [
    "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--auth-rate-limit", "0",
    "--admin-username", ADMIN[0], "--admin-password", ADMIN[1],
  ], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ARENA_LOG: "warn" } });
  base = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("server did not start")), 30_000);
    let out = "";
    server.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    server.on("exit", (code) => fail(new Error("server exited with " + code)));
  });
  for (const name of ["alice", "bob", "carol"]) {
    const r = await fetch(base + "/auth/register", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: name, password: name + "-password" }),
    });
    assert.equal(r.status, 201);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
  // No page ever put a token in a URL (where logs and history would keep it).
  for (const url of pageUrls) {
    assert.ok(!/eyJ[\w-]+\.[\w-]+\./.test(url) && !/token=/i.test(url), "token in URL: " + url);
  }
});

async function newPage(context) {
  const page = await context.newPage();
  page.on("request", (req) => pageUrls.push(req.url()));
  page.on("pageerror", (err) => console.error("page error:", err.message));
  return page;
}

async function logIn(page, name, password = name + "-password") {
  await page.goto(base + "/");
  await page.fill("#username", name);
  await page.fill("#password", password);
  await page.click("#login-button");
  await page.waitForSelector("#lobby-view:not([hidden])", { timeout: DEADLINE });
  await page.waitForFunction(() => window.arena.snapshot().connected, null, { timeout: DEADLINE });
}

async function joinMainHall(page) {
  await page.click("#rooms li:has-text('Main Hall') button");
  await page.waitForSelector("#game-view:not([hidden])", { timeout: DEADLINE });
}

const snapshot = (page) => page.evaluate(() => window.arena.snapshot());
const xOf = (snap, name) => snap.players.find((p) => p.username === name)?.x;

let alicePage, bobPage;

test("two players in two browsers see each other move and chat", async () => {
  alicePage = await newPage(await browser.newContext());
  bobPage = await newPage(await browser.newContext());
  await logIn(alicePage, "alice");
  await logIn(bobPage, "bob");
  await joinMainHall(alicePage);
  await joinMainHall(bobPage);
  await bobPage.waitForFunction(() => window.arena.snapshot().players.length === 2, null, { timeout: DEADLINE });

  const start = xOf(await snapshot(bobPage), "alice");
  await alicePage.keyboard.down("ArrowRight");
  // Bob's page shows alice moving right.
  await bobPage.waitForFunction(
    (x0) => window.arena.snapshot().players.find((p) => p.username === "alice").x > Math.min(x0 + 80, 955),
    start, { timeout: DEADLINE });
  await alicePage.keyboard.up("ArrowRight");
  const bobY = (await snapshot(alicePage)).players.find((p) => p.username === "bob").y;
  await bobPage.keyboard.down("KeyS");
  await alicePage.waitForFunction(
    (y0) => window.arena.snapshot().players.find((p) => p.username === "bob").y > Math.min(y0 + 60, 535),
    bobY, { timeout: DEADLINE });
  await bobPage.keyboard.up("KeyS");
  assert.deepEqual((await snapshot(bobPage)).members.sort(), ["alice", "bob"]);

  await alicePage.fill("#chat-input", "hello from alice");
  await alicePage.press("#chat-input", "Enter");
  await bobPage.waitForSelector("#chat-log li:has-text('hello from alice')", { timeout: DEADLINE });
  await bobPage.screenshot({ path: join(artifacts, "game-two-players.png") });
});

test("an admin kicks a player from the console and the player is told why", async () => {
  const adminPage = await newPage(await browser.newContext());
  await adminPage.goto(base + "/admin/");
  await adminPage.fill("#username", ADMIN[0]);
  await adminPage.fill("#password", ADMIN[1]);
  await adminPage.click("#login-form button[type=submit]");
  await adminPage.waitForSelector("tr[data-username='bob']", { timeout: DEADLINE });
  await adminPage.waitForSelector("tr[data-username='alice']", { timeout: DEADLINE });
  await adminPage.screenshot({ path: join(artifacts, "admin-console.png") });

  await adminPage.fill("#reason", "spamming the chat");
  await adminPage.click("tr[data-username='bob'] button.kick");
  await bobPage.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  const notice = await bobPage.textContent("#notice");
  assert.equal(notice, "An admin removed you: spamming the chat");
  await adminPage.waitForSelector("#notice:has-text('Kicked bob')", { timeout: DEADLINE });
  // Alice plays on.
  assert.equal((await snapshot(alicePage)).connected, true);
});

test("a player is refused by the admin console", async () => {
  const page = await newPage(await browser.newContext());
  await page.goto(base + "/admin/");
  await page.fill("#username", "carol");
  await page.fill("#password", "carol-password");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#login-error:has-text('admins only')", { timeout: DEADLINE });
  assert.equal(await page.isHidden("#console-view"), true);
});

test("logging out on one page returns the other page of the session to the login screen", async () => {
  const context = await browser.newContext();
  const first = await newPage(context);
  await logIn(first, "carol");
  // The second page resumes the same session from the stored refresh token.
  const second = await newPage(context);
  await second.goto(base + "/");
  await second.waitForFunction(() => window.arena.snapshot().connected, null, { timeout: DEADLINE });
  await joinMainHall(second);

  await first.click("#logout");
  await first.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  await second.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  assert.equal(await second.textContent("#notice"), "You were logged out.");
  assert.equal((await snapshot(second)).connected, false);
});

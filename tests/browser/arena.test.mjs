// Arena in a real browser: headless Chromium (Debian's package) driven by playwright-core,
// against a real arena-server. Two players see each other move, chat and play a round; a
// logout on one page closes the other page of the same session; an admin kicks a player
// from the console, bans and unbans one from their user page, ends one session of a
// player, and reads the overview. Screenshots land in artifacts/ at the repository root, the server's log in
// artifacts/logs/.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const { artifacts, ADMIN, DEADLINE } = h;

let server, base, browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  server = await new h.ArenaServer("arena", [
    "--auth-rate-limit", "0", "--admin-username", ADMIN[0], "--admin-password", ADMIN[1],
    // Short rounds, so a test sees one end.
    "--round-secs", "8", "--round-pause-secs", "3",
  ]).start();
  base = server.base;
  for (const name of ["alice", "bob", "carol"]) await server.register(name);
  browser = await h.launchBrowser();
});

after(async () => {
  await h.cleanUp(browser);
  // No page ever put a token in a URL (where logs and history would keep it).
  h.assertNoTokenInUrls();
});

const newPage = (context) => h.newPage(browser, context);

const logIn = (page, name, password) => h.logIn(page, base, name, password);

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
    (x0) => window.arena.snapshot().players.find((p) => p.username === "alice").x > Math.min(x0 + 80, 940),
    start, { timeout: DEADLINE });
  await alicePage.keyboard.up("ArrowRight");
  const bobY = (await snapshot(alicePage)).players.find((p) => p.username === "bob").y;
  await bobPage.keyboard.down("KeyS");
  await alicePage.waitForFunction(
    (y0) => window.arena.snapshot().players.find((p) => p.username === "bob").y > Math.min(y0 + 60, 520),
    bobY, { timeout: DEADLINE });
  await bobPage.keyboard.up("KeyS");
  assert.deepEqual((await snapshot(bobPage)).members.sort(), ["alice", "bob"]);

  await alicePage.fill("#chat-input", "hello from alice");
  await alicePage.press("#chat-input", "Enter");
  await bobPage.waitForSelector("#chat-log li:has-text('hello from alice')", { timeout: DEADLINE });
  await bobPage.screenshot({ path: join(artifacts, "game-two-players.png") });
});

test("both players see the orbs, the same scores, and the same winner when the round ends", async () => {
  for (const page of [alicePage, bobPage]) {
    await page.waitForFunction(() => {
      const s = window.arena.snapshot();
      return s.orbs > 0 && s.round && s.round.phase === "playing";
    }, null, { timeout: DEADLINE });
  }
  // Alice runs to the nearest orb, over and over, until she has scored.
  await alicePage.evaluate(() => {
    window.__steer = setInterval(() => window.arena.steerToNearestOrb(), 100);
  });
  await alicePage.waitForFunction(() => (window.arena.snapshot().scores.alice || 0) > 0, null, { timeout: DEADLINE });
  await alicePage.screenshot({ path: join(artifacts, "game-mid-round.png") });
  await alicePage.evaluate(() => { clearInterval(window.__steer); window.arena.steer(0, 0); });
  // The round ends (8 s rounds): both pages show the same banner and scores.
  const banners = [];
  for (const page of [alicePage, bobPage]) {
    await page.waitForFunction(() => !!window.arena.snapshot().banner, null, { timeout: 20_000 });
    banners.push((await snapshot(page)).banner);
  }
  assert.equal(banners[0], banners[1]);
  const [a, b] = [await snapshot(alicePage), await snapshot(bobPage)];
  assert.deepEqual(a.scores, b.scores);
  assert.ok(a.scores.alice > 0, JSON.stringify(a.scores));
  // Bob never moved, but an orb may appear on him: the banner names the top scorers.
  const top = Math.max(...Object.values(a.scores));
  const best = Object.keys(a.scores).filter((name) => a.scores[name] === top);
  if (best.length === 1) assert.equal(banners[0].replace(/round \d+/, "round N"), `${best[0]} wins round N with ${top}!`);
  else for (const name of best) assert.match(banners[0], new RegExp(`^Round \\d+: a tie between .*\\b${name}\\b.* \\(${top} each\\)$`));
  await bobPage.screenshot({ path: join(artifacts, "game-round-winner.png") });
  // The next round starts from zero.
  await bobPage.waitForFunction(() => {
    const s = window.arena.snapshot();
    return !s.banner && s.round.phase === "playing" && !(s.scores.alice > 0);
  }, null, { timeout: 20_000 });
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

/** An admin console page, logged in, on a tall screen. */
async function adminConsole() {
  const adminPage = await newPage(await browser.newContext());
  await adminPage.setViewportSize({ width: 1280, height: 1400 });
  await adminPage.goto(base + "/admin/");
  await adminPage.fill("#username", ADMIN[0]);
  await adminPage.fill("#password", ADMIN[1]);
  await adminPage.click("#login-form button[type=submit]");
  await adminPage.waitForSelector("#players-view:not([hidden])", { timeout: DEADLINE });
  return adminPage;
}

test("an admin bans a player who is playing: the page says until when and why, and stays out", async () => {
  await server.register("gina");
  const gina = await newPage(await browser.newContext());
  await logIn(gina, "gina");
  await joinMainHall(gina);
  const adminPage = await adminConsole();
  await adminPage.fill("#reason", "griefing");
  await adminPage.fill("#duration", "600");
  await adminPage.click("#connections tr[data-username='gina'] button.ban", { timeout: DEADLINE });
  await gina.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  const notice = await gina.textContent("#notice");
  assert.match(notice, /^An admin banned you until .+: griefing$/);
  assert.doesNotMatch(notice, /\d{13}/, "a date, not epoch milliseconds");
  assert.equal((await snapshot(gina)).connected, false);
  await gina.screenshot({ path: join(artifacts, "banned-while-playing.png") });
  // A reload does not get back in: the stored session is gone.
  await gina.reload();
  await gina.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  assert.equal(await gina.evaluate(() => localStorage.getItem("arena.refresh_token")), null);
});

test("an admin finds an offline player, bans them from the user page, sees it in the bans and the audit log, and unbans", async () => {
  await server.register("dave");
  const adminPage = await adminConsole();

  // Dave never connected: only the search finds him.
  await adminPage.fill("#user-query", "DA");
  await adminPage.click("#search-form button[type=submit]");
  const row = "#users tr[data-username='dave']";
  await adminPage.waitForSelector(row, { timeout: DEADLINE });
  assert.equal(await adminPage.textContent(row + " .status"), "offline");
  assert.equal(await adminPage.textContent(row + " .ban-state"), "—");

  // His page: no session, no socket, no history yet.
  await adminPage.click(row + " a.user-link");
  const userPage = "#user-view[data-username='dave']";
  await adminPage.waitForSelector(userPage + ":not([hidden])", { timeout: DEADLINE });
  assert.match(await adminPage.textContent("#u-facts"), /player · joined .* · offline$/);
  assert.equal(await adminPage.isVisible("#u-sessions-empty"), true);
  assert.equal(await adminPage.isVisible("#u-history-empty"), true);

  await adminPage.fill("#reason", "cheating");
  await adminPage.fill("#duration", "3600");
  await adminPage.click("#u-ban-button");
  await adminPage.waitForSelector("#u-unban:not([hidden])", { timeout: DEADLINE });
  const state = await adminPage.textContent("#u-ban");
  assert.match(state, /^banned until .+ \((59 min|1 h) left\), by admin: cheating$/);
  assert.doesNotMatch(state, /\d{13}/, "a date, not epoch milliseconds");
  await adminPage.waitForSelector("#u-history tr[data-action='ban']", { timeout: DEADLINE });
  assert.match(await adminPage.textContent("#u-history tr[data-action='ban']"), /admin.*banned, until .*cheating/);
  assert.match(await adminPage.textContent(row + " .ban-state"), /^banned until /);
  // The bans list and the audit log show it, with who, why and until when.
  const banRow = "#bans tr[data-username='dave']";
  await adminPage.waitForSelector(banRow, { timeout: DEADLINE });
  const banText = await adminPage.textContent(banRow);
  assert.match(banText, /cheating/);
  assert.match(banText, new RegExp(ADMIN[0]));
  assert.doesNotMatch(banText, /\d{13}/);
  const auditBan = "#audit tr[data-action='ban'][data-target='dave']";
  await adminPage.waitForSelector(auditBan, { timeout: DEADLINE });
  assert.match(await adminPage.textContent(auditBan), /banned, until .*cheating/);
  await adminPage.locator("#user-view").screenshot({ path: join(artifacts, "admin-user-page.png") });
  await adminPage.screenshot({ path: join(artifacts, "admin-bans-and-audit.png"), fullPage: true });

  // Dave cannot log in, and the page says it is a ban and until when.
  const davePage = await newPage(await browser.newContext());
  await davePage.goto(base + "/");
  await davePage.fill("#username", "dave");
  await davePage.fill("#password", "dave-password");
  await davePage.click("#login-button");
  await davePage.waitForSelector("#login-error:has-text('banned until')", { timeout: DEADLINE });
  const refused = await davePage.textContent("#login-error");
  assert.match(refused, /^This account is banned until .+\.$/);
  assert.doesNotMatch(refused, /\d{13}/, "a date, not epoch milliseconds");
  // The login screen shows no header of a session (the rough edge where `display: flex`
  // beat the `hidden` attribute).
  assert.equal(await davePage.isVisible("#who"), false, "the header's Log out shows on the login screen");
  await davePage.screenshot({ path: join(artifacts, "banned-login.png") });

  // Lifted from the bans list; his page follows.
  await adminPage.click(banRow + " button.unban");
  await adminPage.waitForSelector("#notice:has-text('Lifted the ban on dave')", { timeout: DEADLINE });
  await adminPage.waitForSelector(banRow, { state: "detached", timeout: DEADLINE });
  await adminPage.waitForSelector("#audit tr[data-action='unban'][data-target='dave']", { timeout: DEADLINE });
  await adminPage.waitForSelector(row + " button.ban", { timeout: DEADLINE });
  await adminPage.waitForSelector("#u-history tr[data-action='unban']", { timeout: DEADLINE });
  assert.equal(await adminPage.isVisible("#u-ban-button"), true);
  // And he can play again.
  await logIn(davePage, "dave");
});

test("an admin ends one of a player's sessions from the user page: that page is logged out, the other plays on", async () => {
  await server.register("erin");
  const phone = await newPage(await browser.newContext());
  const laptop = await newPage(await browser.newContext());
  await logIn(phone, "erin");
  await logIn(laptop, "erin");
  await joinMainHall(laptop);
  const adminPage = await adminConsole();
  // Erin's sockets are live connections: her name opens her page.
  await adminPage.click("#connections tr[data-username='erin'] a.user-link", { timeout: DEADLINE });
  await adminPage.waitForFunction(() => document.querySelectorAll("#u-sessions tr").length === 2, null, { timeout: DEADLINE });
  await adminPage.waitForSelector("#u-sockets td.room:has-text('Main Hall')", { timeout: DEADLINE });
  assert.doesNotMatch(await adminPage.textContent("#u-sockets"), /\d{13}/);
  await adminPage.locator("#user-view").screenshot({ path: join(artifacts, "admin-user-sessions.png") });

  // The phone's session is the older one (logged in first): the first row.
  await adminPage.click("#u-sessions tr:first-child button.end-session");
  await phone.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  assert.equal(await phone.textContent("#notice"), "You were logged out.");
  await adminPage.waitForFunction(() => document.querySelectorAll("#u-sessions tr").length === 1, null, { timeout: DEADLINE });
  await adminPage.waitForSelector("#u-history tr[data-action='end_session']", { timeout: DEADLINE });
  assert.equal((await snapshot(laptop)).connected, true, "the other session plays on");
  assert.equal((await snapshot(laptop)).view, "game");
});

test("the overview counts sockets, rooms, players and nodes, and charts logins and revocations", async () => {
  const adminPage = await adminConsole();
  await adminPage.waitForFunction(() => Number(document.getElementById("ov-nodes").textContent) === 1, null, { timeout: DEADLINE });
  // Earlier tests logged in, kicked, banned and ended sessions: the charts have bars.
  assert.ok(Number(await adminPage.textContent("#ov-sockets")) >= 1);
  assert.ok(Number(await adminPage.textContent("#ov-players")) >= 1, "a page is still in Main Hall");
  assert.match(await adminPage.textContent("#ov-logins"), /^[1-9]\d* in all$/);
  assert.match(await adminPage.textContent("#ov-revocations"), /^[1-9]\d* in all$/);
  for (const id of ["chart-sockets", "chart-logins", "chart-revocations"]) {
    const painted = await adminPage.evaluate((id) => {
      const c = document.getElementById(id);
      const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
      return n;
    }, id);
    assert.ok(painted > 50, `${id} is drawn (${painted} pixels)`);
  }
  assert.equal(await adminPage.locator("#nodes tr").count(), 1);
  assert.match(await adminPage.textContent("#nodes tr"), /up to date/);
  // A few polls, so the sockets line has points.
  await adminPage.waitForFunction(() => /\(\d+ s\)/.test(document.getElementById("ov-sockets-range").textContent)
    && !/\(0 s\)/.test(document.getElementById("ov-sockets-range").textContent), null, { timeout: DEADLINE });
  await adminPage.locator("#overview-view").screenshot({ path: join(artifacts, "admin-overview.png") });
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

// The browser game across a restart of its only server, and the ways a page leaves a
// room without asking: the server restarts (SQLite in the data dir: the page comes back
// into the same room, and so does a reload of the tab), a second tab of the same player takes the seat (the first tab
// says why it is in the lobby), Leave while the server is away, and a room that no longer
// exists when the page comes back (PostgreSQL, the room's record deleted while the server
// was down). Screenshots land in artifacts/ at the repository root, server logs in
// artifacts/logs/.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const { DEADLINE } = h;
const FLAGS = ["--auth-rate-limit", "0", "--refresh-rate-limit", "0"];
let server, browser, context, page, roomId;

before(async () => {
  mkdirSync(h.artifacts, { recursive: true });
  h.serverBinary();
  server = await new h.ArenaServer("single", FLAGS).start();
  await server.register("erin");
  browser = await h.launchBrowser();
});

after(async () => {
  await h.cleanUp(browser);
  h.assertNoTokenInUrls();
});

const waitFor = (p, fn, arg, timeout = DEADLINE) => p.waitForFunction(fn, arg, { timeout });
const lostConnection = () => {
  const s = window.arena.snapshot();
  return !s.connected && s.notice.startsWith("Connection lost");
};

test("a restart of the only server: the page comes back into the same room", async () => {
  context = await browser.newContext();
  page = await h.newPage(browser, context);
  await h.logIn(page, server.base, "erin");
  roomId = await h.createRoom(page, "Survives restarts");
  await h.seesMove(page, page, "erin");

  await server.stop("SIGTERM"); // a clean stop: the socket is closed with 1001
  await waitFor(page, lostConnection);
  assert.equal((await h.snapshot(page)).view, "game", "the page waits on the game view");

  await server.start(); // same port, same data dir: the room's record is still there
  await waitFor(page, (room) => {
    const s = window.arena.snapshot();
    return (s.view === "game" && s.room === room && s.connected && s.rejoined >= 1 && !s.joining)
      || (s.view === "lobby" && s.notice !== "");
  }, roomId, 30_000);
  const s = await h.snapshot(page);
  assert.equal(s.view, "game", "back in the room, not in the lobby: " + s.notice);
  assert.equal(s.roomName, "Survives restarts");
  assert.equal(s.notice, "");
  assert.match(await h.chatText(page), /Connection lost\. Reconnecting….*Reconnected: you are back in the room\./);
  await h.seesMove(page, page, "erin", { axis: "y" });
  await page.screenshot({ path: join(h.artifacts, "restart-rejoined.png") });

  // A reload of the tab comes back into the room too (the tab remembers it).
  await page.reload();
  await waitFor(page, (room) => {
    const s = window.arena.snapshot();
    return s.view === "game" && s.room === room && s.connected && !s.joining;
  }, roomId);
  await h.seesMove(page, page, "erin");
});

test("the same player opens the room in a second tab: the first tab says why it left", async () => {
  assert.ok(roomId, "the previous test made the room");
  // The second tab resumes the same session (the refresh token is shared) and joins.
  const second = await h.newPage(browser, context);
  await second.goto(server.base + "/");
  await waitFor(second, () => window.arena.snapshot().connected);
  await second.waitForSelector(`#rooms li[data-room='${roomId}']`, { timeout: DEADLINE });
  await h.joinFromLobby(second, roomId);

  await waitFor(page, () => window.arena.snapshot().view === "lobby");
  const s = await h.snapshot(page);
  assert.equal(s.notice, "You joined “Survives restarts” from another tab or device, so this page left it.");
  assert.deepEqual(s.lastLeft, { room: roomId, reason: "replaced" });
  assert.equal(await page.isVisible("#notice"), true);
  // The second tab has the seat and plays (its inputs count on from the seat's
  // last_seq, which the first tab's inputs had set).
  await h.seesMove(second, second, "erin");
  await page.screenshot({ path: join(h.artifacts, "replaced-by-another-tab.png") });

  // Leave in the second tab works while the server is away too: straight to the lobby.
  await server.stop("SIGKILL");
  await waitFor(second, lostConnection);
  await second.click("#leave");
  await waitFor(second, () => window.arena.snapshot().view === "lobby");
  assert.equal((await h.snapshot(second)).room, null);
  await server.start();
  // Back online, it stays in the lobby (no rejoin of the room it left) and says nothing.
  await waitFor(second, () => {
    const s = window.arena.snapshot();
    return s.connected && s.notice === "";
  });
  const after = await h.snapshot(second);
  assert.equal(after.view, "lobby");
  assert.equal(after.wantRoom, null);
  await second.close();
});

test("a room that no longer exists when the page comes back: the lobby says so", async () => {
  // PostgreSQL this time: the test can delete the room's record while the server is down.
  const db = h.createDatabase();
  const pg = await new h.ArenaServer("single-pg", [...FLAGS, "--database-url", h.databaseUrl(db)]).start();
  await pg.register("frank");
  const p = await h.newPage(browser);
  await h.logIn(p, pg.base, "frank");
  const id = await h.createRoom(p, "Gone soon");

  await pg.stop("SIGKILL");
  await waitFor(p, lostConnection);
  h.psql(db, `DELETE FROM rooms WHERE id = '${id}'; UPDATE room_count SET n = n - 1`);
  await pg.start();

  await waitFor(p, () => {
    const s = window.arena.snapshot();
    return s.view === "lobby" && s.notice !== "";
  }, null, 30_000);
  const s = await h.snapshot(p);
  assert.equal(s.notice, "You are back online, but the room “Gone soon” no longer exists.");
  assert.equal(s.connected, true);
  assert.equal(await p.isVisible(`#rooms li[data-room='${id}']`), false);
  await p.screenshot({ path: join(h.artifacts, "restart-room-gone.png") });
});

test("Log out while the server is away: the page says it keeps trying, and is logged out once it is back", async () => {
  await server.register("gus");
  const p = await h.newPage(browser);
  await h.logIn(p, server.base, "gus");
  await server.stop("SIGKILL");
  await p.click("#logout");
  // Not recorded yet, so not pretended: the session stands and the page says so.
  await waitFor(p, () => window.arena.snapshot().notice.startsWith("Logging out: the server did not answer"));
  const waiting = await h.snapshot(p);
  assert.equal(waiting.view, "lobby");
  assert.equal(waiting.connected, false);
  await server.start();
  await p.waitForSelector("#login-view:not([hidden])", { timeout: 30_000 });
  assert.equal(await p.textContent("#notice"), "You logged out.");
  // The server recorded it: the refresh token is dead, not just forgotten by the page.
  assert.equal(await p.evaluate(() => localStorage.getItem("arena.refresh_token")), null);
  const sessions = await server.call("GET", "/auth/sessions", { token: await server.token("gus") });
  assert.equal(sessions.body.sessions.length, 1, "only the session this check just made");
});

test("Leave and at once Join the same room again: the page ends up in the room", async () => {
  await server.register("hal");
  const p = await h.newPage(browser);
  await h.logIn(p, server.base, "hal");
  const id = await h.createRoom(p, "Back at once");
  // Out and in from the lobby once, so that the lobby's list has the room's row.
  await p.click("#leave");
  await h.joinFromLobby(p, id);
  // Both clicks in one task: the join goes out before the server's `left` for the leave
  // comes back.
  await p.evaluate((room) => {
    document.getElementById("leave").click();
    document.querySelector(`#rooms li[data-room='${room}'] button`).click();
  }, id);
  await waitFor(p, (room) => {
    const s = window.arena.snapshot();
    return s.view === "game" && s.room === room && s.connected && !s.joining;
  }, id);
  // And it stays there: the answer to the leave did not take it back out.
  await h.seesMove(p, p, "hal");
  const s = await h.snapshot(p);
  assert.equal(s.view, "game");
  assert.equal(s.notice, "");
});

test("a page closed for flooding the socket (1008) says so and connects again by itself", async () => {
  const strict = await new h.ArenaServer("single-strict", [...FLAGS, "--ws-rate-limit", "5"]).start();
  await strict.register("ivy");
  const p = await h.newPage(browser);
  await h.logIn(p, strict.base, "ivy");
  const id = await h.createRoom(p, "Too fast");
  await p.evaluate(() => { for (let i = 0; i < 60; i++) window.arena.steer(i % 2 ? 1 : -1, 0); });
  await waitFor(p, () => /^The server closed the connection: .+\. Connecting again in \d+ s…$/.test(window.arena.snapshot().notice));
  // Back in by itself, and in the room again (the SDK still wants it).
  await waitFor(p, (room) => {
    const s = window.arena.snapshot();
    return s.connected && s.view === "game" && s.room === room && !s.joining && s.notice === "";
  }, id, 30_000);
  await strict.stop();
});

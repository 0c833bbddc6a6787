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

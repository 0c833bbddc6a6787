// The browser game on a cluster: two arena-server nodes sharing a fresh PostgreSQL
// database and a Redis of this test's own, each page loaded from (and its socket on) a
// different node. The players play together in one room whichever node runs it. When
// that node is SIGKILLed the other page keeps playing (room_moved), and the page that was
// on the dead node comes back into the room once its node is started again; so does a
// page whose node (not the room's) stops cleanly and starts again. When Redis goes away
// the room cannot be moved and both pages return to the lobby saying so, and a join made
// meanwhile is retried (and says so) until Redis is back. A room whose record is deleted
// and whose node then dies sends both pages to the lobby saying it no longer exists
// (`left` `removed` on the other node, `room_not_found` for the page that comes back).
// Screenshots land in artifacts/ at the repository root, server logs in artifacts/logs/.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const IDS = ["node-a", "node-b"];
const { DEADLINE } = h;
let redis, db, nodes, browser, admin;

before(async () => {
  mkdirSync(h.artifacts, { recursive: true });
  h.serverBinary();
  redis = await h.startRedis();
  db = h.createDatabase();
  // The flags the Rust cluster tests use (tests/src/backplane.rs, cluster_rooms.rs).
  nodes = IDS.map((id) => new h.ArenaServer(id, [
    "--database-url", h.databaseUrl(db), "--redis-url", redis.url, "--node-id", id,
    "--room-lease-ms", "1000", "--auth-rate-limit", "0", "--refresh-rate-limit", "0",
    "--admin-username", h.ADMIN[0], "--admin-password", h.ADMIN[1],
  ]));
  await Promise.all(nodes.map((n) => n.start()));
  admin = await nodes[0].token(...h.ADMIN);
  for (const n of nodes) {
    await h.until(async () => {
      const r = await n.call("GET", "/admin/nodes", { token: admin });
      return r.status === 200 && r.body.nodes.length === nodes.length;
    }, `${n.name} lists every node`);
  }
  await nodes[0].register("alice");
  await nodes[1].register("bob");
  browser = await h.launchBrowser();
});

after(async () => {
  await h.cleanUp(browser);
  h.assertNoTokenInUrls();
});

const pages = {}; // username -> page
let roomId;

const nodeOf = (id) => nodes.find((n) => n.name === id);
const waitFor = (page, fn, arg, timeout = DEADLINE) => page.waitForFunction(fn, arg, { timeout });

test("two players whose pages are served by two different nodes play together", async () => {
  pages.alice = await h.newPage(browser);
  pages.bob = await h.newPage(browser);
  await h.logIn(pages.alice, nodes[0].base, "alice");
  await h.logIn(pages.bob, nodes[1].base, "bob");
  // Each page's socket is on the node that served it (the page learns it from /healthz).
  await waitFor(pages.alice, () => window.arena.snapshot().serverNode === "node-a");
  await waitFor(pages.bob, () => window.arena.snapshot().serverNode === "node-b");

  roomId = await h.createRoom(pages.alice, "Across nodes");
  const a = await h.snapshot(pages.alice);
  assert.ok(IDS.includes(a.roomNode), `the room runs on a node of the cluster: ${a.roomNode}`);

  // Bob's lobby (served by the other node) lists the room, its player and its node.
  const row = `#rooms li[data-room='${roomId}'][data-node='${a.roomNode}']`;
  await pages.bob.waitForSelector(`${row}:has-text('on ${a.roomNode}')`, { timeout: DEADLINE });
  assert.match(await pages.bob.textContent(row), new RegExp(`Across nodes 1/16 · on ${a.roomNode}`));
  await h.joinFromLobby(pages.bob, roomId);
  const b = await h.snapshot(pages.bob);
  assert.equal(b.roomNode, a.roomNode, "both pages name the same node for the room");
  assert.notEqual(a.serverNode, b.serverNode, "the two sockets are on different nodes");
  assert.ok([a.serverNode, b.serverNode].includes(a.roomNode));

  for (const page of [pages.alice, pages.bob]) {
    await waitFor(page, () => window.arena.snapshot().players.length === 2);
  }
  await h.seesMove(pages.alice, pages.bob, "alice", { axis: "x" });
  await h.seesMove(pages.bob, pages.alice, "bob", { axis: "y" });
  assert.deepEqual((await h.snapshot(pages.bob)).members.sort(), ["alice", "bob"]);
  assert.deepEqual((await h.snapshot(pages.alice)).members.sort(), ["alice", "bob"]);

  await pages.alice.fill("#chat-input", "hello from node-a");
  await pages.alice.press("#chat-input", "Enter");
  await pages.bob.waitForSelector("#chat-log li:has-text('hello from node-a')", { timeout: DEADLINE });
  await pages.bob.fill("#chat-input", "hi from node-b");
  await pages.bob.press("#chat-input", "Enter");
  await pages.alice.waitForSelector("#chat-log li:has-text('hi from node-b')", { timeout: DEADLINE });
  // The room's node is shown in the room's panel too.
  assert.match(await pages.bob.textContent("#room-info"), new RegExp(`runs on ${a.roomNode}`));
  await pages.bob.screenshot({ path: join(h.artifacts, "cluster-two-nodes.png") });
});

test("the room's node is killed: the other page plays on, the page on it comes back when it restarts", async () => {
  assert.ok(roomId, "the previous test made the room");
  const roomNode = (await h.snapshot(pages.alice)).roomNode;
  const [victimName, survivorName] = (await h.snapshot(pages.alice)).serverNode === roomNode
    ? ["alice", "bob"] : ["bob", "alice"];
  const victimPage = pages[victimName], survivorPage = pages[survivorName];
  const victim = nodeOf(roomNode);
  const survivorNode = IDS.find((id) => id !== roomNode);

  await victim.stop("SIGKILL");

  // The surviving node takes the room over: its page is told and stays in the game.
  await waitFor(survivorPage, () => window.arena.snapshot().moved >= 1);
  await survivorPage.waitForSelector(
    `#chat-log li.system:has-text('The room moved to another server (${survivorNode}); play continues.')`,
    { timeout: DEADLINE });
  let s = await h.snapshot(survivorPage);
  assert.equal(s.view, "game");
  assert.equal(s.room, roomId);
  assert.equal(s.roomNode, survivorNode);
  assert.deepEqual(s.members, [survivorName], "the new run seats the players it could reach");
  // ... and plays on: its own moves come back in the new run's state frames.
  await h.seesMove(survivorPage, survivorPage, survivorName, { axis: "x" });
  await survivorPage.screenshot({ path: join(h.artifacts, "cluster-room-moved.png") });

  // The page whose node died says so, and stays on the game view while it retries.
  await waitFor(victimPage, () => window.arena.snapshot().notice.startsWith("Connection lost"));
  assert.equal((await h.snapshot(victimPage)).view, "game");
  await victimPage.screenshot({ path: join(h.artifacts, "cluster-reconnecting.png") });

  // The node comes back on the same port: the page reconnects and joins the room again
  // (now run by the surviving node), or says why not from the lobby; never stuck.
  await victim.start();
  await waitFor(victimPage, (room) => {
    const s = window.arena.snapshot();
    return (s.view === "game" && s.room === room && s.connected && s.rejoined >= 1 && !s.joining)
      || (s.view === "lobby" && s.notice !== "");
  }, roomId, 30_000);
  const v = await h.snapshot(victimPage);
  assert.equal(v.view, "game", "the page is back in its room, not in the lobby: " + v.notice);
  assert.equal(v.roomNode, survivorNode);
  assert.equal(v.notice, "");
  const log = await h.chatText(victimPage);
  assert.match(log,
    new RegExp(`Connection lost\\. Reconnecting….*Reconnected: you are back in the room, which now runs on ${survivorNode}\\.`));
  assert.equal(log.match(/Connection lost/g).length, 1, "one line for the outage, not one per attempt");

  // They play together again, across the nodes.
  await waitFor(survivorPage, (n) => window.arena.snapshot().members.includes(n), victimName);
  await waitFor(victimPage, () => window.arena.snapshot().players.length === 2);
  await h.seesMove(victimPage, survivorPage, victimName, { axis: "y" });
  await h.seesMove(survivorPage, victimPage, survivorName, { axis: "y" });
  await victimPage.screenshot({ path: join(h.artifacts, "cluster-rejoined.png") });
});

test("a page's node (not the room's) stops cleanly: the room plays on, the page comes back into it", async () => {
  const roomNode = (await h.snapshot(pages.alice)).roomNode;
  const [awayName, stayName] = (await h.snapshot(pages.alice)).serverNode === roomNode
    ? ["bob", "alice"] : ["alice", "bob"];
  const awayPage = pages[awayName], stayPage = pages[stayName];
  const away = nodeOf((await h.snapshot(awayPage)).serverNode);
  assert.notEqual(away.name, roomNode);
  const moved = (await h.snapshot(stayPage)).moved;

  await away.stop("SIGTERM"); // its sockets are closed with 1001
  await waitFor(awayPage, () => window.arena.snapshot().notice.startsWith("Connection lost"));
  // The room's node lets the player go; the other page sees it leave, and stays put.
  await waitFor(stayPage, (n) => !window.arena.snapshot().members.includes(n), awayName);
  await stayPage.waitForSelector(`#chat-log li.system:has-text('${awayName} left')`, { timeout: DEADLINE });

  await away.start();
  await waitFor(awayPage, (room) => {
    const s = window.arena.snapshot();
    return (s.view === "game" && s.room === room && s.connected && !s.joining && s.notice === "")
      || (s.view === "lobby" && s.notice !== "");
  }, roomId, 30_000);
  assert.equal((await h.snapshot(awayPage)).view, "game", (await h.snapshot(awayPage)).notice);
  await waitFor(stayPage, (n) => window.arena.snapshot().members.includes(n), awayName);
  await h.seesMove(awayPage, stayPage, awayName);
  const after = await h.snapshot(stayPage);
  assert.equal(after.moved, moved, "the room itself did not move");
  assert.equal(after.roomNode, roomNode);
});

test("Redis goes away: both pages return to the lobby saying so; a join retries until it is back", async () => {
  assert.ok(roomId, "the first test made the room");
  for (const page of Object.values(pages)) assert.equal((await h.snapshot(page)).view, "game");
  await redis.stop();
  for (const page of Object.values(pages)) {
    await waitFor(page, () => {
      const s = window.arena.snapshot();
      return s.view === "lobby" && s.notice !== "";
    }, null, 20_000);
    const s = await h.snapshot(page);
    assert.equal(s.notice,
      "The server running “Across nodes” went away and the room could not be moved; try joining again.");
    assert.deepEqual(s.lastLeft, { room: roomId, reason: "unavailable" });
  }
  await pages.alice.screenshot({ path: join(h.artifacts, "cluster-unavailable.png") });

  // Joining while Redis is away: the page says it retries; once Redis is back it gets in.
  await pages.alice.click(`#rooms li[data-room='${roomId}'] button`, { timeout: DEADLINE });
  await waitFor(pages.alice, () => / trying again \(attempt \d of 4\)…$/.test(window.arena.snapshot().notice),
    null, 20_000);
  assert.equal((await h.snapshot(pages.alice)).view, "lobby");
  await pages.alice.screenshot({ path: join(h.artifacts, "cluster-join-retry.png") });
  await redis.start();
  await waitFor(pages.alice, (room) => {
    const s = window.arena.snapshot();
    return (s.view === "game" && s.room === room && !s.joining)
      || (s.view === "lobby" && !/trying again/.test(s.notice));
  }, roomId, 30_000);
  const s = await h.snapshot(pages.alice);
  assert.equal(s.view, "game", "joined once Redis was back, not: " + s.notice);
  assert.equal(s.notice, "");
  await h.seesMove(pages.alice, pages.alice, "alice");
});

test("the room is deleted and its node dies: the page on the other node is told it is gone, so is the page that comes back", async () => {
  assert.ok(roomId, "the first test made the room");
  // Bob comes back into the room (the previous test left him in the lobby).
  await pages.bob.waitForSelector(`#rooms li[data-room='${roomId}']`, { timeout: DEADLINE });
  await h.joinFromLobby(pages.bob, roomId);
  await waitFor(pages.alice, () => window.arena.snapshot().members.length === 2);
  const roomNode = (await h.snapshot(pages.bob)).roomNode;
  const [victimName, otherName] = (await h.snapshot(pages.alice)).serverNode === roomNode
    ? ["alice", "bob"] : ["bob", "alice"];
  const victim = nodeOf(roomNode);

  // The record goes (as an operator might delete it); then the room's node dies, and the
  // other node, taking the room over, finds no record.
  h.psql(db, `DELETE FROM rooms WHERE id = '${roomId}'; UPDATE room_count SET n = n - 1`);
  await victim.stop("SIGKILL");
  const inLobby = () => {
    const s = window.arena.snapshot();
    return s.view === "lobby" && s.notice !== "" && !s.notice.startsWith("Connection lost");
  };
  await waitFor(pages[otherName], inLobby, null, 20_000);
  let s = await h.snapshot(pages[otherName]);
  assert.equal(s.notice, "The room “Across nodes” no longer exists.");
  assert.deepEqual(s.lastLeft, { room: roomId, reason: "removed" });
  await pages[otherName].screenshot({ path: join(h.artifacts, "cluster-room-removed.png") });

  await victim.start();
  await waitFor(pages[victimName], inLobby, null, 30_000);
  s = await h.snapshot(pages[victimName]);
  assert.equal(s.notice, "You are back online, but the room “Across nodes” no longer exists.");
  assert.equal(s.connected, true);
});

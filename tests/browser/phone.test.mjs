// The browser game on a phone: a 390×844 touch screen (isMobile, hasTouch, three device
// pixels per CSS pixel) in headless Chromium against a real arena-server. The login,
// lobby and game views fit the screen's width, the arena scales down under a virtual
// stick, and a finger dragged on the stick (real touch events through the DevTools
// protocol, which Chromium turns into pointer events of type "touch") steers the disc as
// the server reports it, analog, with the local disc predicted ahead of the last state
// frame; letting go stops it. With every socket frame held back 100 ms each way (a far
// server), the disc still answers the finger at once and stops where the server stops it,
// without jumps. A desktop player in the same room plays with the keys and sees the phone
// player's orbs on the scoreboard. Screenshots land in artifacts/.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const { DEADLINE } = h;
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
// The server's world (PROTOCOL.md, `joined`): 240 units per second at 20 ticks per second.
const SPEED_PER_TICK = 240 / 20;

let server, browser, phoneContext, phone, cdp, roomId;

before(async () => {
  mkdirSync(h.artifacts, { recursive: true });
  h.serverBinary();
  // Long rounds: no round ends while a test watches the disc.
  server = await new h.ArenaServer("phone", ["--auth-rate-limit", "0", "--round-secs", "300"]).start();
  await server.register("desk");
  browser = await h.launchBrowser();
});

after(async () => {
  await h.cleanUp(browser);
  h.assertNoTokenInUrls();
});

const waitFor = (p, fn, arg, timeout = DEADLINE) => p.waitForFunction(fn, arg, { timeout });
const me = async (p) => (await h.snapshot(p)).me;

/** No horizontal scrolling: the page is no wider than the screen. */
async function assertFitsWidth(page, view) {
  const { scroll, inner } = await page.evaluate(() =>
    ({ scroll: document.documentElement.scrollWidth, inner: innerWidth }));
  assert.ok(scroll <= inner, `the ${view} view is ${scroll} px wide on a ${inner} px screen`);
}

/** Every visible button in `scope` is at least 44 CSS px high: a thumb can hit it. */
async function assertTappable(page, scope) {
  const small = await page.$$eval(`${scope} button`, (buttons) => buttons
    .filter((b) => b.offsetParent !== null && b.getBoundingClientRect().height < 44)
    .map((b) => `${b.textContent} (${b.getBoundingClientRect().height} px)`));
  assert.deepEqual(small, [], `buttons too small to tap in ${scope}`);
}

const box = (page, selector) => page.$eval(selector, (el) => {
  const r = el.getBoundingClientRect();
  return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
});

/** One finger on the touch screen: touchStart, touchMove, touchEnd at CSS pixel (x, y). */
const finger = (type, x, y) => cdp.send("Input.dispatchTouchEvent",
  { type, touchPoints: type === "touchEnd" ? [] : [{ x, y, id: 1, radiusX: 8, radiusY: 8, force: 1 }] });

/** The server's position for me and its tick, from the page's last state frame. */
const serverState = (page) => page.evaluate(() => {
  const s = window.arena.snapshot();
  return { tick: s.tick, ...s.me.server };
});

/** Wait until the room has applied every input the page sent (no input pending). */
const applied = (page) => waitFor(page, () => {
  const s = window.arena.snapshot();
  return s.me && s.me.pending === 0 && s.me.server.last_seq === s.seq;
});

test("on a phone the login, lobby and game views fit the screen, the arena scaled under a stick", async () => {
  phoneContext = await browser.newContext(PHONE);
  phone = await h.newPage(browser, phoneContext);
  cdp = await phoneContext.newCDPSession(phone);
  await phone.goto(server.base + "/");
  await phone.waitForSelector("#login-view:not([hidden])", { timeout: DEADLINE });
  await assertFitsWidth(phone, "login");
  await assertTappable(phone, "#login-view");

  await phone.fill("#username", "pia");
  await phone.fill("#password", "pia-password");
  await phone.click("#register-button");
  await phone.waitForSelector("#lobby-view:not([hidden])", { timeout: DEADLINE });
  await waitFor(phone, () => window.arena.snapshot().connected);
  await phone.waitForSelector("#rooms li button", { timeout: DEADLINE });
  await assertFitsWidth(phone, "lobby");
  await assertTappable(phone, "#lobby-view");
  await assertTappable(phone, "header");
  await phone.screenshot({ path: join(h.artifacts, "phone-lobby.png") });

  roomId = await h.createRoom(phone, "Pocket arena");
  await waitFor(phone, () => !!window.arena.snapshot().me);
  await assertFitsWidth(phone, "game");
  await assertTappable(phone, "#game-view");
  const s = await h.snapshot(phone);
  assert.equal(s.touch, true, "a touch screen shows the stick");
  assert.equal(await phone.isVisible("#stick"), true);
  assert.equal(await phone.isVisible(".touch-help"), true);
  assert.equal(await phone.isVisible(".keys-help"), false);

  const canvas = await box(phone, "#arena");
  const stick = await box(phone, "#stick");
  const aside = await box(phone, "#game-view aside");
  // The arena scaled down to the screen, in the server's proportions (960 × 540).
  assert.ok(canvas.left >= 0 && canvas.right <= 390 && canvas.width > 300, JSON.stringify(canvas));
  assert.ok(Math.abs(canvas.width / canvas.height - 960 / 540) < 0.02, JSON.stringify(canvas));
  // Its pixels are the screen's: text on it is drawn at the phone's resolution.
  const [pixels, cssPixels] = await phone.$eval("#arena", (c) => [c.width, c.clientWidth]);
  assert.ok(Math.abs(pixels - cssPixels * 3) <= 1, `canvas has ${pixels} px for ${cssPixels} CSS px`);
  // The stick under the arena, both on the first screen; scores and chat below them.
  assert.ok(stick.top >= canvas.bottom && stick.bottom <= 844, JSON.stringify({ canvas, stick }));
  assert.ok(aside.top >= stick.bottom, JSON.stringify({ stick, aside }));
  assert.ok(aside.right <= 390, JSON.stringify(aside));
});

test("a finger on the stick steers the disc, analog, as the server reports it; predicted ahead; letting go stops it", async () => {
  assert.ok(phone, "the previous test opened the phone");
  await applied(phone);
  const stick = await box(phone, "#stick");
  const cx = stick.left + stick.width / 2, cy = stick.top + stick.height / 2, radius = stick.width / 2;
  const start = await serverState(phone);
  // Towards the middle of the arena, so no wall is in the way.
  const sign = start.x < 480 ? 1 : -1;

  // Half way out: half speed, along x only.
  await finger("touchStart", cx, cy);
  await finger("touchMove", cx + sign * radius * 0.5, cy);
  await waitFor(phone, (sign) => {
    const m = window.arena.snapshot().me;
    return Math.abs(m.dir.dx - sign * 0.5) < 0.051 && m.dir.dy === 0;
  }, sign);
  await applied(phone);
  const a = await serverState(phone);
  await waitFor(phone, (t) => window.arena.snapshot().tick >= t + 10, a.tick);
  const b = await serverState(phone);
  const perTick = (b.x - a.x) * sign / (b.tick - a.tick);
  assert.ok(perTick > 0.35 * SPEED_PER_TICK && perTick < 0.65 * SPEED_PER_TICK,
    `half a stick moves ${perTick} units per tick (full speed: ${SPEED_PER_TICK})`);
  assert.ok(Math.abs(b.y - a.y) < 0.5, `a drag along x moved y from ${a.y} to ${b.y}`);

  // Past the rim: full speed. The drawn disc runs ahead of the last state frame
  // (interpolation alone would draw it behind), never far off and never outside.
  await finger("touchMove", cx + sign * radius * 1.5, cy + 2);
  await waitFor(phone, (sign) => {
    const m = window.arena.snapshot().me;
    return Math.abs(m.dir.dx - sign) < 0.051;
  }, sign);
  await waitFor(phone, (sign) => {
    const m = window.arena.snapshot().me;
    return (m.x - m.server.x) * sign > 0.5;
  }, sign);
  for (let i = 0; i < 5; i++) {
    const m = await me(phone);
    assert.ok(Math.abs(m.x - m.server.x) < 40 && Math.abs(m.y - m.server.y) < 40, JSON.stringify(m));
    assert.ok(m.x >= 14 && m.x <= 946 && m.y >= 14 && m.y <= 526, JSON.stringify(m));
  }
  await waitFor(phone, ({ x, sign }) => (window.arena.snapshot().me.server.x - x) * sign > 60, { x: b.x, sign });
  await phone.screenshot({ path: join(h.artifacts, "phone-game.png") });

  // Let go: the disc stops, on the server, and the drawn disc settles where the server has it.
  await finger("touchEnd");
  await waitFor(phone, () => {
    const m = window.arena.snapshot().me;
    return m.dir.dx === 0 && m.dir.dy === 0;
  });
  await applied(phone);
  const stopped = await serverState(phone);
  await waitFor(phone, (t) => window.arena.snapshot().tick >= t + 5, stopped.tick);
  const later = await serverState(phone);
  assert.deepEqual([later.x, later.y], [stopped.x, stopped.y], "the disc still moves after the finger let go");
  await waitFor(phone, () => {
    const m = window.arena.snapshot().me;
    return Math.hypot(m.x - m.server.x, m.y - m.server.y) < 0.5;
  });

  // Inputs count as pending from the moment they are sent until a state frame applies them.
  const pending = await phone.evaluate(() => {
    window.arena.steer(0, 0.3);
    window.arena.steer(0, 0);
    return window.arena.snapshot().me.pending;
  });
  assert.equal(pending, 2);
  await applied(phone);
});

/** Run in the page before its scripts: every WebSocket frame, either way, waits `ms` (a far server). */
function slowSockets(ms) {
  const Real = WebSocket;
  window.WebSocket = class extends Real {
    send(data) { setTimeout(() => { if (this.readyState === Real.OPEN) super.send(data); }, ms); }
    set onmessage(handler) { super.onmessage = (event) => setTimeout(() => handler(event), ms); }
  };
}

test("200 ms from the server: the disc answers the stick at once, glides, and stops where the server stops it", async () => {
  await server.register("far");
  const context = await browser.newContext(PHONE);
  await context.addInitScript(slowSockets, 100);
  const page = await h.newPage(browser, context);
  const touch = await context.newCDPSession(page);
  const press = (type, x, y) => touch.send("Input.dispatchTouchEvent",
    { type, touchPoints: type === "touchEnd" ? [] : [{ x, y, id: 1 }] });
  await h.logIn(page, server.base, "far");
  await h.createRoom(page, "Far away");
  await applied(page);
  const stick = await box(page, "#stick");
  const cx = stick.left + stick.width / 2, cy = stick.top + stick.height / 2;
  const start = await serverState(page);
  const sign = start.x < 480 ? 1 : -1;
  // The page records what it draws, frame by frame.
  await page.evaluate(() => {
    window.__trace = [];
    const record = () => {
      const m = window.arena.snapshot().me;
      window.__trace.push({ t: performance.now(), x: m.x, server: m.server.x, pending: m.pending });
      window.__tracing = requestAnimationFrame(record);
    };
    record();
  });
  await press("touchStart", cx, cy);
  await press("touchMove", cx + sign * stick.width, cy);
  await waitFor(page, ({ x, sign }) => (window.arena.snapshot().me.server.x - x) * sign > 120, { x: start.x, sign });
  await press("touchEnd");
  await applied(page);
  await waitFor(page, () => {
    const m = window.arena.snapshot().me;
    return Math.abs(m.x - m.server.x) < 0.5;
  });
  const trace = await page.evaluate(() => { cancelAnimationFrame(window.__tracing); return window.__trace; });
  const end = (await serverState(page)).x;

  // Before the server had moved it at all, the drawn disc was on its way: a round trip
  // of movement ahead (240 units/s × 0.2 s = 48), not just a frame's extrapolation (12).
  const early = Math.max(...trace.filter((s) => s.server === start.x).map((s) => (s.x - start.x) * sign));
  assert.ok(early > 40, `the drawn disc was ${early} units out when the server first moved it`);
  // No jumps: frame to frame, never much faster than the server's speed.
  let fastest = 0;
  for (let i = 1; i < trace.length; i++) {
    const dt = trace[i].t - trace[i - 1].t;
    if (dt > 0) fastest = Math.max(fastest, Math.abs(trace[i].x - trace[i - 1].x) / dt * 1000);
  }
  assert.ok(fastest < 2 * 240, `the drawn disc jumped (${Math.round(fastest)} units/s at most; speed 240)`);
  // It stopped where the server stopped it, without running far past.
  const furthest = Math.max(...trace.map((s) => (s.x - start.x) * sign));
  assert.ok(furthest - (end - start.x) * sign < 30, `ran ${furthest} units out, the server stopped at ${(end - start.x) * sign}`);
  await context.close();
});

test("a desktop player in the room plays with the keys, no stick, and sees the phone player's orbs on the scoreboard", async () => {
  assert.ok(roomId, "the first test made the room");
  const desk = await h.newPage(browser, await browser.newContext({ viewport: { width: 1280, height: 800 } }));
  await h.logIn(desk, server.base, "desk");
  await h.joinFromLobby(desk, roomId);
  assert.equal((await h.snapshot(desk)).touch, false);
  assert.equal(await desk.isVisible("#stick"), false);
  assert.equal(await desk.isVisible(".keys-help"), true);
  // The keys move the desktop player: the phone sees it.
  await h.seesMove(desk, phone, "desk");

  await phone.evaluate(() => { window.__autopilot = setInterval(() => window.arena.steerToNearestOrb(), 100); });
  try {
    await waitFor(desk, () => (window.arena.snapshot().scores.pia || 0) > 0, null, 30_000);
  } finally {
    await phone.evaluate(() => { clearInterval(window.__autopilot); window.arena.steer(0, 0); });
  }
  const score = (await h.snapshot(desk)).scores.pia;
  await desk.waitForSelector(`#members li:has-text('pia') .score:text-is('${score}')`, { timeout: DEADLINE });
  await phone.waitForSelector(`#members li:has-text('pia (you)') .score:text-is('${score}')`, { timeout: DEADLINE });
  await desk.screenshot({ path: join(h.artifacts, "game-scoreboard.png") });
  await phone.screenshot({ path: join(h.artifacts, "phone-scoreboard.png"), fullPage: true });
});

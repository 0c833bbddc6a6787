// Arena's browser client.
//
// Credentials: the access token lives in memory only and rides in the Authorization
// header (HTTP) and the `arena.v1, bearer.<token>` subprotocol (WebSocket), never in a
// URL. The refresh token is kept in localStorage so that several tabs share one session
// (and one logout); two tabs refreshing at once get the same answer from the server's
// grace rule. It is refreshed before it expires and handed to the live socket with
// `reauth`, so the socket never outlives its token and never drops for it.
"use strict";

const REFRESH_KEY = "arena.refresh_token";
const $ = (id) => document.getElementById(id);

const app = {
  access: null,        // access token (memory only)
  accessExpiresAt: 0,  // ms
  user: null,
  ws: null,
  view: "login",
  room: null,          // joined Room
  world: { width: 960, height: 540, tick_hz: 20 },
  members: new Map(),  // id -> username
  frames: [],          // the last two state frames: {at, byId}
  seq: 0,
  dir: { dx: 0, dy: 0 },
  keys: new Set(),
  refreshTimer: null,
  reconnectTimer: null,
  backoff: 500,
  leaving: false,      // we are closing on purpose (logout)
  notice: "",
};

// ---------- views ----------

function show(view) {
  app.view = view;
  for (const name of ["login", "lobby", "game"]) $(name + "-view").hidden = name !== view;
  $("who").hidden = view === "login";
  if (view === "lobby") loadRooms();
}

function notify(message) {
  app.notice = message || "";
  $("notice").textContent = app.notice;
  $("notice").hidden = !app.notice;
}

function setConnState(text) {
  $("conn-state").textContent = text;
}

// ---------- session ----------

function adopt(session) {
  app.access = session.access_token;
  app.accessExpiresAt = Date.now() + session.expires_in * 1000;
  app.user = session.user;
  localStorage.setItem(REFRESH_KEY, session.refresh_token);
  $("who-name").textContent = session.user.username + (session.user.role === "admin" ? " (admin)" : "");
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(app.refreshTimer);
  const lifetime = app.accessExpiresAt - Date.now();
  // Refresh at 80% of the token's life, at least a few seconds before it ends.
  const delay = Math.max(1000, Math.min(lifetime * 0.8, lifetime - 5000));
  app.refreshTimer = setTimeout(() => refresh().catch(() => {}), delay);
}

let refreshing = null;
/** Get a fresh access token and move the live socket onto it. */
function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    const token = localStorage.getItem(REFRESH_KEY);
    if (!token) throw new ApiError(401, "refresh_invalid", "no session");
    try {
      adopt(await request("POST", "/auth/refresh", null, { refresh_token: token }));
    } catch (e) {
      if (e.status === 401 || e.status === 403) endSession("Your session has ended. Please log in again.");
      throw e;
    }
    if (app.ws && app.ws.readyState === WebSocket.OPEN) {
      app.ws.send(JSON.stringify({ type: "reauth", access_token: app.access }));
    }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

function endSession(message) {
  clearTimeout(app.refreshTimer);
  clearTimeout(app.reconnectTimer);
  app.access = null;
  app.user = null;
  app.room = null;
  localStorage.removeItem(REFRESH_KEY);
  if (app.ws) {
    app.leaving = true;
    app.ws.close();
    app.ws = null;
  }
  show("login");
  notify(message);
}

async function login(register) {
  const username = $("username").value.trim();
  const password = $("password").value;
  $("login-error").textContent = "";
  try {
    if (register) await request("POST", "/auth/register", null, { username, password });
    adopt(await request("POST", "/auth/login", null, { username, password }));
    $("password").value = "";
    notify("");
    show("lobby");
    connect();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

async function logout() {
  app.leaving = true;
  try {
    await request("POST", "/auth/logout", app.access, {});
  } catch { /* the session is gone either way */ }
  endSession("You logged out.");
}

// ---------- lobby ----------

async function loadRooms() {
  try {
    const { rooms } = await request("GET", "/lobby/rooms", app.access);
    $("rooms").replaceChildren(...rooms.map((r) =>
      el("li", { "data-room": r.id },
        el("span", {}, r.name, " ", el("span", { class: "muted" }, `${r.players}/${r.capacity}`)),
        el("button", { onclick: () => join(r.id), disabled: r.players >= r.capacity ? "" : null }, "Join"))));
  } catch (e) {
    notify("Could not load rooms: " + e.message);
  }
}

function join(roomId) {
  send({ type: "join", room: roomId });
}

// ---------- socket ----------

function connect() {
  if (!app.access) return;
  app.leaving = false;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const ws = new WebSocket(url, ["arena.v1", "bearer." + app.access]);
  app.ws = ws;
  setConnState("connecting…");
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => { if (app.ws === ws) onClose(event.code, event.reason); };
}

function send(message) {
  if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(message));
}

function onClose(code, reason) {
  app.ws = null;
  app.frames = [];
  setConnState("disconnected");
  if (app.leaving) return;
  switch (code) {
    case 4001: return endSession("You were logged out.");
    case 4003: return endSession("An admin removed you: " + (reason || "no reason given"));
    case 4004: return endSession("Your account logged in somewhere else.");
    case 4002: // token expired: refresh, then come back
      return refresh().then(connect).catch(() => {});
    default: { // 1001 (server restarting), network trouble: come back with backoff
      const wasIn = app.room && app.room.id;
      notify("Connection lost. Reconnecting…");
      app.reconnectTimer = setTimeout(() => {
        const go = Date.now() > app.accessExpiresAt - 5000 ? refresh() : Promise.resolve();
        go.then(() => { app.rejoin = wasIn; connect(); }).catch(() => {});
      }, app.backoff);
      app.backoff = Math.min(app.backoff * 2, 10000);
    }
  }
}

function onMessage(m) {
  switch (m.type) {
    case "welcome":
      app.backoff = 500;
      setConnState("online");
      if (app.notice.startsWith("Connection lost")) notify("");
      if (app.rejoin) { join(app.rejoin); app.rejoin = null; }
      break;
    case "joined":
      app.room = m.room;
      if (m.world) app.world = m.world;
      app.members = new Map(m.members.map((p) => [p.id, p.username]));
      app.frames = [];
      $("room-title").textContent = m.room.name;
      $("chat-log").replaceChildren();
      renderMembers();
      show("game");
      break;
    case "left":
      app.room = null;
      show("lobby");
      break;
    case "player_joined":
      app.members.set(m.player.id, m.player.username);
      renderMembers();
      systemLine(m.player.username + " joined");
      break;
    case "player_left":
      app.members.delete(m.player.id);
      renderMembers();
      systemLine(m.player.username + " left");
      break;
    case "chat":
      chatLine(m.from, m.text);
      break;
    case "state":
      app.frames.push({ at: performance.now(), tick: m.tick, byId: new Map(m.players.map((p) => [p.id, p])) });
      if (app.frames.length > 2) app.frames.shift();
      break;
    case "token_expiring":
      refresh().catch(() => {});
      break;
    case "error":
      systemLine("⚠ " + m.message);
      break;
  }
}

// ---------- room UI ----------

function renderMembers() {
  $("members").replaceChildren(...[...app.members].map(([id, name]) =>
    el("li", { "data-user": id }, el("span", { class: "dot", style: "background:" + colorFor(id) }),
      name + (app.user && id === app.user.id ? " (you)" : ""))));
}

function chatLine(from, text) {
  const log = $("chat-log");
  log.append(el("li", {}, el("span", { class: "from", style: "color:" + colorFor(from.id) }, from.username), text));
  log.scrollTop = log.scrollHeight;
}

function systemLine(text) {
  const log = $("chat-log");
  log.append(el("li", { class: "system" }, text));
  log.scrollTop = log.scrollHeight;
}

// ---------- input ----------

const KEYS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};

function onKey(event, down) {
  if (app.view !== "game" || event.target.tagName === "INPUT" || !(event.code in KEYS)) return;
  event.preventDefault();
  if (down) app.keys.add(event.code); else app.keys.delete(event.code);
  let dx = 0, dy = 0;
  for (const code of app.keys) { dx += KEYS[code][0]; dy += KEYS[code][1]; }
  dx = Math.max(-1, Math.min(1, dx));
  dy = Math.max(-1, Math.min(1, dy));
  if (dx !== app.dir.dx || dy !== app.dir.dy) {
    app.dir = { dx, dy };
    send({ type: "input", seq: ++app.seq, dx, dy });
  }
}

// ---------- drawing ----------

/** Each player's position now, interpolated between the last two state frames. */
function positions() {
  const [a, b] = app.frames.length === 2 ? app.frames : [app.frames[0], app.frames[0]];
  if (!b) return [];
  const tickMs = 1000 / (app.world.tick_hz || 20);
  const t = Math.min(1, (performance.now() - b.at) / tickMs);
  return [...b.byId.values()].map((p) => {
    const from = a.byId.get(p.id) || p;
    return { id: p.id, username: p.username, x: from.x + (p.x - from.x) * t, y: from.y + (p.y - from.y) * t };
  });
}

function draw() {
  requestAnimationFrame(draw);
  if (app.view !== "game") return;
  const canvas = $("arena");
  const ctx = canvas.getContext("2d");
  const sx = canvas.width / app.world.width, sy = canvas.height / app.world.height;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "rgba(108,140,255,0.08)";
  for (let x = 0; x <= canvas.width; x += 60) { ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, canvas.height); ctx.stroke(); }
  for (let y = 0; y <= canvas.height; y += 60) { ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(canvas.width, y); ctx.stroke(); }
  for (const p of positions()) {
    const x = p.x * sx, y = p.y * sy, me = app.user && p.id === app.user.id;
    ctx.beginPath();
    ctx.arc(x, y, me ? 15 : 13, 0, Math.PI * 2);
    ctx.fillStyle = colorFor(p.id);
    ctx.shadowColor = colorFor(p.id);
    ctx.shadowBlur = me ? 18 : 8;
    ctx.fill();
    ctx.shadowBlur = 0;
    if (me) { ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.stroke(); }
    ctx.fillStyle = "#e8ebff";
    ctx.font = "13px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(p.username, x, y - 22);
  }
}

// ---------- start ----------

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login(false); });
$("register-button").addEventListener("click", () => login(true));
$("logout").addEventListener("click", logout);
$("leave").addEventListener("click", () => send({ type: "leave" }));
$("create-room").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const room = await request("POST", "/lobby/rooms", app.access, {
      name: $("room-name").value.trim(),
      capacity: Number($("room-capacity").value) || 16,
    });
    $("room-name").value = "";
    join(room.id);
  } catch (err) {
    notify("Could not create the room: " + err.message);
  }
});
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (text) send({ type: "chat", text });
  $("chat-input").value = "";
});
addEventListener("keydown", (e) => onKey(e, true));
addEventListener("keyup", (e) => onKey(e, false));
addEventListener("blur", () => { app.keys.clear(); onKey({ target: {}, code: "", preventDefault() {} }, false); });
setInterval(() => { if (app.view === "lobby") loadRooms(); }, 3000);
requestAnimationFrame(draw);

// A stored session (another tab, or a reload) resumes without typing the password.
if (localStorage.getItem(REFRESH_KEY)) {
  refresh().then(() => { show("lobby"); connect(); }).catch(() => show("login"));
} else {
  show("login");
}

// For tests and the curious: what the page currently shows.
window.arena = {
  snapshot: () => ({
    view: app.view,
    notice: app.notice,
    user: app.user && app.user.username,
    room: app.room && app.room.id,
    members: [...app.members.values()],
    players: positions(),
    connected: !!app.ws && app.ws.readyState === WebSocket.OPEN,
  }),
};

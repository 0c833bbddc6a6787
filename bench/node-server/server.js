// The comparison server: Node.js with `ws` and `jsonwebtoken`, written the way the
// common tutorials do it (an in-memory user map, bcrypt hashes, HS256 tokens, a
// denylist for logout, a Map from user to sockets so logout can close them), speaking
// the subset of Arena's PROTOCOL.md the load scenarios use: register, login, logout
// (closing the session's sockets with 4001), rooms, join/leave, input, chat, state at
// 20 Hz, ping. Its state frame has Arena's shape and size (players with scores, six orbs
// a player takes by touching, the round and when it ends), so the fan-out comparison
// sends the same bytes. Usage: node server.js [port]
"use strict";

const http = require("http");
const crypto = require("crypto");
const bcrypt = require("bcryptjs");
const jwt = require("jsonwebtoken");
const { WebSocketServer } = require("ws");

const PORT = Number(process.argv[2] || process.env.PORT || 8090);
const SECRET = crypto.randomBytes(48);
const ACCESS_TTL = 900;
const users = new Map();        // username (lower) -> {id, username, hash, role}
const revokedSessions = new Set();
const socketsByUser = new Map(); // user id -> Set<ws>
const rooms = new Map();        // id -> {id, name, capacity, members: Map<ws, player>, tick, timer}
const id = (p) => p + "_" + crypto.randomBytes(9).toString("base64url");

function send(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(body === undefined ? "" : JSON.stringify(body));
}
const fail = (res, status, code, message) => send(res, status, { error: { code, message } });

function readJson(req) {
  return new Promise((resolve) => {
    let data = "";
    req.on("data", (c) => { data += c; if (data.length > 16384) req.destroy(); });
    req.on("end", () => { try { resolve(data ? JSON.parse(data) : {}); } catch { resolve(null); } });
  });
}

function authenticate(req) {
  const header = req.headers.authorization || "";
  if (!header.startsWith("Bearer ")) return null;
  try {
    const claims = jwt.verify(header.slice(7), SECRET, { algorithms: ["HS256"], issuer: "arena", audience: "arena" });
    return revokedSessions.has(claims.sid) ? null : claims;
  } catch { return null; }
}

// Arena's rules (server/src/game/round.rs): six orbs, touching one scores and moves it.
const ORBS = 6, REACH = 14 + 8, ROUND_MS = 120_000;
// Two decimals on the wire, as Arena sends them.
const round2 = (v) => Math.round(v * 100) / 100;
const newOrb = (room) => ({ id: ++room.orbSeq, x: round2(12 + Math.random() * 936), y: round2(12 + Math.random() * 516) });
const roomInfo = (r) => ({ id: r.id, name: r.name, capacity: r.capacity, players: r.members.size });
function createRoom(name, capacity) {
  const room = { id: id("r"), name, capacity, members: new Map(), tick: 0, timer: null,
    orbs: [], orbSeq: 0, scores: new Map(), round: { number: 1, phase: "playing", ends_at: Date.now() + ROUND_MS } };
  for (let i = 0; i < ORBS; i++) room.orbs.push(newOrb(room));
  rooms.set(room.id, room);
  return room;
}
createRoom("Main Hall", 16);

const server = http.createServer(async (req, res) => {
  const url = req.url.split("?")[0];
  if (req.method === "GET" && url === "/healthz") return send(res, 200, { status: "ok" });
  if (req.method === "POST" && url === "/auth/register") {
    const body = await readJson(req);
    if (!body || !body.username || !body.password) return fail(res, 400, "invalid_request", "username and password");
    const key = body.username.toLowerCase();
    if (users.has(key)) return fail(res, 409, "username_taken", "taken");
    const user = { id: id("u"), username: body.username, hash: await bcrypt.hash(body.password, 10), role: "player" };
    users.set(key, user);
    return send(res, 201, { user: { id: user.id, username: user.username, role: user.role } });
  }
  if (req.method === "POST" && url === "/auth/login") {
    const body = await readJson(req);
    const user = body && users.get(String(body.username).toLowerCase());
    if (!user || !(await bcrypt.compare(String(body.password), user.hash))) return fail(res, 401, "invalid_credentials", "wrong username or password");
    const sid = id("s");
    const access = jwt.sign({ sub: user.id, sid, role: user.role, username: user.username }, SECRET,
      { algorithm: "HS256", expiresIn: ACCESS_TTL, issuer: "arena", audience: "arena", jwtid: id("j") });
    return send(res, 200, {
      access_token: access, token_type: "Bearer", expires_in: ACCESS_TTL,
      refresh_token: crypto.randomBytes(32).toString("base64url"), refresh_expires_in: 2592000,
      session_id: sid, user: { id: user.id, username: user.username, role: user.role },
    });
  }
  const claims = authenticate(req);
  if (!claims) return fail(res, 401, "token_invalid", "unauthorized");
  if (req.method === "POST" && url === "/auth/logout") {
    revokedSessions.add(claims.sid);
    for (const ws of socketsByUser.get(claims.sub) || []) {
      if (ws.sid === claims.sid) ws.close(4001, "session revoked");
    }
    return send(res, 204);
  }
  if (req.method === "GET" && url === "/lobby/rooms") return send(res, 200, { rooms: [...rooms.values()].map(roomInfo) });
  if (req.method === "POST" && url === "/lobby/rooms") {
    const body = await readJson(req);
    if (!body || !body.name) return fail(res, 400, "invalid_request", "name");
    return send(res, 201, roomInfo(createRoom(body.name, Math.min(64, Math.max(2, body.capacity || 16)))));
  }
  return fail(res, 404, "not_found", "not found");
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
server.on("upgrade", (req, socket, head) => {
  const claims = authenticate(req);
  if (!claims) {
    socket.write("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    return socket.destroy();
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.user = { id: claims.sub, username: claims.username };
    ws.sid = claims.sid;
    if (!socketsByUser.has(claims.sub)) socketsByUser.set(claims.sub, new Set());
    socketsByUser.get(claims.sub).add(ws);
    ws.send(JSON.stringify({ type: "welcome", protocol: 1, user: { ...ws.user, role: claims.role }, session_id: claims.sid,
      connection_id: id("c"), expires_at: claims.exp * 1000, server_time: Date.now() }));
    ws.on("message", (data) => onMessage(ws, data));
    ws.on("close", () => {
      leave(ws);
      const set = socketsByUser.get(claims.sub);
      if (set) { set.delete(ws); if (set.size === 0) socketsByUser.delete(claims.sub); }
    });
  });
});

function broadcast(room, message) {
  const text = JSON.stringify(message);
  for (const ws of room.members.keys()) ws.send(text);
}

function leave(ws) {
  const room = ws.room && rooms.get(ws.room);
  if (!room) return;
  room.members.delete(ws);
  ws.room = null;
  broadcast(room, { type: "player_left", room: room.id, player: ws.user });
  if (room.members.size === 0) { clearInterval(room.timer); room.timer = null; }
}

function onMessage(ws, data) {
  let m;
  try { m = JSON.parse(data); } catch { return ws.send(JSON.stringify({ type: "error", code: "invalid_json", message: "bad json" })); }
  const room = ws.room && rooms.get(ws.room);
  switch (m.type) {
    case "ping": return ws.send(JSON.stringify({ type: "pong", id: m.id, server_time: Date.now() }));
    case "join": {
      const target = rooms.get(m.room);
      if (!target) return ws.send(JSON.stringify({ type: "error", code: "room_not_found", message: "no such room" }));
      if (target.members.size >= target.capacity) return ws.send(JSON.stringify({ type: "error", code: "room_full", message: "full" }));
      leave(ws);
      broadcast(target, { type: "player_joined", room: target.id, player: ws.user });
      target.members.set(ws, { x: 480, y: 270, dx: 0, dy: 0, last_seq: 0 });
      ws.room = target.id;
      if (!target.timer) target.timer = setInterval(() => tick(target), 50);
      return ws.send(JSON.stringify({ type: "joined", room: roomInfo(target), members: [...target.members.keys()].map((w) => w.user) }));
    }
    case "leave": return leave(ws);
    case "input": {
      const p = room && room.members.get(ws);
      if (!p) return;
      p.dx = Math.max(-1, Math.min(1, Number(m.dx) || 0));
      p.dy = Math.max(-1, Math.min(1, Number(m.dy) || 0));
      p.last_seq = m.seq;
      return;
    }
    case "chat":
      if (!room) return ws.send(JSON.stringify({ type: "error", code: "not_in_room", message: "join a room" }));
      return broadcast(room, { type: "chat", room: room.id, from: ws.user, text: String(m.text).slice(0, 280), ts: Date.now() });
    default: return ws.send(JSON.stringify({ type: "error", code: "unknown_type", message: "unknown" }));
  }
}

function tick(room) {
  room.tick++;
  for (const p of room.members.values()) {
    p.x = Math.max(14, Math.min(946, p.x + p.dx * 12));
    p.y = Math.max(14, Math.min(526, p.y + p.dy * 12));
  }
  for (let i = 0; i < room.orbs.length; i++) {
    const orb = room.orbs[i];
    for (const [ws, p] of room.members) {
      if (Math.hypot(p.x - orb.x, p.y - orb.y) > REACH) continue;
      room.scores.set(ws.user.id, (room.scores.get(ws.user.id) || 0) + 1);
      room.orbs[i] = newOrb(room);
      break;
    }
  }
  if (Date.now() > room.round.ends_at) {
    room.round = { number: room.round.number + 1, phase: "playing", ends_at: Date.now() + ROUND_MS };
    room.scores.clear();
  }
  const players = [];
  for (const [ws, p] of room.members) {
    players.push({ id: ws.user.id, username: ws.user.username, x: round2(p.x), y: round2(p.y), last_seq: p.last_seq,
      score: room.scores.get(ws.user.id) || 0 });
  }
  broadcast(room, { type: "state", room: room.id, tick: room.tick, players, orbs: room.orbs, round: room.round });
}

server.listen(PORT, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${PORT}`));
process.on("SIGTERM", () => process.exit(0));

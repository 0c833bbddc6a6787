// Arena's browser game: the lobby, the game view and the chat. The session and the
// socket are the SDK's (client-demo/sdk, served at /sdk/): it logs in, refreshes the
// access token before it expires and moves the live socket onto it with `reauth`,
// reconnects with backoff and joins the room again, and turns close codes into events.
// This file turns those events into what the player sees.
//
// Credentials: the access token lives in the SDK's memory only and rides in the
// Authorization header and the `arena.v1, bearer.<token>` subprotocol, never in a URL.
// The refresh token is kept in localStorage so that several tabs share one session (and
// one logout); two tabs refreshing at once get the same answer from the server's grace
// rule.
//
// Staying in the game (PROTOCOL.md, "Running a cluster"): the SDK remembers the room the
// player means to be in (`wantRoom`) and joins it again on every new socket (room ids
// survive restarts); a room whose game moved to another node (`room_moved`) keeps playing
// from a fresh run; a room the server takes the player out of (`left` with a reason)
// returns to the lobby saying why. Every one of these ends in a line of text, in the
// notice or in the chat log.
//
// Smooth to watch: other players are interpolated between the last two state frames; the
// local player is predicted. The page keeps the inputs the SDK sent in this run and draws
// its own disc at the server's last position for it plus the movement of the inputs the
// room had not applied yet (`last_seq`), run ahead by the measured round trip; each state
// frame drops what it acknowledges and predicts again from there (small corrections fade
// out, large ones snap). On a touch screen a virtual stick steers, analog, like the keys.
import { Arena, webStorageStore } from "./sdk/index.js";
import { el, colorFor, loginFailure, banText } from "./common.js";

/**
 * @import { Room, ServerMessage, User, PlayerState, OrbState, RoundState, WorldInfo, ChatFrom, LeftReason } from "../sdk/types/index.js"
 * @import { EndCause } from "./sdk/arena.js"
 * @import { ArenaError } from "./sdk/index.js"
 */

/** @typedef {"login" | "lobby" | "game"} View */
/**
 * What the notice is about: "reconnect", "join" and "lobby" clear themselves once what
 * they wait for succeeds; "logout" stays until the logout is recorded.
 * @typedef {"reconnect" | "join" | "lobby" | "logout" | ""} NoticeKind
 */
/** @typedef {{ at: number, tick: number, byId: Map<string, PlayerState> }} Frame a state frame as it arrived */
/** @typedef {{ seq: number, dx: number, dy: number, at: number }} SentInput */
/** @typedef {{ x: number, y: number }} Point */
/**
 * @typedef {object} App
 * @property {{ orbs: OrbState[], round: RoundState | null, scores: Map<string, number>,
 *   banner: { text: string, until: number } | null, skew: number, boardKey: string }} game
 * @property {User | null} user
 * @property {string | null} serverNode
 * @property {boolean} cluster
 * @property {number} welcomes
 * @property {View} view
 * @property {Room | null} room
 * @property {string | null} previousNode
 * @property {string | null} chatRoom
 * @property {Map<string, string>} roomNames
 * @property {WorldInfo} world
 * @property {Map<string, string>} members
 * @property {Frame[]} frames
 * @property {number} runAt
 * @property {{ dx: number, dy: number }} dir
 * @property {SentInput[]} inputs
 * @property {number} acked
 * @property {number | null} lead
 * @property {{ x: number, y: number, at: number }} correction
 * @property {Set<string>} keys
 * @property {{ code: number, bannedUntil: number | null } | null} ban
 * @property {boolean} loadingRooms
 * @property {boolean} loggingOut
 * @property {ReturnType<typeof setTimeout> | undefined} logoutTimer
 * @property {ReturnType<typeof setTimeout> | undefined} connectTimer
 * @property {number} connectDelay
 * @property {string} notice
 * @property {NoticeKind} noticeKind
 * @property {{ moved: number, rejoined: number, reconnects: number }} counts
 * @property {{ room: string, reason: LeftReason | null } | null} lastLeft
 */

const ROOM_KEY = "arena.room"; // sessionStorage (this tab only): the room a reload comes back to
const RESUME_MAX_MS = 5000;     // a stored session the server cannot take up yet: retried up to every 5 s
const STALE_MS = 1500;          // no state frame for this long: the game view says it waits
const LEAD_MAX_MS = 1000;       // the local disc never runs further ahead of the server than this
const AHEAD_MS = 250;           // nor predicts past its last state frame by more (frames stopped)
const SMOOTH_MS = 100;          // a small correction of the local disc fades with this time constant
const STICK_SEND_MS = 50;       // the stick sends at most one input per 50 ms (every frame counts
                                // against the socket's rate limit; the room applies the newest)
/** Error frames that answer a join: the SDK retries or gives up, and says so in its own events. */
const JOIN_ERRORS = new Set(["room_not_found", "room_full", "unavailable", "rate_limited"]);
/** @type {(id: string) => any} */
const $ = (id) => document.getElementById(id);

// The page never gives up on its server: 503s while a node catches up are waited out.
const arena = new Arena({
  tokenStore: webStorageStore(localStorage),
  reconnect: { maxUnavailable: Infinity },
});

/** @type {App} */
const app = {
  game: { orbs: [], round: null, scores: new Map(), banner: null, skew: 0, boardKey: "" }, // the objective, as the server says
  get user() { return arena.user; },
  serverNode: null,    // the node this page's socket is on (from /healthz), in a cluster
  cluster: false,      // /healthz named a node: rooms' nodes are worth showing
  welcomes: 0,         // sockets welcomed so far: tells a /healthz answer for an older one
  view: "login",
  room: null,          // the Room the game view shows (kept while reconnecting)
  previousNode: null,  // where the room ran before the last join, to tell a rejoin that moved
  chatRoom: null,      // the room the chat log belongs to
  roomNames: new Map(),// id -> name (lobby and joins), for messages about a room
  world: { width: 960, height: 540, tick_hz: 20, speed: 240 },
  members: new Map(),  // id -> username
  frames: [],          // the last two state frames of the current run: {at, tick, byId}
  runAt: 0,            // when the current run was entered (joined, room_moved)
  dir: { dx: 0, dy: 0 },
  // Prediction of the local disc (see predict): the inputs sent in this run, oldest first,
  // {seq, dx, dy, at}; the newest one the room applied stays as the first (its direction is
  // the one the server moves the disc with). `acked`: my `last_seq` in the last frame.
  inputs: [],
  acked: 0,
  lead: null,          // ms the local disc runs ahead of the frame it is predicted from (null: not measured yet)
  correction: { x: 0, y: 0, at: 0 }, // what the last frame moved the prediction by, fading
  keys: new Set(),
  ban: null,           // {code, bannedUntil} of the SDK's `banned` event, for the line that ends the session
  loadingRooms: false,
  loggingOut: false,   // Log out was clicked: nothing reconnects or joins until it is recorded
  logoutTimer: undefined,
  connectTimer: undefined, // a connection the SDK stopped (a broken rule) is tried again after a pause
  connectDelay: 3000,
  notice: "",
  noticeKind: "",      // what the notice is about (NoticeKind): which notices clear themselves
  counts: { moved: 0, rejoined: 0, reconnects: 0 },
  lastLeft: null,      // {room, reason} of the last `left`
};

const connected = () => arena.connected;

// ---------- views ----------

/** @param {"login" | "lobby" | "game"} view */
function show(view) {
  app.view = view;
  for (const name of ["login", "lobby", "game"]) $(name + "-view").hidden = name !== view;
  $("who").hidden = view === "login";
  if (view === "lobby") loadRooms();
}

/** @param {string} message @param {NoticeKind} [kind] */
function notify(message, kind = "") {
  app.notice = message || "";
  app.noticeKind = app.notice ? kind : "";
  $("notice").textContent = app.notice;
  $("notice").hidden = !app.notice;
}

/** Clear the notice if it is one of the kinds given (a retry that has now succeeded). @param {...NoticeKind} kinds */
function clearNotice(...kinds) {
  if (kinds.includes(app.noticeKind)) notify("");
}

function renderConnState() {
  const text = connected() ? "online" + (app.serverNode ? " · " + app.serverNode : "")
    : arena.state === "connecting" ? "connecting…"
    : arena.state === "reconnecting" ? "reconnecting…"
    : "offline";
  $("conn-state").textContent = text;
  renderRoomInfo();
}

/** @param {string} id */
function roomName(id) {
  return app.roomNames.get(id) || (app.room && app.room.id === id && app.room.name) || id;
}

// ---------- session ----------

/** @param {boolean} register */
async function login(register) {
  const username = $("username").value.trim();
  const password = $("password").value;
  $("login-error").textContent = "";
  try {
    if (register) await arena.register(username, password);
    await arena.login(username, password);
    $("password").value = "";
    notify("");
    show("lobby");
    arena.connect().catch(() => { /* the events say how it ended */ });
  } catch (e) {
    $("login-error").textContent = loginFailure(/** @type {ArenaError} */ (e));
  }
}

/**
 * Log out, and keep at it until the server has recorded it: until then the session
 * stands (another device could use it), so the page says so rather than pretend. The
 * socket stays closed meanwhile; `session_ended` shows the login screen.
 * @param {number} [delay] ms before the next try
 */
async function logout(delay = 1000) {
  clearTimeout(app.logoutTimer);
  app.loggingOut = true;
  try {
    await arena.logout();
  } catch (e) {
    if (!arena.accessToken && !arena.user) return; // the session ended anyway
    notify(`Logging out: the server did not answer (${/** @type {Error} */ (e).message}); trying again…`, "logout");
    app.logoutTimer = setTimeout(() => logout(Math.min(delay * 2, RESUME_MAX_MS)), delay);
  }
}

/**
 * The line the login screen shows when a session ends.
 * @param {EndCause} cause
 * @param {string} reason
 */
function endedLine(cause, reason) {
  switch (cause) {
    case "logout": return "You logged out.";
    case "revoked": return "You were logged out.";
    case "kicked": return "An admin removed you: " + (reason || "no reason given");
    case "banned": {
      const ban = app.ban || { code: 0, bannedUntil: null };
      if (ban.code !== 4003) return banText(ban.bannedUntil); // a refresh refused
      const until = ban.bannedUntil ? "until " + new Date(ban.bannedUntil).toLocaleString() : "permanently";
      return `An admin banned you ${until}: ${reason || "no reason given"}`;
    }
    case "replaced": return "Your account logged in somewhere else.";
    default: return "Your session has ended. Please log in again.";
  }
}

arena.on("session", (session) => {
  $("who-name").textContent = session.user.username + (session.user.role === "admin" ? " (admin)" : "");
});
arena.on("banned", ({ code, bannedUntil }) => { app.ban = { code, bannedUntil }; });
arena.on("session_ended", ({ cause, reason }) => {
  clearTimeout(app.logoutTimer);
  clearTimeout(app.connectTimer);
  app.loggingOut = false;
  resetRoomView();
  show("login");
  notify(endedLine(cause, reason));
  app.ban = null;
  renderConnState();
});

// ---------- lobby ----------

async function loadRooms() {
  if (!arena.accessToken || app.loadingRooms || app.loggingOut) return;
  app.loadingRooms = true;
  try {
    const rooms = await arena.rooms();
    for (const r of rooms) app.roomNames.set(r.id, r.name);
    // Which node runs a room matters in a cluster only (a lone server's name says nothing).
    $("rooms").replaceChildren(...rooms.map((r) =>
      el("li", { "data-room": r.id, "data-node": r.node || null },
        el("span", {}, r.name, " ",
          el("span", { class: "muted room-meta" },
            `${r.players}/${r.capacity}` + (r.node && app.cluster ? ` · on ${r.node}` : ""))),
        el("button", { onclick: () => join(r.id), disabled: r.players >= r.capacity ? "" : null }, "Join"))));
    if (app.noticeKind === "lobby") notify("");
  } catch (e) {
    // A lost connection says so already; otherwise say why the list is old.
    if (app.noticeKind !== "reconnect" && arena.accessToken) notify("Could not load rooms: " + /** @type {Error} */ (e).message, "lobby");
  } finally {
    app.loadingRooms = false;
  }
}

/**
 * Ask to be in room `roomId`. The SDK sends it now or on the next welcome, and retries a
 * join answered `unavailable`; `join_retry` and `join_failed` say how it goes.
 * @param {string} roomId
 */
function join(roomId) {
  if (app.loggingOut) return;
  saveRoom(roomId);
  if (!connected() && app.view === "lobby") {
    notify(`Not connected to the server; joining “${roomName(roomId)}” once it is back.`, "reconnect");
  }
  // A refused or unanswered join arrives as `join_failed`.
  arena.join(roomId).catch(() => {});
  reconnectNow();
}

/** The room this tab means to be in, kept for a reload of the tab. @param {string | null} id */
function saveRoom(id) {
  try {
    if (id) sessionStorage.setItem(ROOM_KEY, JSON.stringify({ id, name: roomName(id) }));
    else sessionStorage.removeItem(ROOM_KEY);
  } catch { /* storage off: a reload starts in the lobby */ }
}

/** Forget the room the game view showed (the session may go on). */
function resetRoomView() {
  app.room = null;
  saveRoom(null);
  app.frames = [];
  resetPrediction();
  app.members = new Map();
  app.keys.clear();
  releaseStick();
  app.dir = { dx: 0, dy: 0 };
  app.chatRoom = null;
}

/** Back to the lobby, out of any room, with `message` (or none) in the notice. @param {string} [message] */
function toLobby(message) {
  // Tells the server when there is a room to leave and a socket to say it on; always
  // drops the SDK's wish to be in the room and the direction held in it.
  arena.leave().catch(() => {});
  resetRoomView();
  notify(message || "");
  show("lobby");
}

/** The Leave button: always back to the lobby, telling the server when it can be told. */
function leaveRoom() {
  toLobby("");
  if (connected() || !arena.accessToken) return;
  if (arena.state === "closed") reconnectNow();
  else notify("Connection lost. Reconnecting…", "reconnect");
}

arena.on("join_retry", ({ room, code, attempt, attempts }) => {
  const why = code === "rate_limited" ? "The server is busy"
    : `The server running “${roomName(room)}” cannot be reached right now`;
  notify(`${why}; trying again (attempt ${attempt} of ${attempts})…`, "join");
});

arena.on("join_failed", ({ room, code, message, rejoin }) => {
  const name = `“${roomName(room)}”`;
  switch (code) {
    case "room_not_found":
      return toLobby(rejoin
        ? `You are back online, but the room ${name} no longer exists.`
        : `The room ${name} no longer exists.`);
    case "room_full":
      return toLobby(rejoin
        ? `You are back online, but the room ${name} filled up meanwhile.`
        : `The room ${name} is full.`);
    case "unavailable":
    case "rate_limited":
      return toLobby(`The server running ${name} went away and the room could not be reached; try joining again.`);
    case "timeout":
      return toLobby(`No answer from the server to joining ${name}; try again.`);
    default:
      return toLobby(`Could not join ${name}: ${message}`);
  }
});

// ---------- the connection ----------

arena.on("open", renderConnState);
arena.on("disconnected", () => {
  app.serverNode = null;
  renderConnState();
});
arena.on("reconnecting", ({ attempt }) => {
  app.counts.reconnects += 1;
  // The first failure after a welcome: a live connection was lost, not one more attempt.
  if (attempt === 1 && app.view === "game" && app.room) systemLine("Connection lost. Reconnecting…");
  notify(app.room && arena.wantRoom
    ? "Connection lost. Reconnecting… you will be back in the room when the server answers."
    : "Connection lost. Reconnecting…", "reconnect");
  renderConnState();
});
// The SDK stopped without ending the session: this page broke a rule (too many
// messages, too slow to read on a bad link) or the server stayed away. A person is
// playing: try again after a pause that grows, and say so.
arena.on("closed", ({ cause, reason }) => {
  renderConnState();
  const why = /** @type {Partial<Record<EndCause, string>>} */ ({
    policy: "The server closed the connection: " + (reason || "a limit was reached"),
    message_too_big: "The server closed the connection: a message was too big",
    protocol_error: "The server closed the connection: " + (reason || "invalid messages"),
    gave_up: "The server could not be reached",
    unavailable: "The server stayed unavailable",
  })[cause];
  if (!why || !arena.accessToken || app.loggingOut) return;
  const delay = app.connectDelay;
  app.connectDelay = Math.min(delay * 2, 30_000);
  notify(`${why}. Connecting again in ${Math.round(delay / 1000)} s…`, "reconnect");
  clearTimeout(app.connectTimer);
  app.connectTimer = setTimeout(reconnectNow, delay);
});

/** Open the connection again now (after a stop, or when the player asks for a room). */
function reconnectNow() {
  clearTimeout(app.connectTimer);
  app.connectTimer = undefined;
  if (!arena.accessToken || app.loggingOut || arena.state !== "closed") return;
  notify("Connecting…", "reconnect");
  arena.connect().catch(() => {});
}

arena.on("welcome", (m) => {
  app.welcomes += 1;
  app.connectDelay = 3000;
  // Server time minus ours: a round's `ends_at` is in server time.
  app.game.skew = m.server_time - Date.now();
  renderConnState();
  learnServerNode();
  if (arena.wantRoom) {
    // The SDK sends the join right after this event.
    if (app.room && app.room.id === arena.wantRoom) notify(`Reconnected; rejoining “${roomName(arena.wantRoom)}”…`, "join");
  } else {
    clearNotice("reconnect");
    if (app.view === "lobby") loadRooms();
  }
});

// ---------- the room ----------

arena.on("joined", (m) => {
  app.previousNode = app.room && app.room.id === m.room.id ? app.room.node : null;
  enterRun(m);
  if (app.chatRoom !== m.room.id) {
    $("chat-log").replaceChildren();
    app.chatRoom = m.room.id;
  }
  clearNotice("reconnect", "join", "lobby");
  show("game");
});

arena.on("rejoined", (m) => {
  app.counts.rejoined += 1;
  const moved = app.cluster && app.previousNode && m.room.node && m.room.node !== app.previousNode;
  systemLine(moved
    ? `Reconnected: you are back in the room, which now runs on ${m.room.node}.`
    : "Reconnected: you are back in the room.");
});

arena.on("room_moved", (m) => {
  if (!app.room) return; // on our way out of it
  app.counts.moved += 1;
  enterRun(m);
  systemLine("The room moved to another server" + (m.room.node ? ` (${m.room.node})` : "") +
    "; play continues.");
});

arena.on("left", (m) => {
  app.lastLeft = { room: m.room, reason: m.reason || null };
  if (!m.reason) {
    // The answer to something this page did: its own Leave (the view is in the lobby
    // already, and a quick Join of the same room is on its way), or a join of another
    // room (its `joined` follows). Only a room still shown and no longer wanted goes.
    if (app.room && app.room.id === m.room && arena.wantRoom !== m.room) {
      if (arena.wantRoom) app.room = null; else toLobby("");
    }
    return;
  }
  const current = app.room ? app.room.id : arena.wantRoom;
  if (m.room !== current) return; // a room we already left
  const name = `“${roomName(m.room)}”`;
  const why = {
    replaced: `You joined ${name} from another tab or device, so this page left it.`,
    unavailable: `The server running ${name} went away and the room could not be moved; try joining again.`,
    removed: `The room ${name} no longer exists.`,
  }[m.reason] || `You left ${name} (${m.reason}).`;
  toLobby(why);
});

arena.on("player_joined", (m) => {
  if (!app.room || m.room !== app.room.id) return;
  app.members.set(m.player.id, m.player.username);
  renderMembers();
  systemLine(m.player.username + " joined");
});

arena.on("player_left", (m) => {
  if (!app.room || m.room !== app.room.id) return;
  app.members.delete(m.player.id);
  renderMembers();
  systemLine(m.player.username + " left");
});

arena.on("chat", (m) => {
  if (app.room && m.room === app.room.id) chatLine(m.from, m.text);
});

arena.on("state", (m) => {
  if (!app.room || m.room !== app.room.id) return;
  const last = app.frames[app.frames.length - 1];
  // A tick lower than the last one is a fresh run of the room: never interpolate
  // between two runs.
  if (last && m.tick < last.tick) app.frames = [];
  const at = performance.now();
  const shown = localDisc(at);
  app.frames.push({ at, tick: m.tick, byId: new Map(m.players.map((p) => [p.id, p])) });
  if (app.frames.length > 2) app.frames.shift();
  acknowledge(at);
  correct(shown, at);
  app.game.orbs = m.orbs || [];
  app.game.round = m.round || null;
  app.game.scores = new Map(m.players.map((p) => [p.id, p.score || 0]));
  renderMembers();
});

arena.on("round", (m) => {
  if (!app.room || m.room !== app.room.id) return;
  if (m.phase === "pause") {
    const names = m.winners.map((w) => w.username);
    const text = names.length === 0 ? `Round ${m.round}: nobody scored`
      : names.length === 1 ? `${names[0]} wins round ${m.round} with ${m.winners[0].score}!`
      : `Round ${m.round}: a tie between ${names.join(" and ")} (${m.winners[0].score} each)`;
    app.game.banner = { text, until: m.ends_at - app.game.skew };
    systemLine(text);
  } else {
    app.game.banner = null;
    systemLine(`Round ${m.round} has started: touch the orbs!`);
  }
});

arena.on("error", (m) => {
  if (arena.joining && JOIN_ERRORS.has(m.code)) return; // `join_retry` or `join_failed` follows
  if (m.code === "not_in_room" && app.view !== "game") return; // our leave crossed the server's `left`
  if (app.view === "game") systemLine("⚠ " + m.message);
  else notify(m.message);
});

// Every input the SDK sends (the page's, and its resends to a new seat): kept for predicting.
arena.on("input", ({ seq, dx, dy }) => remember({ seq, dx, dy, at: performance.now() }));

/**
 * Start showing a run of the room: `joined` or `room_moved` (positions and ticks afresh).
 * @param {Extract<ServerMessage, { type: "joined" | "room_moved" }>} m
 */
function enterRun(m) {
  app.room = m.room;
  app.roomNames.set(m.room.id, m.room.name);
  saveRoom(m.room.id);
  if (m.world) app.world = m.world;
  app.members = new Map(m.members.map((p) => [p.id, p.username]));
  app.frames = [];
  resetPrediction();
  app.runAt = performance.now();
  $("room-title").textContent = m.room.name;
  renderMembers();
  renderRoomInfo();
  // A direction held is sent to the new seat by the SDK. Standing still, the page sends
  // one anyway: its acknowledgement measures how far ahead the prediction must run
  // before the first real move.
  if (!app.dir.dx && !app.dir.dy) arena.input(0, 0);
}

// ---------- input ----------

/** @type {Record<string, [number, number]>} */
const KEYS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};

/** @param {KeyboardEvent} event @param {boolean} down */
function onKey(event, down) {
  if (app.view !== "game" || /** @type {Element} */ (event.target).tagName === "INPUT" || !(event.code in KEYS)) return;
  event.preventDefault();
  if (down) app.keys.add(event.code); else app.keys.delete(event.code);
  updateDirection();
}

function updateDirection() {
  let dx = 0, dy = 0;
  for (const code of app.keys) { dx += KEYS[code][0]; dy += KEYS[code][1]; }
  dx = Math.max(-1, Math.min(1, dx));
  dy = Math.max(-1, Math.min(1, dy));
  steer(dx, dy);
}

/** Move in direction (dx, dy), each in -1..1: what a key, a stick or a script asks for. @param {number} dx @param {number} dy */
function steer(dx, dy) {
  if (dx !== app.dir.dx || dy !== app.dir.dy) {
    app.dir = { dx, dy };
    // The SDK numbers it and resends what the room did not apply. Out of a room (a stick
    // let go on the way to the lobby) there is nobody to tell.
    if (app.room) arena.input(dx, dy);
  }
}

/** Head for the nearest orb (an autopilot for demos and tests). */
function steerToNearestOrb() {
  const user = app.user;
  const me = user && positions().find((p) => p.id === user.id);
  if (!me) return steer(0, 0);
  /** @type {{ d: number, dx: number, dy: number } | null} */
  let best = null;
  for (const o of app.game.orbs) {
    const d = Math.hypot(o.x - me.x, o.y - me.y);
    if (!best || d < best.d) best = { d, dx: o.x - me.x, dy: o.y - me.y };
  }
  if (!best) return steer(0, 0); // no orbs
  const len = Math.max(best.d, 1e-9);
  steer(Math.round(best.dx / len * 100) / 100, Math.round(best.dy / len * 100) / 100);
}

// ---------- touch stick ----------

// One finger steers: the knob's offset from the stick's centre is the direction, analog
// (a thumb halfway out moves at half speed). Pointer capture keeps the drag when the
// finger slides off the stick, and `touch-action: none` (style.css) keeps the page from
// scrolling under it.
const STICK_DEAD_ZONE = 0.15;   // of the radius: a resting thumb does not creep
/** @type {{ pointer: number | null, want: [number, number], timer: ReturnType<typeof setTimeout> | undefined, sentAt: number }} */
const stick = { pointer: null, want: [0, 0], timer: undefined, sentAt: 0 };

/** Show the stick: the device has a touch screen (or was just touched). */
function useTouch() {
  document.documentElement.classList.add("touch");
}

/** @param {PointerEvent} event @returns {[number, number]} */
function stickVector(event) {
  const box = $("stick").getBoundingClientRect();
  const radius = box.width / 2;
  let dx = (event.clientX - box.left - radius) / radius;
  let dy = (event.clientY - box.top - radius) / radius;
  const len = Math.hypot(dx, dy);
  if (len > 1) { dx /= len; dy /= len; }
  $("stick-knob").style.transform = `translate(${dx * radius * 0.6}px, ${dy * radius * 0.6}px)`;
  if (len < STICK_DEAD_ZONE) return [0, 0];
  // Steps of 0.05: a trembling thumb does not send a new input for every pixel.
  const step = (/** @type {number} */ v) => Math.round(v * 20) / 20;
  return [step(dx), step(dy)];
}

/** @param {number} dx @param {number} dy */
function stickSteer(dx, dy) {
  stick.want = [dx, dy];
  if (stick.timer) return;
  const wait = stick.sentAt + STICK_SEND_MS - performance.now();
  if (wait <= 0) sendStick();
  else stick.timer = setTimeout(sendStick, wait);
}

function sendStick() {
  stick.timer = undefined;
  stick.sentAt = performance.now();
  steer(...stick.want);
}

/** The finger is off the stick (or the view changed): stop at once, unthrottled. */
function releaseStick() {
  if (stick.pointer === null) return;
  stick.pointer = null;
  clearTimeout(stick.timer);
  stick.timer = undefined;
  $("stick").classList.remove("active");
  $("stick-knob").style.transform = "";
  if (app.view === "game") steer(0, 0);
}

function initStick() {
  const base = $("stick");
  base.addEventListener("pointerdown", (/** @type {PointerEvent} */ e) => {
    if (stick.pointer !== null) return; // a second finger does not take over
    e.preventDefault();
    stick.pointer = e.pointerId;
    base.setPointerCapture(e.pointerId);
    base.classList.add("active");
    stickSteer(...stickVector(e));
  });
  base.addEventListener("pointermove", (/** @type {PointerEvent} */ e) => {
    if (e.pointerId === stick.pointer) stickSteer(...stickVector(e));
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    base.addEventListener(type, (/** @type {PointerEvent} */ e) => { if (e.pointerId === stick.pointer) releaseStick(); });
  }
  if (matchMedia("(pointer: coarse)").matches || navigator.maxTouchPoints > 0) useTouch();
  // A touch screen that says nothing of itself shows the stick at its first touch.
  addEventListener("pointerdown", (e) => { if (e.pointerType === "touch") useTouch(); }, { capture: true, passive: true });
}

// ---------- prediction ----------

/** Keep an input for predicting; a room that never answers does not make the list grow without end. @param {SentInput} input */
function remember(input) {
  app.inputs.push(input);
  if (app.inputs.length > 256) app.inputs.splice(0, app.inputs.length - 256);
}

/** A new run (or none): its seat knows none of the inputs sent before. */
function resetPrediction() {
  app.inputs = [];
  app.acked = 0;
  app.correction = { x: 0, y: 0, at: 0 };
}

const tickMs = () => 1000 / (app.world.tick_hz || 20);
/** @type {(v: number, lo: number, hi: number) => number} */
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
/** @type {(frame: Frame | undefined) => PlayerState | null} */
const ownState = (frame) => (frame && app.user && frame.byId.get(app.user.id)) || null;

/** A point where a disc may be: its centre a radius from every wall, as the server keeps it. @param {number} x @param {number} y @returns {Point} */
function inArena(x, y) {
  return { x: clamp(x, PLAYER_RADIUS, app.world.width - PLAYER_RADIUS), y: clamp(y, PLAYER_RADIUS, app.world.height - PLAYER_RADIUS) };
}

/** An input's direction as the room applies it (game/sim.rs): components in -1..1, length at most 1. @param {number} dx @param {number} dy */
function unit(dx, dy) {
  dx = clamp(dx, -1, 1); dy = clamp(dy, -1, 1);
  const len = Math.hypot(dx, dy);
  return len > 1 ? [dx / len, dy / len] : [dx, dy];
}

/**
 * The newest frame arrived at `at`: forget the inputs it acknowledges except the newest of
 * them (the direction the room moves the disc with now), and learn how far to run ahead
 * from the first frame that acknowledges an input: the time from sending it to seeing it
 * applied, less the tick of its movement that frame already holds (the room steps a whole
 * tick with a new direction, however late in the tick it came).
 * @param {number} at
 */
function acknowledge(at) {
  const me = ownState(app.frames[app.frames.length - 1]);
  if (!me) return;
  let base = -1;
  while (base + 1 < app.inputs.length && app.inputs[base + 1].seq <= me.last_seq) base += 1;
  if (base > 0) app.inputs.splice(0, base);
  const first = app.inputs[0];
  if (first && first.seq === me.last_seq && me.last_seq > app.acked) {
    const sample = at - first.at - tickMs();
    app.lead = clamp(app.lead === null ? sample : app.lead * 0.7 + sample * 0.3, 0, LEAD_MAX_MS);
  }
  app.acked = me.last_seq;
}

/**
 * Where the room will have my disc once it has applied what I sent until `now`: the
 * frame's position moved by my inputs since the moment of mine the frame shows (`lead`
 * before it arrived), each from when it was sent until the next, bounded like the room's.
 * @param {Frame | undefined} frame
 * @param {number} now
 * @returns {Point | null}
 */
function predict(frame, now) {
  const me = ownState(frame);
  if (!me || !frame) return null;
  const speed = app.world.speed || 240;
  const since = frame.at - (app.lead || 0);
  const until = Math.min(now, frame.at + AHEAD_MS);
  let { x, y } = me;
  const inputs = app.inputs;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    const from = input.seq <= me.last_seq ? since : Math.max(input.at, since);
    const to = i + 1 < inputs.length ? Math.min(until, Math.max(inputs[i + 1].at, since)) : until;
    if (to <= from) continue;
    const [dx, dy] = unit(input.dx, input.dy);
    ({ x, y } = inArena(x + dx * speed * (to - from) / 1000, y + dy * speed * (to - from) / 1000));
  }
  return { x, y };
}

/** My disc as drawn: the prediction plus what is left of the last correction. @param {number} now */
function localDisc(now) {
  const p = predict(app.frames[app.frames.length - 1], now);
  if (!p) return null;
  const c = app.correction;
  const left = Math.exp(-(now - c.at) / SMOOTH_MS);
  return inArena(p.x + c.x * left, p.y + c.y * left);
}

/**
 * The new frame moved the prediction away from where the disc was drawn (`shown`): fade
 * from there, unless it is far off (a bump, a seat taken over), where a jump is the truth.
 * @param {Point | null} shown
 * @param {number} at
 */
function correct(shown, at) {
  const p = predict(app.frames[app.frames.length - 1], at);
  const off = shown && p ? { x: shown.x - p.x, y: shown.y - p.y } : { x: 0, y: 0 };
  app.correction = Math.hypot(off.x, off.y) > SNAP_DISTANCE ? { x: 0, y: 0, at } : { ...off, at };
}

/** What the tests (and the curious) can see of the prediction. */
function predictionState() {
  const frame = app.frames[app.frames.length - 1];
  const server = ownState(frame);
  const drawn = server && localDisc(performance.now());
  return server && drawn && {
    x: drawn.x, y: drawn.y,
    server: { x: server.x, y: server.y, last_seq: server.last_seq },
    pending: app.inputs.filter((i) => i.seq > server.last_seq).length,
    dir: { ...app.dir },
    lead: Math.round(app.lead || 0),
  };
}

// ---------- room UI ----------

/** The players as a scoreboard: the round's best first. Re-rendered only when it changes. */
function renderMembers() {
  const score = (/** @type {string} */ id) => app.game.scores.get(id) || 0;
  const rows = [...app.members].sort((a, b) => score(b[0]) - score(a[0]) || a[1].localeCompare(b[1]));
  const key = JSON.stringify(rows.map(([id, name]) => [id, name, score(id)]));
  if (key === app.game.boardKey) return;
  app.game.boardKey = key;
  $("members").replaceChildren(...rows.map(([id, name]) =>
    el("li", { "data-user": id }, el("span", { class: "dot", css: { background: colorFor(id) } }),
      el("span", { class: "name" }, name + (app.user && id === app.user.id ? " (you)" : "")),
      el("span", { class: "score" }, String(score(id))))));
}

/** "Round 3 · 1:05 left", or the wait for the next one. */
function roundStatus() {
  const r = app.game.round;
  if (!r) return "";
  const left = Math.max(0, Math.ceil((r.ends_at - app.game.skew - Date.now()) / 1000));
  const clock = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
  return r.phase === "playing" ? `Round ${r.number} · ${clock} left` : `Next round in ${left} s`;
}

function renderRoomInfo() {
  const info = $("room-info");
  if (!app.room) { info.textContent = ""; return; }
  const parts = [];
  if (app.room.node && app.cluster) parts.push("runs on " + app.room.node);
  if (app.serverNode && app.serverNode !== app.room.node) parts.push("you are on " + app.serverNode);
  if (!connected()) parts.push("reconnecting…");
  info.textContent = parts.join(" · ");
}

/** @param {ChatFrom} from @param {string} text */
function chatLine(from, text) {
  const log = $("chat-log");
  log.append(el("li", {}, el("span", { class: "from", css: { color: colorFor(from.id) } }, from.username), text));
  log.scrollTop = log.scrollHeight;
}

/** @param {string} text */
function systemLine(text) {
  const log = $("chat-log");
  log.append(el("li", { class: "system" }, text));
  log.scrollTop = log.scrollHeight;
}

/** Which node this page's socket is on (a cluster's /healthz names it), for display. */
async function learnServerNode() {
  const socket = app.welcomes;
  try {
    const health = await arena.health();
    if (app.welcomes === socket && connected() && health && health.node) {
      app.serverNode = health.node;
      if (!app.cluster) { app.cluster = true; if (app.view === "lobby") loadRooms(); }
    }
  } catch { /* not a cluster, or not current: nothing to show */ }
  renderConnState();
}

// ---------- drawing ----------

/** Each player's position now: interpolated between the last two state frames, mine predicted. */
function positions() {
  const [a, b] = app.frames.length === 2 ? app.frames : [app.frames[0], app.frames[0]];
  if (!b) return [];
  const now = performance.now();
  const t = Math.min(1, (now - b.at) / tickMs());
  return [...b.byId.values()].map((p) => {
    const from = a.byId.get(p.id) || p;
    // Mine is in `b`, the newest frame, so it is predicted from it.
    const at = app.user && p.id === app.user.id ? /** @type {Point} */ (localDisc(now))
      : inArena(from.x + (p.x - from.x) * t, from.y + (p.y - from.y) * t);
    return { id: p.id, username: p.username, x: at.x, y: at.y };
  });
}

/** The server's sizes (game/round.rs Rules): what touches what is decided there. */
const PLAYER_RADIUS = 14, ORB_RADIUS = 8;
// A prediction this far off was wrong, not late: the disc jumps instead of gliding.
const SNAP_DISTANCE = 2 * PLAYER_RADIUS;

/**
 * Give the canvas as many pixels as it covers on the screen (a phone shows it a third as
 * wide, at three device pixels per CSS pixel), in the arena's proportions; CSS scales it
 * to the width it has. Returns device pixels per CSS pixel, for sizing text.
 * @param {HTMLCanvasElement} canvas
 */
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * dpr);
  if (width > 0) {
    const height = Math.round(width * app.world.height / app.world.width);
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  }
  return dpr;
}

/**
 * A font of `px` CSS pixels, smaller on a narrow canvas so that a line still fits.
 * @param {HTMLCanvasElement} canvas @param {number} dpr @param {number} weight @param {number} px
 */
function fontOf(canvas, dpr, weight, px) {
  const size = Math.min(px, canvas.width / dpr / 16 + 4) * dpr;
  return { font: `${weight} ${size}px system-ui, sans-serif`, size };
}

function draw() {
  requestAnimationFrame(draw);
  if (app.view !== "game") return;
  const canvas = $("arena");
  const dpr = fitCanvas(canvas);
  const ctx = canvas.getContext("2d");
  const sx = canvas.width / app.world.width, sy = canvas.height / app.world.height;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "rgba(108,140,255,0.08)";
  ctx.lineWidth = dpr;
  for (let x = 0; x <= app.world.width; x += 60) { ctx.beginPath(); ctx.moveTo(x * sx, 0); ctx.lineTo(x * sx, canvas.height); ctx.stroke(); }
  for (let y = 0; y <= app.world.height; y += 60) { ctx.beginPath(); ctx.moveTo(0, y * sy); ctx.lineTo(canvas.width, y * sy); ctx.stroke(); }
  for (const o of app.game.orbs) {
    ctx.beginPath();
    ctx.arc(o.x * sx, o.y * sy, ORB_RADIUS * sx, 0, Math.PI * 2);
    ctx.fillStyle = "#ffd166";
    ctx.shadowColor = "#ffd166";
    ctx.shadowBlur = 14 * dpr;
    ctx.fill();
    ctx.shadowBlur = 0;
  }
  const status = $("round-status"), text = roundStatus();
  if (status.textContent !== text) status.textContent = text;
  for (const p of positions()) {
    const x = p.x * sx, y = p.y * sy, me = app.user && p.id === app.user.id;
    ctx.beginPath();
    // The server's disc radius: discs touch exactly when the server says they do.
    ctx.arc(x, y, PLAYER_RADIUS * sx, 0, Math.PI * 2);
    ctx.fillStyle = colorFor(p.id);
    ctx.shadowColor = colorFor(p.id);
    ctx.shadowBlur = (me ? 18 : 8) * dpr;
    ctx.fill();
    ctx.shadowBlur = 0;
    if (me) { ctx.lineWidth = 3 * Math.min(sx, dpr); ctx.strokeStyle = "#fff"; ctx.stroke(); }
    ctx.fillStyle = "#e8ebff";
    ctx.font = `${13 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    // Above the disc, or below it when the disc is at the top wall.
    const label = PLAYER_RADIUS * sy + 6 * dpr;
    ctx.fillText(p.username, x, y - label < 12 * dpr ? y + label + 10 * dpr : y - label);
  }
  const banner = app.game.banner;
  if (banner && Date.now() < banner.until) {
    const { font, size } = fontOf(canvas, dpr, 700, 30);
    ctx.fillStyle = "rgba(11,14,28,0.55)";
    ctx.fillRect(0, canvas.height / 2 - size * 1.7, canvas.width, size * 3.4);
    ctx.fillStyle = "#ffd166";
    ctx.font = font;
    ctx.textAlign = "center";
    ctx.fillText(banner.text, canvas.width / 2, canvas.height / 2 + size / 3, canvas.width * 0.96);
  }
  // Not live: say so over the last picture instead of showing a frozen game.
  const last = app.frames[app.frames.length - 1];
  const silent = app.room && performance.now() - Math.max(last ? last.at : 0, app.runAt) > STALE_MS;
  const waiting = !connected() ? (arena.state === "closed" ? "Disconnected" : "Reconnecting…")
    : arena.joining ? "Rejoining the room…"
    : silent ? "Waiting for the room's server…" : "";
  if (waiting) {
    ctx.fillStyle = "rgba(11,14,28,0.6)";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const { font, size } = fontOf(canvas, dpr, 600, 24);
    ctx.fillStyle = "#e8ebff";
    ctx.font = font;
    ctx.textAlign = "center";
    ctx.fillText(waiting, canvas.width / 2, canvas.height / 2 + size / 3, canvas.width * 0.96);
  }
}

// ---------- start ----------

$("login-form").addEventListener("submit", (/** @type {Event} */ e) => { e.preventDefault(); login(false); });
$("register-button").addEventListener("click", () => login(true));
// Not `logout` itself: the click event would be its first retry's delay.
$("logout").addEventListener("click", () => logout());
$("leave").addEventListener("click", leaveRoom);
$("create-room").addEventListener("submit", async (/** @type {Event} */ e) => {
  e.preventDefault();
  try {
    const room = await arena.createRoom($("room-name").value.trim(), Number($("room-capacity").value) || 16);
    $("room-name").value = "";
    app.roomNames.set(room.id, room.name);
    join(room.id);
  } catch (err) {
    notify("Could not create the room: " + /** @type {Error} */ (err).message, "lobby");
  }
});
$("chat-form").addEventListener("submit", (/** @type {Event} */ e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  if (arena.chat(text)) $("chat-input").value = "";
  else systemLine("Not connected: your message was not sent.");
});
addEventListener("keydown", (e) => onKey(e, true));
addEventListener("keyup", (e) => onKey(e, false));
addEventListener("blur", () => { app.keys.clear(); releaseStick(); if (app.view === "game") updateDirection(); });
initStick();
setInterval(() => { if (app.view === "lobby") loadRooms(); }, 3000);
requestAnimationFrame(draw);

/**
 * A stored session (another tab, or a reload) resumes without typing the password; a
 * server out of reach is tried again. A refused one ends with `session_ended`.
 */
function resume(delay = 1000) {
  arena.resume().then((session) => {
    if (!session) { show("login"); return; }
    notify("");
    show("lobby");
    // A reload in a room comes back into it (the SDK joins it once welcomed).
    try {
      const saved = JSON.parse(sessionStorage.getItem(ROOM_KEY) || "null");
      if (saved && saved.id) {
        app.roomNames.set(saved.id, saved.name || saved.id);
        arena.join(saved.id).catch(() => {});
      }
    } catch { /* nothing saved */ }
    arena.connect().catch(() => {});
  }).catch((e) => {
    if (e.status === 401 || e.status === 403) return; // `session_ended` showed the login with a line
    show("login");
    notify("Cannot reach the server. Retrying…", "reconnect");
    setTimeout(() => resume(Math.min(delay * 2, RESUME_MAX_MS)), delay);
  });
}
resume();

// For tests and the curious: what the page currently shows.
/** @type {any} */ (window).arena = {
  steer,
  steerToNearestOrb,
  snapshot: () => ({
    view: app.view,
    notice: app.notice,
    user: app.user && app.user.username,
    room: app.room && app.room.id,
    roomName: app.room && app.room.name,
    roomNode: app.room && app.room.node,
    serverNode: app.serverNode,
    cluster: app.cluster,
    wantRoom: arena.wantRoom,
    joining: arena.joining,
    members: [...app.members.values()],
    players: positions(),
    orbs: app.game.orbs.length,
    round: app.game.round && { number: app.game.round.number, phase: app.game.round.phase },
    scores: Object.fromEntries([...app.game.scores].map(([id, n]) => [app.members.get(id) || id, n])),
    banner: app.game.banner && app.game.banner.text,
    tick: app.frames.length ? app.frames[app.frames.length - 1].tick : null,
    seq: arena.seq,
    // Mine: drawn (predicted) and as the last state frame has it; inputs not yet applied.
    me: predictionState(),
    touch: document.documentElement.classList.contains("touch"),
    connected: connected(),
    state: arena.state,
    moved: app.counts.moved,
    rejoined: app.counts.rejoined,
    reconnects: app.counts.reconnects,
    lastLeft: app.lastLeft,
  }),
};

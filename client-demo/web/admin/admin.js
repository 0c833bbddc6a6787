// Arena admin console: the overview (counts now, small live charts, the nodes), live
// connections, bans in force and the admin actions, refreshed every two seconds; a search
// for any player, online or not; and a page per player (their sessions, sockets and
// history) to kick, ban, unban, change the role or end one session from. The token stays
// in memory; closing the tab ends the console's session.
//
// Every call goes through the SDK (/sdk/index.js, client-demo/sdk): the token refreshed
// before it expires, a call answered `token_expired` refreshed and retried, 503s
// retried with backoff; when the session ends (refused refresh), the console signs out.
import { Arena } from "../sdk/index.js";
import { el } from "../common.js";

/**
 * @import { ArenaError } from "../sdk/index.js"
 * @import { AuditEntry, AuditResponse, BanInfo, BanResponse, BansResponse, Connection, ConnectionsResponse,
 *   KickResponse, NodeInfo, NodesResponse, OverviewResponse, Role, RoleResponse, SessionInfo, UserDetail,
 *   UserSummary, UsersResponse } from "../../sdk/types/index.js"
 */

/** A player an action is about. @typedef {{ user_id: string, username: string }} Target */
/**
 * @typedef {object} Admin
 * @property {boolean} signedIn
 * @property {ReturnType<typeof setTimeout> | undefined} pollTimer
 * @property {string | null} query
 * @property {string | null} userId
 * @property {{ at: number, n: number }[]} sockets
 */

/** The console's session: memory only (the SDK's default store), never localStorage. */
const api = new Arena();

/** @type {(id: string) => any} */
const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const SOCKET_SAMPLES = 150; // the sockets chart: the last five minutes of polls
/** @type {Admin} */
const admin = {
  signedIn: false, pollTimer: undefined,
  query: null,      // the last search, run again after an action
  userId: null,     // the player whose page is open
  sockets: [],      // [{at, n}]: open sockets at each poll since the page opened
};
const VIEWS = ["overview-view", "action-view", "console-view", "players-view", "bans-view", "audit-view"];

// ---------- time, for people: local dates and durations, never epoch milliseconds ----------

/** A time as the admin's local date and time. @param {number} ms */
const when = (ms) => new Date(ms).toLocaleString();

/** A length of time: "40 s", "12 min", "3 h 5 min", "2 d 4 h". @param {number} ms */
function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
const ago = (/** @type {number} */ ms) => duration(Date.now() - ms) + " ago";
/** "banned until <date> (3 h 5 min left)", or "banned permanently". @param {BanInfo} ban */
const banState = (ban) => ban.banned_until
  ? `banned until ${when(ban.banned_until)} (${duration(ban.banned_until - Date.now())} left)`
  : "banned permanently";

/** @param {string} message */
function notify(message) {
  $("notice").textContent = message || "";
  $("notice").hidden = !message;
}

// ---------- session ----------

async function login() {
  $("login-error").textContent = "";
  try {
    const session = await api.login($("username").value.trim(), $("password").value);
    if (session.user.role !== "admin") {
      await api.logout().catch(() => {});
      $("login-error").textContent = "This console is for admins only.";
      return;
    }
    $("password").value = "";
    admin.signedIn = true;
    $("who-name").textContent = session.user.username;
    $("who").hidden = false;
    $("login-view").hidden = true;
    for (const v of VIEWS) $(v).hidden = false;
    poll();
  } catch (e) {
    $("login-error").textContent = /** @type {Error} */ (e).message;
  }
}

// The SDK refreshes the token; a refresh refused (the session revoked, a ban) ends it.
api.on("session_ended", ({ cause }) => {
  if (admin.signedIn && cause !== "logout") signOut("Your admin session ended. Please log in again.");
});

/** @param {string} message */
function signOut(message) {
  clearTimeout(admin.pollTimer);
  admin.signedIn = false;
  admin.userId = null;
  $("who").hidden = true;
  for (const v of [...VIEWS, "user-view"]) $(v).hidden = true;
  $("login-view").hidden = false;
  notify(message);
}

async function poll() {
  clearTimeout(admin.pollTimer);
  if (!admin.signedIn) return;
  try {
    const [{ connections }, { bans }, { entries }, overview, { nodes }] = await Promise.all([
      /** @type {Promise<ConnectionsResponse>} */ (api.request("GET", "/admin/connections")),
      /** @type {Promise<BansResponse>} */ (api.request("GET", "/admin/bans")),
      /** @type {Promise<AuditResponse>} */ (api.request("GET", "/admin/audit?limit=20")),
      /** @type {Promise<OverviewResponse>} */ (api.request("GET", "/admin/overview")),
      /** @type {Promise<NodesResponse>} */ (api.request("GET", "/admin/nodes")),
    ]);
    renderConnections(connections);
    renderBans(bans);
    renderAudit(entries);
    renderOverview(overview);
    renderNodes(nodes);
    if (admin.userId) await loadUser();
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (caught) {
    const e = /** @type {ArenaError} */ (caught);
    if (e.status === 401 || e.status === 403) return signOut(e.message);
    notify("Could not load the console: " + e.message);
  }
  admin.pollTimer = setTimeout(poll, POLL_MS);
}

/** Refresh what an action changed, at once rather than at the next poll. */
function refreshAll() {
  poll();
  search();
}

// ---------- overview ----------

/** @param {OverviewResponse} o */
function renderOverview(o) {
  $("ov-sockets").textContent = o.sockets;
  $("ov-rooms").textContent = o.rooms;
  $("ov-players").textContent = o.players_in_rooms;
  $("ov-nodes").textContent = o.nodes;
  admin.sockets.push({ at: o.at, n: o.sockets });
  if (admin.sockets.length > SOCKET_SAMPLES) admin.sockets.shift();
  const first = admin.sockets[0];
  $("ov-sockets-range").textContent = `(${duration(o.at - first.at)})`;
  const logins = o.minutes.map((m) => m.logins);
  const revocations = o.minutes.map((m) => m.revocations);
  $("ov-logins").textContent = sum(logins) + " in all";
  $("ov-revocations").textContent = sum(revocations) + " in all";
  drawChart($("chart-sockets"), admin.sockets.map((s) => s.n), "line", "#6c8cff");
  drawChart($("chart-logins"), logins, "bars", "#4fd1a5");
  drawChart($("chart-revocations"), revocations, "bars", "#ff6b7d");
}

const sum = (/** @type {number[]} */ values) => values.reduce((a, b) => a + b, 0);

/**
 * A small chart on a canvas, drawn at the screen's pixel density: `bars` (one per value,
 * the newest on the right) or a `line`; the largest value labels the top.
 * @param {HTMLCanvasElement} canvas
 * @param {number[]} values
 * @param {"bars" | "line"} kind
 * @param {string} color
 */
function drawChart(canvas, values, kind, color) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  // A canvas of ours that no other context took: never null.
  const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const top = 14, bottom = height - 2;
  const max = Math.max(1, ...values);
  const y = (/** @type {number} */ v) => bottom - (v / max) * (bottom - top);
  g.strokeStyle = "#2a3050";
  g.beginPath(); g.moveTo(0, bottom + 0.5); g.lineTo(width, bottom + 0.5); g.stroke();
  g.fillStyle = "#8a91b8";
  g.font = "11px system-ui, sans-serif";
  g.fillText(String(Math.max(...values, 0)), 2, 11);
  if (values.length === 0) return;
  if (kind === "bars") {
    const step = width / values.length;
    g.fillStyle = color;
    values.forEach((v, i) => {
      if (v > 0) g.fillRect(i * step + 1, y(v), Math.max(1, step - 2), bottom - y(v));
    });
  } else {
    const step = values.length > 1 ? width / (values.length - 1) : 0;
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    values.forEach((v, i) => (i ? g.lineTo(i * step, y(v)) : g.moveTo(0, y(v))));
    if (values.length === 1) g.lineTo(width, y(values[0]));
    g.stroke();
  }
}

/** @param {NodeInfo[]} nodes */
function renderNodes(nodes) {
  $("nodes").replaceChildren(...nodes.map((n) =>
    el("tr", { "data-node": n.id },
      el("td", {}, el("strong", {}, n.id)),
      el("td", {}, when(n.started_at), el("br"), el("span", { class: "muted" }, "up " + duration(Date.now() - n.started_at))),
      el("td", {}, ago(n.last_seen_at)),
      el("td", {}, String(n.sockets)),
      el("td", { class: n.current ? "ok" : "error" }, n.current ? "up to date" : "behind"))));
}

// ---------- connections, search, bans, audit ----------

/** A player's name that opens their page. @param {string} id @param {string} username */
function userLink(id, username) {
  return el("a", { href: "#", class: "user-link", "data-user": id,
    onclick: (/** @type {Event} */ e) => { e.preventDefault(); openUser(id); } }, username);
}

/** A room by its name, its id underneath (the id is what logs and the API use). @param {Connection} c */
function roomCell(c) {
  if (!c.room) return "—";
  return el("span", {}, c.room_name || "(unnamed room)", el("br"), el("code", {}, c.room));
}

/** @param {Connection[]} connections */
function renderConnections(connections) {
  $("count").textContent = `(${connections.length})`;
  $("connections").replaceChildren(...connections.map((c) =>
    el("tr", { "data-user": c.user_id, "data-username": c.username },
      el("td", {}, el("strong", {}, userLink(c.user_id, c.username)), el("br"), el("code", {}, c.user_id)),
      el("td", { class: "room" }, roomCell(c)),
      el("td", {}, new Date(c.connected_at).toLocaleTimeString(), el("br"), el("span", { class: "muted" }, "for " + duration(Date.now() - c.connected_at))),
      el("td", {}, c.remote_addr, ...(c.node ? [el("br"), el("code", {}, "on " + c.node)] : [])),
      el("td", {}, el("code", {}, c.session_id)),
      el("td", {}, actionButtons({ user_id: c.user_id, username: c.username }, null)))));
}

/** Kick, and Ban or Unban as the user's ban state says. @param {Target} c @param {BanInfo | null} ban */
function actionButtons(c, ban) {
  return el("div", { class: "row" },
    el("button", { class: "ghost kick", onclick: () => act("kick", c) }, "Kick"),
    ban
      ? el("button", { class: "ghost unban", onclick: () => unban(c) }, "Unban")
      : el("button", { class: "danger ban", onclick: () => act("ban", c) }, "Ban"));
}

/** The admin path of user `c` (`{user_id}`). @param {Target} c */
const userPath = (c) => "/admin/users/" + encodeURIComponent(c.user_id);

/**
 * Kick or ban `c` (`{user_id, username}`), with the reason and ban length typed above.
 * @param {"kick" | "ban"} what
 * @param {Target} c
 */
async function act(what, c) {
  /** @type {{ reason?: string, duration_secs?: number }} */
  const body = {};
  const reason = $("reason").value.trim();
  if (reason) body.reason = reason;
  const seconds = Number($("duration").value);
  if (what === "ban" && seconds > 0) body.duration_secs = seconds;
  try {
    /** @type {KickResponse & Partial<BanResponse>} */
    const r = await api.request("POST", `${userPath(c)}/${what}`, body);
    const until = what === "ban" ? (r.banned_until ? " until " + when(r.banned_until) : " permanently") : "";
    notify(`${what === "kick" ? "Kicked" : "Banned"} ${c.username}${until}: ${r.closed} socket(s) closed.`);
    refreshAll();
  } catch (e) {
    notify(`Could not ${what} ${c.username}: ${/** @type {Error} */ (e).message}`);
  }
}

/** @param {Target} c */
async function unban(c) {
  try {
    await api.request("DELETE", `${userPath(c)}/ban`);
    notify(`Lifted the ban on ${c.username}.`);
    refreshAll();
  } catch (e) {
    notify(`Could not unban ${c.username}: ${/** @type {Error} */ (e).message}`);
  }
}

/** Run the last search again (after an action), or the one typed. @param {string | null} [query] */
async function search(query = admin.query) {
  if (query === null || !admin.signedIn) return;
  admin.query = query;
  try {
    const { users } = /** @type {UsersResponse} */ (await api.request("GET", "/admin/users?query=" + encodeURIComponent(query)));
    renderUsers(users);
  } catch (e) {
    notify("Could not search: " + /** @type {Error} */ (e).message);
  }
}

/** "online (2 sockets)", "offline, logged in", "offline". @param {UserSummary} u */
function status(u) {
  if (u.sockets > 0) return `online (${u.sockets} socket${u.sockets === 1 ? "" : "s"})`;
  return u.sessions > 0 ? "offline, logged in" : "offline";
}

/** @param {UserSummary[]} users */
function renderUsers(users) {
  $("users-empty").hidden = users.length > 0;
  $("users").replaceChildren(...users.map((u) => {
    const c = { user_id: u.user.id, username: u.user.username };
    return el("tr", { "data-user": u.user.id, "data-username": u.user.username },
      el("td", {}, el("strong", {}, userLink(u.user.id, u.user.username)), el("br"), el("code", {}, u.user.id)),
      el("td", {}, u.user.role),
      el("td", { class: "status" }, status(u)),
      el("td", { class: "ban-state" }, u.ban ? banState(u.ban) : "—"),
      el("td", {}, actionButtons(c, u.ban)));
  }));
}

/** @param {BanInfo[]} bans */
function renderBans(bans) {
  $("ban-count").textContent = `(${bans.length})`;
  $("bans").replaceChildren(...bans.map((b) => {
    const c = { user_id: b.user.id, username: b.user.username };
    return el("tr", { "data-user": b.user.id, "data-username": b.user.username },
      el("td", {}, el("strong", {}, userLink(b.user.id, b.user.username))),
      el("td", {}, b.reason || "—"),
      el("td", {}, b.banned_by ? b.banned_by.username : "—"),
      el("td", {}, when(b.banned_at)),
      el("td", {}, b.banned_until ? `${when(b.banned_until)} (${duration(b.banned_until - Date.now())} left)` : "permanent"),
      el("td", {}, el("button", { class: "ghost unban", onclick: () => unban(c) }, "Unban")));
  }));
}

/** @type {Record<string, string>} */
const ACTION_NAMES = {
  kick: "kicked", ban: "banned", unban: "unbanned", role: "changed the role of", end_session: "ended a session of",
};

/** What an audit entry did, in words: "banned, until …", "changed the role of … to admin". @param {AuditEntry} e */
function actionText(e) {
  let what = ACTION_NAMES[e.action] || e.action;
  if (e.action === "ban") what += ", " + (e.banned_until ? "until " + when(e.banned_until) : "permanently");
  if (e.action === "role") what += " to " + e.role;
  return what;
}

/** @param {AuditEntry[]} entries */
function renderAudit(entries) {
  $("audit").replaceChildren(...entries.map((e) =>
    el("tr", { "data-action": e.action, "data-target": e.target.username },
      el("td", {}, when(e.at)),
      el("td", {}, e.admin.username),
      el("td", {}, actionText(e)),
      el("td", {}, userLink(e.target.id, e.target.username)),
      el("td", {}, e.reason || "—"))));
}

// ---------- one player's page ----------

/** @param {string} id */
async function openUser(id) {
  admin.userId = id;
  $("user-view").hidden = false;
  await loadUser();
  $("user-view").scrollIntoView({ block: "start" });
}

function closeUser() {
  admin.userId = null;
  $("user-view").hidden = true;
}

async function loadUser() {
  const id = admin.userId;
  if (id === null) return;
  try {
    /** @type {UserDetail} */
    const detail = await api.request("GET", "/admin/users/" + encodeURIComponent(id));
    if (admin.userId === id) renderUser(detail);
  } catch (caught) {
    const e = /** @type {ArenaError} */ (caught);
    if (e.status === 404) { closeUser(); notify("That player no longer exists."); }
    else notify("Could not load the player: " + e.message);
  }
}

/** @param {UserDetail} detail */
function renderUser({ summary, sessions, connections, history }) {
  const u = summary.user;
  const c = { user_id: u.id, username: u.username };
  const view = $("user-view");
  view.dataset.user = u.id;
  view.dataset.username = u.username;
  $("u-name").textContent = u.username;
  $("u-facts").textContent = `${u.id} · ${u.role} · joined ${when(summary.created_at)} · ${status(summary)}`;
  $("u-ban").textContent = summary.ban
    ? `${banState(summary.ban)}, by ${summary.ban.banned_by ? summary.ban.banned_by.username : "—"}: ${summary.ban.reason || "no reason given"}`
    : "";
  $("u-ban").className = summary.ban ? "error ban-state" : "ban-state";
  $("u-ban-button").hidden = !!summary.ban;
  $("u-unban").hidden = !summary.ban;
  if (document.activeElement !== $("u-role")) $("u-role").value = u.role;
  $("u-kick").onclick = () => act("kick", c);
  $("u-ban-button").onclick = () => act("ban", c);
  $("u-unban").onclick = () => unban(c);
  $("u-role-set").onclick = () => setRole(c, $("u-role").value);

  $("u-session-count").textContent = `(${sessions.length})`;
  $("u-sessions-empty").hidden = sessions.length > 0;
  $("u-sessions").replaceChildren(...sessions.map((s) =>
    el("tr", { "data-session": s.session_id },
      el("td", {}, when(s.created_at)),
      el("td", {}, ago(s.last_seen_at)),
      el("td", {}, s.remote_addr || "—"),
      el("td", { class: "device" }, s.user_agent || "—"),
      el("td", {}, String(s.sockets)),
      el("td", {}, el("button", { class: "ghost end-session", onclick: () => endSession(c, s) }, "End session")))));
  $("u-sockets-empty").hidden = connections.length > 0;
  $("u-sockets").replaceChildren(...connections.map((k) =>
    el("tr", { "data-connection": k.connection_id },
      el("td", { class: "room" }, roomCell(k)),
      el("td", {}, when(k.connected_at), el("br"), el("span", { class: "muted" }, "for " + duration(Date.now() - k.connected_at))),
      el("td", {}, k.remote_addr, ...(k.node ? [el("br"), el("code", {}, "on " + k.node)] : [])),
      el("td", {}, el("code", {}, k.session_id)))));
  $("u-history-empty").hidden = history.length > 0;
  $("u-history").replaceChildren(...history.map((e) =>
    el("tr", { "data-action": e.action },
      el("td", {}, when(e.at)),
      el("td", {}, e.admin.username),
      el("td", {}, actionText(e) + (e.session_id ? " (" + e.session_id + ")" : "")),
      el("td", {}, e.reason || "—"))));
}

/** @param {Target} c @param {SessionInfo} s */
async function endSession(c, s) {
  try {
    await api.request("DELETE", `${userPath(c)}/sessions/${encodeURIComponent(s.session_id)}`);
    notify(`Ended a session of ${c.username}: ${s.sockets} socket(s) closed.`);
    refreshAll();
  } catch (e) {
    notify(`Could not end the session: ${/** @type {Error} */ (e).message}`);
  }
}

/** @param {Target} c @param {Role} role */
async function setRole(c, role) {
  try {
    /** @type {RoleResponse} */
    const r = await api.request("PUT", `${userPath(c)}/role`, { role });
    notify(r.changed ? `${c.username} is now ${role}; their sessions were ended.` : `${c.username} already was ${role}.`);
    refreshAll();
  } catch (e) {
    notify(`Could not change the role: ${/** @type {Error} */ (e).message}`);
  }
}

$("login-form").addEventListener("submit", (/** @type {Event} */ e) => { e.preventDefault(); login(); });
$("logout").addEventListener("click", async () => {
  await api.logout().catch(() => {});
  signOut("Logged out.");
});
$("search-form").addEventListener("submit", (/** @type {Event} */ e) => { e.preventDefault(); search($("user-query").value.trim()); });
$("u-close").addEventListener("click", closeUser);

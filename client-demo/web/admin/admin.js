// Arena admin console: live connections, the bans in force and the admin actions
// (refreshed every two seconds), a search for any player, online or not, and kick, ban,
// unban from each. The token stays in memory; closing the tab ends the console's session.
"use strict";

const $ = (id) => document.getElementById(id);
const admin = { access: null, refreshToken: null, refreshTimer: null, pollTimer: null, query: null };
const VIEWS = ["action-view", "console-view", "players-view", "bans-view", "audit-view"];

/** A time as the admin's local date and time (never epoch milliseconds). */
const when = (ms) => new Date(ms).toLocaleString();
/** A ban's end for people: "permanent", or the local date and time. */
const banEnd = (until) => until ? when(until) : "permanent";

function notify(message) {
  $("notice").textContent = message || "";
  $("notice").hidden = !message;
}

async function login() {
  $("login-error").textContent = "";
  try {
    const session = await request("POST", "/auth/login", null, {
      username: $("username").value.trim(),
      password: $("password").value,
    });
    if (session.user.role !== "admin") {
      await request("POST", "/auth/logout", session.access_token, {}).catch(() => {});
      $("login-error").textContent = "This console is for admins only.";
      return;
    }
    $("password").value = "";
    adopt(session);
    $("who-name").textContent = session.user.username;
    $("who").hidden = false;
    $("login-view").hidden = true;
    for (const v of VIEWS) $(v).hidden = false;
    poll();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

function adopt(session) {
  admin.access = session.access_token;
  admin.refreshToken = session.refresh_token;
  clearTimeout(admin.refreshTimer);
  admin.refreshTimer = setTimeout(async () => {
    try { adopt(await request("POST", "/auth/refresh", null, { refresh_token: admin.refreshToken })); }
    catch { signOut("Your admin session ended. Please log in again."); }
  }, Math.max(1000, session.expires_in * 800));
}

function signOut(message) {
  clearTimeout(admin.refreshTimer);
  clearTimeout(admin.pollTimer);
  admin.access = null;
  $("who").hidden = true;
  for (const v of VIEWS) $(v).hidden = true;
  $("login-view").hidden = false;
  notify(message);
}

async function poll() {
  clearTimeout(admin.pollTimer);
  if (!admin.access) return;
  try {
    const [{ connections }, { bans }, { entries }] = await Promise.all([
      request("GET", "/admin/connections", admin.access),
      request("GET", "/admin/bans", admin.access),
      request("GET", "/admin/audit?limit=20", admin.access),
    ]);
    render(connections);
    renderBans(bans);
    renderAudit(entries);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.status === 401 || e.status === 403) return signOut(e.message);
    notify("Could not load connections: " + e.message);
  }
  admin.pollTimer = setTimeout(poll, 2000);
}

function render(connections) {
  $("count").textContent = `(${connections.length})`;
  $("connections").replaceChildren(...connections.map((c) =>
    el("tr", { "data-user": c.user_id, "data-username": c.username },
      el("td", {}, el("strong", {}, c.username), el("br"), el("code", {}, c.user_id)),
      el("td", {}, c.room || "—"),
      el("td", {}, new Date(c.connected_at).toLocaleTimeString()),
      el("td", {}, c.remote_addr, ...(c.node ? [el("br"), el("code", {}, "on " + c.node)] : [])),
      el("td", {}, el("code", {}, c.session_id)),
      el("td", {},
        el("div", { class: "row" },
          el("button", { class: "ghost kick", onclick: () => act("kick", c) }, "Kick"),
          el("button", { class: "danger ban", onclick: () => act("ban", c) }, "Ban"))))));
}

/** Kick or ban `c` (`{user_id, username}`), with the reason and ban length typed above. */
async function act(what, c) {
  const body = {};
  const reason = $("reason").value.trim();
  if (reason) body.reason = reason;
  const seconds = Number($("duration").value);
  if (what === "ban" && seconds > 0) body.duration_secs = seconds;
  try {
    const r = await request("POST", `/admin/users/${encodeURIComponent(c.user_id)}/${what}`, admin.access, body);
    const until = what === "ban" ? (r.banned_until ? " until " + when(r.banned_until) : " permanently") : "";
    notify(`${what === "kick" ? "Kicked" : "Banned"} ${c.username}${until}: ${r.closed} socket(s) closed.`);
    poll();
    search();
  } catch (e) {
    notify(`Could not ${what} ${c.username}: ${e.message}`);
  }
}

async function unban(c) {
  try {
    await request("DELETE", `/admin/users/${encodeURIComponent(c.user_id)}/ban`, admin.access);
    notify(`Lifted the ban on ${c.username}.`);
    poll();
    search();
  } catch (e) {
    notify(`Could not unban ${c.username}: ${e.message}`);
  }
}

/** Run the last search again (after an action), or the one typed. */
async function search(query = admin.query) {
  if (query === null || !admin.access) return;
  admin.query = query;
  try {
    const { users } = await request("GET", "/admin/users?query=" + encodeURIComponent(query), admin.access);
    renderUsers(users);
  } catch (e) {
    notify("Could not search: " + e.message);
  }
}

function renderUsers(users) {
  $("users-empty").hidden = users.length > 0;
  $("users").replaceChildren(...users.map((u) => {
    const c = { user_id: u.user.id, username: u.user.username };
    const status = u.sockets > 0
      ? `online (${u.sockets} socket${u.sockets === 1 ? "" : "s"})`
      : (u.sessions > 0 ? "offline, logged in" : "offline");
    return el("tr", { "data-user": u.user.id, "data-username": u.user.username },
      el("td", {}, el("strong", {}, u.user.username), el("br"), el("code", {}, u.user.id)),
      el("td", {}, u.user.role),
      el("td", { class: "status" }, status),
      el("td", { class: "ban-state" }, u.ban ? `banned, ${u.ban.banned_until ? "until " + when(u.ban.banned_until) : "permanently"}` : "—"),
      el("td", {},
        el("div", { class: "row" },
          el("button", { class: "ghost kick", onclick: () => act("kick", c) }, "Kick"),
          u.ban
            ? el("button", { class: "ghost unban", onclick: () => unban(c) }, "Unban")
            : el("button", { class: "danger ban", onclick: () => act("ban", c) }, "Ban"))));
  }));
}

function renderBans(bans) {
  $("ban-count").textContent = `(${bans.length})`;
  $("bans").replaceChildren(...bans.map((b) => {
    const c = { user_id: b.user.id, username: b.user.username };
    return el("tr", { "data-user": b.user.id, "data-username": b.user.username },
      el("td", {}, el("strong", {}, b.user.username)),
      el("td", {}, b.reason || "—"),
      el("td", {}, b.banned_by ? b.banned_by.username : "—"),
      el("td", {}, when(b.banned_at)),
      el("td", {}, banEnd(b.banned_until)),
      el("td", {}, el("button", { class: "ghost unban", onclick: () => unban(c) }, "Unban")));
  }));
}

const ACTION_NAMES = { kick: "kicked", ban: "banned", unban: "unbanned", role: "changed the role of" };

function renderAudit(entries) {
  $("audit").replaceChildren(...entries.map((e) => {
    let what = ACTION_NAMES[e.action] || e.action;
    if (e.action === "ban") what += ", " + (e.banned_until ? "until " + when(e.banned_until) : "permanently");
    if (e.action === "role") what += " to " + e.role;
    return el("tr", { "data-action": e.action, "data-target": e.target.username },
      el("td", {}, when(e.at)),
      el("td", {}, e.admin.username),
      el("td", {}, what),
      el("td", {}, e.target.username),
      el("td", {}, e.reason || "—"));
  }));
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login(); });
$("logout").addEventListener("click", async () => {
  await request("POST", "/auth/logout", admin.access, {}).catch(() => {});
  signOut("Logged out.");
});
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("user-query").value.trim()); });

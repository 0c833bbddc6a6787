// Arena admin console: live connections (refreshed every two seconds), kick, ban, unban.
// The token stays in memory; closing the tab ends the console's session.
"use strict";

const $ = (id) => document.getElementById(id);
const admin = { access: null, refreshToken: null, refreshTimer: null, pollTimer: null };

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
    $("console-view").hidden = false;
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
  $("console-view").hidden = true;
  $("login-view").hidden = false;
  notify(message);
}

async function poll() {
  clearTimeout(admin.pollTimer);
  if (!admin.access) return;
  try {
    const { connections } = await request("GET", "/admin/connections", admin.access);
    render(connections);
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

async function act(what, c) {
  const body = {};
  const reason = $("reason").value.trim();
  if (reason) body.reason = reason;
  const seconds = Number($("duration").value);
  if (what === "ban" && seconds > 0) body.duration_secs = seconds;
  try {
    const r = await request("POST", `/admin/users/${encodeURIComponent(c.user_id)}/${what}`, admin.access, body);
    const until = what === "ban"
      ? (r.banned_until ? " until " + new Date(r.banned_until).toLocaleString() : " permanently")
      : "";
    notify(`${what === "kick" ? "Kicked" : "Banned"} ${c.username}${until}: ${r.closed} socket(s) closed.`);
    poll();
  } catch (e) {
    notify(`Could not ${what} ${c.username}: ${e.message}`);
  }
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login(); });
$("logout").addEventListener("click", async () => {
  await request("POST", "/auth/logout", admin.access, {}).catch(() => {});
  signOut("Logged out.");
});
$("unban-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = $("unban-user").value.trim();
  try {
    await request("DELETE", `/admin/users/${encodeURIComponent(id)}/ban`, admin.access);
    notify(`Unbanned ${id}.`);
    $("unban-user").value = "";
  } catch (err) {
    notify(`Could not unban ${id}: ${err.message}`);
  }
});

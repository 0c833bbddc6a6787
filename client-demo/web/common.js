// Shared by the game page and the admin console: HTTP calls that speak PROTOCOL.md's
// error bodies, and a tiny DOM helper. Tokens only ever travel in headers or bodies,
// never in a URL, so no proxy or server log can keep them.
"use strict";

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API. `token` (optional) goes in the Authorization header. */
async function request(method, path, token, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const text = await response.text();
  const data = text ? safeJson(text) : null;
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.code || "http_" + response.status, error.message || response.statusText);
    failure.bannedUntil = error.banned_until;
    throw failure;
  }
  return data;
}

/** What to tell a player whose login was refused: a ban says so, and until when in their own time. */
function loginFailure(e) {
  if (e.code !== "banned") return e.message;
  return e.bannedUntil
    ? "This account is banned until " + new Date(e.bannedUntil).toLocaleString() + "."
    : "This account is banned permanently.";
}

function safeJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/** el("li", {class: "x", css: {color: "red"}, onclick: f}, "text", child) */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    // Styles through the CSSOM: the pages' Content-Security-Policy refuses style
    // attributes (`style-src 'self'`), not properties set from our own script.
    else if (key === "css") Object.assign(node.style, value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** A stable, pleasant color per player id. */
function colorFor(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 75%, 62%)`;
}

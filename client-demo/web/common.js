// Shared by the game page and the admin console: what a refused login says, and a tiny
// DOM helper. HTTP and the socket are the SDK's (/sdk/index.js).

/**
 * What to tell a player a ban keeps out, until when in their own time.
 * @param {number | null | undefined} bannedUntil Unix ms; null: permanent
 */
export function banText(bannedUntil) {
  return bannedUntil
    ? "This account is banned until " + new Date(bannedUntil).toLocaleString() + "."
    : "This account is banned permanently.";
}

/**
 * What to tell a player whose login was refused: a ban says so, and until when.
 * @param {{ code?: string, message: string, bannedUntil?: number | null }} e
 */
export function loginFailure(e) {
  return e.code === "banned" ? banText(e.bannedUntil) : e.message;
}

/**
 * el("li", {class: "x", css: {color: "red"}, onclick: f}, "text", child)
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...(Node | string)} children
 */
export function el(tag, attrs, ...children) {
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

/** A stable, pleasant color per player id. @param {string} id */
export function colorFor(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 75%, 62%)`;
}

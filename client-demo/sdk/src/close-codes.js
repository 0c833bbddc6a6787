// What the SDK does on each close code of PROTOCOL.md's table (and on a socket lost
// without a close frame). docs/sdk.md has the same table for people.

/**
 * - `reconnect`: come back with exponential backoff and jitter
 * - `refresh`: refresh the access token, then reconnect at once
 * - `stop`: the connection ends (this client broke a rule: reconnecting would repeat it);
 *   the session stays, `connect()` may be called again
 * - `end`: the session is over; never reconnect
 * @typedef {"reconnect" | "refresh" | "stop" | "end"} CloseAction
 */

/**
 * @typedef {object} ClosePolicy
 * @property {CloseAction} action
 * @property {string | null} event the typed event emitted for it (besides `disconnected`)
 * @property {string} meaning
 */

/** @type {Readonly<Record<number, ClosePolicy>>} */
export const CLOSE_POLICY = Object.freeze({
  1000: { action: "reconnect", event: null, meaning: "normal closure (not sent by the server unasked)" },
  1001: { action: "reconnect", event: null, meaning: "server shutting down, or an upgrade that did not get going in time" },
  1006: { action: "reconnect", event: null, meaning: "connection lost without a close frame (network, a dead peer)" },
  1008: { action: "stop", event: "rate_limited", meaning: "policy: a rate or abuse limit, or too slow to read" },
  1009: { action: "stop", event: null, meaning: "a message was too big" },
  1011: { action: "reconnect", event: null, meaning: "server error" },
  4000: { action: "stop", event: null, meaning: "protocol error: repeated invalid messages" },
  4001: { action: "end", event: "revoked", meaning: "session revoked (logout, refresh-token theft, an admin ended it)" },
  4002: { action: "refresh", event: "expired", meaning: "the access token expired without a reauth" },
  4003: { action: "end", event: "kicked", meaning: "kicked or banned by an admin, or the role changed (`banned` when the server says so)" },
  4004: { action: "end", event: "replaced", meaning: "single-session mode: the user logged in elsewhere" },
});

/**
 * The policy for `code`; unknown codes reconnect with backoff.
 * @param {number} code
 * @returns {ClosePolicy}
 */
export function closePolicy(code) {
  return CLOSE_POLICY[code] ?? { action: "reconnect", event: null, meaning: "unlisted close code" };
}

// What the SDK tests share: arena-server processes of their own (a fresh data dir and a
// free port each; stop and start again on the same port and data dir), SDK instances for
// Node (the ws package) whose events are recorded, and waits with a deadline.
//
// The processes, and for clusters (test/cluster.test.mjs) a PostgreSQL database and a
// redis-server of the test's own and a TCP link that can be cut (so that one node can
// lose its database, which is what makes a node stop being current, while the others
// keep theirs), come from tests/support/processes.mjs, shared with the browser tests.

import { WebSocket } from "ws";
import { Arena } from "../src/index.js";
import { ArenaProcess, DEADLINE, cleanUpProcesses, createDatabase as createDb } from "../../../tests/support/processes.mjs";

export {
  DEADLINE, root, serverBinary, freePort, until, psql, databaseUrl, startRedis, startLink,
} from "../../../tests/support/processes.mjs";
export const ADMIN = ["admin", "admin-password-1"];

/** One arena-server (tests/support/processes.mjs), logins unthrottled, logging warnings only. */
export class Server extends ArenaProcess {
  /** @param {string[]} args its flags beyond --listen, --data-dir and --web-dir */
  constructor(args = []) {
    super("sdk", ["--auth-rate-limit", "0", ...args], { env: { ARENA_LOG: process.env.ARENA_LOG || "warn" } });
  }
}

/** A fresh database on the machine's PostgreSQL (dropped by cleanUp); its name. */
export const createDatabase = () => createDb("arena_sdk");

export async function cleanUp() {
  // A test that failed half-way leaves its clients reconnecting: stop them, or their
  // timers keep the test process alive.
  for (const client of clients) client.close();
  clients.clear();
  await cleanUpProcesses();
}

/** An SDK instance for Node against `server` (or a base URL). */
export function arena(server, options = {}) {
  const baseUrl = typeof server === "string" ? server : server.base;
  const client = new Arena({ baseUrl, WebSocket, reconnect: { initialDelayMs: 200, maxDelayMs: 1000 }, ...options });
  clients.add(client);
  return client;
}
const clients = new Set();

/**
 * Record every event of `client` (in order) so a test can wait for one with a deadline
 * and check what happened before it.
 */
export function record(client) {
  const events = [];
  const waiters = [];
  const types = ["open", "welcome", "disconnected", "reconnecting", "closed", "session", "session_ended",
    "revoked", "kicked", "banned", "expired", "replaced", "rate_limited", "unavailable", "joined",
    "rejoined", "left", "join_retry", "join_failed", "reauthed", "reauth_failed", "token_expiring", "chat", "pong", "error", "input"];
  for (const type of types) {
    client.on(type, (payload) => {
      events.push({ type, payload, at: Date.now() });
      for (const w of [...waiters]) if (w.type === type && w.match(payload)) { waiters.splice(waiters.indexOf(w), 1); w.ok(payload); }
    });
  }
  return {
    events,
    count: (type) => events.filter((e) => e.type === type).length,
    types: () => events.map((e) => e.type),
    /** Where the record is now: pass as `since` to wait for an event after this point. */
    mark: () => events.length,
    /**
     * The first `type` event matching `match` at index `since` or later (default: from
     * now on), waiting for it until the deadline.
     */
    next(type, { match = () => true, deadline = DEADLINE, since = events.length } = {}) {
      const found = events.slice(since).find((e) => e.type === type && match(e.payload));
      if (found) return Promise.resolve(found.payload);
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          fail(new Error(`no ${type} event within ${deadline} ms; events: ${events.map((e) => e.type).join(", ")}`));
        }, deadline);
        const w = { type, match, ok: (p) => { clearTimeout(timer); ok(p); } };
        waiters.push(w);
      });
    },
  };
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

let users = 0;
/** A fresh user name. */
export const username = (prefix = "p") => `${prefix}${process.pid % 10000}_${++users}`;

/** The next `type` event of `client` matching `match`, within the deadline. */
export function nextEvent(client, type, match = () => true, deadline = DEADLINE) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { off(); fail(new Error(`no matching ${type} within ${deadline} ms`)); }, deadline);
    const off = client.on(type, (payload) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      off();
      ok(payload);
    });
  });
}

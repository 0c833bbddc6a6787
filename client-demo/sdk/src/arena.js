// Arena's client: the session (login, refresh before expiry, logout), one WebSocket that
// lives by it (subprotocol token, `reauth` on every refresh, reconnect with backoff and
// jitter, close codes as typed events) and a helper for every client message.
// docs/sdk.md describes the options, the events and the rules.

import { ArenaError } from "./errors.js";
import { Emitter } from "./emitter.js";
import { backoffDelay } from "./backoff.js";
import { closePolicy } from "./close-codes.js";
import { Http } from "./http.js";

/**
 * @import { ServerMessage, ClientMessage, Session, User, Room, RoomDetail, RoomsResponse,
 *   MeResponse, SessionsResponse, RegisterResponse, ErrorCode, Health } from "../types/index.js"
 * @import { BackoffOptions } from "./backoff.js"
 */

/**
 * Where the refresh token is kept. Several Arena instances given one store (two tabs
 * over localStorage) share one session; the SDK reads the store right before every
 * refresh, so each presents the newest token, and the server's grace rule gives two
 * that refresh at once the same pair.
 * @typedef {object} TokenStore
 * @property {() => string | null | undefined | Promise<string | null | undefined>} get
 * @property {(token: string | null) => void | Promise<void>} set `null` clears it
 */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [initialDelayMs] first delay (default 500)
 * @property {number} [maxDelayMs] longest delay (default 5000)
 * @property {number} [jitter] fraction of each delay, either way (default 0.2)
 * @property {number} [maxAttempts] failed attempts in a row before giving up (default Infinity)
 * @property {number} [maxUnavailable] upgrades answered 503 `unavailable` in a row before giving
 *   up with `closed` (cause `unavailable`) (default 10: about 40 s with the default delays)
 */

/**
 * @typedef {object} ArenaOptions
 * @property {string} [baseUrl] the server, e.g. `http://127.0.0.1:8080` (default in a browser: the page's origin)
 * @property {any} [WebSocket] a WebSocket constructor (Node: `(await import("ws")).WebSocket`; default `globalThis.WebSocket`)
 * @property {typeof fetch} [fetch] default `globalThis.fetch`
 * @property {TokenStore} [tokenStore] where the refresh token lives (default: memory)
 * @property {TokenStore} [deviceTokenStore] where the known-device token of the last login lives
 *   (default: memory). It is sent with every login, so others guessing the password cannot
 *   lock this device out (the server's per-username login limit does not apply to it); give
 *   a persistent store (localStorage) to keep it across restarts. Logging out keeps it
 * @property {string | false} [origin] `Origin` for HTTP and upgrades in Node (default: the baseUrl's origin; false: none). Browsers send their own
 * @property {boolean} [autoRefresh] refresh before the access token expires (default true)
 * @property {boolean} [rejoin] join the last room again after a reconnect (default true)
 * @property {ReconnectOptions} [reconnect]
 * @property {number} [unavailableRetries] HTTP 503 retries per request (default 3)
 * @property {number} [joinAttempts] tries of a join answered `unavailable` or `rate_limited` (default 4)
 * @property {number} [inputResendMs] an input the room has not applied by then is sent again (default 1000; 0: never)
 * @property {number} [timeoutMs] how long ping, reauth, join and leave wait for their answer (default 10000)
 */

/** @typedef {"idle" | "connecting" | "open" | "reconnecting" | "closed"} ConnectionState */

/**
 * Why the session or the connection ended for good.
 * @typedef {"logout" | "revoked" | "kicked" | "banned" | "replaced" | "refresh_invalid" | "disconnect" | "gave_up"
 *   | "unavailable" | "policy" | "message_too_big" | "protocol_error"} EndCause
 */

/**
 * @typedef {{ [K in ServerMessage["type"]]: Extract<ServerMessage, { type: K }> }} ServerEvents
 */

/**
 * Every event: each server message under its `type`, plus the SDK's own.
 * @typedef {ServerEvents & {
 *   message: ServerMessage,
 *   open: { url: string },
 *   disconnected: { code: number, reason: string, wasOpen: boolean },
 *   reconnecting: { attempt: number, delayMs: number, code: number },
 *   closed: { code: number, reason: string, cause: EndCause },
 *   session: Session,
 *   session_ended: { cause: EndCause, reason: string },
 *   revoked: { code: 4001, reason: string },
 *   kicked: { code: 4003, reason: string },
 *   banned: { code: number, reason: string, bannedUntil: number | null },
 *   expired: { code: 4002, reason: string },
 *   replaced: { code: 4004, reason: string },
 *   rate_limited: { source: "close" | "upgrade" | "message" | "http", code: 1008 | 429, reason: string, retryAfter?: number | null },
 *   unavailable: { source: "http" | "socket" | "join", attempt: number, delayMs: number, method?: string, path?: string, room?: string },
 *   rejoined: Extract<ServerMessage, { type: "joined" }>,
 *   join_retry: { room: string, code: "unavailable" | "rate_limited", attempt: number, attempts: number, delayMs: number, rejoin: boolean },
 *   join_failed: { room: string, code: string, message: string, rejoin: boolean },
 *   reauth_failed: { code: string, message: string },
 *   input: { seq: number, dx: number, dy: number, resent: boolean },
 * }} ArenaEvents
 */

/** @typedef {Extract<ServerMessage, { type: "welcome" }>} Welcome */
/** @typedef {Extract<ServerMessage, { type: "joined" }>} Joined */
/** @typedef {Extract<ServerMessage, { type: "left" }>} Left */
/** @typedef {Extract<ServerMessage, { type: "pong" }> & { rtt: number }} Pong */

/**
 * @template T
 * @typedef {{ resolve: (value: T) => void, reject: (error: Error) => void, timer: ReturnType<typeof setTimeout> | null }} Waiter
 */

/** Error frames that answer a `join`. */
const JOIN_ERRORS = new Set(["room_not_found", "room_full", "unavailable", "rate_limited", "invalid_request"]);
/** Error frames that answer a `reauth`. */
const REAUTH_ERRORS = new Set(["token_invalid", "token_expired", "token_revoked", "forbidden", "banned"]);
const CHAT_MAX_CHARS = 280;

/** A refresh token held in memory only (one instance, or a Node process). */
export function memoryStore() {
  /** @type {string | null} */
  let token = null;
  return { get: () => token, set: (/** @type {string | null} */ t) => { token = t; } };
}

/**
 * A refresh token in Web Storage (`localStorage` shares it between tabs).
 * @param {Storage} storage
 * @param {string} [key]
 * @returns {TokenStore}
 */
export function webStorageStore(storage, key = "arena.refresh_token") {
  return {
    get: () => storage.getItem(key),
    set: (t) => { if (t === null) storage.removeItem(key); else storage.setItem(key, t); },
  };
}

/** @extends {Emitter<ArenaEvents>} */
export class Arena extends Emitter {
  // ---- configuration ----
  /** @type {string} */ baseUrl;
  #WebSocket;
  #store;
  #deviceStore;
  /** @type {string | null} */ #origin;
  #opts;
  #http;
  #browser;

  // ---- session ----
  /** @type {string | null} */ #access = null;
  #accessExpiresAt = 0;
  /** @type {User | null} */ #user = null;
  /** @type {string | null} */ #sessionId = null;
  /** @type {string | null} */ #refreshToken = null; // the last one this instance saw
  /** @type {ReturnType<typeof setTimeout> | null} */ #refreshTimer = null;
  /** @type {Promise<Session> | null} */ #refreshing = null;

  // ---- connection ----
  /** @type {any} */ #ws = null;
  #opened = false;
  #welcomed = false;
  #want = false;                  // connect() was called and the connection has not ended
  /** @type {ConnectionState} */ #state = "idle";
  #attempt = 0;                   // failed attempts since the last welcome
  #unavailableRun = 0;            // of them, upgrades answered 503 in a row
  /** @type {ReturnType<typeof setTimeout> | null} */ #reconnectTimer = null;
  /** @type {string} */ #lastError = "";
  /** @type {Waiter<Welcome>[]} */ #connectWaiters = [];
  /** @type {(() => void) | null} */ #onlineOff = null;
  #serverOffset = 0;

  // ---- room and messages ----
  /** @type {Room | null} */ #room = null;
  /** @type {string | null} */ #wantRoom = null;
  /** @type {{ room: string, attempt: number, rejoin: boolean, waiter: Waiter<Joined> | null } | null} */ #pendingJoin = null;
  /** @type {ReturnType<typeof setTimeout> | null} */ #joinRetryTimer = null;
  /** @type {Waiter<Left>[]} */ #leaveWaiters = [];
  /** @type {Waiter<void> | null} */ #reauthWaiter = null;
  /** @type {Map<number, Waiter<Pong> & { sentAt: number }>} */ #pings = new Map();
  #pingId = 0;
  #seq = 0;
  /** @type {{ dx: number, dy: number, at: number } | null} */ #lastInput = null;

  /** @param {ArenaOptions} [options] */
  constructor(options = {}) {
    super();
    const g = /** @type {any} */ (globalThis);
    this.#browser = typeof g.document !== "undefined" && typeof g.location !== "undefined";
    const base = options.baseUrl ?? (this.#browser ? g.location.origin : undefined);
    if (!base) throw new TypeError("Arena: baseUrl is required outside a browser");
    this.baseUrl = String(base).replace(/\/+$/, "");
    this.#WebSocket = options.WebSocket ?? g.WebSocket;
    this.#store = options.tokenStore ?? memoryStore();
    this.#deviceStore = options.deviceTokenStore ?? memoryStore();
    this.#origin = options.origin === false || this.#browser ? null : options.origin ?? new URL(this.baseUrl).origin;
    this.#opts = {
      autoRefresh: options.autoRefresh ?? true,
      rejoin: options.rejoin ?? true,
      /** @type {BackoffOptions & { maxAttempts: number, maxUnavailable: number }} */
      reconnect: { maxAttempts: Infinity, maxUnavailable: 10, ...options.reconnect },
      joinAttempts: options.joinAttempts ?? 4,
      inputResendMs: options.inputResendMs ?? 1000,
      timeoutMs: options.timeoutMs ?? 10_000,
    };
    const fetchFn = options.fetch ?? g.fetch?.bind(g);
    if (!fetchFn) throw new TypeError("Arena: no fetch; pass options.fetch");
    this.#http = new Http({
      baseUrl: this.baseUrl,
      fetch: fetchFn,
      origin: this.#origin,
      unavailableRetries: options.unavailableRetries ?? 3,
      backoff: this.#opts.reconnect,
      onUnavailable: (info) => this.emit("unavailable", info),
      onRateLimited: (error) => this.emit("rate_limited", { source: "http", code: 429, reason: error.message, retryAfter: error.retryAfter }),
    });
  }

  // ================= what the application reads =================

  /** @returns {ConnectionState} */
  get state() { return this.#state; }
  /** The socket is open and welcomed. */
  get connected() { return this.#welcomed && !!this.#ws; }
  get user() { return this.#user; }
  get sessionId() { return this.#sessionId; }
  /** The access token (memory only; never put it in a URL). */
  get accessToken() { return this.#access; }
  /** When the access token expires, in local ms. */
  get accessExpiresAt() { return this.#accessExpiresAt; }
  /** The room the socket is in (kept while reconnecting), or null. */
  get room() { return this.#room; }
  /** The room the SDK means to be in: joined again after a reconnect. */
  get wantRoom() { return this.#wantRoom; }
  /** The room of a join sent (or waiting for the socket) and not answered yet, or null. */
  get joining() { return this.#pendingJoin?.room ?? null; }
  /** The last input `seq` sent. */
  get seq() { return this.#seq; }
  /** Server time minus local time, in ms (from the last welcome and pongs). */
  get serverTimeOffset() { return this.#serverOffset; }

  // ================= HTTP: the session =================

  /**
   * Any API call, authenticated with the access token; a 401 `token_expired` is
   * refreshed and retried once.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    if (!this.#access) await this.refresh();
    try {
      return await this.#http.request(method, path, { token: this.#access, body });
    } catch (e) {
      if (!(e instanceof ArenaError) || e.status !== 401 || e.code !== "token_expired") throw e;
      await this.refresh();
      return this.#http.request(method, path, { token: this.#access, body });
    }
  }

  /**
   * Create an account (it does not log in).
   * @param {string} username
   * @param {string} password
   * @returns {Promise<User>}
   */
  async register(username, password) {
    /** @type {RegisterResponse} */
    const r = await this.#http.request("POST", "/auth/register", { body: { username, password } });
    return r.user;
  }

  /**
   * Log in: a new session, its refresh token put in the store.
   * @param {string} username
   * @param {string} password
   * @returns {Promise<Session>}
   */
  async login(username, password) {
    /** @type {Session} */
    let session;
    try {
      // The known-device token of an earlier login, if any: the server ignores one that is
      // not for this username, expired or forged.
      const device_token = (await this.#deviceStore.get()) || undefined;
      session = await this.#http.request("POST", "/auth/login", { body: { username, password, device_token } });
    } catch (e) {
      // A banned user hears it as an event too, with until when (as a refresh says it).
      if (e instanceof ArenaError && e.code === "banned") {
        this.emit("banned", { code: e.status, reason: e.message, bannedUntil: e.bannedUntil ?? null });
      }
      throw e;
    }
    if (session.device_token) await this.#deviceStore.set(session.device_token);
    await this.#adopt(session);
    return session;
  }

  /**
   * Take up the session whose refresh token is in the store (another tab, a reload);
   * null when the store holds none. A refused token ends it (`session_ended`) and
   * throws.
   * @returns {Promise<Session | null>}
   */
  async resume() {
    if (!(await this.#store.get())) return null;
    return this.refresh();
  }

  /**
   * A fresh access token (and refresh token) now; the live socket is moved onto it
   * with `reauth`. Calls made while one is on its way share it.
   * @returns {Promise<Session>}
   */
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#doRefresh().finally(() => { this.#refreshing = null; });
    }
    return this.#refreshing;
  }

  async #doRefresh() {
    // Read the store now: another instance sharing it may have rotated the token.
    let token = (await this.#store.get()) || this.#refreshToken;
    if (!token) throw new ArenaError(401, "no_session", "not logged in");
    /** @type {Session} */
    let session;
    try {
      session = await this.#http.request("POST", "/auth/refresh", { body: { refresh_token: token } });
    } catch (e) {
      if (!(e instanceof ArenaError) || (e.status !== 401 && e.status !== 403)) throw e;
      // Another instance may have stored a newer token meanwhile (or logged in anew).
      const newer = await this.#store.get();
      if (!newer || newer === token) {
        // The refused token is this session's (a resume may not have known it): the store
        // is cleared of it and `session_ended` says so.
        this.#refreshToken = token;
        if (e.code === "banned") this.#endSession("banned", e.message, e.bannedUntil ?? null, e.status);
        else this.#endSession("refresh_invalid", e.message, null);
        throw e;
      }
      token = newer;
      try {
        session = await this.#http.request("POST", "/auth/refresh", { body: { refresh_token: token } });
      } catch (e2) {
        if (e2 instanceof ArenaError && (e2.status === 401 || e2.status === 403)) {
          this.#refreshToken = token;
          this.#endSession("refresh_invalid", e2.message, null);
        }
        throw e2;
      }
    }
    await this.#adopt(session);
    if (this.connected) this.#reauth().catch(() => {});
    return session;
  }

  /**
   * Log out this session (or, with `all`, every session of the user). The socket is
   * closed and nothing reconnects. If the server could not record it (503 after the
   * retries, a network error), the error is thrown and the session stays, so the call
   * can be made again.
   * @param {{ all?: boolean }} [options]
   */
  async logout({ all = false } = {}) {
    if (!this.#access) { this.#endSession("logout", "logged out", null); return; }
    // Our own socket gets 4001 before the answer: not a `revoked` to report.
    const wasConnected = this.#want || !!this.#ws;
    this.#stopConnection();
    const body = all ? { all: true } : {};
    try {
      try {
        await this.#http.request("POST", "/auth/logout", { token: this.#access, body });
      } catch (e) {
        // Past `exp` (a laptop that slept through the refresh): refresh, then log that out.
        if (!(e instanceof ArenaError) || e.status !== 401 || e.code !== "token_expired") throw e;
        await this.refresh();
        await this.#http.request("POST", "/auth/logout", { token: this.#access, body });
      }
    } catch (e) {
      if (wasConnected) {
        this.#state = "closed";
        this.emit("closed", { code: 1000, reason: "logout failed", cause: "disconnect" });
      }
      throw e;
    }
    this.#endSession("logout", "logged out", null);
  }

  /** @returns {Promise<MeResponse>} */
  me() { return this.request("GET", "/auth/me"); }
  /**
   * `GET /healthz`, without a token and without retries (a 503 is the answer here): in a
   * cluster it names the node and the backplane's state.
   * @returns {Promise<Health>}
   */
  health() { return this.#http.request("GET", "/healthz", { retry: false }); }
  /** @returns {Promise<SessionsResponse["sessions"]>} */
  async sessions() { return (await this.request("GET", "/auth/sessions")).sessions; }
  /** End one of the caller's sessions (a device); its sockets close with 4001.
   * @param {string} sessionId */
  async endSession(sessionId) { await this.request("DELETE", "/auth/sessions/" + encodeURIComponent(sessionId)); }
  /** @returns {Promise<Room[]>} */
  async rooms() { return /** @type {RoomsResponse} */ (await this.request("GET", "/lobby/rooms")).rooms; }
  /** One room with its members. @param {string} id @returns {Promise<RoomDetail>} */
  roomInfo(id) { return this.request("GET", "/lobby/rooms/" + encodeURIComponent(id)); }
  /** @param {string} name @param {number} [capacity] @returns {Promise<Room>} */
  createRoom(name, capacity) {
    return this.request("POST", "/lobby/rooms", capacity === undefined ? { name } : { name, capacity });
  }

  /** @param {Session} session */
  async #adopt(session) {
    // `expires_in` counts from now on our clock (no skew); `exp` is whole seconds, so a
    // second is taken off to stay before it.
    this.#access = session.access_token;
    this.#accessExpiresAt = Date.now() + session.expires_in * 1000 - 1000;
    this.#user = session.user;
    this.#sessionId = session.session_id;
    this.#refreshToken = session.refresh_token;
    await this.#store.set(session.refresh_token);
    this.#scheduleRefresh();
    this.emit("session", session);
  }

  #scheduleRefresh() {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#opts.autoRefresh || !this.#access) return;
    const lifetime = this.#accessExpiresAt - Date.now();
    // At 80% of its life, and at least 5 s before its end when it lives long enough.
    const delay = Math.max(Math.min(1000, lifetime / 2), Math.min(lifetime * 0.8, lifetime - 5000));
    this.#refreshTimer = unref(setTimeout(() => this.#refreshSoon(1), Math.max(0, delay)));
  }

  /** The timer's refresh: a server out of reach is tried again while the token lives. @param {number} attempt */
  #refreshSoon(attempt) {
    this.#refreshTimer = null;
    this.refresh().catch((e) => {
      if (!this.#access || (e instanceof ArenaError && (e.status === 401 || e.status === 403))) return;
      const delay = backoffDelay(attempt, this.#opts.reconnect);
      this.#refreshTimer = unref(setTimeout(() => this.#refreshSoon(attempt + 1), delay));
    });
  }

  /**
   * The session is over: forget it, clear the store if it still holds this session's
   * token, stop the connection, and say why.
   * @param {EndCause} cause
   * @param {string} reason
   * @param {number | null} bannedUntil
   * @param {number} [code] the close code that ended it
   */
  #endSession(cause, reason, bannedUntil, code = 1000) {
    const hadSession = !!this.#access || !!this.#refreshToken;
    const mine = this.#refreshToken;
    this.#access = null;
    this.#accessExpiresAt = 0;
    this.#refreshToken = null;
    this.#sessionId = null;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    // Another instance may already hold a newer session in the same store: leave it.
    Promise.resolve(this.#store.get()).then((stored) => {
      if (!stored || stored === mine) return this.#store.set(null);
    }).catch(() => {});
    const wasWanted = this.#want;
    this.#stopConnection();
    this.#room = null;
    this.#wantRoom = null;
    this.#lastInput = null; // the next session's first room must not start moving
    if (cause === "banned") this.emit("banned", { code, reason, bannedUntil });
    if (wasWanted || this.#state !== "idle") {
      this.#state = "closed";
      this.emit("closed", { code, reason, cause });
    }
    if (hadSession) this.emit("session_ended", { cause, reason });
    this.#user = null;
  }

  // ================= the socket =================

  /**
   * Open the socket (logging in first is the application's part) and keep it open:
   * resolves with the first `welcome`, rejects if the connection ends for good first.
   * @returns {Promise<Welcome>}
   */
  connect() {
    if (!this.#access && !this.#refreshToken) {
      return Promise.reject(new ArenaError(401, "no_session", "log in (or resume) before connecting"));
    }
    if (!this.#WebSocket) {
      return Promise.reject(new TypeError("Arena: no WebSocket; pass options.WebSocket (in Node: the ws package)"));
    }
    const welcomed = new Promise((resolve, reject) => {
      this.#connectWaiters.push({ resolve, reject, timer: null });
    });
    if (this.#welcomed && this.#ws) this.#settleConnect(null);
    if (!this.#want) {
      this.#want = true;
      this.#attempt = 0;
      this.#listenOnline();
      if (!this.#ws) this.#open();
    }
    return /** @type {Promise<Welcome>} */ (welcomed);
  }

  /** Close the socket and stay closed (the session stays: `connect()` again later). */
  disconnect() {
    const wanted = this.#want || !!this.#ws;
    this.#stopConnection();
    if (wanted) {
      this.#state = "closed";
      this.emit("closed", { code: 1000, reason: "disconnect()", cause: "disconnect" });
    }
  }

  /**
   * Done with this instance: disconnect and stop refreshing, without logging out (the
   * session and the store's refresh token stay, for another instance or a later
   * `resume()`). Nothing of it keeps a Node process alive afterwards.
   */
  close() {
    this.disconnect();
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
  }

  /** Stop everything socket-related, quietly. */
  #stopConnection() {
    this.#want = false;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    if (this.#joinRetryTimer) clearTimeout(this.#joinRetryTimer);
    this.#joinRetryTimer = null;
    this.#onlineOff?.();
    this.#onlineOff = null;
    const ws = this.#ws;
    this.#ws = null;
    this.#welcomed = false;
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#failWaiters(new ArenaError(0, "closed", "the connection was closed"));
    this.#settleConnect(new ArenaError(0, "closed", "the connection was closed"));
  }

  #open() {
    if (!this.#want) return;
    if (!this.#access) { this.#refreshThenOpen(); return; }
    const url = this.baseUrl.replace(/^http/, "ws") + "/ws";
    const protocols = ["arena.v1", "bearer." + this.#access];
    // Browsers take two arguments and send their own Origin; ws takes options.
    const ws = this.#browser ? new this.#WebSocket(url, protocols)
      : new this.#WebSocket(url, protocols, this.#origin ? { origin: this.#origin } : {});
    this.#ws = ws;
    this.#opened = false;
    this.#welcomed = false;
    this.#lastError = "";
    this.#state = this.#attempt > 0 ? "reconnecting" : "connecting";
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      this.#opened = true;
      this.emit("open", { url });
    };
    ws.onmessage = (/** @type {{ data: unknown }} */ event) => {
      if (this.#ws !== ws || typeof event.data !== "string") return;
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this.#onMessage(message);
    };
    ws.onerror = (/** @type {any} */ event) => {
      if (this.#ws === ws) this.#lastError = String(event?.message || event?.error?.message || "");
    };
    ws.onclose = (/** @type {{ code: number, reason: string }} */ event) => {
      if (this.#ws !== ws) return;
      this.#onClose(event.code, event.reason || "");
    };
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    const wasOpen = this.#opened;
    this.#ws = null;
    this.#welcomed = false;
    if (this.#joinRetryTimer) clearTimeout(this.#joinRetryTimer);
    this.#joinRetryTimer = null;
    const pending = this.#pendingJoin;
    this.#pendingJoin = null;
    // A join the application is waiting for is sent again once welcomed.
    if (pending?.waiter) this.#pendingJoin = { ...pending, attempt: 1 };
    this.#failWaiters(new ArenaError(0, "closed", `the socket closed (${code})`), false);
    this.emit("disconnected", { code, reason, wasOpen });
    if (!this.#want) return;
    const policy = closePolicy(code);
    if (policy.action === "end") {
      if (code === 4003) { this.#removedByAdmin(reason); return; }
      const cause = code === 4001 ? "revoked" : "replaced";
      this.emit(cause, /** @type {any} */ ({ code, reason }));
      this.#endSession(cause, reason, null, code);
      return;
    }
    if (policy.action === "refresh") {
      this.emit("expired", { code: 4002, reason });
      this.#refreshThenOpen();
      return;
    }
    if (policy.event === "rate_limited") this.emit("rate_limited", { source: "close", code: 1008, reason });
    if (policy.action === "stop") {
      // This client broke a rule (too many frames, a frame too big, invalid frames):
      // coming back would do it again. The session stays; connect() may be called again.
      this.#stopConnection();
      this.#state = "closed";
      this.emit("closed", { code, reason, cause: code === 1008 ? "policy" : code === 1009 ? "message_too_big" : "protocol_error" });
      return;
    }
    if (!wasOpen) { this.#upgradeFailed(code); return; }
    this.#scheduleReconnect(code);
  }

  /**
   * 4003 is a kick, a ban and a role change alike: the old token, asked about once,
   * tells a ban (403 `banned`, until when) from the others (401 `token_revoked`).
   * @param {string} reason
   */
  async #removedByAdmin(reason) {
    let banned = null;
    try {
      // Retried on 503 (a node catching up): an unanswered question would report a ban as a kick.
      await this.#http.request("GET", "/auth/me", { token: this.#access });
    } catch (e) {
      if (e instanceof ArenaError && e.code === "banned") banned = e;
    }
    if (banned) {
      this.#endSession("banned", reason, banned.bannedUntil ?? null, 4003);
    } else {
      this.emit("kicked", { code: 4003, reason });
      this.#endSession("kicked", reason, null, 4003);
    }
  }

  /**
   * The upgrade was refused or the server was not there. ws names the status; a
   * browser does not, so the token is asked about over HTTP: an expired one is
   * refreshed, a revoked or banned one ends the session, a 503 is `unavailable`.
   * @param {number} code
   */
  async #upgradeFailed(code) {
    const status = Number(/Unexpected server response: (\d+)/.exec(this.#lastError)?.[1] || 0);
    if (status === 503) {
      this.#scheduleReconnect(code, "socket");
      return;
    }
    if (status === 429) {
      this.emit("rate_limited", { source: "upgrade", code: 429, reason: "the upgrade was refused: too many sockets for this user" });
      this.#scheduleReconnect(code);
      return;
    }
    try {
      await this.#http.request("GET", "/auth/me", { token: this.#access, retry: false });
    } catch (e) {
      if (!this.#want) return;
      if (e instanceof ArenaError && e.code === "banned") {
        this.#endSession("banned", e.message, e.bannedUntil ?? null, e.status);
        return;
      }
      if (e instanceof ArenaError && e.status === 401) {
        // Expired: refresh. Revoked: the refresh says whether the session still lives.
        this.#refreshThenOpen();
        return;
      }
      if (e instanceof ArenaError && e.status === 503) {
        this.#scheduleReconnect(code, "socket");
        return;
      }
    }
    if (this.#want) this.#scheduleReconnect(code);
  }

  /** Refresh, then open at once; a refused refresh ends the session, anything else retries. */
  #refreshThenOpen() {
    this.refresh().then(() => this.#open(), (e) => {
      if (!this.#want) return;
      if (e instanceof ArenaError && (e.status === 401 || e.status === 403)) {
        // #endSession ran (refresh_invalid / banned); a revoked session reads as revoked.
        return;
      }
      this.#scheduleReconnect(1006);
    });
  }

  /**
   * @param {number} code
   * @param {"socket"} [unavailable] the server answered 503: say so
   */
  #scheduleReconnect(code, unavailable) {
    if (!this.#want) return;
    this.#attempt += 1;
    this.#unavailableRun = unavailable ? this.#unavailableRun + 1 : 0;
    if (this.#unavailableRun > this.#opts.reconnect.maxUnavailable) {
      this.#stopConnection();
      this.#state = "closed";
      this.emit("closed", { code, reason: "the server stayed unavailable (503)", cause: "unavailable" });
      return;
    }
    if (this.#attempt > this.#opts.reconnect.maxAttempts) {
      this.#stopConnection();
      this.#state = "closed";
      this.emit("closed", { code, reason: "gave up reconnecting", cause: "gave_up" });
      return;
    }
    const attempt = this.#attempt;
    const delayMs = backoffDelay(attempt, this.#opts.reconnect);
    this.#state = "reconnecting";
    if (unavailable) this.emit("unavailable", { source: unavailable, attempt, delayMs });
    this.emit("reconnecting", { attempt, delayMs, code });
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (!this.#want) return;
      // A token near its end gets a refresh first (the server checks it at the upgrade).
      if (Date.now() > this.#accessExpiresAt - 5000) this.#refreshThenOpen();
      else this.#open();
    }, delayMs);
  }

  /** A browser that is back online does not wait out the backoff. */
  #listenOnline() {
    const g = /** @type {any} */ (globalThis);
    if (this.#onlineOff || typeof g.addEventListener !== "function" || !this.#browser) return;
    const online = () => {
      if (!this.#reconnectTimer) return;
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      this.#attempt = 0;
      this.#open();
    };
    g.addEventListener("online", online);
    this.#onlineOff = () => g.removeEventListener("online", online);
  }

  /** @param {Error | null} error */
  #settleConnect(error) {
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) {
      if (error) w.reject(error);
      else w.resolve(/** @type {any} */ (this.#lastWelcome));
    }
  }

  /** @type {Welcome | null} */ #lastWelcome = null;

  /**
   * @param {Error} error
   * @param {boolean} [joins] also the application's pending join
   */
  #failWaiters(error, joins = true) {
    for (const [id, w] of this.#pings) { if (w.timer) clearTimeout(w.timer); w.reject(error); this.#pings.delete(id); }
    for (const w of this.#leaveWaiters.splice(0)) { if (w.timer) clearTimeout(w.timer); w.reject(error); }
    const reauth = this.#reauthWaiter;
    this.#reauthWaiter = null;
    if (reauth) { if (reauth.timer) clearTimeout(reauth.timer); reauth.reject(error); }
    if (joins && this.#pendingJoin) {
      const w = this.#pendingJoin.waiter;
      this.#pendingJoin = null;
      if (w) { if (w.timer) clearTimeout(w.timer); w.reject(error); }
    }
  }

  // ================= messages =================

  /**
   * Send any client message; whether it went out (false while not connected).
   * @param {ClientMessage} message
   */
  send(message) {
    const ws = this.#ws;
    if (!ws || !this.#opened || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  /**
   * Join room `room`; resolves with `joined`. While disconnected the join waits for the
   * next welcome. A join answered `unavailable` or `rate_limited` is tried again with
   * backoff (`joinAttempts`); `room_not_found`, `room_full` and the rest reject.
   * @param {string} room
   * @returns {Promise<Joined>}
   */
  join(room) {
    this.#dropJoin("another join replaced this one");
    if (this.#joinRetryTimer) clearTimeout(this.#joinRetryTimer);
    this.#joinRetryTimer = null;
    this.#wantRoom = room;
    return new Promise((resolve, reject) => {
      /** @type {Waiter<Joined>} */
      const waiter = { resolve, reject, timer: null };
      this.#pendingJoin = { room, attempt: 1, rejoin: false, waiter };
      if (this.connected) this.#sendJoin();
    });
  }

  /** Forget the pending join, if any; a caller waiting for it gets `closed` with `why`. @param {string} why */
  #dropJoin(why) {
    const p = this.#pendingJoin;
    this.#pendingJoin = null;
    if (!p?.waiter) return;
    if (p.waiter.timer) clearTimeout(p.waiter.timer);
    p.waiter.reject(new ArenaError(0, "closed", why));
  }

  #sendJoin() {
    const p = this.#pendingJoin;
    if (!p) return;
    if (p.waiter) {
      const w = p.waiter;
      if (w.timer) clearTimeout(w.timer);
      w.timer = setTimeout(() => {
        if (this.#pendingJoin?.waiter !== w) return;
        this.#pendingJoin = null;
        // Given up: a late `joined` (or the next reconnect) must not pull the client in.
        if (this.#wantRoom === p.room) this.#wantRoom = null;
        const message = `no answer to join ${p.room}`;
        this.emit("join_failed", { room: p.room, code: "timeout", message, rejoin: p.rejoin });
        w.reject(new ArenaError(0, "timeout", message));
      }, this.#opts.timeoutMs + 3000 * this.#opts.joinAttempts);
    }
    this.send({ type: "join", room: p.room });
  }

  /**
   * Leave the room; resolves with `left` (or at once with null outside a room).
   * @returns {Promise<Left | null>}
   */
  leave() {
    const inRoom = !!this.#room;
    this.#wantRoom = null;
    this.#lastInput = null; // a direction held in this room is not carried into the next
    this.#dropJoin("left before the join was answered");
    if (!inRoom || !this.connected) {
      this.#room = null;
      return Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      /** @type {Waiter<Left>} */
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        this.#leaveWaiters = this.#leaveWaiters.filter((w) => w !== waiter);
        reject(new ArenaError(0, "timeout", "no answer to leave"));
      }, this.#opts.timeoutMs);
      this.#leaveWaiters.push(waiter);
      this.send({ type: "leave" });
    });
  }

  /**
   * Steer: direction (dx, dy), each -1..1. The SDK numbers inputs (`seq`), counting on
   * from the seat's `last_seq` when a state frame shows it ahead. The seq sent, or 0
   * when not sent (not connected or not in a room).
   * @param {number} dx
   * @param {number} dy
   */
  input(dx, dy) {
    if (!Number.isFinite(dx) || !Number.isFinite(dy)) throw new TypeError("input: dx and dy must be numbers");
    this.#lastInput = { dx, dy, at: Date.now() };
    return this.#sendInput(false);
  }

  /** @param {boolean} resent */
  #sendInput(resent) {
    const last = this.#lastInput;
    if (!last || !this.#room) return 0;
    const seq = this.#seq + 1;
    if (!this.send({ type: "input", seq, dx: last.dx, dy: last.dy })) return 0;
    this.#seq = seq;
    last.at = Date.now();
    this.emit("input", { seq, dx: last.dx, dy: last.dy, resent });
    return seq;
  }

  /**
   * Say `text` (1–280 characters) in the room; whether it was sent.
   * @param {string} text
   */
  chat(text) {
    const n = [...String(text)].length;
    if (n === 0 || n > CHAT_MAX_CHARS) throw new RangeError(`chat: text must be 1-${CHAT_MAX_CHARS} characters`);
    return this.send({ type: "chat", text: String(text) });
  }

  /**
   * Ping the server; resolves with its `pong` and the round trip in ms.
   * @returns {Promise<Pong>}
   */
  ping() {
    const id = ++this.#pingId;
    return new Promise((resolve, reject) => {
      if (!this.connected) { reject(new ArenaError(0, "not_connected", "not connected")); return; }
      const entry = { resolve, reject, sentAt: Date.now(), timer: /** @type {ReturnType<typeof setTimeout> | null} */ (null) };
      entry.timer = setTimeout(() => {
        this.#pings.delete(id);
        reject(new ArenaError(0, "timeout", "no pong"));
      }, this.#opts.timeoutMs);
      this.#pings.set(id, entry);
      this.send({ type: "ping", id });
    });
  }

  /** Move the live socket onto the current access token; resolves on `reauthed`. */
  #reauth() {
    const previous = this.#reauthWaiter;
    if (previous) { if (previous.timer) clearTimeout(previous.timer); previous.resolve(); }
    return new Promise(/** @param {(value?: any) => void} resolve @param {(e: Error) => void} reject */ (resolve, reject) => {
      /** @type {Waiter<void>} */
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        if (this.#reauthWaiter === waiter) this.#reauthWaiter = null;
        reject(new ArenaError(0, "timeout", "no answer to reauth"));
      }, this.#opts.timeoutMs);
      this.#reauthWaiter = waiter;
      if (!this.send({ type: "reauth", access_token: /** @type {string} */ (this.#access) })) {
        this.#reauthWaiter = null;
        if (waiter.timer) clearTimeout(waiter.timer);
        resolve(); // no socket: the next one opens with the new token
      }
    });
  }

  /** @param {ServerMessage} m */
  #onMessage(m) {
    switch (m.type) {
      case "welcome":
        this.#welcomed = true;
        this.#attempt = 0;
        this.#unavailableRun = 0;
        this.#state = "open";
        this.#lastWelcome = m;
        this.#serverOffset = m.server_time - Date.now();
        this.#user = m.user;
        break;
      case "pong": {
        const w = this.#pings.get(m.id);
        if (w) {
          this.#pings.delete(m.id);
          if (w.timer) clearTimeout(w.timer);
          const now = Date.now();
          this.#serverOffset = m.server_time - (w.sentAt + now) / 2;
          w.resolve({ ...m, rtt: now - w.sentAt });
        }
        break;
      }
      case "joined":
      case "room_moved":
        if (this.#wantRoom !== m.room.id) {
          // Left (or chose another room) while this join was on its way: not news.
          if (!this.#wantRoom && m.type === "joined") this.send({ type: "leave" });
          return;
        }
        this.#room = m.room;
        break;
      case "left":
        if (this.#room && this.#room.id === m.room) this.#room = null;
        // Taken out by the server (replaced, unavailable, removed): do not come back.
        if (m.reason && this.#wantRoom === m.room) {
          this.#wantRoom = null;
          this.#lastInput = null;
          if (this.#pendingJoin?.room === m.room) this.#dropJoin(`taken out of the room (${m.reason})`);
        }
        break;
      case "state":
        if (this.#room && this.#room.id === m.room) this.#reconcile(m);
        break;
      case "token_expiring":
        if (this.#opts.autoRefresh) this.refresh().catch(() => {});
        break;
      case "reauthed": {
        const w = this.#reauthWaiter;
        this.#reauthWaiter = null;
        if (w) { if (w.timer) clearTimeout(w.timer); w.resolve(); }
        break;
      }
      default:
        break;
    }
    this.emit("message", m);
    this.emit(m.type, /** @type {any} */ (m));
    // After the application has seen the message:
    if (m.type === "welcome") {
      this.#settleConnect(null);
      this.#afterWelcome();
    } else if (m.type === "joined" && this.#room === m.room) {
      this.#joinAnswered(m);
    } else if (m.type === "room_moved" && this.#room === m.room) {
      // A fresh run of the room on another node: its seat knows nothing of the direction held.
      this.#resendHeld();
    } else if (m.type === "left") {
      for (const w of this.#leaveWaiters.splice(0)) { if (w.timer) clearTimeout(w.timer); w.resolve(m); }
    } else if (m.type === "error") {
      this.#errorFrame(m);
    }
  }

  #afterWelcome() {
    // An access token refreshed while the socket was opening: move onto it.
    if (this.#lastWelcome && this.#access) {
      const exp = jwtExp(this.#access);
      if (exp && exp * 1000 !== this.#lastWelcome.expires_at) this.#reauth().catch(() => {});
    }
    if (this.#pendingJoin) { this.#sendJoin(); return; }
    if (this.#wantRoom && this.#opts.rejoin) {
      this.#pendingJoin = { room: this.#wantRoom, attempt: 1, rejoin: true, waiter: null };
      this.#sendJoin();
    } else {
      this.#wantRoom = null;
      this.#room = null;
    }
  }

  /** @param {Joined} m */
  #joinAnswered(m) {
    const p = this.#pendingJoin;
    if (!p || p.room !== m.room.id) return;
    this.#pendingJoin = null;
    if (p.waiter) { if (p.waiter.timer) clearTimeout(p.waiter.timer); p.waiter.resolve(m); }
    if (p.rejoin) this.emit("rejoined", m);
    this.#resendHeld();
  }

  /** A new seat knows nothing of the direction held: tell it (a standstill needs nothing). */
  #resendHeld() {
    if (this.#lastInput && (this.#lastInput.dx || this.#lastInput.dy)) this.#sendInput(true);
  }

  /** @param {Extract<ServerMessage, { type: "error" }>} m */
  #errorFrame(m) {
    if (m.code === "rate_limited") this.emit("rate_limited", { source: "message", code: 429, reason: m.message });
    if (this.#reauthWaiter && REAUTH_ERRORS.has(m.code)) {
      const w = this.#reauthWaiter;
      this.#reauthWaiter = null;
      if (w.timer) clearTimeout(w.timer);
      w.reject(new ArenaError(0, m.code, m.message));
      this.emit("reauth_failed", { code: m.code, message: m.message });
      return;
    }
    const p = this.#pendingJoin;
    if (!p || !JOIN_ERRORS.has(m.code)) return;
    if ((m.code === "unavailable" || m.code === "rate_limited") && p.attempt < this.#opts.joinAttempts) {
      const delayMs = backoffDelay(p.attempt, { ...this.#opts.reconnect, initialDelayMs: 1000 });
      p.attempt += 1;
      if (m.code === "unavailable") this.emit("unavailable", { source: "join", attempt: p.attempt - 1, delayMs, room: p.room });
      this.emit("join_retry", { room: p.room, code: m.code, attempt: p.attempt, attempts: this.#opts.joinAttempts, delayMs, rejoin: p.rejoin });
      this.#joinRetryTimer = setTimeout(() => {
        this.#joinRetryTimer = null;
        if (this.#pendingJoin === p && this.connected) this.#sendJoin();
      }, delayMs);
      return;
    }
    this.#pendingJoin = null;
    if (this.#wantRoom === p.room) this.#wantRoom = null;
    if (this.#room && this.#room.id === p.room && p.rejoin) this.#room = null;
    this.emit("join_failed", { room: p.room, code: m.code, message: m.message, rejoin: p.rejoin });
    if (p.waiter) { if (p.waiter.timer) clearTimeout(p.waiter.timer); p.waiter.reject(new ArenaError(0, m.code, m.message)); }
  }

  /**
   * Keep `seq` counting past what the room applied: a seat this user held on another
   * socket may be ahead, so count on from there (and send the direction again, which the
   * room ignored); an input not applied within `inputResendMs` is sent again.
   * @param {Extract<ServerMessage, { type: "state" }>} m
   */
  #reconcile(m) {
    const id = this.#user?.id;
    const me = id ? m.players.find((p) => p.id === id) : undefined;
    if (!me) return;
    if (me.last_seq > this.#seq) {
      this.#seq = me.last_seq;
      if (this.#lastInput) this.#sendInput(true);
    } else if (me.last_seq < this.#seq && this.#lastInput && this.#opts.inputResendMs > 0
      && Date.now() - this.#lastInput.at > this.#opts.inputResendMs) {
      this.#sendInput(true);
    }
  }
}

/**
 * In Node, a timer that alone does not keep the process alive (a logged-in client that
 * has nothing else to do may exit; an open socket or a reconnect still keeps it).
 * @template T
 * @param {T} timer
 * @returns {T}
 */
function unref(timer) {
  /** @type {any} */ (timer)?.unref?.();
  return timer;
}

/**
 * A JWT's `exp` (seconds), or null. Only read, never trusted: the server verifies.
 * @param {string} token
 */
export function jwtExp(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof json.exp === "number" ? json.exp : null;
  } catch {
    return null;
  }
}

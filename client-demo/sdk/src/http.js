// HTTP calls that speak PROTOCOL.md's error body, with bounded retries on 503
// `unavailable` (a node shutting down, its database out of reach, or in a cluster a node
// not yet current). Tokens travel only in the Authorization header or the body.

import { ArenaError } from "./errors.js";
import { backoffDelay } from "./backoff.js";

/**
 * @typedef {object} HttpOptions
 * @property {string} baseUrl
 * @property {typeof fetch} fetch
 * @property {string | null} origin sent as `Origin` (Node only: browsers set it themselves)
 * @property {number} unavailableRetries how many times a 503 is retried
 * @property {import("./backoff.js").BackoffOptions} backoff
 * @property {(info: { source: "http", method: string, path: string, attempt: number, delayMs: number }) => void} onUnavailable
 * @property {(error: ArenaError) => void} [onRateLimited] a 429 answer (thrown after this)
 */

/**
 * @typedef {object} RequestOptions
 * @property {string | null} [token] an access token for the Authorization header
 * @property {unknown} [body] sent as JSON
 * @property {boolean} [retry] retry a 503 (default true)
 */

export class Http {
  /** @param {HttpOptions} options */
  constructor(options) {
    this.options = options;
  }

  /**
   * `method path`; the parsed JSON answer (null for an empty one). Throws ArenaError.
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [request]
   * @returns {Promise<any>}
   */
  async request(method, path, { token = null, body, retry = true } = {}) {
    const { baseUrl, origin, unavailableRetries } = this.options;
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (origin) headers.Origin = origin;
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await this.options.fetch(baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "same-origin",
          cache: "no-store",
        });
      } catch (cause) {
        throw new ArenaError(0, "network", `${method} ${path}: no answer from ${baseUrl}`, { cause });
      }
      const text = await response.text().catch(() => "");
      const data = text ? parseJson(text) : null;
      if (response.ok) return data;
      const detail = (data && typeof data === "object" && data.error) || {};
      const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
      const error = new ArenaError(response.status, detail.code || `http_${response.status}`,
        detail.message || response.statusText || `HTTP ${response.status}`,
        { bannedUntil: detail.banned_until, retryAfter });
      if (response.status === 429) this.options.onRateLimited?.(error);
      if (response.status !== 503 || !retry || attempt > unavailableRetries) throw error;
      // Retry-After says when; backoff grows when it does not, and jitter spreads clients.
      const delayMs = retryAfter !== null
        ? Math.round(retryAfter * 1000 * (0.9 + 0.2 * Math.random()))
        : backoffDelay(attempt, this.options.backoff);
      this.options.onUnavailable({ source: "http", method, path, attempt, delayMs });
      await new Promise((ok) => setTimeout(ok, delayMs));
    }
  }
}

/** @param {string} text */
function parseJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/** @param {string | null} value seconds, or an HTTP date */
function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, (at - Date.now()) / 1000) : null;
}

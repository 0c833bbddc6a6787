// The one error type the SDK throws: an HTTP error body of PROTOCOL.md
// (`{"error": {"code", "message", "banned_until"?}}`) with its status, or a failure that
// never got an answer (status 0: `network`, `timeout`, `closed`, `not_connected`, ...).

export class ArenaError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when no HTTP answer came
   * @param {string} code one of PROTOCOL.md's error codes, or the SDK's own for status 0
   * @param {string} message for people
   * @param {{ bannedUntil?: number | null, retryAfter?: number | null, cause?: unknown }} [extra]
   *   `bannedUntil`: with `banned`, when the ban ends (Unix ms; null: permanent);
   *   `retryAfter`: the `Retry-After` header, in seconds
   */
  constructor(status, code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "ArenaError";
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.code = code;
    /** @type {number | null | undefined} */
    this.bannedUntil = code === "banned" ? (extra.bannedUntil ?? null) : extra.bannedUntil;
    /** @type {number | null} */
    this.retryAfter = extra.retryAfter ?? null;
  }
}

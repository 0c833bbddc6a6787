// Exponential backoff with jitter, for reconnects and retries.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialDelayMs] the first delay (default 500)
 * @property {number} [maxDelayMs] no delay is longer (default 5000)
 * @property {number} [jitter] each delay is spread by this fraction, either way (default 0.2)
 */

/**
 * The delay before attempt `attempt` (1, 2, …): initial × 2^(attempt-1), capped, ± jitter.
 * @param {number} attempt
 * @param {BackoffOptions} [options]
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const initial = options.initialDelayMs ?? 500;
  const max = options.maxDelayMs ?? 5000;
  const jitter = options.jitter ?? 0.2;
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random())));
}

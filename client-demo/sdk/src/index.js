// @arena/sdk: Arena's client for browsers and Node 20 (with the ws package).
export { Arena, memoryStore, webStorageStore, jwtExp } from "./arena.js";
export { ArenaError } from "./errors.js";
export { CLOSE_POLICY, closePolicy } from "./close-codes.js";
export { backoffDelay } from "./backoff.js";
export { Emitter } from "./emitter.js";

// A small typed event emitter: `on(type, fn)` returns a function that removes `fn`.
// A listener that throws does not stop the others nor the SDK: its error is reported
// (reportError in browsers, an uncaught exception's console line in Node).

/**
 * @template {Record<string, any>} Events
 */
export class Emitter {
  /** @type {Map<keyof Events, Set<(payload: any) => void>>} */
  #listeners = new Map();

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {(payload: Events[K]) => void} fn
   * @returns {() => void} removes the listener
   */
  on(type, fn) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {(payload: Events[K]) => void} fn
   */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /**
   * The next `type` event, once.
   * @template {keyof Events} K
   * @param {K} type
   * @param {(payload: Events[K]) => void} fn
   * @returns {() => void}
   */
  once(type, fn) {
    /** @param {Events[K]} payload */
    const wrapped = (payload) => { this.off(type, wrapped); fn(payload); };
    return this.on(type, wrapped);
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {Events[K]} payload
   */
  emit(type, payload) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (error) {
        report(error);
      }
    }
  }
}

/** @param {unknown} error */
function report(error) {
  const g = /** @type {any} */ (globalThis);
  if (typeof g.reportError === "function") g.reportError(error);
  else setTimeout(() => { throw error; });
}

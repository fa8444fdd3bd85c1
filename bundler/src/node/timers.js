// node:timers: the runtime's timers; setImmediate is a macrotask (setTimeout 0).
export const setTimeout = globalThis.setTimeout;
export const clearTimeout = globalThis.clearTimeout;
export const setInterval = globalThis.setInterval;
export const clearInterval = globalThis.clearInterval;
export function setImmediate(callback, ...args) {
  return globalThis.setTimeout(callback, 0, ...args);
}
export function clearImmediate(id) {
  globalThis.clearTimeout(id);
}
import promises from "node:timers/promises";
export { promises };
export default { setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate, promises };

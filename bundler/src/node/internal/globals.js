// Node's globals in the global scope, for functions with the `nodejs_compat` flag.
import { Buffer } from "node:buffer";
import process from "node:process";
import { setImmediate, clearImmediate } from "node:timers";

for (const [name, value] of [
  ["Buffer", Buffer],
  ["process", process],
  ["global", globalThis],
  ["setImmediate", setImmediate],
  ["clearImmediate", clearImmediate],
]) {
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
}

// An invocation as Rust hands it over (`Next`), and the async context that says which
// invocation the running code belongs to.

import {
  core,
  op_isola_mark,
  primordials,
} from "ext:isola/00_base.js";
const {
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  ReflectApply,
  SafeMap,
  SafeWeakMap,
  Symbol,
  TypeError,
} = primordials;

// Methods Rust sends by index (`METHODS` in ext/mod.rs).
const METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
// Where the request's headers start in what Rust sends (`NEXT_FIELDS` in ext/mod.rs).
const HEADERS_AT = 8;

// An invocation from `op_isola_next`, which hands it over as an array in this order.
class Next {
  constructor(fields) {
    this.id = fields[0];
    this.invocationId = fields[1];
    // 0 is `fetch`; an event's handler comes by name.
    this.handler = fields[2] === 0 ? "fetch" : fields[2];
    this.payload = fields[3];
    const method = fields[4];
    this.method = typeof method === "number" ? METHODS[method] : method;
    this.url = fields[5];
    this.hasBody = fields[6];
    this.protocol = fields[7];
    // The headers, flat, from HEADERS_AT on.
    this.fields = fields;
    // The whole response has gone to the client: its leaving no longer aborts the request.
    this.answered = false;
    // Aborts the request's signal; set once the function reads `request.signal`.
    this.abort = null;
  }
}
const NextPrototype = Next.prototype;

// The async context is the invocation's `Next`, or, inside an AsyncLocalStorage `run`, a
// frame holding that `Next` and the stores set around the code.
const kNext = Symbol("isola.next");
const kStores = Symbol("isola.stores");

// The invocation the running code belongs to: its `Next`, the async context that
// `runInvocation` and `invoke` set and that promise reactions and timers carry along. `null`
// outside any invocation (module start, background work).
function currentNext() {
  let next = core.getAsyncContext();
  if (next !== undefined && next !== null && next[kNext] !== undefined) next = next[kNext];
  return next !== undefined && next !== null && ObjectPrototypeIsPrototypeOf(NextPrototype, next)
    ? next
    : null;
}

// AsyncLocalStorage's stores (node:async_hooks builds on these): the current context with
// `owner`'s store set to `value`, the same invocation kept.
function contextWith(owner, value) {
  const prev = core.getAsyncContext();
  const stores = new SafeMap(prev?.[kStores]);
  stores.set(owner, value);
  return { __proto__: null, [kNext]: currentNext(), [kStores]: stores };
}
function storeOf(owner) {
  return core.getAsyncContext()?.[kStores]?.get(owner);
}
// Runs `fn` in `context`, then puts the context back.
function runIn(context, fn, thisArg, args) {
  const prev = core.getAsyncContext();
  core.setAsyncContext(context);
  try {
    return ReflectApply(fn, thisArg, args);
  } finally {
    core.setAsyncContext(prev);
  }
}
function runWithStore(owner, value, fn, thisArg, args) {
  return runIn(contextWith(owner, value), fn, thisArg, args);
}
function enterStore(owner, value) {
  core.setAsyncContext(contextWith(owner, value));
}
// A captured context, and code run in it (AsyncLocalStorage.bind/snapshot, AsyncResource).
// The function gets an opaque token, never the context (its `Next` is the runtime's), and only
// a token this module made can be run in: nothing forged.
const captured = new SafeWeakMap();
function captureContext() {
  const token = ObjectFreeze({ __proto__: null });
  captured.set(token, core.getAsyncContext());
  return token;
}
function runInContext(token, fn, thisArg, args) {
  if (!captured.has(token)) throw new TypeError("not an async context captured by the runtime");
  return runIn(captured.get(token), fn, thisArg, args);
}
// The CPU meter splits an entry into the isolate at marks: the time since the last mark is
// the marking invocation's. Besides the ops that name their invocation, code that calls into
// the runtime marks the invocation it belongs to: work run in a timer's callback or before a
// timer is set is charged to the invocation that did it, not to whichever marks next.
function markCurrent() {
  const next = currentNext();
  if (next !== null) op_isola_mark(next.id);
}
function currentInvocation() {
  const next = currentNext();
  return next === null ? null : next.invocationId;
}

export {
  METHODS,
  HEADERS_AT,
  Next,
  NextPrototype,
  currentNext,
  currentInvocation,
  markCurrent,
  storeOf,
  runWithStore,
  enterStore,
  captureContext,
  runInContext,
};

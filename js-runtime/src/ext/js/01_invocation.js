// An invocation as Rust hands it over (`Next`), and the async context that says which
// invocation the running code belongs to.

import {
  core,
  primordials,
} from "ext:isola/00_base.js";
const {
  ObjectPrototypeIsPrototypeOf,
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

// The invocation the running code belongs to: its `Next`, the async context that
// `runInvocation` and `invoke` set and that promise reactions and timers carry along. `null`
// outside any invocation (module start, background work).
function currentNext() {
  const next = core.getAsyncContext();
  return next !== undefined && next !== null && ObjectPrototypeIsPrototypeOf(NextPrototype, next)
    ? next
    : null;
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
};

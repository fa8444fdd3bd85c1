// Isola's runtime: builds the global scope of a function from Deno's Web API extensions and
// runs the Workers module contract. Evaluated once, at build time, into the startup snapshot.
// Rust takes `globalThis.__isolaStart` and `__isolaPrepare` out of the scope before any
// function code runs. The parts, in the order they are evaluated:
//   00_base.js          deno_core's bootstrap, the ops, Deno's Web API modules, helpers
//   01_invocation.js    an invocation as Rust hands it over, and the current one
//   02_logging.js       console and the function's log
//   03_global_scope.js  the WinterTC global scope, bounded decompression, uncaught errors
//   04_webcrypto.js     WebCrypto's bounds and charges
//   05_outbound.js      outbound fetch and its subrequest limit
//   06_contract.js      the Workers module contract for requests
//   07_events.js        scheduled, queue, storage and record handlers
//   08_bindings.js      env.NAME for queues, buckets and tables
//   09_entrypoints.js   the forms of an entry module: object, class, service worker
//   10_caches.js        the Cache API: caches.default, caches.open(name)
//   11_websocket.js     WebSocketPair, and Response's 101 with a webSocket

import {
  core,
  primordials,
  globalInterfaces,
  request,
  response,
  fetchMod,
  nonEnumerable,
  op_isola_next,
  op_isola_take,
  op_isola_fail,
  op_isola_done,
  bindOps,
} from "ext:isola/00_base.js";
import {
  Next,
} from "ext:isola/01_invocation.js";
import {
  beginEvaluation,
  endEvaluation,
  onDispatchedException,
} from "ext:isola/03_global_scope.js";
import {
  limitSubrequests,
} from "ext:isola/05_outbound.js";
import {
  ExecutionContext,
  IncomingInnerRequest,
  cfSlot,
  invoke,
  setRegion,
} from "ext:isola/06_contract.js";
import {
  invokeEvent,
} from "ext:isola/07_events.js";
import {
  binding,
} from "ext:isola/08_bindings.js";
import {
  HANDLERS,
  entrypoint,
} from "ext:isola/09_entrypoints.js";
const {
  ObjectKeys,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectSetPrototypeOf,
  TypeError,
} = primordials;
import "ext:isola/01_invocation.js";
import "ext:isola/02_logging.js";
import "ext:isola/03_global_scope.js";
import "ext:isola/04_webcrypto.js";
import "ext:isola/05_outbound.js";
import "ext:isola/06_contract.js";
import "ext:isola/07_events.js";
import "ext:isola/08_bindings.js";
import "ext:isola/09_entrypoints.js";
import "ext:isola/10_caches.js";
import "ext:isola/11_websocket.js";

// Called by Rust on every isolate made from the snapshot, before it gets a function: what a
// snapshot cannot hold. It has deno_core attach the ops' fast-call overloads (it does so on
// the first lazy module load) and binds the ops again, so the request path calls them without
// V8's API callback; it registers the WebAssembly streaming handler (kept by deno_core
// outside the heap); and it makes globalThis an EventTarget again.
function prepare() {
  core.setWasmStreamingCallback(fetchMod.handleWasmStreaming);
  core.ops.op_isola_set_uncaught(onDispatchedException);
  ObjectSetPrototypeOf(globalThis, globalInterfaces.WorkerGlobalScope.prototype);
  core.createLazyLoader("ext:isola/fast_calls.js")();
  bindOps();
}

// Invocations taken in one go before the event loop gets a turn.
const BATCH = 32;

/**
 * Called by Rust once, after the function's module evaluated: checks the default export and
 * starts taking requests.
 */
function start(namespace, vars, subrequests, bindings, region) {
  endEvaluation();
  setRegion(region);
  limitSubrequests(subrequests);
  const bound = { __proto__: null };
  for (const key of ObjectKeys(bindings)) bound[key] = binding(key, bindings[key]);
  const env = ObjectFreeze({ __proto__: null, ...vars, ...bound });
  const handler = entrypoint(namespace, env);
  if (handler === null) {
    throw new TypeError(
      `the entry module must \`export default { fetch(request, env, ctx) { ... } }\` (or another handler: ${HANDLERS.join(", ")}), export default a class with such methods, or call addEventListener("fetch", ...)`,
    );
  }
  (async () => {
    let taken = 0;
    while (true) {
      // Invocations already waiting are taken at once, up to a batch; then (or when none
      // waits) through the event loop, so timers and I/O get their turn.
      let fields = taken < BATCH ? op_isola_take() : null;
      if (fields === null) {
        taken = 0;
        // Waiting for work does not keep the event loop alive: when nothing else is
        // pending, the handlers still in flight can never finish, and the worker says so
        // (no_response).
        const waiting = op_isola_next();
        core.unrefOpPromise(waiting);
        fields = await waiting;
        if (fields === null) break;
      } else {
        taken++;
      }
      const next = new Next(fields);
      if (next.handler === "fetch") {
        if (typeof handler.fetch === "function") {
          invoke(handler, env, next);
        } else {
          op_isola_fail(next.id, "exception", "the function has no fetch handler");
          op_isola_done(next.id);
        }
      } else {
        invokeEvent(handler, env, next);
      }
    }
  })();
}

// Warm-up, run once while the snapshot is made: the snapshot keeps the bytecode of what it
// compiles, so an isolate does not compile the request path again on its first request.
for (let i = 0; i < 2; i++) {
  const inner = new IncomingInnerRequest(
    "POST",
    "http://localhost/warm-up?q=1",
    ["content-type", "text/plain", "x-warm", "up"],
    0,
    null,
  );
  const req = request.fromInnerRequest(inner, "immutable");
  req[cfSlot] = 1;
  req.cf;
  req.method;
  req.url;
  req.headers.get("x-warm");
  const res = new response.Response("warm", {
    status: 201,
    headers: { "content-type": "text/plain" },
  });
  response.toInnerResponse(res).headerList;
  response.toInnerResponse(response.Response.json({ warm: true }));
  new ExecutionContext([]);
}
setRegion("");

// Rust takes this out, together with deno_core's own `Deno` and `__bootstrap` globals, before
// any function code runs (deno_core needs those while it restores the snapshot).
ObjectDefineProperty(globalThis, "__isolaStart", nonEnumerable(start));
ObjectDefineProperty(globalThis, "__isolaPrepare", nonEnumerable(prepare));
ObjectDefineProperty(globalThis, "__isolaBeginEvaluation", nonEnumerable(beginEvaluation));

// The forms a function's entry module may take, as Workers accepts them: `export default {
// fetch, ... }`; a default-exported class whose instances have the handlers (one instance per
// invocation, made with `(ctx, env)`); or the service-worker form, listeners registered with
// `addEventListener("fetch" | "scheduled", ...)` and no default export.

import {
  domException,
  event,
  primordials,
  nonEnumerable,
} from "ext:isola/00_base.js";
const {
  ArrayPrototypeSome,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectKeys,
  ObjectPrototypeHasOwnProperty,
  Symbol,
  TypeError,
} = primordials;

const HANDLERS = ["fetch", "scheduled", "queue", "storage", "record"];

/** The handlers of a module's namespace, or `null` when it offers none. */
function entrypoint(namespace, env) {
  const exported = namespace.default;
  const hasHandler = (target) =>
    target !== null && target !== undefined &&
    ArrayPrototypeSome(HANDLERS, (h) => typeof target[h] === "function");
  if (exported !== null && typeof exported === "object" && hasHandler(exported)) {
    return exported;
  }
  if (typeof exported === "function" && hasHandler(exported.prototype)) {
    return classHandlers(exported);
  }
  if (
    exported === undefined &&
    (event.listenerCount(globalThis, "fetch") > 0 ||
      event.listenerCount(globalThis, "scheduled") > 0)
  ) {
    exposeEnv(env);
    return serviceWorker;
  }
  return null;
}

// A default-exported class: each invocation gets an instance (`this.ctx`, `this.env` as on
// Workers' WorkerEntrypoint), whose handler is called with the usual arguments too.
function classHandlers(Class) {
  const handlers = { __proto__: null };
  for (const name of HANDLERS) {
    if (typeof Class.prototype[name] !== "function") continue;
    handlers[name] = function (argument, env, ctx) {
      const instance = new Class(ctx, env);
      if (!ObjectPrototypeHasOwnProperty(instance, "ctx")) instance.ctx = ctx;
      if (!ObjectPrototypeHasOwnProperty(instance, "env")) instance.env = env;
      return instance[name](argument, env, ctx);
    };
  }
  return ObjectFreeze(handlers);
}

// In the service-worker form, vars, secrets and bindings are globals, as on Workers.
function exposeEnv(env) {
  for (const name of ObjectKeys(env)) {
    if (!ObjectPrototypeHasOwnProperty(globalThis, name)) {
      ObjectDefineProperty(globalThis, name, nonEnumerable(env[name]));
    }
  }
}

const responded = Symbol("responded");
const answer = Symbol("answer");

/** `addEventListener("fetch", (event) => event.respondWith(...))`. */
class FetchEvent extends event.Event {
  #request;
  #ctx;
  constructor(request, ctx) {
    super("fetch");
    this.#request = request;
    this.#ctx = ctx;
    this[responded] = false;
    this[answer] = undefined;
  }

  get request() {
    return this.#request;
  }

  /** The response (or a promise of it) the request is answered with; once only. */
  respondWith(response) {
    if (this[responded]) {
      throw new domException.DOMException(
        "respondWith() was already called",
        "InvalidStateError",
      );
    }
    this[responded] = true;
    this[answer] = response;
  }

  waitUntil(promise) {
    this.#ctx.waitUntil(promise);
  }

  /** Accepted; there is no origin to pass the request to, so an exception still answers 500. */
  passThroughOnException() {}
}

/** `addEventListener("scheduled", (event) => event.waitUntil(...))`. */
class ScheduledEvent extends event.Event {
  #ctx;
  constructor(controller, ctx) {
    super("scheduled");
    this.#ctx = ctx;
    this.cron = controller.cron;
    this.scheduledTime = controller.scheduledTime;
  }

  waitUntil(promise) {
    this.#ctx.waitUntil(promise);
  }

  noRetry() {}
}

const serviceWorker = ObjectFreeze({
  __proto__: null,
  fetch(request, _env, ctx) {
    const fetchEvent = new FetchEvent(request, ctx);
    globalThis.dispatchEvent(fetchEvent);
    if (!fetchEvent[responded]) {
      throw new TypeError("no fetch event listener called event.respondWith()");
    }
    return fetchEvent[answer];
  },
  scheduled(controller, _env, ctx) {
    globalThis.dispatchEvent(new ScheduledEvent(controller, ctx));
  },
});

export {
  FetchEvent,
  HANDLERS,
  ScheduledEvent,
  entrypoint,
};

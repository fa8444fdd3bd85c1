// node:async_hooks: AsyncLocalStorage on the runtime's async context (V8's
// continuation-preserved data), so a store set in `run` is seen across `await`, promise
// callbacks, timers and queueMicrotask, and concurrent requests each see their own. The rest
// of async_hooks (hooks, resource ids) is not here.
const context = globalThis[Symbol.for("isola.asyncContext")];

export class AsyncLocalStorage {
  #enabled = true;

  static bind(fn) {
    const captured = context.captureContext();
    return function (...args) {
      return context.runInContext(captured, fn, this, args);
    };
  }

  static snapshot() {
    const captured = context.captureContext();
    return (fn, ...args) => context.runInContext(captured, fn, undefined, args);
  }

  run(store, callback, ...args) {
    this.#enabled = true;
    return context.runWithStore(this, store, callback, undefined, args);
  }

  exit(callback, ...args) {
    return context.runWithStore(this, undefined, callback, undefined, args);
  }

  enterWith(store) {
    this.#enabled = true;
    context.enterStore(this, store);
  }

  getStore() {
    return this.#enabled ? context.storeOf(this) : undefined;
  }

  disable() {
    this.#enabled = false;
  }
}

export class AsyncResource {
  #context = context.captureContext();
  constructor(type) {
    this.type = type;
  }
  runInAsyncScope(fn, thisArg, ...args) {
    return context.runInContext(this.#context, fn, thisArg, args);
  }
  bind(fn) {
    return (...args) => this.runInAsyncScope(fn, undefined, ...args);
  }
  static bind(fn, type) {
    return new AsyncResource(type).bind(fn);
  }
  emitDestroy() {
    return this;
  }
  asyncId() {
    return 0;
  }
  triggerAsyncId() {
    return 0;
  }
}

const unavailable = (name) => () => {
  throw new Error(`node:async_hooks: ${name}() is not available in an edge function`);
};
export const createHook = unavailable("createHook");
export const executionAsyncId = () => 0;
export const triggerAsyncId = () => 0;
export const executionAsyncResource = () => ({});
export default { AsyncLocalStorage, AsyncResource, createHook, executionAsyncId, triggerAsyncId, executionAsyncResource };

// node:async_hooks: AsyncLocalStorage on V8's continuation-preserved data, so a store set in
// `run` is seen across `await`, promise callbacks, timers and queueMicrotask, and concurrent
// requests each see their own. The rest of async_hooks (hooks, resources) is not here.
const context = globalThis[Symbol.for("isola.asyncContext")];
const { AsyncVariable, getAsyncContext, setAsyncContext } = context;

export class AsyncLocalStorage {
  #variable = new AsyncVariable();
  #enabled = true;

  static bind(fn) {
    const snapshot = getAsyncContext();
    return function (...args) {
      const previous = getAsyncContext();
      setAsyncContext(snapshot);
      try {
        return fn.apply(this, args);
      } finally {
        setAsyncContext(previous);
      }
    };
  }

  static snapshot() {
    const snapshot = getAsyncContext();
    return (fn, ...args) => {
      const previous = getAsyncContext();
      setAsyncContext(snapshot);
      try {
        return fn(...args);
      } finally {
        setAsyncContext(previous);
      }
    };
  }

  run(store, callback, ...args) {
    const previous = this.#variable.enter(store);
    this.#enabled = true;
    try {
      return callback(...args);
    } finally {
      setAsyncContext(previous);
    }
  }

  exit(callback, ...args) {
    return this.run(undefined, callback, ...args);
  }

  enterWith(store) {
    this.#enabled = true;
    this.#variable.enter(store);
  }

  getStore() {
    return this.#enabled ? this.#variable.get() : undefined;
  }

  disable() {
    this.#enabled = false;
  }
}

export class AsyncResource {
  #snapshot = getAsyncContext();
  constructor(type) {
    this.type = type;
  }
  runInAsyncScope(fn, thisArg, ...args) {
    const previous = getAsyncContext();
    setAsyncContext(this.#snapshot);
    try {
      return fn.apply(thisArg, args);
    } finally {
      setAsyncContext(previous);
    }
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

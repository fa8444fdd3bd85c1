// node:events: EventEmitter as Node documents it (listener order, once, prepend, the
// `error` event, newListener/removeListener events, max listeners), and events.once/on.
const kCapture = Symbol("kCapture");
let defaultMaxListeners = 10;

export class EventEmitter {
  constructor(options) {
    this._events = Object.create(null);
    this._eventsCount = 0;
    this._maxListeners = undefined;
    this[kCapture] = Boolean(options?.captureRejections);
  }
  static get defaultMaxListeners() {
    return defaultMaxListeners;
  }
  static set defaultMaxListeners(n) {
    defaultMaxListeners = n;
  }
  setMaxListeners(n) {
    if (typeof n !== "number" || n < 0 || Number.isNaN(n)) {
      throw new RangeError(`The value of "n" is out of range. It must be a non-negative number. Received ${n}`);
    }
    this._maxListeners = n;
    return this;
  }
  getMaxListeners() {
    return this._maxListeners ?? defaultMaxListeners;
  }
  emit(type, ...args) {
    const events = this._events ?? (this._events = Object.create(null));
    if (type === "error" && events.error === undefined) {
      const error = args[0];
      if (error instanceof Error) throw error;
      const wrapped = new Error(`Unhandled error. (${String(error)})`);
      wrapped.code = "ERR_UNHANDLED_ERROR";
      wrapped.context = error;
      throw wrapped;
    }
    const handler = events[type];
    if (handler === undefined) return false;
    if (typeof handler === "function") {
      handler.apply(this, args);
    } else {
      for (const listener of handler.slice()) listener.apply(this, args);
    }
    return true;
  }
  _add(type, listener, prepend) {
    if (typeof listener !== "function") {
      throw new TypeError(`The "listener" argument must be of type function. Received ${typeof listener}`);
    }
    const events = this._events ?? (this._events = Object.create(null));
    if (events.newListener !== undefined) {
      this.emit("newListener", type, listener.listener ?? listener);
    }
    const existing = events[type];
    if (existing === undefined) {
      events[type] = listener;
      this._eventsCount++;
    } else if (typeof existing === "function") {
      events[type] = prepend ? [listener, existing] : [existing, listener];
    } else if (prepend) {
      existing.unshift(listener);
    } else {
      existing.push(listener);
    }
    const count = this.listenerCount(type);
    const max = this.getMaxListeners();
    if (max > 0 && count > max && !events[type].warned) {
      if (Array.isArray(events[type])) events[type].warned = true;
      console.warn(`MaxListenersExceededWarning: Possible EventEmitter memory leak detected. ${count} ${String(type)} listeners added. Use emitter.setMaxListeners() to increase limit`);
    }
    return this;
  }
  addListener(type, listener) {
    return this._add(type, listener, false);
  }
  on(type, listener) {
    return this._add(type, listener, false);
  }
  prependListener(type, listener) {
    return this._add(type, listener, true);
  }
  _onceWrap(type, listener) {
    const state = { fired: false, target: this, type, listener };
    const wrapped = function (...args) {
      if (state.fired) return undefined;
      state.fired = true;
      state.target.removeListener(state.type, wrapped);
      return state.listener.apply(state.target, args);
    };
    wrapped.listener = listener;
    return wrapped;
  }
  once(type, listener) {
    if (typeof listener !== "function") {
      throw new TypeError(`The "listener" argument must be of type function. Received ${typeof listener}`);
    }
    return this.on(type, this._onceWrap(type, listener));
  }
  prependOnceListener(type, listener) {
    return this.prependListener(type, this._onceWrap(type, listener));
  }
  removeListener(type, listener) {
    const events = this._events;
    if (events === undefined) return this;
    const list = events[type];
    if (list === undefined) return this;
    if (list === listener || list.listener === listener) {
      if (--this._eventsCount === 0) this._events = Object.create(null);
      else delete events[type];
      if (events.removeListener) this.emit("removeListener", type, list.listener ?? listener);
    } else if (typeof list !== "function") {
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i] === listener || list[i].listener === listener) {
          const [removed] = list.splice(i, 1);
          if (list.length === 1) events[type] = list[0];
          if (events.removeListener !== undefined) {
            this.emit("removeListener", type, removed.listener ?? listener);
          }
          break;
        }
      }
    }
    return this;
  }
  off(type, listener) {
    return this.removeListener(type, listener);
  }
  removeAllListeners(type) {
    if (type === undefined) {
      this._events = Object.create(null);
      this._eventsCount = 0;
    } else if (this._events?.[type] !== undefined) {
      if (--this._eventsCount === 0) this._events = Object.create(null);
      else delete this._events[type];
    }
    return this;
  }
  listeners(type) {
    const list = this._events?.[type];
    if (list === undefined) return [];
    if (typeof list === "function") return [list.listener ?? list];
    return list.map((l) => l.listener ?? l);
  }
  rawListeners(type) {
    const list = this._events?.[type];
    if (list === undefined) return [];
    return typeof list === "function" ? [list] : list.slice();
  }
  listenerCount(type) {
    const list = this._events?.[type];
    if (list === undefined) return 0;
    return typeof list === "function" ? 1 : list.length;
  }
  eventNames() {
    return this._eventsCount > 0 ? Reflect.ownKeys(this._events) : [];
  }
  static listenerCount(emitter, type) {
    return emitter.listenerCount(type);
  }
}

// `events.once(emitter, name)`: a promise of the next event's arguments (rejected by `error`).
export function once(emitter, name, options) {
  return new Promise((resolve, reject) => {
    const onError = (error) => {
      emitter.removeListener(name, onEvent);
      reject(error);
    };
    const onEvent = (...args) => {
      if (name !== "error") emitter.removeListener("error", onError);
      resolve(args);
    };
    if (typeof emitter.addEventListener === "function") {
      emitter.addEventListener(name, (...args) => resolve(args), { once: true });
      return;
    }
    emitter.once(name, onEvent);
    if (name !== "error") emitter.once("error", onError);
    options?.signal?.addEventListener("abort", () => reject(options.signal.reason), { once: true });
  });
}

export async function* on(emitter, name) {
  const queue = [];
  let wake = null;
  let failure = null;
  emitter.on(name, (...args) => {
    queue.push(args);
    wake?.();
  });
  emitter.on("error", (error) => {
    failure = error;
    wake?.();
  });
  while (true) {
    if (failure) throw failure;
    if (queue.length) {
      yield queue.shift();
      continue;
    }
    await new Promise((resolve) => (wake = resolve));
    wake = null;
  }
}

export const errorMonitor = Symbol("events.errorMonitor");
export const captureRejectionSymbol = Symbol.for("nodejs.rejection");
export function getEventListeners(emitter, name) {
  return emitter.listeners(name);
}
export function setMaxListeners(n, ...emitters) {
  if (emitters.length === 0) defaultMaxListeners = n;
  for (const e of emitters) e.setMaxListeners?.(n);
}

EventEmitter.EventEmitter = EventEmitter;
EventEmitter.once = once;
EventEmitter.on = on;
EventEmitter.errorMonitor = errorMonitor;
EventEmitter.captureRejectionSymbol = captureRejectionSymbol;
EventEmitter.getEventListeners = getEventListeners;
EventEmitter.setMaxListeners = setMaxListeners;
export default EventEmitter;

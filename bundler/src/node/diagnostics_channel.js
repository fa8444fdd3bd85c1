// node:diagnostics_channel: named channels that publish to their subscribers, and tracing
// channels (start, end, asyncStart, asyncEnd, error) around a function.
const channels = new Map();

export class Channel {
  constructor(name) {
    this.name = name;
    this._subscribers = [];
    this._stores = new Map();
  }
  get hasSubscribers() {
    return this._subscribers.length > 0 || this._stores.size > 0;
  }
  subscribe(subscriber) {
    this._subscribers.push(subscriber);
  }
  unsubscribe(subscriber) {
    const at = this._subscribers.indexOf(subscriber);
    if (at === -1) return false;
    this._subscribers.splice(at, 1);
    return true;
  }
  publish(message) {
    for (const subscriber of this._subscribers.slice()) {
      try {
        subscriber(message, this.name);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
  bindStore(store, transform) {
    this._stores.set(store, transform);
  }
  unbindStore(store) {
    return this._stores.delete(store);
  }
  runStores(message, fn, thisArg, ...args) {
    let run = () => fn.apply(thisArg, args);
    for (const [store, transform] of this._stores) {
      const inner = run;
      run = () => store.run(transform ? transform(message) : message, inner);
    }
    this.publish(message);
    return run();
  }
}

export function channel(name) {
  let found = channels.get(name);
  if (found === undefined) {
    found = new Channel(name);
    channels.set(name, found);
  }
  return found;
}

export function hasSubscribers(name) {
  return channels.get(name)?.hasSubscribers ?? false;
}

export function subscribe(name, subscriber) {
  channel(name).subscribe(subscriber);
}

export function unsubscribe(name, subscriber) {
  return channel(name).unsubscribe(subscriber);
}

export function tracingChannel(nameOrChannels) {
  const names = ["start", "end", "asyncStart", "asyncEnd", "error"];
  const parts = Object.fromEntries(
    names.map((n) => [n, typeof nameOrChannels === "string" ? channel(`tracing:${nameOrChannels}:${n}`) : nameOrChannels[n]]),
  );
  return {
    ...parts,
    get hasSubscribers() {
      return names.some((n) => parts[n].hasSubscribers);
    },
    subscribe(handlers) {
      for (const n of names) if (handlers[n]) parts[n].subscribe(handlers[n]);
    },
    unsubscribe(handlers) {
      for (const n of names) if (handlers[n]) parts[n].unsubscribe(handlers[n]);
    },
    traceSync(fn, context = {}, thisArg, ...args) {
      return parts.start.runStores(context, () => {
        try {
          context.result = fn.apply(thisArg, args);
          return context.result;
        } catch (error) {
          context.error = error;
          parts.error.publish(context);
          throw error;
        } finally {
          parts.end.publish(context);
        }
      });
    },
    tracePromise(fn, context = {}, thisArg, ...args) {
      return parts.start.runStores(context, () => {
        try {
          const promise = Promise.resolve(fn.apply(thisArg, args));
          parts.end.publish(context);
          return promise.then(
            (result) => {
              context.result = result;
              parts.asyncStart.publish(context);
              parts.asyncEnd.publish(context);
              return result;
            },
            (error) => {
              context.error = error;
              parts.error.publish(context);
              parts.asyncStart.publish(context);
              parts.asyncEnd.publish(context);
              throw error;
            },
          );
        } catch (error) {
          context.error = error;
          parts.error.publish(context);
          parts.end.publish(context);
          throw error;
        }
      });
    },
  };
}

export default { channel, hasSubscribers, subscribe, unsubscribe, tracingChannel, Channel };

// The hostile-call walk: every function reachable from globalThis (globals, their static
// methods, the methods and accessors of their prototypes), called with hostile arguments.
// `/w/count` says how many there are; `/w/run?from=A&to=B&seed=S&huge=N` calls those in
// [A, B) (in the order the seed shuffles the arguments); `/w/ok` is a request that must keep
// answering after any of it.

function collect() {
  const seen = new Set();
  const found = [];
  const visit = (object, path, depth) => {
    if (object === null || (typeof object !== "object" && typeof object !== "function")) return;
    if (seen.has(object) || depth > 3) return;
    seen.add(object);
    let keys;
    try {
      keys = Reflect.ownKeys(object);
    } catch {
      return;
    }
    for (const key of keys) {
      const name = `${path}.${String(key)}`;
      let descriptor;
      try {
        descriptor = Object.getOwnPropertyDescriptor(object, key);
      } catch {
        continue;
      }
      if (!descriptor) continue;
      for (const kind of ["get", "set"]) {
        if (typeof descriptor[kind] === "function") found.push({ name: `${name}[${kind}]`, fn: descriptor[kind], owner: object });
      }
      const value = descriptor.value;
      if (typeof value === "function") {
        if (key !== "constructor") found.push({ name, fn: value, owner: object });
        visit(value, name, depth + 1);
        if (value.prototype) visit(value.prototype, `${name}.prototype`, depth + 1);
      } else if (value !== null && typeof value === "object") {
        visit(value, name, depth + 1);
      }
    }
  };
  visit(globalThis, "globalThis", 0);
  found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return found;
}

// The hostile values, made fresh for each call (a call may change them).
function hostileValues(huge) {
  const detached = new ArrayBuffer(16);
  structuredClone(detached, { transfer: [detached] });
  const resizable = new ArrayBuffer(16, { maxByteLength: 64 });
  const resizableView = new Uint8Array(resizable);
  resizable.resize(4);
  const thrower = () => {
    throw new Error("hostile");
  };
  const proxy = new Proxy({}, {
    get: thrower, has: thrower, ownKeys: thrower, getPrototypeOf: thrower,
    getOwnPropertyDescriptor: thrower, apply: thrower, construct: thrower,
  });
  const primitive = { toString: thrower, valueOf: thrower, [Symbol.toPrimitive]: thrower };
  const cyclic = { length: 3 };
  cyclic.self = cyclic;
  cyclic[0] = cyclic;
  return [
    undefined, detached, new Uint8Array(detached.byteLength === 0 ? detached : detached), resizableView,
    proxy, primitive, "x".repeat(huge), -1, 2 ** 53, NaN, cyclic, Symbol("hostile"),
  ];
}

// A small PRNG, so a seed names one order of calls.
function random(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
}

function settle(result) {
  // A promise's rejection is expected: observe it so it is not an unhandled one.
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    try {
      Promise.prototype.catch.call(result, () => {});
    } catch {}
  }
}

function run(entries, from, to, seed, huge) {
  const next = random(seed);
  let calls = 0;
  let threw = 0;
  for (let i = from; i < Math.min(to, entries.length); i++) {
    const { fn, owner } = entries[i];
    const values = hostileValues(huge);
    for (let k = 0; k < values.length; k++) {
      const value = values[Math.floor(next() * values.length)];
      const argLists = [[], [value], [value, value], [value, value, value]];
      for (const args of argLists) {
        for (const self of [owner, undefined, value]) {
          calls++;
          try {
            settle(Reflect.apply(fn, self, args));
          } catch {
            threw++;
          }
        }
        calls++;
        try {
          settle(Reflect.construct(fn, args));
        } catch {
          threw++;
        }
      }
    }
  }
  return { calls, threw };
}

let entries = null;

export default {
  fetch(request) {
    const url = new URL(request.url);
    const params = url.searchParams;
    entries ??= collect();
    switch (url.pathname) {
      case "/w/count":
        return Response.json({ count: entries.length });
      case "/w/names":
        return Response.json(entries.map((e) => e.name));
      case "/w/run": {
        const from = Number(params.get("from"));
        const to = Number(params.get("to"));
        const seed = Number(params.get("seed") ?? "1");
        const huge = Number(params.get("huge") ?? "65536");
        return Response.json(run(entries, from, to, seed, huge));
      }
      case "/w/ok":
        return new Response("ok");
      default:
        return new Response("no such path", { status: 404 });
    }
  },
};

// What a hostile (or careless) tenant does to the isolate it runs on. Each path is one case of
// tests/e2e/hostile.rs.

// (module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
const ADD_WASM = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f,
  0x01, 0x7f, 0x03, 0x02, 0x01, 0x00, 0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00,
  0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b,
]);
const WASM = { "content-type": "application/wasm" };

const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function outcome(promise) {
  try {
    return `ok ${await promise}`;
  } catch (e) {
    return `${e?.name}: ${e?.message}`;
  }
}

const cases = {
  // WebAssembly from a Response, as Workers and Deno code loads it.
  async "wasm-stream"() {
    const { instance } = await WebAssembly.instantiateStreaming(new Response(ADD_WASM, { headers: WASM }));
    const module = await WebAssembly.compileStreaming(
      new Response(new Blob([ADD_WASM]).stream(), { headers: WASM }),
    );
    const again = await WebAssembly.instantiate(module);
    return `${instance.exports.add(2, 3)} ${again.exports.add(20, 22)}`;
  },
  // The same without the content type, and with bytes that are not WebAssembly.
  async "wasm-stream-bad"() {
    const noType = await outcome(WebAssembly.instantiateStreaming(new Response(ADD_WASM)));
    const notWasm = await outcome(
      WebAssembly.compileStreaming(new Response("not wasm at all", { headers: WASM })),
    );
    const notResponse = await outcome(WebAssembly.compileStreaming("nope"));
    return [noType, notWasm, notResponse].join("\n");
  },
  // Answers after `ms` of waiting, for requests kept in flight beside the others.
  async slow(url) {
    console.log(`slow ${url.searchParams.get("n")} started`);
    await tick(Number(url.searchParams.get("ms") ?? "300"));
    return "slow done";
  },
  // A rejection nobody handles, while this invocation is still running.
  async reject() {
    Promise.reject(new Error("x marks the spot"));
    await tick(50);
    return "not reached: the rejection ends this invocation";
  },
  // A timer callback that throws, while this invocation is still running.
  async "timer-throw"() {
    setTimeout(() => {
      throw new TypeError("thrown by a timer");
    }, 0);
    await tick(50);
    return "not reached: the timer's exception ends this invocation";
  },
  // An unhandled rejection with every global hook sabotaged first.
  async sabotage() {
    globalThis.dispatchEvent = () => {
      throw new Error("dispatchEvent sabotaged");
    };
    addEventListener("unhandledrejection", () => {
      throw new Error("listener sabotaged");
    });
    addEventListener("error", () => {
      throw new Error("error listener sabotaged");
    });
    const hostile = new Proxy({}, {
      get() {
        throw new Error("proxy sabotaged");
      },
    });
    Promise.reject(hostile);
    try {
      reportError(new Error("reported on purpose"));
    } catch (e) {
      console.log(`reportError threw ${e}`);
    }
    await tick(50);
    return "not reached";
  },
  // A rejection the function handles itself, by preventDefault on the event.
  async prevented() {
    const listener = (event) => {
      event.preventDefault();
      console.log(`handled: ${event.reason.message}`);
    };
    addEventListener("unhandledrejection", listener);
    Promise.reject(new Error("mine to handle"));
    await tick(50);
    removeEventListener("unhandledrejection", listener);
    return `prevented ${globalThis instanceof EventTarget}`;
  },
  // PBKDF2 with `n` iterations.
  async pbkdf2(url) {
    const n = Number(url.searchParams.get("n"));
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("pw"), "PBKDF2", false, ["deriveBits"]);
    const params = { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(16), iterations: n };
    return outcome(crypto.subtle.deriveBits(params, key, 256).then((bits) => bits.byteLength));
  },
  // Eight unawaited PBKDF2 derivations of 100,000 iterations each, then an answer once they
  // are all done: the blocking pool's time is charged to this invocation.
  async "pbkdf2-storm"() {
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("pw"), "PBKDF2", false, ["deriveBits"]);
    const params = { name: "PBKDF2", hash: "SHA-512", salt: new Uint8Array(16), iterations: 100000 };
    const all = [];
    for (let i = 0; i < 8; i++) all.push(crypto.subtle.deriveBits(params, key, 512));
    await Promise.allSettled(all);
    return "all derived";
  },
  // Hashing runs on the blocking pool too: `n` SHA-512 digests of `mib` MiB, unawaited.
  async "digest-storm"(url) {
    const data = new Uint8Array(Number(url.searchParams.get("mib")) << 20);
    const all = [];
    const n = Number(url.searchParams.get("n"));
    for (let i = 0; i < n; i++) all.push(crypto.subtle.digest("SHA-512", data));
    await Promise.allSettled(all);
    return "all hashed";
  },
  // One digest of a small input, well within the invocation's CPU time.
  async digest() {
    const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc"));
    return [...new Uint8Array(hash).slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
  },
  // A timer left burning CPU after the response: `ms` busy every millisecond, for ever.
  async zombie(url) {
    const busy = Number(url.searchParams.get("ms") ?? "40");
    if (!globalThis.zombie) {
      globalThis.zombie = setInterval(() => {
        const t = Date.now();
        while (Date.now() - t < busy) {}
      }, 1);
    }
    return "zombie set";
  },
};

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const name = url.pathname.slice("/h/".length);
    const run = cases[name];
    if (!run) return new Response(`no case ${name}`, { status: 404 });
    return new Response(await run(url));
  },
};

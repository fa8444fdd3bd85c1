// Hostile handlers, one per path. Each must be stopped with the right outcome, and the next
// request to the same function must succeed on a fresh isolate.
const handlers = {
  "/ok": () => new Response("ok"),
  "/loop": () => {
    while (true) {}
  },
  "/catch-loop": () => {
    // Catches every error and keeps going: termination is not an error it can catch.
    for (;;) {
      try {
        JSON.parse("{");
      } catch {}
    }
  },
  "/microtasks": () => {
    const again = () => Promise.resolve().then(again);
    again();
    return new Promise(() => {});
  },
  "/regex": () => new Response(String(/^(a+)+$/.test("a".repeat(48) + "!"))),
  "/never": () => new Promise(() => {}),
  "/never-busy": () => {
    // A timer keeps the event loop busy, so only the wall-clock limit can end this.
    setInterval(() => {}, 100);
    return new Promise(() => {});
  },
  "/recursion": () => {
    const deeper = (n) => deeper(n + 1) + 1;
    try {
      deeper(0);
    } catch (e) {
      return new Response(e.constructor.name);
    }
  },
  "/recursion-uncaught": () => {
    const deeper = (n) => deeper(n + 1) + 1;
    return deeper(0);
  },
  "/eval": () => new Response(String(eval("1 + 1"))),
  "/function": () => new Response(String(new Function("return 2")())),
  "/shared": () => new Response(typeof SharedArrayBuffer),
};

export default {
  fetch(request) {
    const handler = handlers[new URL(request.url).pathname];
    return handler ? handler() : new Response("no such case", { status: 404 });
  },
};

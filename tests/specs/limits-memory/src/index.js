// Memory bombs: the V8 heap, ArrayBuffers, and ArrayBuffers whose failure is caught. Each is
// stopped with exceeded_memory and the process lives on.
const handlers = {
  "/ok": () => new Response("ok"),
  "/heap": () => {
    const hoard = [];
    while (true) hoard.push(new Array(1_000_000).fill(1.5));
  },
  "/arraybuffer": () => {
    const hoard = [];
    while (true) hoard.push(new ArrayBuffer(8 * 1024 * 1024));
  },
  "/arraybuffer-caught": () => {
    const hoard = [];
    for (;;) {
      try {
        hoard.push(new Uint8Array(8 * 1024 * 1024));
      } catch {}
    }
  },
  "/within": () => {
    // 48 MiB of buffers under a 64 MiB limit is fine.
    const hoard = [];
    for (let i = 0; i < 6; i++) hoard.push(new Uint8Array(8 * 1024 * 1024));
    return new Response(String(hoard.length));
  },
};

export default {
  fetch(request) {
    const handler = handlers[new URL(request.url).pathname];
    return handler ? handler() : new Response("no such case", { status: 404 });
  },
};

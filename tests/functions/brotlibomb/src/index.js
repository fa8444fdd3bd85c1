// A Brotli bomb through node:zlib (bundled from the runtime's built-ins): each case must end
// `exceeded_memory` under the 64 MiB limit and never grow the node; native Brotli state is
// bounded per isolate. `/b/ok` answers after any of them.
import zlib from "node:zlib";

const cases = {
  ok() {
    return "ok";
  },
  // The request's body (a Brotli bomb: 3 KiB that inflate to 2 GiB) through node:zlib, whole.
  async "brotli-sync"(request) {
    const all = zlib.brotliDecompressSync(new Uint8Array(await request.arrayBuffer()));
    return `inflated ${all.length}`;
  },
  // The same as a stream, each piece kept.
  async "brotli-stream"(request) {
    const bomb = new Uint8Array(await request.arrayBuffer());
    const pieces = [];
    await new Promise((resolve, reject) => {
      const stream = zlib.createBrotliDecompress();
      stream.on("data", (piece) => pieces.push(piece));
      stream.on("end", resolve);
      stream.on("error", reject);
      stream.end(bomb);
    });
    return `inflated ${pieces.length} pieces`;
  },
  // Native Brotli state is bounded per isolate: the fifth open stream is refused.
  "brotli-streams"() {
    const open = [];
    try {
      for (let i = 0; i < 5; i++) open.push(zlib.createBrotliCompress());
      return "five open";
    } catch (error) {
      return error.message;
    } finally {
      for (const stream of open) stream.destroy();
    }
  },
};

export default {
  async fetch(request) {
    const name = new URL(request.url).pathname.slice("/b/".length);
    const run = cases[name];
    if (!run) return new Response(`no case ${name}`, { status: 404 });
    return new Response(await run(request));
  },
};

// Memory held outside the V8 heap, each way a function can: buffers made by ops, WebAssembly
// memories, Blobs, a decompression bomb. Each case must end `exceeded_memory` (or be refused)
// under the 64 MiB limit, never grow the node. `/m/ok` answers after any of them.

const held = [];

const cases = {
  ok() {
    return "ok";
  },
  // Brotli, whose output per input byte has no bound, is refused.
  brotli() {
    try {
      new DecompressionStream("brotli");
      return "accepted";
    } catch (e) {
      return `${e.name}: ${e.message}`;
    }
  },
  // 128 buffers of 8 MiB made by TextEncoder's op (Rust-allocated, handed to V8).
  encode() {
    const chunk = "x".repeat(8 << 20);
    for (let i = 0; i < 128; i++) held.push(new TextEncoder().encode(chunk));
    return `held ${held.length}`;
  },
  // Four WebAssembly memories of 256 MiB each.
  "wasm-memory"() {
    for (let i = 0; i < 4; i++) held.push(new WebAssembly.Memory({ initial: 4096 }));
    return `held ${held.length}`;
  },
  // Blobs: 64 of 8 MiB each.
  blob() {
    const chunk = "y".repeat(8 << 20);
    for (let i = 0; i < 64; i++) held.push(new Blob([chunk, String(i)]));
    return `held ${held.length}`;
  },
  // The request's body (a gzip bomb) read whole, then written into a DecompressionStream in
  // one write.
  async "decompress-once"(request) {
    const bomb = new Uint8Array(await request.arrayBuffer());
    const stream = new DecompressionStream("gzip");
    const writer = stream.writable.getWriter();
    writer.write(bomb).catch(() => {});
    writer.close().catch(() => {});
    const all = await new Response(stream.readable).arrayBuffer();
    return `inflated ${all.byteLength}`;
  },
  // The request's body (a gzip bomb: a few hundred KiB that inflate to hundreds of MiB),
  // inflated and read whole.
  async decompress(request) {
    const inflated = request.body.pipeThrough(new DecompressionStream("gzip"));
    const all = await new Response(inflated).arrayBuffer();
    return `inflated ${all.byteLength}`;
  },
};

export default {
  async fetch(request) {
    const name = new URL(request.url).pathname.slice("/m/".length);
    const run = cases[name];
    if (!run) return new Response(`no case ${name}`, { status: 404 });
    return new Response(await run(request));
  },
};

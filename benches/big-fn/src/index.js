// Hello world, and /big: a 16 MiB download (made once, at module load).
const big = new Uint8Array(16 * 1024 * 1024).map((_, i) => i % 251);

export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/big") {
      return new Response(big, { headers: { "content-type": "application/octet-stream" } });
    }
    return new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } });
  },
};

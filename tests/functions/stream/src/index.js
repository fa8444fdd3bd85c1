// /stream sends its first chunk at once and its last only after /release is called, so a
// client that sees the first chunk before calling /release proves the body streams.
// /upload answers as soon as the first chunk of the request body arrives, then counts the
// rest in waitUntil, so a response that arrives mid-upload proves uploads stream too.
// The producer polls with a timer while it waits: a pending timer is work in flight, whereas
// a bare promise that only another request can resolve leaves the event loop idle, which
// ends the invocation with no_response.
let released = false;
const encoder = new TextEncoder();
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/release") {
      released = true;
      return new Response("released");
    }
    if (pathname === "/stream") {
      return new Response(new ReadableStream({
        async start(controller) {
          controller.enqueue(encoder.encode("first\n"));
          while (!released) await tick();
          controller.enqueue(encoder.encode("last\n"));
          controller.close();
        },
      }));
    }
    if (pathname === "/upload") {
      const reader = request.body.getReader();
      const first = await reader.read();
      let total = first.value.byteLength;
      ctx.waitUntil((async () => {
        while (true) {
          const { value, done } = await reader.read();
          if (done) break;
          total += value.byteLength;
        }
        console.log(`upload complete: ${total} bytes`);
      })());
      return new Response(`first chunk seen\n`);
    }
    return new Response("not here", { status: 404 });
  },
};

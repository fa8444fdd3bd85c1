// Bodies that fail before their first byte, and a status that is not final: each answers 500
// with the request id like any other exception.
export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/string-chunk") {
      return new Response(new ReadableStream({ start(c) { c.enqueue("not bytes"); c.close(); } }));
    }
    if (path === "/errors-first") {
      return new Response(new ReadableStream({ pull(c) { c.error(new Error("broken source")); } }));
    }
    if (path === "/101") {
      return new Response(null, { status: 101 });
    }
    return new Response(new ReadableStream({
      start(c) { c.enqueue(new TextEncoder().encode("fine")); c.close(); },
    }));
  },
};

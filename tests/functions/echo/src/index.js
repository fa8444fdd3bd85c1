// The same answers over every protocol: a greeting, a streamed response, an echo of the
// request body (streamed back as it arrives), and a description of the request.
const encoder = new TextEncoder();

export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/hello":
        return new Response("hello world\n", { headers: { "content-type": "text/plain" } });
      case "/stream": {
        let i = 0;
        return new Response(new ReadableStream({
          async pull(controller) {
            if (i === 5) return controller.close();
            controller.enqueue(encoder.encode(`chunk ${i++}\n`));
            await new Promise((resolve) => setTimeout(resolve, 20));
          },
        }), { headers: { "content-type": "text/plain" } });
      }
      case "/consume": {
        // Every way of reading a body, alike for a small one (handed over whole) and a large
        // one (streamed).
        const copy = request.clone();
        const text = await request.text();
        const bytes = new Uint8Array(await copy.arrayBuffer());
        const again = await request.text().then(() => "read twice", (e) => e.constructor.name);
        return Response.json({
          used: request.bodyUsed,
          length: text.length,
          bytes: bytes.length,
          same: text === new TextDecoder().decode(bytes),
          again,
        });
      }
      case "/echo":
        return new Response(request.body, { headers: { "content-type": "application/octet-stream" } });
      default:
        return Response.json({
          method: request.method,
          path: url.pathname,
          query: Object.fromEntries(url.searchParams),
          hasBody: request.body !== null,
          agent: request.headers.get("x-agent"),
        }, { status: 203, headers: { "x-answer": "same" } });
    }
  },
};

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

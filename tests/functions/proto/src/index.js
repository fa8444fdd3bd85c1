// Tells the client what the function saw of the request; /slow takes its time.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/slow") {
      console.log("slow request started");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return new Response("slow done");
    }
    let bytes = 0;
    if (request.body) {
      for await (const chunk of request.body) bytes += chunk.byteLength;
    }
    return Response.json({
      protocol: request.cf.httpProtocol,
      clientIp: request.cf.clientIp,
      forwardedFor: request.headers.get("x-forwarded-for"),
      scheme: url.protocol,
      method: request.method,
      bytes,
    });
  },
};

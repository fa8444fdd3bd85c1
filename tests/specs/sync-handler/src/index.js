// A handler that answers synchronously (no `async`), down each path the runtime takes for
// it: a whole body answered in the same turn, a body that streams, `waitUntil` work after
// the response, a throw, a value that is not a Response.
function explode() {
  throw new Error("the sync widget exploded");
}

export default {
  fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    if (path === "/throw") {
      console.log("about to explode synchronously");
      explode();
    }
    if (path === "/not-a-response") return { hello: "world" };
    if (path === "/empty") return new Response(null, { status: 204 });
    if (path === "/bytes") return new Response(new Uint8Array([104, 105]));
    if (path === "/stream") {
      const parts = ["one ", "two ", "three"];
      const body = new ReadableStream({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          const part = parts.shift();
          if (part === undefined) controller.close();
          else controller.enqueue(new TextEncoder().encode(part));
        },
      });
      return new Response(body, { headers: { "x-path": "stream" } });
    }
    if (path === "/wait-until") {
      ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 20)).then(() => {
        console.log("waitUntil work ran after the response");
      }));
      return new Response("answered first");
    }
    // `cf` is an accessor of Request.prototype: present on the request the node made, not an
    // own property, and absent on a Request the function makes.
    const own = Object.getOwnPropertyNames(request).includes("cf");
    return Response.json({
      protocol: request.cf.httpProtocol,
      own,
      constructed: new Request("http://x/").cf === undefined,
      frozen: Object.isFrozen(request.cf),
    });
  },
};

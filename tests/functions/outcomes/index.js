// One route per way an invocation can end, each logging first.
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    switch (path) {
      case "/ok":
        console.log("ok line");
        return new Response("ok");
      case "/throw":
        console.log("about to throw");
        throw new Error("thrown on purpose");
      case "/spin":
        console.log("before the spin");
        for (;;) {}
      case "/never":
        return new Promise(() => {});
      case "/linger":
        console.log("lingering");
        await new Promise((resolve) => setTimeout(resolve, 3000));
        return new Response("lingered");
      case "/unavailable":
        return new Response("down for now", { status: 503 });
      case "/long-line":
        console.log("y".repeat(25000));
        return new Response("logged");
      default:
        return new Response("no such outcome", { status: 404 });
    }
  },
};

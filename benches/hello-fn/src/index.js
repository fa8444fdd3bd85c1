// The same handler as the other servers of the rps bench.
export default {
  fetch() {
    return new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } });
  },
};

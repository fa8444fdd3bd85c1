// The Cache API bench's function. `/computed` builds its answer every time (a page of 50
// products as JSON, the kind of answer a function caches); `/cached` answers from
// `caches.default` and computes and stores only on a miss; `/hello` is hello world.
function page() {
  const items = [];
  for (let i = 0; i < 50; i++) {
    items.push({ id: i, name: `product ${i}`, price: (i * 37) % 100, tags: ["a", "b", "c"] });
  }
  return JSON.stringify({ page: 1, items });
}

function computed() {
  return new Response(page(), {
    headers: { "content-type": "application/json", "cache-control": "max-age=3600" },
  });
}

export default {
  async fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    if (path === "/hello") {
      return new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } });
    }
    if (path === "/computed") return computed();
    const hit = await caches.default.match(request);
    if (hit !== undefined) return hit;
    const answer = computed();
    ctx.waitUntil(caches.default.put(request, answer.clone()));
    return answer;
  },
};

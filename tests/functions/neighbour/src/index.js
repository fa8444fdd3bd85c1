// A well-behaved function: a little async work, then an answer.
export default {
  async fetch(request) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(request.url));
    return new Response(String(new Uint8Array(digest)[0]));
  },
};

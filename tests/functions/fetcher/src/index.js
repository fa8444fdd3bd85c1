// Fetches the URL in ?url= (n times with ?n=) and reports what happened.
export default {
  async fetch(request) {
    const params = new URL(request.url).searchParams;
    const target = params.get("url");
    const n = Number(params.get("n") ?? 1);
    const results = [];
    for (let i = 0; i < n; i++) {
      try {
        const response = await fetch(target);
        results.push(`${response.status} ${await response.text()}`);
      } catch (e) {
        results.push(`error: ${e.message}${e.cause ? ` (${e.cause.message ?? e.cause})` : ""}`);
      }
    }
    return new Response(results.join("\n"));
  },
};

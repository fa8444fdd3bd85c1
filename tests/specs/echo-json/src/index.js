// Echoes a JSON body back with what the function saw of the request.
export default {
  async fetch(request) {
    const body = await request.json();
    const url = new URL(request.url);
    return Response.json({
      method: request.method,
      path: url.pathname,
      query: url.searchParams.get("q"),
      contentType: request.headers.get("content-type"),
      body,
    }, { status: 201 });
  },
};

// Deno.serve answering "Hello, world!" (the comparison server for the rps bench).
const port = Number(Deno.args[0] ?? 8093);
Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, () =>
  new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } }));

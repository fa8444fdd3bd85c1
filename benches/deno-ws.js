// Deno.serve with Deno.upgradeWebSocket echoing every message (the WebSocket bench's peer).
const port = Number(Deno.args[0] ?? 8094);
Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, (request) => {
  if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.onmessage = (event) => socket.send(event.data);
  return response;
});

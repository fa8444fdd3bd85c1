// The WebSocket bench's echo (the same as benches/deno-ws.js does with Deno.upgradeWebSocket).
export default {
  fetch(request) {
    if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("message", (event) => server.send(event.data));
    return new Response(null, { status: 101, webSocket: client });
  },
};

// Accepts a WebSocket the Workers way and echoes every message. "close-me" makes it close
// with 4002; "loop" spins in the handler (its CPU limit closes the socket with 1011). The
// close event is logged with its code, reason and whether it was clean.
export default {
  fetch(request) {
    if (request.headers.get("upgrade") !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426 });
    }
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("message", (event) => {
      if (event.data === "close-me") return server.close(4002, "as asked");
      if (event.data === "loop") while (true) {}
      server.send(event.data);
    });
    server.addEventListener("close", (event) => {
      console.log(`closed ${event.code} ${event.reason} ${event.wasClean}`);
    });
    return new Response(null, { status: 101, webSocket: client });
  },
};

// A message through a MessageChannel: structured-cloned (a Map, a Date), an ArrayBuffer
// transferred (the sender's copy is detached), and a port sent through the other port; and
// the bound on open ports.
const kept = [];

export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/many") {
      // Ports are resources outside the heap: at most 1000 open at once per isolate.
      try {
        for (;;) kept.push(new MessageChannel());
      } catch (e) {
        const made = kept.length;
        const sameConstructor = kept[0].constructor === MessageChannel;
        for (const c of kept.splice(0)) { c.port1.close(); c.port2.close(); }
        const again = new MessageChannel() instanceof MessageChannel;
        return Response.json({ error: `${e.name}: ${e.message}`, made, sameConstructor, again });
      }
    }
    const { port1, port2 } = new MessageChannel();
    const received = new Promise((resolve) => {
      port2.onmessage = (event) => resolve(event);
    });
    const buffer = new Uint8Array([1, 2, 3]).buffer;
    const sent = { map: new Map([["a", 1]]), at: new Date(0), buffer };
    port1.postMessage(sent, [buffer]);
    const event = await received;
    const inner = new MessageChannel();
    const relayed = new Promise((resolve) => {
      port1.onmessage = (e) => {
        e.ports[0].onmessage = (m) => resolve(m.data);
        e.ports[0].start?.();
      };
    });
    port2.postMessage("here is a port", [inner.port2]);
    inner.port1.postMessage("through the sent port");
    const through = await relayed;
    port1.close();
    port2.close();
    inner.port1.close();
    return Response.json({
      isMessageEvent: event instanceof MessageEvent,
      map: event.data.map.get("a"),
      date: event.data.at.toISOString(),
      bytes: [...new Uint8Array(event.data.buffer)],
      senderDetached: buffer.byteLength,
      notSame: event.data.map !== sent.map,
      through,
    });
  },
};

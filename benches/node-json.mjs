// Node's http module running the JSON handler of benches/json-fn (the body read whole,
// JSON.parse, the same total, JSON.stringify), for the efficiency bench.
import http from "node:http";
const port = Number(process.argv[2] ?? 8092);
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let order;
    try {
      order = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      res.writeHead(400).end();
      return;
    }
    let total = 0;
    for (const item of order.items) total += item.price * item.quantity;
    const body = JSON.stringify({ id: order.id, items: order.items.length, total });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
}).listen(port, "127.0.0.1");

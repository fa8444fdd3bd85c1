// Node's http module answering "Hello, world!" (the comparison server for the rps bench).
import http from "node:http";
const port = Number(process.argv[2] ?? 8092);
http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("Hello, world!\n");
}).listen(port, "127.0.0.1");

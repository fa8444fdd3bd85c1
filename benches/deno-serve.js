// Deno.serve running a fetch-style module (`export default { fetch }`), for the efficiency
// bench: `deno run --allow-net --allow-read deno-serve.js MODULE PORT`.
const [module, port] = Deno.args;
const handler = (await import(new URL(module, `file://${Deno.cwd()}/`).href)).default;
Deno.serve({ port: Number(port), hostname: "127.0.0.1", onListen() {} }, (request) =>
  handler.fetch(request));

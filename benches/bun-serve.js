// Bun.serve running a fetch-style module (`export default { fetch }`), for the efficiency
// bench: `bun bun-serve.js MODULE PORT`.
const [module, port] = process.argv.slice(2);
const handler = (await import(`${process.cwd()}/${module}`)).default;
Bun.serve({ port: Number(port), hostname: "127.0.0.1", fetch: (request) => handler.fetch(request) });

// What Node's built-ins cost a new isolate in Deno (deno_node's polyfills, on deno_core as
// ours are): each case is a module Web Worker, a new isolate from Deno's snapshot, timed from
// `new Worker` to its first message. `plain` imports nothing; `compat` node:buffer,
// node:process and node:timers (what nodejs_compat loads here); `modules` node:buffer,
// node:crypto and node:stream. Then memory: RSS growth per worker, 50 workers of each case
// held, each case in a process of its own.
// Usage: deno run -A benches/deno-node/main.js [N]     (N starts per case, default 100)
const here = new URL(".", import.meta.url);
const cases = ["plain", "compat", "modules"];

async function start(c) {
  const w = new Worker(new URL(`./${c}.js`, here), { type: "module" });
  await new Promise((resolve) => (w.onmessage = resolve));
  return w;
}

if (Deno.args[0] === "--memory") {
  const c = Deno.args[1];
  const hold = [await start(c)];
  const before = Deno.memoryUsage().rss;
  for (let i = 0; i < 50; i++) hold.push(await start(c));
  console.log(`${c}: ${((Deno.memoryUsage().rss - before) / 50 / 1048576).toFixed(2)} MiB per worker`);
  Deno.exit(0);
}

const n = Number(Deno.args[0] ?? 100);
const times = Object.fromEntries(cases.map((c) => [c, []]));
for (let i = 0; i < n + 5; i++) {
  for (const c of cases) {
    const t = performance.now();
    const w = await start(c);
    const elapsed = performance.now() - t;
    w.terminate();
    await new Promise((r) => setTimeout(r, 5));
    if (i >= 5) times[c].push(elapsed);
  }
}
const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const c of cases) {
  const m = median(times[c]);
  console.log(`${c}: start p50 ${m.toFixed(2)} ms (${(m / median(times.plain)).toFixed(2)}x plain)`);
}
for (const c of cases) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--memory", c],
  }).output();
  await Deno.stdout.write(out.stdout);
}

// node:process: what a library reads to learn where it runs. `env` is empty (a function's
// settings are in `env` of its handlers); `exit` and the I/O streams do not exist here.
import { EventEmitter } from "node:events";

// Date, not performance: `performance` is made on first use, and this runs in every isolate.
const started = Date.now();
const process = new EventEmitter();
Object.assign(process, {
  env: {},
  argv: ["/usr/bin/node"],
  argv0: "node",
  execArgv: [],
  execPath: "/usr/bin/node",
  pid: 1,
  ppid: 0,
  title: "edge-function",
  platform: "linux",
  arch: "x64",
  version: "v22.0.0",
  versions: { node: "22.0.0" },
  release: { name: "node" },
  // As bundlers' process shims say: code with a browser path takes it (no TTY, no fs)
  browser: true,
  exitCode: undefined,
  cwd: () => "/",
  chdir() {
    throw new Error("process.chdir() is not available in an edge function");
  },
  umask: () => 0o22,
  uptime: () => (Date.now() - started) / 1000,
  hrtime: Object.assign(
    (previous) => {
      const now = performance.now();
      const seconds = Math.floor(now / 1000);
      const nanos = Math.floor((now % 1000) * 1e6);
      if (!previous) return [seconds, nanos];
      let s = seconds - previous[0];
      let n = nanos - previous[1];
      if (n < 0) {
        s -= 1;
        n += 1e9;
      }
      return [s, n];
    },
    { bigint: () => BigInt(Math.floor(performance.now() * 1e6)) },
  ),
  memoryUsage: () => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }),
  cpuUsage: () => ({ user: 0, system: 0 }),
  nextTick(callback, ...args) {
    queueMicrotask(() => callback(...args));
  },
  emitWarning(warning) {
    console.warn(typeof warning === "string" ? `Warning: ${warning}` : warning);
  },
  exit(code) {
    throw new Error(`process.exit(${code ?? ""}) is not available in an edge function`);
  },
  abort() {
    throw new Error("process.abort() is not available in an edge function");
  },
  kill() {
    throw new Error("process.kill() is not available in an edge function");
  },
  binding(name) {
    throw new Error(`process.binding('${name}') is not available in an edge function`);
  },
});
export default process;
export const { env, argv, platform, arch, version, versions, nextTick, cwd, hrtime, emitWarning, exit } = process;

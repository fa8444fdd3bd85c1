// Node's own behaviour, run in an isolate and in Node; the suite compares the answers.
import { Buffer } from "node:buffer";
import { EventEmitter, once } from "node:events";
import path from "node:path";
import util from "node:util";
import querystring from "node:querystring";
import url from "node:url";
import crypto from "node:crypto";
import { StringDecoder } from "node:string_decoder";
import assert from "node:assert";
import { setTimeout as sleep } from "node:timers/promises";
import process from "node:process";
import { AsyncLocalStorage } from "node:async_hooks";
import cjs from "./lib/a.cjs";
import shapes, { area } from "./lib/shapes.cjs";
import user from "./lib/esm-user.cjs";

const samples = ["", "hello", "héllo wörld ✓ 😀", "\u0000\u00ff\u0100", "abc".repeat(33)];

export const cases = {
  "buffer encodings": () => {
    const out = {};
    for (const enc of ["utf8", "base64", "base64url", "hex", "latin1", "ascii", "utf16le"]) {
      out[enc] = samples.map((s) => {
        const encoded = Buffer.from(s).toString(enc);
        return [encoded, Buffer.from(encoded, enc).toString("hex")];
      });
    }
    return out;
  },
  "buffer methods": () => {
    const b = Buffer.alloc(12);
    b.writeUInt32BE(0xdeadbeef, 0);
    b.writeInt16LE(-2, 4);
    b.writeFloatBE(1.5, 6);
    const c = Buffer.concat([Buffer.from("ab"), Buffer.from([99, 100])]);
    return [b.toString("hex"), b.readUInt32BE(0), b.readInt16LE(4), b.readFloatBE(6), c.toString(), c.indexOf("cd"),
      Buffer.compare(Buffer.from("a"), Buffer.from("b")), Buffer.byteLength("héllo"), c.subarray(1, 3).toString(),
      Buffer.isBuffer(c.slice(0, 1)), JSON.stringify(Buffer.from("hi")), Buffer.from("abc").equals(Buffer.from("abc"))];
  },
  "events order, once, prepend, error": () => {
    const e = new EventEmitter();
    const seen = [];
    e.on("x", (v) => seen.push(`on1:${v}`));
    e.once("x", (v) => seen.push(`once:${v}`));
    e.prependListener("x", (v) => seen.push(`first:${v}`));
    e.emit("x", 1);
    e.emit("x", 2);
    let thrown = null;
    try {
      e.emit("error", new Error("boom"));
    } catch (error) {
      thrown = error.message;
    }
    e.on("error", (error) => seen.push(`handled:${error.message}`));
    e.emit("error", new Error("again"));
    return [seen, thrown, e.listenerCount("x"), e.eventNames()];
  },
  "events.once": async () => {
    const e = new EventEmitter();
    setTimeout(() => e.emit("ready", 1, 2), 1);
    return await once(e, "ready");
  },
  path: () => [path.join("/a/b", "../c", "./d.txt"), path.resolve("/x", "y", "..", "z"), path.dirname("/a/b/c.txt"),
    path.basename("/a/b/c.txt", ".txt"), path.extname("index.test.js"), path.relative("/a/b/c", "/a/d"),
    path.normalize("a//b/../c/"), path.parse("/home/u/file.tar.gz"), path.isAbsolute("x/y"), path.sep],
  util: () => [util.format("%s is %d years and %j", "Ada", 36.5, { a: 1 }), util.inspect({ a: [1, "two", { b: null }] }),
    util.isDeepStrictEqual({ a: [1, 2] }, { a: [1, 2] }), util.isDeepStrictEqual([1], ["1"]), util.types.isPromise(Promise.resolve()),
    typeof util.promisify((cb) => cb(null, 1))],
  "util.promisify": async () => {
    const add = (a, b, cb) => setTimeout(() => cb(null, a + b), 1);
    return await util.promisify(add)(2, 3);
  },
  querystring: () => [querystring.parse("a=1&b=2&a=3&c=x%20y"), querystring.stringify({ a: [1, 2], b: "x y", c: "" })],
  url: () => {
    const u = url.parse("http://user:pw@host.com:8080/p/a/t/h?query=string#hash", true);
    return [u.protocol, u.auth, u.host, u.port, u.pathname, u.query, u.hash, url.format({ protocol: "https", hostname: "x.com", pathname: "/a", query: { b: 1 } }),
      url.fileURLToPath("file:///tmp/a%20b.txt"), url.pathToFileURL("/tmp/a b.txt").href];
  },
  crypto: () => {
    const out = {};
    for (const alg of ["md5", "sha1", "sha256", "sha384", "sha512"]) {
      out[alg] = [crypto.createHash(alg).update("hello ").update("world").digest("hex"), crypto.createHmac(alg, "key").update("msg").digest("base64")];
    }
    out.pbkdf2 = crypto.pbkdf2Sync("password", "salt", 100, 32, "sha256").toString("hex");
    out.timingSafeEqual = crypto.timingSafeEqual(Buffer.from("ab"), Buffer.from("ab"));
    out.randomBytes = crypto.randomBytes(16).length;
    out.randomInt = [0, 1, 2, 3, 4].map(() => { const n = crypto.randomInt(10, 20); return n >= 10 && n < 20; });
    out.randomUUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID());
    return out;
  },
  string_decoder: () => {
    const d = new StringDecoder("utf8");
    const euro = Buffer.from("€");
    return [d.write(euro.subarray(0, 1)), d.write(euro.subarray(1)), d.end()];
  },
  assert: () => {
    const results = [];
    for (const check of [() => assert.strictEqual(1, 1), () => assert.deepStrictEqual({ a: [1] }, { a: [1] }), () => assert.strictEqual(1, 2), () => assert.ok(0, "zero")]) {
      try {
        check();
        results.push("ok");
      } catch (error) {
        results.push([error.name, error.code]);
      }
    }
    assert.throws(() => { throw new TypeError("x"); }, TypeError);
    return results;
  },
  "timers/promises": async () => [await sleep(2, "slept")],
  "process": () => [typeof process.nextTick, typeof process.env, process.platform],
  "async_hooks: AsyncLocalStorage": async () => {
    const als = new AsyncLocalStorage();
    let letBRun;
    const bMayRun = new Promise((resolve) => (letBRun = resolve));
    const a = als.run("a", async () => {
      const seen = [als.getStore()];
      await null;
      seen.push(als.getStore());
      await new Promise((resolve) => setTimeout(resolve, 1));
      seen.push(als.getStore());
      await new Promise((resolve) => queueMicrotask(resolve));
      seen.push(als.getStore());
      letBRun();
      await new Promise((resolve) => setTimeout(() => { seen.push(als.getStore()); resolve(); }, 2));
      return seen;
    });
    const b = als.run("b", async () => {
      await bMayRun;
      const seen = [als.getStore()];
      await new Promise((resolve) => queueMicrotask(() => { seen.push(als.getStore()); resolve(); }));
      return seen;
    });
    return [await a, await b, als.getStore() ?? "outside"];
  },
  "commonjs: circular requires": () => cjs,
  "commonjs: exports, this, json, computed require": () => [area(2), shapes.sides, shapes.thisIsExports, shapes.file, shapes.dynamic("extra.cjs"), shapes.missing()],
  "commonjs: built-ins by bare name": () => user,
};

export async function runAll() {
  const out = {};
  for (const name of Object.keys(cases).sort()) {
    try {
      out[name] = { value: await cases[name]() };
    } catch (error) {
      out[name] = { error: String(error?.stack ?? error) };
    }
  }
  return JSON.parse(JSON.stringify(out));
}

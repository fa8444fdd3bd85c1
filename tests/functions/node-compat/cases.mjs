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
import { Readable, Writable, Transform, PassThrough, pipeline } from "node:stream";
import { pipeline as pipelinePromise } from "node:stream/promises";
import zlib from "node:zlib";
import punycode from "node:punycode";
import diagnostics from "node:diagnostics_channel";
import http from "node:http";
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
    out.scrypt = crypto.scryptSync("password", "NaCl", 32, { N: 64, r: 8, p: 2 }).toString("hex");
    const key = Buffer.alloc(32, 7);
    for (const [name, iv] of [["aes-256-cbc", Buffer.alloc(16, 1)], ["aes-256-ctr", Buffer.alloc(16, 2)], ["aes-256-gcm", Buffer.alloc(12, 3)]]) {
      const cipher = crypto.createCipheriv(name, key, iv);
      if (name.endsWith("gcm")) cipher.setAAD(Buffer.from("header"));
      const sealed = cipher.update("attack at dawn, ", "utf8", "hex") + cipher.update("bring snacks", "utf8", "hex") + cipher.final("hex");
      const tag = name.endsWith("gcm") ? cipher.getAuthTag().toString("base64") : null;
      const decipher = crypto.createDecipheriv(name, key, iv);
      if (tag) {
        decipher.setAAD(Buffer.from("header"));
        decipher.setAuthTag(Buffer.from(tag, "base64"));
      }
      const opened = decipher.update(sealed, "hex", "utf8") + decipher.final("utf8");
      out[name] = [sealed, tag, opened];
    }
    try {
      const d = crypto.createDecipheriv("aes-256-gcm", key, Buffer.alloc(12, 3));
      d.setAuthTag(Buffer.alloc(16));
      d.update(Buffer.from("00", "hex"));
      d.final();
      out.forged = "accepted";
    } catch (error) {
      out.forged = error.message;
    }
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
  stream: async () => {
    const log = [];
    const r = Readable.from(["a", "b", "c"]);
    const up = new Transform({ objectMode: true, transform(chunk, enc, cb) { cb(null, String(chunk).toUpperCase()); } });
    const got = [];
    const w = new Writable({ objectMode: true, write(chunk, enc, cb) { got.push(chunk); cb(); } });
    await new Promise((res, rej) => pipeline(r, up, w, (e) => (e ? rej(e) : res())));
    log.push(["pipeline", got]);
    // byte mode with data/end events and setEncoding
    const chunks = [];
    const rb = new Readable({ read() {} });
    rb.setEncoding("utf8");
    rb.on("data", (c) => chunks.push(c));
    const ended = new Promise((res) => rb.on("end", res));
    rb.push(Buffer.from("hé"));
    rb.push("llo");
    rb.push(null);
    await ended;
    log.push(["data", chunks.join("")]);
    // async iteration
    const it = [];
    for await (const c of Readable.from([1, 2, 3])) it.push(c);
    log.push(["iterate", it]);
    // backpressure: write returns false past highWaterMark, drain follows
    const slow = new Writable({ highWaterMark: 4, write(c, e, cb) { setTimeout(cb, 1); } });
    const first = slow.write("abcdef");
    const drained = await new Promise((res) => slow.once("drain", () => res(true)));
    log.push(["backpressure", first, drained]);
    // finish and close order
    const order = [];
    const w2 = new Writable({ write(c, e, cb) { order.push("write"); cb(); } });
    w2.on("finish", () => order.push("finish"));
    w2.on("close", () => order.push("close"));
    w2.end("x");
    await new Promise((res) => w2.on("close", res));
    log.push(["order", order]);
    // passthrough + pipe
    const pt = new PassThrough();
    const out = [];
    pt.on("data", (c) => out.push(c.toString()));
    const ptEnd = new Promise((res) => pt.on("end", res));
    pt.write("x"); pt.end("y");
    await ptEnd;
    log.push(["passthrough", out.join("")]);
    // error in pipeline
    const bad = new Transform({ transform(c, e, cb) { cb(new Error("bad chunk")); } });
    const err = await new Promise((res) => pipeline(Readable.from(["q"]), bad, new PassThrough(), (e) => res(e?.message)));
    log.push(["pipeline error", err]);
    // read() in paused mode
    const pr = new Readable({ read() {} });
    pr.push("ab"); pr.push("cd"); pr.push(null);
    await new Promise((res) => pr.once("readable", res));
    log.push(["read", String(pr.read(3)), String(pr.read())]);
    
    const upper = [];
    await pipelinePromise(Readable.from(["x", "y"]), new Writable({ objectMode: true, write(c, e, cb) { upper.push(c); cb(); } }));
    log.push(["stream/promises", upper]);
    return log;
  },
  zlib: async () => {
    const text = "hello zlib ".repeat(50);
    const out = {};
    for (const [pack, unpack] of [["deflateSync", "inflateSync"], ["deflateRawSync", "inflateRawSync"], ["gzipSync", "gunzipSync"], ["gzipSync", "unzipSync"], ["deflateSync", "unzipSync"]]) {
      const packed = zlib[pack](text);
      out[`${pack}/${unpack}`] = [packed.length, zlib[unpack](packed).toString() === text];
    }
    out.deflateHex = zlib.deflateSync("abc abc abc").toString("hex");
    out.levels = [1, 9].map((level) => zlib.deflateSync(text, { level }).length);
    try {
      zlib.inflateSync(Buffer.from("not deflate data"));
    } catch (error) {
      out.garbage = [error.code, error.message];
    }
    out.callback = await new Promise((resolve) => zlib.gzip("cb", (error, data) => zlib.gunzip(data, (e2, back) => resolve(String(back)))));
    const chunks = [];
    await pipelinePromise(Readable.from([Buffer.from("stream "), Buffer.from("of "), Buffer.from("bytes")]), zlib.createGzip(), zlib.createGunzip(),
      new Writable({ write(c, e, cb) { chunks.push(c); cb(); } }));
    out.stream = Buffer.concat(chunks).toString();
    return out;
  },
  brotli: async () => {
    const text = "hello brotli ".repeat(50);
    const out = {};
    const packed = zlib.brotliCompressSync(text);
    out.roundTrip = zlib.brotliDecompressSync(packed).toString() === text;
    // The same bytes as Node's Brotli makes; and bytes Node made, read here.
    out.packedHex = packed.toString("hex");
    out.nodeMade = zlib.brotliDecompressSync(Buffer.from("1b0301f88d54b5bf0671227b136555c86ad5003c8ec73c00", "hex")).toString();
    out.quality4 = zlib.brotliDecompressSync(zlib.brotliCompressSync(text, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } })).toString() === text;
    // More than one 64 KiB piece each way, and a large expansion.
    const big = Buffer.alloc(300000, "abcdefgh");
    const bigPacked = zlib.brotliCompressSync(big);
    out.big = [bigPacked.length < 1000, zlib.brotliDecompressSync(bigPacked).equals(big)];
    out.garbage = (() => { try { zlib.brotliDecompressSync(Buffer.from("not brotli data at all")); } catch (error) { return error.message; } })();
    out.truncated = (() => { try { zlib.brotliDecompressSync(packed.subarray(0, 5)); } catch (error) { return [error.message, error.code]; } })();
    out.callback = await new Promise((resolve) => zlib.brotliCompress("cb", (error, data) => zlib.brotliDecompress(data, (e2, back) => resolve(String(back)))));
    out.callbackError = await new Promise((resolve) => zlib.brotliDecompress(Buffer.from("x"), (error) => resolve([error.message, error.code])));
    const chunks = [];
    await pipelinePromise(Readable.from([Buffer.from("stream "), Buffer.from("of "), big]), zlib.createBrotliCompress(), zlib.createBrotliDecompress(),
      new Writable({ write(c, e, cb) { chunks.push(c); cb(); } }));
    out.stream = Buffer.concat(chunks).length;
    return out;
  },
  "http constants": () => [http.STATUS_CODES[418], http.STATUS_CODES[503], http.METHODS.includes("PATCH"), http.METHODS.length],
  punycode: () => [punycode.toASCII("mañana.com"), punycode.toUnicode("xn--mxahbxey0c.gr"), punycode.encode("ü"), punycode.ucs2.decode("☃")],
  diagnostics_channel: () => {
    const seen = [];
    const listener = (message, name) => seen.push([name, message.n]);
    diagnostics.subscribe("isola:test", listener);
    const channel = diagnostics.channel("isola:test");
    channel.publish({ n: 1 });
    const had = [channel.hasSubscribers, diagnostics.hasSubscribers("isola:test")];
    diagnostics.unsubscribe("isola:test", listener);
    channel.publish({ n: 2 });
    return [seen, had, channel.hasSubscribers];
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

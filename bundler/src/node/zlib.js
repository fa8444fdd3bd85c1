// node:zlib: deflate, inflate, raw deflate, gzip and gunzip (and unzip, which takes either),
// synchronous, with callbacks, and as streams; on pako (vendor/pako.mjs), the JavaScript port
// of zlib. Brotli is not here: its calls throw, naming the call.
import * as pako from "node:internal/pako";
import { Buffer } from "node:buffer";
import { Transform } from "node:stream";

export const constants = { ...pako.constants, Z_MIN_WINDOWBITS: 8, Z_MAX_WINDOWBITS: 15, Z_DEFAULT_WINDOWBITS: 15 };
Object.assign(constants, {
  Z_NO_FLUSH: 0, Z_PARTIAL_FLUSH: 1, Z_SYNC_FLUSH: 2, Z_FULL_FLUSH: 3, Z_FINISH: 4, Z_BLOCK: 5,
  Z_OK: 0, Z_STREAM_END: 1, Z_NEED_DICT: 2, Z_ERRNO: -1, Z_STREAM_ERROR: -2, Z_DATA_ERROR: -3,
  Z_BUF_ERROR: -5, Z_NO_COMPRESSION: 0, Z_BEST_SPEED: 1, Z_BEST_COMPRESSION: 9, Z_DEFAULT_COMPRESSION: -1,
  Z_DEFAULT_STRATEGY: 0,
});

const asBuffer = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function input(data) {
  if (typeof data === "string") return Buffer.from(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`The "buffer" argument must be of type string or an instance of Buffer, TypedArray, DataView, or ArrayBuffer. Received ${typeof data}`);
}

function options(opts = {}, extra = {}) {
  const out = { ...extra };
  for (const key of ["level", "windowBits", "memLevel", "strategy", "dictionary", "chunkSize"]) {
    if (opts[key] !== undefined) out[key] = opts[key];
  }
  if (extra.windowBits && opts.windowBits) out.windowBits = extra.windowBits > 15 ? opts.windowBits + (extra.windowBits - 15) : -opts.windowBits;
  return out;
}

function zlibError(message) {
  const codes = { "incorrect header check": "Z_DATA_ERROR", "invalid stored block lengths": "Z_DATA_ERROR", "unexpected end of file": "Z_BUF_ERROR" };
  const error = new Error(message || "zlib error");
  error.code = codes[message] ?? "Z_DATA_ERROR";
  error.errno = error.code === "Z_BUF_ERROR" ? -5 : -3;
  return error;
}

// Each kind: how pako is told to do it.
const KINDS = {
  deflate: { Engine: pako.Deflate, extra: {} },
  inflate: { Engine: pako.Inflate, extra: {} },
  deflateRaw: { Engine: pako.Deflate, extra: { raw: true } },
  inflateRaw: { Engine: pako.Inflate, extra: { raw: true } },
  gzip: { Engine: pako.Deflate, extra: { gzip: true } },
  gunzip: { Engine: pako.Inflate, extra: { windowBits: 15 + 16 } },
  unzip: { Engine: pako.Inflate, extra: { windowBits: 15 + 32 } },
};

function run(kind, data, opts) {
  const { Engine, extra } = KINDS[kind];
  const engine = new Engine(options(opts, extra));
  engine.push(input(data), true);
  if (engine.err) throw zlibError(engine.msg);
  if (Engine === pako.Inflate && !engine.ended) throw zlibError("unexpected end of file");
  return asBuffer(engine.result);
}

class ZlibStream extends Transform {
  constructor(kind, opts) {
    super(opts);
    const { Engine, extra } = KINDS[kind];
    this._engine = new Engine(options(opts, extra));
    this._engine.onData = (chunk) => this.push(asBuffer(chunk.slice()));
    this._engine.onEnd = () => {};
    this.bytesWritten = 0;
  }
  _transform(chunk, encoding, callback) {
    const bytes = input(typeof chunk === "string" ? Buffer.from(chunk, encoding) : chunk);
    this.bytesWritten += bytes.length;
    this._engine.push(bytes, false);
    callback(this._engine.err ? zlibError(this._engine.msg) : null);
  }
  _flush(callback) {
    this._engine.push(new Uint8Array(0), true);
    callback(this._engine.err ? zlibError(this._engine.msg) : null);
  }
  close(callback) {
    if (callback) this.once("close", callback);
    this.destroy();
  }
}

const exported = {};
for (const kind of Object.keys(KINDS)) {
  const sync = (data, opts) => run(kind, data, opts);
  const callbackForm = (data, opts, callback) => {
    if (typeof opts === "function") [callback, opts] = [opts, {}];
    let result;
    try {
      result = run(kind, data, opts);
    } catch (error) {
      queueMicrotask(() => callback(error));
      return;
    }
    queueMicrotask(() => callback(null, result));
  };
  const capital = kind[0].toUpperCase() + kind.slice(1);
  exported[`${kind}Sync`] = sync;
  exported[kind] = callbackForm;
  exported[`create${capital}`] = (opts) => new ZlibStream(kind, opts);
  exported[capital] = class extends ZlibStream {
    constructor(opts) {
      super(kind, opts);
    }
  };
}

const brotli = (name) => () => {
  const error = new Error(`node:zlib: ${name}() is not available in an edge function (no Brotli here yet; use gzip or deflate)`);
  error.code = "ERR_NOT_AVAILABLE";
  throw error;
};

export const deflateSync = exported.deflateSync;
export const inflateSync = exported.inflateSync;
export const deflateRawSync = exported.deflateRawSync;
export const inflateRawSync = exported.inflateRawSync;
export const gzipSync = exported.gzipSync;
export const gunzipSync = exported.gunzipSync;
export const unzipSync = exported.unzipSync;
export const deflate = exported.deflate;
export const inflate = exported.inflate;
export const deflateRaw = exported.deflateRaw;
export const inflateRaw = exported.inflateRaw;
export const gzip = exported.gzip;
export const gunzip = exported.gunzip;
export const unzip = exported.unzip;
export const createDeflate = exported.createDeflate;
export const createInflate = exported.createInflate;
export const createDeflateRaw = exported.createDeflateRaw;
export const createInflateRaw = exported.createInflateRaw;
export const createGzip = exported.createGzip;
export const createGunzip = exported.createGunzip;
export const createUnzip = exported.createUnzip;
export const Deflate = exported.Deflate;
export const Inflate = exported.Inflate;
export const Gzip = exported.Gzip;
export const Gunzip = exported.Gunzip;
export const brotliCompressSync = brotli("brotliCompressSync");
export const brotliDecompressSync = brotli("brotliDecompressSync");
export const brotliCompress = brotli("brotliCompress");
export const brotliDecompress = brotli("brotliDecompress");
export const createBrotliCompress = brotli("createBrotliCompress");
export const createBrotliDecompress = brotli("createBrotliDecompress");
export default {
  ...exported, constants, brotliCompressSync, brotliDecompressSync, brotliCompress, brotliDecompress,
  createBrotliCompress, createBrotliDecompress,
};

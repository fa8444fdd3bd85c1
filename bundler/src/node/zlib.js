// node:zlib: deflate, inflate, raw deflate, gzip and gunzip (and unzip, which takes either),
// synchronous, with callbacks, and as streams; on pako (vendor/pako.mjs), the JavaScript port
// of zlib. Brotli, the same three ways, on the runtime's Brotli streams (Rust's port of
// Google's Brotli), fed and read 64 KiB at a time.
import * as pako from "node:internal/pako";
import { Buffer } from "node:buffer";
import { Transform } from "node:stream";

export const constants = { ...pako.constants, Z_MIN_WINDOWBITS: 8, Z_MAX_WINDOWBITS: 15, Z_DEFAULT_WINDOWBITS: 15 };
Object.assign(constants, {
  Z_NO_FLUSH: 0, Z_PARTIAL_FLUSH: 1, Z_SYNC_FLUSH: 2, Z_FULL_FLUSH: 3, Z_FINISH: 4, Z_BLOCK: 5,
  Z_OK: 0, Z_STREAM_END: 1, Z_NEED_DICT: 2, Z_ERRNO: -1, Z_STREAM_ERROR: -2, Z_DATA_ERROR: -3,
  Z_BUF_ERROR: -5, Z_NO_COMPRESSION: 0, Z_BEST_SPEED: 1, Z_BEST_COMPRESSION: 9, Z_DEFAULT_COMPRESSION: -1,
  Z_DEFAULT_STRATEGY: 0,
  BROTLI_OPERATION_PROCESS: 0, BROTLI_OPERATION_FLUSH: 1, BROTLI_OPERATION_FINISH: 2,
  BROTLI_OPERATION_EMIT_METADATA: 3, BROTLI_PARAM_MODE: 0, BROTLI_MODE_GENERIC: 0,
  BROTLI_MODE_TEXT: 1, BROTLI_MODE_FONT: 2, BROTLI_DEFAULT_MODE: 0, BROTLI_PARAM_QUALITY: 1,
  BROTLI_MIN_QUALITY: 0, BROTLI_MAX_QUALITY: 11, BROTLI_DEFAULT_QUALITY: 11,
  BROTLI_PARAM_LGWIN: 2, BROTLI_MIN_WINDOW_BITS: 10, BROTLI_MAX_WINDOW_BITS: 24,
  BROTLI_LARGE_MAX_WINDOW_BITS: 30, BROTLI_DEFAULT_WINDOW: 22, BROTLI_PARAM_LGBLOCK: 3,
  BROTLI_MIN_INPUT_BLOCK_BITS: 16, BROTLI_MAX_INPUT_BLOCK_BITS: 24,
  BROTLI_PARAM_DISABLE_LITERAL_CONTEXT_MODELING: 4, BROTLI_PARAM_SIZE_HINT: 5,
  BROTLI_PARAM_LARGE_WINDOW: 6, BROTLI_PARAM_NPOSTFIX: 7, BROTLI_PARAM_NDIRECT: 8,
  BROTLI_DECODER_PARAM_DISABLE_RING_BUFFER_REALLOCATION: 0,
  BROTLI_DECODER_PARAM_LARGE_WINDOW: 1,
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

// pako behind the interface the streams use: `push(bytes, last, emit)` gives each piece of
// output to `emit` and throws what went wrong; `close()` frees what the engine holds.
class PakoEngine {
  constructor(kind, opts) {
    const { Engine, extra } = KINDS[kind];
    this.engine = new Engine(options(opts, extra));
    this.emit = null;
    this.engine.onData = (chunk) => this.emit(chunk.slice());
    this.engine.onEnd = () => {};
  }
  push(bytes, last, emit) {
    this.emit = emit;
    this.engine.push(bytes, last);
    if (this.engine.err) throw zlibError(this.engine.msg);
  }
  close() {}
}

// A zlib or Brotli stream: an engine fed each chunk written, its output pushed as it comes.
class EngineStream extends Transform {
  constructor(engine, opts) {
    super(opts);
    this._engine = engine;
    this.bytesWritten = 0;
  }
  _transform(chunk, encoding, callback) {
    const bytes = input(typeof chunk === "string" ? Buffer.from(chunk, encoding) : chunk);
    this.bytesWritten += bytes.length;
    this._feed(bytes, false, callback);
  }
  _flush(callback) {
    this._feed(new Uint8Array(0), true, callback);
  }
  _feed(bytes, last, callback) {
    try {
      this._engine.push(bytes, last, (piece) => this.push(asBuffer(piece)));
    } catch (error) {
      callback(error);
      return;
    }
    if (last) this._engine.close();
    callback(null);
  }
  _destroy(error, callback) {
    this._engine.close();
    callback(error);
  }
  close(callback) {
    if (callback) this.once("close", callback);
    this.destroy();
  }
}

// The callback form of a synchronous `run(data, opts)`: the result or error, in a microtask.
function withCallback(run) {
  return (data, opts, callback) => {
    if (typeof opts === "function") [callback, opts] = [opts, {}];
    let result;
    try {
      result = run(data, opts);
    } catch (error) {
      queueMicrotask(() => callback(error));
      return;
    }
    queueMicrotask(() => callback(null, result));
  };
}

const exported = {};
for (const kind of Object.keys(KINDS)) {
  const sync = (data, opts) => run(kind, data, opts);
  const capital = kind[0].toUpperCase() + kind.slice(1);
  exported[`${kind}Sync`] = sync;
  exported[kind] = withCallback(sync);
  exported[capital] = class extends EngineStream {
    constructor(opts) {
      super(new PakoEngine(kind, opts), opts);
    }
  };
  exported[`create${capital}`] = (opts) => new exported[capital](opts);
}

// Brotli: a stream of the runtime's, given and read at most PIECE bytes at a time.
const brotliStreams = globalThis[Symbol.for("isola.brotli")];
const PIECE = 64 * 1024;

function brotliError(message) {
  const error = new Error(message);
  if (message === "unexpected end of file") {
    error.code = "Z_BUF_ERROR";
    error.errno = -5;
  } else {
    error.code = "ERR_BROTLI_DECOMPRESSION_FAILED";
    error.errno = -15;
  }
  return error;
}

class BrotliEngine {
  constructor(decode, opts = {}) {
    const params = opts.params ?? {};
    const quality = params[constants.BROTLI_PARAM_QUALITY] ?? constants.BROTLI_DEFAULT_QUALITY;
    const lgwin = params[constants.BROTLI_PARAM_LGWIN] ?? constants.BROTLI_DEFAULT_WINDOW;
    this.decode = decode;
    this.id = brotliStreams.open(decode, quality, lgwin);
  }
  // Feeds `bytes` (`last`: the input ends with them); `emit` gets each piece of output.
  push(bytes, last, emit) {
    let at = 0;
    do {
      const piece = bytes.subarray(at, at + PIECE);
      at += piece.length;
      const final = last && at >= bytes.length;
      let out;
      try {
        out = brotliStreams.push(this.id, piece, final);
        if (out.length > 0) emit(out);
        while (this.decode && brotliStreams.more(this.id)) {
          out = brotliStreams.push(this.id, new Uint8Array(0), final);
          if (out.length > 0) emit(out);
        }
      } catch (error) {
        this.close();
        throw brotliError(error.message);
      }
    } while (at < bytes.length);
  }
  close() {
    if (this.id !== null) brotliStreams.close(this.id);
    this.id = null;
  }
}

function brotliRun(decode, data, opts) {
  const engine = new BrotliEngine(decode, opts);
  const out = [];
  try {
    engine.push(input(data), true, (piece) => out.push(piece));
  } finally {
    engine.close();
  }
  return Buffer.concat(out);
}

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
export const brotliCompressSync = (data, opts) => brotliRun(false, data, opts);
export const brotliDecompressSync = (data, opts) => brotliRun(true, data, opts);
export const brotliCompress = withCallback(brotliCompressSync);
export const brotliDecompress = withCallback(brotliDecompressSync);
export class BrotliCompress extends EngineStream {
  constructor(opts) {
    super(new BrotliEngine(false, opts), opts);
  }
}
export class BrotliDecompress extends EngineStream {
  constructor(opts) {
    super(new BrotliEngine(true, opts), opts);
  }
}
export const createBrotliCompress = (opts) => new BrotliCompress(opts);
export const createBrotliDecompress = (opts) => new BrotliDecompress(opts);
export default {
  ...exported, constants, brotliCompressSync, brotliDecompressSync, brotliCompress, brotliDecompress,
  createBrotliCompress, createBrotliDecompress, BrotliCompress, BrotliDecompress,
};

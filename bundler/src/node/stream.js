// node:stream: Readable, Writable, Duplex, Transform, PassThrough, pipeline and finished, in
// object mode and byte mode with Node's events (data, end, finish, close, error, drain,
// readable), backpressure by highWaterMark, pipe, async iteration and Readable.from. A
// compact implementation of Node's documented behaviour, not a copy of Node's internals.
import { EventEmitter } from "node:events";
import { Buffer } from "node:buffer";

const nextTick = (fn, ...args) => queueMicrotask(() => fn(...args));

function toChunk(stream, chunk, encoding) {
  if (stream._objectMode || chunk === null) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk, encoding ?? stream._defaultEncoding ?? "utf8");
  if (chunk instanceof Uint8Array) return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`The "chunk" argument must be of type string or an instance of Buffer or Uint8Array. Received ${typeof chunk}`);
}

function chunkLength(stream, chunk) {
  return stream._objectMode ? 1 : chunk.length;
}

export class Stream extends EventEmitter {
  pipe(destination, options) {
    return Readable.prototype.pipe.call(this, destination, options);
  }
}

export class Readable extends Stream {
  constructor(options = {}) {
    super(options);
    this._objectMode = Boolean(options.objectMode || options.readableObjectMode);
    this.readableHighWaterMark = options.highWaterMark ?? (this._objectMode ? 16 : 16384);
    this._buffer = [];
    this._length = 0;
    this._flowing = null;
    this._ended = false;
    this._endEmitted = false;
    this._reading = false;
    this._encoding = options.encoding ?? null;
    this.destroyed = false;
    this.readableEnded = false;
    if (typeof options.read === "function") this._read = options.read;
    if (typeof options.destroy === "function") this._destroy = options.destroy;
    if (options.signal) options.signal.addEventListener("abort", () => this.destroy(options.signal.reason), { once: true });
  }
  get readableObjectMode() {
    return this._objectMode;
  }
  get readableLength() {
    return this._length;
  }
  get readableFlowing() {
    return this._flowing;
  }
  get readable() {
    return !this.destroyed && !this._endEmitted;
  }
  setEncoding(encoding) {
    this._encoding = encoding;
    return this;
  }
  _read() {
    throw new Error("The _read() method is not implemented");
  }
  push(chunk, encoding) {
    if (this._ended) {
      if (chunk !== null) this.destroy(Object.assign(new Error("stream.push() after EOF"), { code: "ERR_STREAM_PUSH_AFTER_EOF" }));
      return false;
    }
    this._reading = false;
    if (chunk === null) {
      this._ended = true;
      this._maybeEnd();
      return false;
    }
    chunk = toChunk(this, chunk, encoding);
    if (this._flowing && this._buffer.length === 0 && this.listenerCount("data") > 0) {
      this._emitData(chunk);
    } else {
      this._buffer.push(chunk);
      this._length += chunkLength(this, chunk);
      if (this.listenerCount("readable") > 0) nextTick(() => this.emit("readable"));
      this._scheduleFlow();
    }
    // Flowing: read more while there is room, as Node's maybeReadMore does.
    if (this._flowing) this._pull();
    return this._length < this.readableHighWaterMark;
  }
  unshift(chunk) {
    chunk = toChunk(this, chunk);
    this._buffer.unshift(chunk);
    this._length += chunkLength(this, chunk);
  }
  _emitData(chunk) {
    const out = this._encoding && !this._objectMode ? chunk.toString(this._encoding) : chunk;
    this.emit("data", out);
  }
  read(size) {
    if (this._buffer.length === 0) {
      this._pull();
      return null;
    }
    let chunk;
    if (this._objectMode || size === undefined || size >= this._length) {
      if (this._objectMode) chunk = this._buffer.shift();
      else {
        chunk = this._buffer.length === 1 ? this._buffer[0] : Buffer.concat(this._buffer);
        this._buffer = [];
      }
    } else {
      const all = Buffer.concat(this._buffer);
      chunk = all.subarray(0, size);
      this._buffer = [all.subarray(size)];
    }
    this._length -= chunkLength(this, chunk);
    this._pull();
    this._maybeEnd();
    return this._encoding && !this._objectMode ? chunk.toString(this._encoding) : chunk;
  }
  _pull() {
    if (this._reading || this._ended || this.destroyed) return;
    if (this._length >= this.readableHighWaterMark) return;
    this._reading = true;
    nextTick(() => {
      if (this.destroyed) return;
      try {
        this._read(this.readableHighWaterMark);
      } catch (error) {
        this.destroy(error);
      }
    });
  }
  _scheduleFlow() {
    if (this._flowScheduled) return;
    this._flowScheduled = true;
    nextTick(() => {
      this._flowScheduled = false;
      this._flow();
    });
  }
  _flow() {
    while (this._flowing && this._buffer.length > 0 && !this.destroyed) {
      const chunk = this._buffer.shift();
      this._length -= chunkLength(this, chunk);
      this._emitData(chunk);
    }
    if (this._flowing) this._pull();
    this._maybeEnd();
  }
  _maybeEnd() {
    if (this._ended && this._buffer.length === 0 && !this._endEmitted && !this._endScheduled) {
      this._endScheduled = true;
      nextTick(() => {
        if (this._endEmitted || this.destroyed || this._buffer.length > 0) {
          this._endScheduled = false;
          return;
        }
        if (this._flowing === false && this.listenerCount("readable") === 0 && this.listenerCount("data") > 0) {
          this._endScheduled = false;
          return;
        }
        this._endEmitted = true;
        this.readableEnded = true;
        this.emit("end");
        if (this._autoDestroy !== false && (!(this instanceof Duplex) || this._writableFinished)) this.destroy();
      });
    }
  }
  on(event, listener) {
    super.on(event, listener);
    if (event === "data" && this._flowing !== false) this.resume();
    if (event === "readable") {
      this._flowing = false;
      this._pull();
      if (this._buffer.length > 0) nextTick(() => this.emit("readable"));
      this._maybeEnd();
    }
    return this;
  }
  addListener(event, listener) {
    return this.on(event, listener);
  }
  resume() {
    this._flowing = true;
    this._scheduleFlow();
    this._pull();
    return this;
  }
  pause() {
    this._flowing = false;
    return this;
  }
  isPaused() {
    return this._flowing === false;
  }
  pipe(destination, options = {}) {
    this.on("data", (chunk) => {
      if (destination.write(chunk) === false) {
        this.pause();
        destination.once("drain", () => this.resume());
      }
    });
    if (options.end !== false) this.on("end", () => destination.end());
    destination.emit("pipe", this);
    return destination;
  }
  unpipe() {
    this.removeAllListeners("data");
    return this;
  }
  destroy(error) {
    if (this.destroyed) return this;
    this.destroyed = true;
    const done = (err) => {
      nextTick(() => {
        if (err) {
          this.errored = err;
          this.emit("error", err);
        }
        this.closed = true;
        this.emit("close");
      });
    };
    if (typeof this._destroy === "function") this._destroy(error ?? null, done);
    else done(error);
    return this;
  }
  async *[Symbol.asyncIterator]() {
    const errors = [];
    let wake = null;
    let ended = false;
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    this.on("readable", poke);
    this.on("end", () => {
      ended = true;
      poke();
    });
    this.on("error", (error) => {
      errors.push(error);
      poke();
    });
    this.on("close", () => {
      ended = true;
      poke();
    });
    while (true) {
      if (errors.length) throw errors[0];
      const chunk = this.read();
      if (chunk !== null) {
        yield chunk;
        continue;
      }
      if (ended || this._endEmitted) return;
      await new Promise((resolve) => (wake = resolve));
    }
  }
  static from(iterable, options = {}) {
    if (typeof iterable === "string" || iterable instanceof Uint8Array) {
      return new Readable({ objectMode: true, ...options, read() { this.push(iterable); this.push(null); } });
    }
    const iterator = iterable[Symbol.asyncIterator]?.() ?? iterable[Symbol.iterator]();
    return new Readable({
      objectMode: true,
      ...options,
      async read() {
        try {
          const { value, done } = await iterator.next();
          this.push(done ? null : value);
        } catch (error) {
          this.destroy(error);
        }
      },
    });
  }
  static fromWeb(readableStream, options) {
    return Readable.from(readableStream, options);
  }
  static toWeb(readable) {
    return new ReadableStream({
      start(controller) {
        readable.on("data", (chunk) => controller.enqueue(typeof chunk === "string" ? Buffer.from(chunk) : chunk));
        readable.on("end", () => controller.close());
        readable.on("error", (error) => controller.error(error));
      },
    });
  }
  async toArray() {
    const out = [];
    for await (const chunk of this) out.push(chunk);
    return out;
  }
}

export class Writable extends Stream {
  constructor(options = {}) {
    super(options);
    this._objectMode = Boolean(options.objectMode || options.writableObjectMode);
    this.writableHighWaterMark = options.highWaterMark ?? (this._objectMode ? 16 : 16384);
    this._defaultEncoding = options.defaultEncoding ?? "utf8";
    this._decodeStrings = options.decodeStrings !== false;
    this._queue = [];
    this._pending = 0;
    this._writing = false;
    this._ending = false;
    this._writableFinished = false;
    this._needDrain = false;
    this.destroyed = false;
    this.writableEnded = false;
    if (typeof options.write === "function") this._write = options.write;
    if (typeof options.writev === "function") this._writev = options.writev;
    if (typeof options.final === "function") this._final = options.final;
    if (typeof options.destroy === "function") this._destroy = options.destroy;
  }
  get writable() {
    return !this.destroyed && !this._ending;
  }
  get writableFinished() {
    return this._writableFinished;
  }
  get writableLength() {
    return this._pending;
  }
  get writableObjectMode() {
    return this._objectMode;
  }
  setDefaultEncoding(encoding) {
    this._defaultEncoding = encoding;
    return this;
  }
  _write() {
    throw new Error("The _write() method is not implemented");
  }
  write(chunk, encoding, callback) {
    if (typeof encoding === "function") [callback, encoding] = [encoding, undefined];
    if (this._ending) {
      const error = Object.assign(new Error("write after end"), { code: "ERR_STREAM_WRITE_AFTER_END" });
      nextTick(() => {
        callback?.(error);
        this.emit("error", error);
      });
      return false;
    }
    if (!this._objectMode && typeof chunk === "string" && this._decodeStrings) chunk = toChunk(this, chunk, encoding);
    else if (!this._objectMode && typeof chunk !== "string") chunk = toChunk(this, chunk);
    this._pending += chunkLength(this, chunk);
    this._queue.push([chunk, encoding ?? (typeof chunk === "string" ? this._defaultEncoding : "buffer"), callback]);
    this._next();
    const ok = this._pending < this.writableHighWaterMark;
    if (!ok) this._needDrain = true;
    return ok;
  }
  _next() {
    if (this._writing || this.destroyed) return;
    if (this._queue.length === 0) {
      if (this._needDrain) {
        this._needDrain = false;
        nextTick(() => this.emit("drain"));
      }
      if (this._ending) this._finish();
      return;
    }
    const [chunk, encoding, callback] = this._queue.shift();
    this._writing = true;
    let sync = true;
    this._write(chunk, encoding, (error) => {
      const after = () => {
        this._writing = false;
        this._pending -= chunkLength(this, chunk);
        if (error) {
          callback?.(error);
          this.destroy(error);
          return;
        }
        callback?.(null);
        this._next();
      };
      if (sync) nextTick(after);
      else after();
    });
    sync = false;
  }
  end(chunk, encoding, callback) {
    if (typeof chunk === "function") [callback, chunk] = [chunk, undefined];
    if (typeof encoding === "function") [callback, encoding] = [encoding, undefined];
    if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
    if (callback) this.once("finish", callback);
    if (!this._ending) {
      this._ending = true;
      this.writableEnded = true;
      this._next();
    }
    return this;
  }
  _finish() {
    if (this._finishing) return;
    this._finishing = true;
    const done = (error) => {
      if (error) {
        this.destroy(error);
        return;
      }
      nextTick(() => {
        this._writableFinished = true;
        this.emit("finish");
        if (!(this instanceof Duplex) || this._endEmitted) this.destroy();
      });
    };
    if (typeof this._final === "function") this._final(done);
    else done();
  }
  cork() {}
  uncork() {}
  destroy(error) {
    return Readable.prototype.destroy.call(this, error);
  }
}

export class Duplex extends Readable {
  constructor(options = {}) {
    super(options);
    const writable = new Writable(options);
    for (const key of Object.keys(writable)) {
      if (!(key in this) || key.startsWith("_") && !["_objectMode", "_buffer", "_length", "_ended", "_reading", "_encoding", "_flowing"].includes(key)) this[key] = writable[key];
    }
    this._objectMode = Boolean(options.objectMode || options.readableObjectMode);
    this._writableObjectMode = Boolean(options.objectMode || options.writableObjectMode);
    this.writableHighWaterMark = writable.writableHighWaterMark;
    if (options.allowHalfOpen === false) this.once("end", () => this.end());
  }
}
for (const name of ["write", "end", "_next", "_finish", "cork", "uncork", "setDefaultEncoding"]) {
  Duplex.prototype[name] = Writable.prototype[name];
}
for (const name of ["writable", "writableFinished", "writableLength"]) {
  Object.defineProperty(Duplex.prototype, name, Object.getOwnPropertyDescriptor(Writable.prototype, name));
}
Object.defineProperty(Duplex.prototype, "writableObjectMode", { get() { return this._writableObjectMode; } });
Duplex.prototype._write = Writable.prototype._write;

export class Transform extends Duplex {
  constructor(options = {}) {
    super(options);
    if (typeof options.transform === "function") this._transform = options.transform;
    if (typeof options.flush === "function") this._flush = options.flush;
    this._read = () => {
      const waiting = this._waiting;
      this._waiting = null;
      waiting?.();
    };
  }
  _transform() {
    throw new Error("The _transform() method is not implemented");
  }
  _write(chunk, encoding, callback) {
    this._transform(chunk, encoding, (error, data) => {
      if (error) {
        callback(error);
        return;
      }
      if (data !== undefined && data !== null) this.push(data);
      if (this._length < this.readableHighWaterMark || this._flowing) callback();
      else this._waiting = callback;
    });
  }
  _final(callback) {
    const end = (error, data) => {
      if (error) {
        callback(error);
        return;
      }
      if (data !== undefined && data !== null) this.push(data);
      this.push(null);
      callback();
    };
    if (typeof this._flush === "function") this._flush(end);
    else end();
  }
}

export class PassThrough extends Transform {
  _transform(chunk, encoding, callback) {
    callback(null, chunk);
  }
}

export function finished(stream, options, callback) {
  if (typeof options === "function") [callback, options] = [options, {}];
  let done = false;
  const once = (error) => {
    if (done) return;
    done = true;
    callback(error ?? undefined);
  };
  const readable = stream instanceof Readable && options?.readable !== false;
  const writable = stream instanceof Writable || (stream instanceof Duplex && options?.writable !== false);
  let ended = !readable || stream._endEmitted;
  let finishedWriting = !writable || stream._writableFinished;
  const check = () => {
    if (ended && finishedWriting) once();
  };
  stream.on("end", () => {
    ended = true;
    check();
  });
  stream.on("finish", () => {
    finishedWriting = true;
    check();
  });
  stream.on("error", once);
  stream.on("close", () => {
    if (!ended || !finishedWriting) once(Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" }));
  });
  check();
  return () => {
    done = true;
  };
}

export function pipeline(...streams) {
  const callback = typeof streams[streams.length - 1] === "function" ? streams.pop() : null;
  if (Array.isArray(streams[0])) streams = streams[0];
  let failed = false;
  const fail = (error) => {
    if (failed) return;
    failed = true;
    for (const s of streams) s.destroy?.(error);
    callback?.(error);
  };
  let source = streams[0];
  if (!(source instanceof Stream) && (source?.[Symbol.asyncIterator] || source?.[Symbol.iterator])) source = Readable.from(source);
  let current = source;
  for (let i = 1; i < streams.length; i++) {
    let next = streams[i];
    if (typeof next === "function") next = Readable.from(next(current));
    current.on("error", fail);
    current.pipe(next);
    current = next;
  }
  current.on("error", fail);
  finished(current, (error) => (error ? fail(error) : callback?.()));
  return current;
}

export const promises = {
  pipeline: (...streams) => new Promise((resolve, reject) => pipeline(...streams, (error) => (error ? reject(error) : resolve()))),
  finished: (stream, options) => new Promise((resolve, reject) => finished(stream, options ?? {}, (error) => (error ? reject(error) : resolve()))),
};

export function addAbortSignal(signal, stream) {
  signal.addEventListener("abort", () => stream.destroy(signal.reason), { once: true });
  return stream;
}

export function isReadable(stream) {
  return stream instanceof Readable && stream.readable;
}

export function isErrored(stream) {
  return Boolean(stream?.errored);
}

Stream.Stream = Stream;
Stream.Readable = Readable;
Stream.Writable = Writable;
Stream.Duplex = Duplex;
Stream.Transform = Transform;
Stream.PassThrough = PassThrough;
Stream.pipeline = pipeline;
Stream.finished = finished;
Stream.promises = promises;
Stream.addAbortSignal = addAbortSignal;
export default Stream;

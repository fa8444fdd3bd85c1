// node:buffer: Buffer as a Uint8Array subclass with Node's encodings (utf8, utf16le, latin1,
// binary, ascii, base64, base64url, hex), comparison, search and the fixed-width reads and
// writes.
// Made on first use: a module evaluated in every new isolate does as little as it can.
let encoder = null;
let utf8Decoder = null;
const encode = (text) => (encoder ??= new TextEncoder()).encode(text);
const decodeUtf8 = (bytes) => (utf8Decoder ??= new TextDecoder("utf-8")).decode(bytes);
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_LOOKUP = new Int16Array(256).fill(-1);
for (let i = 0; i < 64; i++) B64_LOOKUP[B64.charCodeAt(i)] = i;
B64_LOOKUP["-".charCodeAt(0)] = 62;
B64_LOOKUP["_".charCodeAt(0)] = 63;

export const kMaxLength = 2 ** 32;
export const constants = { MAX_LENGTH: kMaxLength, MAX_STRING_LENGTH: 2 ** 29 - 24 };
export const INSPECT_MAX_BYTES = 50;

function normalizeEncoding(encoding) {
  const e = String(encoding ?? "utf8").toLowerCase();
  switch (e) {
    case "utf8": case "utf-8": return "utf8";
    case "ucs2": case "ucs-2": case "utf16le": case "utf-16le": return "utf16le";
    case "latin1": case "binary": return "latin1";
    case "ascii": return "ascii";
    case "base64": return "base64";
    case "base64url": return "base64url";
    case "hex": return "hex";
    default: throw new TypeError(`Unknown encoding: ${encoding}`);
  }
}

function decodeBase64(text) {
  const out = new Uint8Array(Math.ceil((text.length * 3) / 4));
  let bits = 0, value = 0, n = 0;
  for (let i = 0; i < text.length; i++) {
    const v = B64_LOOKUP[text.charCodeAt(i) & 0xff];
    if (v < 0 || text.charCodeAt(i) > 255) {
      if (text[i] === "=") break;
      continue; // Node skips characters outside the alphabet
    }
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (value >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

function encodeBase64(bytes, url) {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + B64[v & 63];
  }
  if (i < bytes.length) {
    const v = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8);
    out += B64[v >> 18] + B64[(v >> 12) & 63];
    out += i + 1 < bytes.length ? B64[(v >> 6) & 63] + "=" : "==";
  }
  return url ? out.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : out;
}

function bytesOf(string, encoding) {
  switch (normalizeEncoding(encoding)) {
    case "utf8": return encode(string);
    case "utf16le": {
      const out = new Uint8Array(string.length * 2);
      for (let i = 0; i < string.length; i++) {
        const c = string.charCodeAt(i);
        out[i * 2] = c & 0xff;
        out[i * 2 + 1] = c >> 8;
      }
      return out;
    }
    case "latin1": case "ascii": {
      const out = new Uint8Array(string.length);
      for (let i = 0; i < string.length; i++) out[i] = string.charCodeAt(i) & 0xff;
      return out;
    }
    case "base64": case "base64url": return decodeBase64(string);
    case "hex": {
      const out = new Uint8Array(string.length >>> 1);
      let n = 0;
      for (; n < out.length; n++) {
        const byte = parseInt(string.substr(n * 2, 2), 16);
        if (Number.isNaN(byte)) break;
        out[n] = byte;
      }
      return out.subarray(0, n);
    }
  }
}

function stringOf(bytes, encoding) {
  switch (normalizeEncoding(encoding)) {
    case "utf8": return decodeUtf8(bytes);
    case "utf16le": {
      let out = "";
      for (let i = 0; i + 1 < bytes.length; i += 2) out += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8));
      return out;
    }
    case "latin1": {
      let out = "";
      for (let i = 0; i < bytes.length; i += 4096) out += String.fromCharCode(...bytes.subarray(i, i + 4096));
      return out;
    }
    case "ascii": {
      let out = "";
      for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i] & 0x7f);
      return out;
    }
    case "base64": return encodeBase64(bytes, false);
    case "base64url": return encodeBase64(bytes, true);
    case "hex": {
      let out = "";
      for (let i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
      return out;
    }
  }
}

function checkOffset(buf, offset, size) {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > buf.length) {
    const error = new RangeError(`The value of "offset" is out of range. It must be >= 0 and <= ${buf.length - size}. Received ${offset}`);
    error.code = "ERR_OUT_OF_RANGE";
    throw error;
  }
}

const view = (buf) => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

export class Buffer extends Uint8Array {
  static from(value, encodingOrOffset, length) {
    if (typeof value === "string") return fromBytes(bytesOf(value, encodingOrOffset));
    if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer)) {
      const offset = encodingOrOffset ?? 0;
      return new Buffer(value, offset, length ?? value.byteLength - offset);
    }
    if (ArrayBuffer.isView(value)) {
      return fromBytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice());
    }
    if (value && value.type === "Buffer" && Array.isArray(value.data)) return fromBytes(Uint8Array.from(value.data));
    if (value && typeof value.length === "number") return fromBytes(Uint8Array.from(value, (v) => v & 0xff));
    if (value && typeof value[Symbol.toPrimitive] === "function") return Buffer.from(value[Symbol.toPrimitive]("string"), encodingOrOffset);
    throw new TypeError("The first argument must be of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object.");
  }
  static alloc(size, fill, encoding) {
    const buf = new Buffer(size);
    if (fill !== undefined && fill !== 0) buf.fill(fill, 0, size, encoding);
    return buf;
  }
  static allocUnsafe(size) {
    return new Buffer(size);
  }
  static allocUnsafeSlow(size) {
    return new Buffer(size);
  }
  static isBuffer(value) {
    return value instanceof Buffer;
  }
  static isEncoding(encoding) {
    try {
      normalizeEncoding(encoding);
      return typeof encoding === "string";
    } catch {
      return false;
    }
  }
  static byteLength(value, encoding) {
    if (typeof value !== "string") return value.byteLength;
    return bytesOf(value, encoding).length;
  }
  static concat(list, totalLength) {
    const total = totalLength ?? list.reduce((n, b) => n + b.length, 0);
    const out = Buffer.alloc(total);
    let at = 0;
    for (const b of list) {
      if (at >= total) break;
      const part = b.length > total - at ? b.subarray(0, total - at) : b;
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
  static compare(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }
  get parent() {
    return this.buffer;
  }
  get offset() {
    return this.byteOffset;
  }
  toString(encoding, start = 0, end = this.length) {
    return stringOf(this.subarray(start, end), encoding);
  }
  toJSON() {
    return { type: "Buffer", data: Array.from(this) };
  }
  equals(other) {
    return Buffer.compare(this, other) === 0;
  }
  compare(target, targetStart = 0, targetEnd = target.length, sourceStart = 0, sourceEnd = this.length) {
    return Buffer.compare(this.subarray(sourceStart, sourceEnd), target.subarray(targetStart, targetEnd));
  }
  copy(target, targetStart = 0, sourceStart = 0, sourceEnd = this.length) {
    const part = this.subarray(sourceStart, Math.min(sourceEnd, sourceStart + target.length - targetStart));
    target.set(part, targetStart);
    return part.length;
  }
  slice(start, end) {
    return this.subarray(start, end);
  }
  subarray(start, end) {
    const view = Uint8Array.prototype.subarray.call(this, start, end);
    return new Buffer(view.buffer, view.byteOffset, view.byteLength);
  }
  write(string, offset = 0, length = this.length - offset, encoding = "utf8") {
    if (typeof offset === "string") [encoding, offset, length] = [offset, 0, this.length];
    if (typeof length === "string") [encoding, length] = [length, this.length - offset];
    const bytes = bytesOf(string, encoding).subarray(0, Math.min(length, this.length - offset));
    this.set(bytes, offset);
    return bytes.length;
  }
  fill(value, start = 0, end = this.length, encoding) {
    if (typeof start === "string") [encoding, start, end] = [start, 0, this.length];
    if (typeof value === "number") return Uint8Array.prototype.fill.call(this, value & 0xff, start, end), this;
    const bytes = typeof value === "string" ? bytesOf(value, encoding) : value;
    if (bytes.length === 0) return Uint8Array.prototype.fill.call(this, 0, start, end), this;
    for (let i = start; i < end; i++) this[i] = bytes[(i - start) % bytes.length];
    return this;
  }
  indexOf(value, byteOffset = 0, encoding) {
    if (typeof value === "number") return Uint8Array.prototype.indexOf.call(this, value & 0xff, byteOffset);
    const needle = typeof value === "string" ? bytesOf(value, encoding) : value;
    if (byteOffset < 0) byteOffset = Math.max(0, this.length + byteOffset);
    outer: for (let i = byteOffset; i <= this.length - needle.length; i++) {
      for (let j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }
  lastIndexOf(value, byteOffset = this.length, encoding) {
    const needle = typeof value === "number" ? [value & 0xff] : typeof value === "string" ? bytesOf(value, encoding) : value;
    outer: for (let i = Math.min(byteOffset, this.length - needle.length); i >= 0; i--) {
      for (let j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }
  includes(value, byteOffset, encoding) {
    return this.indexOf(value, byteOffset, encoding) !== -1;
  }
  swap16() {
    for (let i = 0; i + 1 < this.length; i += 2) [this[i], this[i + 1]] = [this[i + 1], this[i]];
    return this;
  }
  toLocaleString(encoding, start, end) {
    return this.toString(encoding, start, end);
  }
  inspect() {
    const hex = Array.from(this.subarray(0, INSPECT_MAX_BYTES), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return `<Buffer ${hex}${this.length > INSPECT_MAX_BYTES ? ` ... ${this.length - INSPECT_MAX_BYTES} more bytes` : ""}>`;
  }
  // The fixed-width reads and writes, written out: methods a class declares are set up in one
  // step, where adding them to the prototype in a loop cost each isolate that loads this
  // module about 0.15 ms.
  readUInt8(offset = 0) {
    checkOffset(this, offset, 1);
    return view(this).getUint8(offset);
  }
  writeUInt8(value, offset = 0) {
    checkOffset(this, offset, 1);
    view(this).setUint8(offset, value);
    return offset + 1;
  }
  readInt8(offset = 0) {
    checkOffset(this, offset, 1);
    return view(this).getInt8(offset);
  }
  writeInt8(value, offset = 0) {
    checkOffset(this, offset, 1);
    view(this).setInt8(offset, value);
    return offset + 1;
  }
  readUInt16LE(offset = 0) {
    checkOffset(this, offset, 2);
    return view(this).getUint16(offset, true);
  }
  writeUInt16LE(value, offset = 0) {
    checkOffset(this, offset, 2);
    view(this).setUint16(offset, value, true);
    return offset + 2;
  }
  readUInt16BE(offset = 0) {
    checkOffset(this, offset, 2);
    return view(this).getUint16(offset, false);
  }
  writeUInt16BE(value, offset = 0) {
    checkOffset(this, offset, 2);
    view(this).setUint16(offset, value, false);
    return offset + 2;
  }
  readInt16LE(offset = 0) {
    checkOffset(this, offset, 2);
    return view(this).getInt16(offset, true);
  }
  writeInt16LE(value, offset = 0) {
    checkOffset(this, offset, 2);
    view(this).setInt16(offset, value, true);
    return offset + 2;
  }
  readInt16BE(offset = 0) {
    checkOffset(this, offset, 2);
    return view(this).getInt16(offset, false);
  }
  writeInt16BE(value, offset = 0) {
    checkOffset(this, offset, 2);
    view(this).setInt16(offset, value, false);
    return offset + 2;
  }
  readUInt32LE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getUint32(offset, true);
  }
  writeUInt32LE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setUint32(offset, value, true);
    return offset + 4;
  }
  readUInt32BE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getUint32(offset, false);
  }
  writeUInt32BE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setUint32(offset, value, false);
    return offset + 4;
  }
  readInt32LE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getInt32(offset, true);
  }
  writeInt32LE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setInt32(offset, value, true);
    return offset + 4;
  }
  readInt32BE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getInt32(offset, false);
  }
  writeInt32BE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setInt32(offset, value, false);
    return offset + 4;
  }
  readFloatLE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getFloat32(offset, true);
  }
  writeFloatLE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setFloat32(offset, value, true);
    return offset + 4;
  }
  readFloatBE(offset = 0) {
    checkOffset(this, offset, 4);
    return view(this).getFloat32(offset, false);
  }
  writeFloatBE(value, offset = 0) {
    checkOffset(this, offset, 4);
    view(this).setFloat32(offset, value, false);
    return offset + 4;
  }
  readDoubleLE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getFloat64(offset, true);
  }
  writeDoubleLE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setFloat64(offset, value, true);
    return offset + 8;
  }
  readDoubleBE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getFloat64(offset, false);
  }
  writeDoubleBE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setFloat64(offset, value, false);
    return offset + 8;
  }
  readBigUInt64LE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getBigUint64(offset, true);
  }
  writeBigUInt64LE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setBigUint64(offset, value, true);
    return offset + 8;
  }
  readBigUInt64BE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getBigUint64(offset, false);
  }
  writeBigUInt64BE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setBigUint64(offset, value, false);
    return offset + 8;
  }
  readBigInt64LE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getBigInt64(offset, true);
  }
  writeBigInt64LE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setBigInt64(offset, value, true);
    return offset + 8;
  }
  readBigInt64BE(offset = 0) {
    checkOffset(this, offset, 8);
    return view(this).getBigInt64(offset, false);
  }
  writeBigInt64BE(value, offset = 0) {
    checkOffset(this, offset, 8);
    view(this).setBigInt64(offset, value, false);
    return offset + 8;
  }
  readUint8(offset) {
    return this.readUInt8(offset);
  }
  writeUint8(value, offset) {
    return this.writeUInt8(value, offset);
  }
  readUint16LE(offset) {
    return this.readUInt16LE(offset);
  }
  writeUint16LE(value, offset) {
    return this.writeUInt16LE(value, offset);
  }
  readUint16BE(offset) {
    return this.readUInt16BE(offset);
  }
  writeUint16BE(value, offset) {
    return this.writeUInt16BE(value, offset);
  }
  readUint32LE(offset) {
    return this.readUInt32LE(offset);
  }
  writeUint32LE(value, offset) {
    return this.writeUInt32LE(value, offset);
  }
  readUint32BE(offset) {
    return this.readUInt32BE(offset);
  }
  writeUint32BE(value, offset) {
    return this.writeUInt32BE(value, offset);
  }
  readBigUint64LE(offset) {
    return this.readBigUInt64LE(offset);
  }
  writeBigUint64LE(value, offset) {
    return this.writeBigUInt64LE(value, offset);
  }
  readBigUint64BE(offset) {
    return this.readBigUInt64BE(offset);
  }
  writeBigUint64BE(value, offset) {
    return this.writeBigUInt64BE(value, offset);
  }
  readUIntBE(offset, length) {
    let v = 0;
    for (let i = 0; i < length; i++) v = v * 256 + this[offset + i];
    return v;
  }
  readUIntLE(offset, length) {
    let v = 0;
    for (let i = length - 1; i >= 0; i--) v = v * 256 + this[offset + i];
    return v;
  }
}

function fromBytes(bytes) {
  return new Buffer(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

Buffer.poolSize = 8192;

export const SlowBuffer = Buffer;
export const atob = globalThis.atob;
export const btoa = globalThis.btoa;
export function isUtf8(input) {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(input);
    return true;
  } catch {
    return false;
  }
}
export function isAscii(input) {
  return new Uint8Array(input.buffer ?? input).every((b) => b < 128);
}
// `Blob` and `File` are read from the global scope when asked for (reading them at load time
// costs every isolate that loads this module); as named ES exports they are not offered.
const exported = { Buffer, SlowBuffer, kMaxLength, constants, INSPECT_MAX_BYTES, atob, btoa, isUtf8, isAscii };
Object.defineProperty(exported, "Blob", { get: () => globalThis.Blob, enumerable: true });
Object.defineProperty(exported, "File", { get: () => globalThis.File, enumerable: true });
export default exported;

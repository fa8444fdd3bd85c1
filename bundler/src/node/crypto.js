// node:crypto: random values, hashes and HMACs computed synchronously (md5, sha1, sha256,
// sha384, sha512, in JavaScript), pbkdf2, AES ciphers (CBC, ECB, CTR, GCM), timingSafeEqual,
// scrypt, secret KeyObjects, and WebCrypto. Signatures and key pairs are not here yet: they
// throw, naming the call.
import { Buffer } from "node:buffer";
import * as aes from "node:internal/aes";

// The runtime's WebCrypto, reached when first used (made on first use, it costs every isolate
// that reads it at load): `webcrypto` and `subtle` forward to it.
const forward = (target) =>
  new Proxy({}, {
    get(_, key) {
      const object = target();
      const value = Reflect.get(object, key);
      return typeof value === "function" ? value.bind(object) : value;
    },
    has: (_, key) => key in target(),
  });
export const webcrypto = forward(() => globalThis.crypto);
export const subtle = forward(() => globalThis.crypto.subtle);

function toBytes(data, encoding) {
  if (typeof data === "string") return Buffer.from(data, encoding);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof KeyObject) return data.export();
  throw new TypeError(`The "data" argument must be of type string or an instance of Buffer, TypedArray, or DataView. Received ${typeof data}`);
}

export function getRandomValues(array) {
  return globalThis.crypto.getRandomValues(array);
}

export function randomFillSync(buffer, offset = 0, size) {
  const view = new Uint8Array(buffer.buffer ?? buffer, (buffer.byteOffset ?? 0) + offset, size ?? (buffer.byteLength - offset));
  for (let at = 0; at < view.length; at += 65536) globalThis.crypto.getRandomValues(view.subarray(at, at + 65536));
  return buffer;
}

export function randomBytes(size, callback) {
  const out = randomFillSync(Buffer.alloc(size));
  if (typeof callback === "function") {
    queueMicrotask(() => callback(null, out));
    return undefined;
  }
  return out;
}
export const pseudoRandomBytes = randomBytes;

export function randomFill(buffer, offset, size, callback) {
  if (typeof offset === "function") [callback, offset] = [offset, 0];
  if (typeof size === "function") [callback, size] = [size, undefined];
  randomFillSync(buffer, offset, size);
  queueMicrotask(() => callback(null, buffer));
}

export function randomUUID() {
  return globalThis.crypto.randomUUID();
}

export function randomInt(min, max, callback) {
  if (max === undefined || typeof max === "function") [min, max, callback] = [0, min, max];
  const range = max - min;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || range <= 0 || range > 2 ** 48) {
    throw new RangeError(`The value of "max" is out of range. It must be greater than "min" (${min}) and at most 2^48 above it. Received ${max}`);
  }
  const limit = 2 ** 48 - (2 ** 48 % range);
  let value;
  do {
    const b = randomBytes(6);
    value = b.readUIntBE(0, 6);
  } while (value >= limit);
  const out = min + (value % range);
  if (typeof callback === "function") {
    queueMicrotask(() => callback(null, out));
    return undefined;
  }
  return out;
}

export function timingSafeEqual(a, b) {
  const x = toBytes(a);
  const y = toBytes(b);
  if (x.length !== y.length) {
    const error = new RangeError("Input buffers must have the same byte length");
    error.code = "ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH";
    throw error;
  }
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

// ---- hash functions: each takes the whole message, answers its digest ----------------------

const rotl = (x, n) => (x << n) | (x >>> (32 - n));
const rotr = (x, n) => (x >>> n) | (x << (32 - n));

function pad(message, littleEndian, blockBytes) {
  const lengthBytes = blockBytes === 128 ? 16 : 8;
  const total = Math.ceil((message.length + 1 + lengthBytes) / blockBytes) * blockBytes;
  const out = new Uint8Array(total);
  out.set(message);
  out[message.length] = 0x80;
  const bits = message.length * 8;
  const view = new DataView(out.buffer);
  const hi = Math.floor(bits / 2 ** 32);
  const lo = bits >>> 0;
  if (littleEndian) {
    view.setUint32(total - 8, lo, true);
    view.setUint32(total - 4, hi, true);
  } else {
    view.setUint32(total - 8, hi);
    view.setUint32(total - 4, lo);
  }
  return view;
}

const K256 = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function sha256(message) {
  const view = pad(message, false, 64);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  for (let at = 0; at < view.byteLength; at += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(at + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  const out = new Uint8Array(32);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) dv.setUint32(i * 4, h[i]);
  return out;
}

function sha1(message) {
  const view = pad(message, false, 64);
  const h = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);
  const w = new Uint32Array(80);
  for (let at = 0; at < view.byteLength; at += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(at + i * 4);
    for (let i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    let [a, b, c, d, e] = h;
    for (let i = 0; i < 80; i++) {
      const [f, k] = i < 20 ? [(b & c) | (~b & d), 0x5a827999] : i < 40 ? [b ^ c ^ d, 0x6ed9eba1] : i < 60 ? [(b & c) | (b & d) | (c & d), 0x8f1bbcdc] : [b ^ c ^ d, 0xca62c1d6];
      const t = (rotl(a, 5) + f + e + k + w[i]) | 0;
      e = d; d = c; c = rotl(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
  }
  const out = new Uint8Array(20);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 5; i++) dv.setUint32(i * 4, h[i]);
  return out;
}

const S = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21];
let KMD5 = null;

function md5(message) {
  KMD5 ??= Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
  const view = pad(message, true, 64);
  const h = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  const m = new Uint32Array(16);
  for (let at = 0; at < view.byteLength; at += 64) {
    for (let i = 0; i < 16; i++) m[i] = view.getUint32(at + i * 4, true);
    let [a, b, c, d] = h;
    for (let i = 0; i < 64; i++) {
      let f, g;
      if (i < 16) [f, g] = [(b & c) | (~b & d), i];
      else if (i < 32) [f, g] = [(d & b) | (~d & c), (5 * i + 1) % 16];
      else if (i < 48) [f, g] = [b ^ c ^ d, (3 * i + 5) % 16];
      else [f, g] = [c ^ (b | ~d), (7 * i) % 16];
      const t = d;
      d = c;
      c = b;
      b = (b + rotl((a + f + KMD5[i] + m[g]) | 0, S[i])) | 0;
      a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
  }
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) dv.setUint32(i * 4, h[i], true);
  return out;
}

const K512_HEX = [
  "428a2f98d728ae22", "7137449123ef65cd", "b5c0fbcfec4d3b2f", "e9b5dba58189dbbc", "3956c25bf348b538", "59f111f1b605d019", "923f82a4af194f9b", "ab1c5ed5da6d8118",
  "d807aa98a3030242", "12835b0145706fbe", "243185be4ee4b28c", "550c7dc3d5ffb4e2", "72be5d74f27b896f", "80deb1fe3b1696b1", "9bdc06a725c71235", "c19bf174cf692694",
  "e49b69c19ef14ad2", "efbe4786384f25e3", "0fc19dc68b8cd5b5", "240ca1cc77ac9c65", "2de92c6f592b0275", "4a7484aa6ea6e483", "5cb0a9dcbd41fbd4", "76f988da831153b5",
  "983e5152ee66dfab", "a831c66d2db43210", "b00327c898fb213f", "bf597fc7beef0ee4", "c6e00bf33da88fc2", "d5a79147930aa725", "06ca6351e003826f", "142929670a0e6e70",
  "27b70a8546d22ffc", "2e1b21385c26c926", "4d2c6dfc5ac42aed", "53380d139d95b3df", "650a73548baf63de", "766a0abb3c77b2a8", "81c2c92e47edaee6", "92722c851482353b",
  "a2bfe8a14cf10364", "a81a664bbc423001", "c24b8b70d0f89791", "c76c51a30654be30", "d192e819d6ef5218", "d69906245565a910", "f40e35855771202a", "106aa07032bbd1b8",
  "19a4c116b8d2d0c8", "1e376c085141ab53", "2748774cdf8eeb99", "34b0bcb5e19b48a8", "391c0cb3c5c95a63", "4ed8aa4ae3418acb", "5b9cca4f7763e373", "682e6ff3d6b2b8a3",
  "748f82ee5defb2fc", "78a5636f43172f60", "84c87814a1f0ab72", "8cc702081a6439ec", "90befffa23631e28", "a4506cebde82bde9", "bef9a3f7b2c67915", "c67178f2e372532b",
  "ca273eceea26619c", "d186b8c721c0c207", "eada7dd6cde0eb1e", "f57d4f7fee6ed178", "06f067aa72176fba", "0a637dc5a2c898a6", "113f9804bef90dae", "1b710b35131c471b",
  "28db77f523047d84", "32caab7b40c72493", "3c9ebe0a15c9bebc", "431d67c49c100d4c", "4cc5d4becb3e42b6", "597f299cfc657e2a", "5fcb6fab3ad6faec", "6c44198c4a475817",
];
let K512 = null;
const MASK = (1n << 64n) - 1n;
const rotr64 = (x, n) => ((x >> n) | (x << (64n - n))) & MASK;

function sha512(message, initial, length) {
  K512 ??= K512_HEX.map((x) => BigInt(`0x${x}`));
  const view = pad(message, false, 128);
  const h = initial.map((x) => BigInt(`0x${x}`));
  const w = new Array(80);
  for (let at = 0; at < view.byteLength; at += 128) {
    for (let i = 0; i < 16; i++) w[i] = view.getBigUint64(at + i * 8);
    for (let i = 16; i < 80; i++) {
      const s0 = rotr64(w[i - 15], 1n) ^ rotr64(w[i - 15], 8n) ^ (w[i - 15] >> 7n);
      const s1 = rotr64(w[i - 2], 19n) ^ rotr64(w[i - 2], 61n) ^ (w[i - 2] >> 6n);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & MASK;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 80; i++) {
      const t1 = (k + (rotr64(e, 14n) ^ rotr64(e, 18n) ^ rotr64(e, 41n)) + ((e & f) ^ (~e & MASK & g)) + K512[i] + w[i]) & MASK;
      const t2 = ((rotr64(a, 28n) ^ rotr64(a, 34n) ^ rotr64(a, 39n)) + ((a & b) ^ (a & c) ^ (b & c))) & MASK;
      k = g; g = f; f = e; e = (d + t1) & MASK; d = c; c = b; b = a; a = (t1 + t2) & MASK;
    }
    const add = [a, b, c, d, e, f, g, k];
    for (let i = 0; i < 8; i++) h[i] = (h[i] + add[i]) & MASK;
  }
  const out = new Uint8Array(64);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) dv.setBigUint64(i * 8, h[i]);
  return out.subarray(0, length);
}

const SHA512_IV = ["6a09e667f3bcc908", "bb67ae8584caa73b", "3c6ef372fe94f82b", "a54ff53a5f1d36f1", "510e527fade682d1", "9b05688c2b3e6c1f", "1f83d9abfb41bd6b", "5be0cd19137e2179"];
const SHA384_IV = ["cbbb9d5dc1059ed8", "629a292a367cd507", "9159015a3070dd17", "152fecd8f70e5939", "67332667ffc00b31", "8eb44a8768581511", "db0c2e0d64f98fa7", "47b5481dbefa4fa4"];

const HASHES = {
  md5: { digest: md5, block: 64 },
  sha1: { digest: sha1, block: 64 },
  sha256: { digest: sha256, block: 64 },
  sha384: { digest: (m) => sha512(m, SHA384_IV, 48), block: 128 },
  sha512: { digest: (m) => sha512(m, SHA512_IV, 64), block: 128 },
};
const ALIASES = { "sha-1": "sha1", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512", rsa_sha256: "sha256" };

function hashOf(algorithm) {
  const name = String(algorithm).toLowerCase();
  const hash = HASHES[ALIASES[name] ?? name];
  if (hash === undefined) {
    const error = new Error(`Digest method not supported: ${algorithm} (available: ${Object.keys(HASHES).join(", ")})`);
    error.code = "ERR_CRYPTO_INVALID_DIGEST";
    throw error;
  }
  return hash;
}

export function getHashes() {
  return Object.keys(HASHES);
}

function concat(parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function output(bytes, encoding) {
  const buf = Buffer.from(bytes);
  return encoding === undefined || encoding === "buffer" ? buf : buf.toString(encoding);
}

class Hash {
  constructor(algorithm) {
    this._hash = hashOf(algorithm);
    this._parts = [];
    this._done = false;
  }
  update(data, encoding) {
    if (this._done) throw new Error("Digest already called");
    this._parts.push(toBytes(data, encoding));
    return this;
  }
  digest(encoding) {
    if (this._done) throw new Error("Digest already called");
    this._done = true;
    return output(this._hash.digest(concat(this._parts)), encoding);
  }
  copy() {
    const copy = Object.create(Hash.prototype);
    Object.assign(copy, this, { _parts: this._parts.slice() });
    return copy;
  }
}

function hmac(hash, key, message) {
  let k = key.length > hash.block ? hash.digest(key) : key;
  const padded = new Uint8Array(hash.block);
  padded.set(k);
  const inner = padded.map((b) => b ^ 0x36);
  const outer = padded.map((b) => b ^ 0x5c);
  return hash.digest(concat([outer, hash.digest(concat([inner, message]))]));
}

class Hmac {
  constructor(algorithm, key) {
    this._hash = hashOf(algorithm);
    this._key = toBytes(key);
    this._parts = [];
  }
  update(data, encoding) {
    this._parts.push(toBytes(data, encoding));
    return this;
  }
  digest(encoding) {
    return output(hmac(this._hash, this._key, concat(this._parts)), encoding);
  }
}

export function createHash(algorithm) {
  return new Hash(algorithm);
}

export function createHmac(algorithm, key) {
  return new Hmac(algorithm, key);
}

export function hash(algorithm, data, encoding = "hex") {
  return createHash(algorithm).update(data).digest(encoding);
}

export function pbkdf2Sync(password, salt, iterations, keylen, digest) {
  const h = hashOf(digest);
  const p = toBytes(password);
  const s = toBytes(salt);
  const size = h.digest(new Uint8Array(0)).length;
  const out = new Uint8Array(keylen);
  for (let block = 1, at = 0; at < keylen; block++, at += size) {
    const index = new Uint8Array([block >>> 24, (block >>> 16) & 255, (block >>> 8) & 255, block & 255]);
    let u = hmac(h, p, concat([s, index]));
    const t = u.slice();
    for (let i = 1; i < iterations; i++) {
      u = hmac(h, p, u);
      for (let j = 0; j < t.length; j++) t[j] ^= u[j];
    }
    out.set(t.subarray(0, Math.min(size, keylen - at)), at);
  }
  return Buffer.from(out);
}

export function pbkdf2(password, salt, iterations, keylen, digest, callback) {
  let result;
  try {
    result = pbkdf2Sync(password, salt, iterations, keylen, digest);
  } catch (error) {
    queueMicrotask(() => callback(error));
    return;
  }
  queueMicrotask(() => callback(null, result));
}

export class KeyObject {
  constructor(type, bytes) {
    this.type = type;
    this._bytes = bytes;
  }
  get symmetricKeySize() {
    return this.type === "secret" ? this._bytes.length : undefined;
  }
  export() {
    return Buffer.from(this._bytes);
  }
  equals(other) {
    return other instanceof KeyObject && timingSafeEqual(this._bytes, other._bytes);
  }
}

export function createSecretKey(key, encoding) {
  return new KeyObject("secret", toBytes(key, encoding));
}

const notYet = (name) => function () {
  const error = new Error(`node:crypto: ${name}() is not available in an edge function yet (use crypto.subtle)`);
  error.code = "ERR_NOT_AVAILABLE";
  throw error;
};
// AES in CBC, ECB, CTR and GCM modes, as createCipheriv/createDecipheriv give them.
class Cipher {
  constructor(algorithm, key, iv, decrypt, options) {
    const name = String(algorithm).toLowerCase();
    const spec = aes.CIPHERS[name];
    if (spec === undefined) {
      const error = new Error(`Unknown cipher: ${algorithm} (available: ${Object.keys(aes.CIPHERS).join(", ")})`);
      error.code = "ERR_CRYPTO_UNKNOWN_CIPHER";
      throw error;
    }
    const keyBytes = toBytes(key);
    if (keyBytes.length !== spec.keyLength) {
      throw Object.assign(new RangeError("Invalid key length"), { code: "ERR_CRYPTO_INVALID_KEYLEN" });
    }
    const ivBytes = iv === null || iv === undefined ? null : Uint8Array.from(toBytes(iv));
    const wanted = spec.mode === "ecb" ? 0 : spec.mode === "gcm" ? null : 16;
    if ((wanted === 0 && ivBytes && ivBytes.length) || (wanted === 16 && ivBytes?.length !== 16) || (wanted === null && !ivBytes?.length)) {
      throw Object.assign(new TypeError("Invalid initialization vector"), { code: "ERR_CRYPTO_INVALID_IV" });
    }
    this._mode = spec.mode;
    this._keys = aes.schedule(keyBytes);
    this._iv = ivBytes ?? new Uint8Array(16);
    this._decrypt = decrypt;
    this._padding = true;
    this._pending = new Uint8Array(0);
    this._offset = 0;
    this._aad = new Uint8Array(0);
    this._text = [];
    this._tagLength = options?.authTagLength ?? 16;
    if (this._mode === "gcm") this._gcm = aes.gcmStart(this._keys, this._iv);
    this._done = false;
  }
  setAutoPadding(padding = true) {
    this._padding = padding;
    return this;
  }
  setAAD(aad) {
    this._aad = Uint8Array.from(toBytes(aad));
    return this;
  }
  setAuthTag(tag) {
    this._tag = Uint8Array.from(toBytes(tag));
    return this;
  }
  getAuthTag() {
    if (this._decrypt || this._authTag === undefined) throw new Error("Invalid state for operation getAuthTag");
    return Buffer.from(this._authTag.subarray(0, this._tagLength));
  }
  update(data, inputEncoding, outputEncoding) {
    if (this._done) throw new Error("Unsupported state");
    const bytes = typeof data === "string" ? Buffer.from(data, inputEncoding) : toBytes(data);
    return output(this._process(bytes, false), outputEncoding);
  }
  final(outputEncoding) {
    if (this._done) throw new Error("Unsupported state");
    this._done = true;
    return output(this._process(new Uint8Array(0), true), outputEncoding);
  }
  _process(bytes, last) {
    if (this._mode === "ctr" || this._mode === "gcm") {
      const counter = this._mode === "ctr" ? this._iv : this._gcm.counter;
      const from = this._mode === "ctr" ? 0 : 12;
      const out = aes.ctrAt(this._keys, counter, from, this._offset, bytes);
      this._offset += bytes.length;
      if (this._mode === "gcm") this._text.push(this._decrypt ? bytes : out);
      if (last && this._mode === "gcm") {
        const tag = aes.gcmTag(this._keys, this._gcm, this._aad, concat(this._text));
        if (this._decrypt) {
          const given = this._tag;
          let diff = given === undefined || given.length < 4 ? 1 : 0;
          for (let j = 0; j < (given?.length ?? 0); j++) diff |= tag[j] ^ given[j];
          if (diff !== 0) throw new Error("Unsupported state or unable to authenticate data");
        } else {
          this._authTag = tag;
        }
      }
      return out;
    }
    // CBC and ECB: whole blocks; a decryption keeps its last block back for the padding.
    const all = concat([this._pending, bytes]);
    let take = all.length - (all.length % 16);
    if (!last && this._decrypt && this._padding && take === all.length) take -= 16;
    if (last) take = all.length;
    const chunk = all.subarray(0, take);
    this._pending = all.slice(take);
    const chain = this._mode === "cbc" ? this._iv : null;
    if (this._decrypt) {
      const out = aes.decrypt(this._mode, null, chain, chunk, { padding: last && this._padding, keys: this._keys });
      if (this._mode === "cbc" && chunk.length >= 16) this._iv = Uint8Array.from(chunk.subarray(chunk.length - 16));
      return out;
    }
    if (!last && chunk.length === 0) return new Uint8Array(0);
    const out = aes.encrypt(this._mode, null, chain, chunk, { padding: last && this._padding, keys: this._keys }).data;
    if (this._mode === "cbc" && out.length >= 16) this._iv = Uint8Array.from(out.subarray(out.length - 16));
    return out;
  }
}

export function createCipheriv(algorithm, key, iv, options) {
  return new Cipher(algorithm, key, iv, false, options);
}

export function createDecipheriv(algorithm, key, iv, options) {
  return new Cipher(algorithm, key, iv, true, options);
}

export function getCiphers() {
  return Object.keys(aes.CIPHERS);
}
export const createSign = notYet("createSign");
export const createVerify = notYet("createVerify");
export const createPrivateKey = notYet("createPrivateKey");
export const createPublicKey = notYet("createPublicKey");
export const generateKeyPairSync = notYet("generateKeyPairSync");
export const generateKeyPair = notYet("generateKeyPair");
// scrypt (RFC 7914): PBKDF2-HMAC-SHA256 around ROMix of Salsa20/8.
function salsa20_8(b) {
  const x = Uint32Array.from(b);
  const r = (a, n) => (a << n) | (a >>> (32 - n));
  for (let i = 0; i < 8; i += 2) {
    x[4] ^= r(x[0] + x[12], 7); x[8] ^= r(x[4] + x[0], 9); x[12] ^= r(x[8] + x[4], 13); x[0] ^= r(x[12] + x[8], 18);
    x[9] ^= r(x[5] + x[1], 7); x[13] ^= r(x[9] + x[5], 9); x[1] ^= r(x[13] + x[9], 13); x[5] ^= r(x[1] + x[13], 18);
    x[14] ^= r(x[10] + x[6], 7); x[2] ^= r(x[14] + x[10], 9); x[6] ^= r(x[2] + x[14], 13); x[10] ^= r(x[6] + x[2], 18);
    x[3] ^= r(x[15] + x[11], 7); x[7] ^= r(x[3] + x[15], 9); x[11] ^= r(x[7] + x[3], 13); x[15] ^= r(x[11] + x[7], 18);
    x[1] ^= r(x[0] + x[3], 7); x[2] ^= r(x[1] + x[0], 9); x[3] ^= r(x[2] + x[1], 13); x[0] ^= r(x[3] + x[2], 18);
    x[6] ^= r(x[5] + x[4], 7); x[7] ^= r(x[6] + x[5], 9); x[4] ^= r(x[7] + x[6], 13); x[5] ^= r(x[4] + x[7], 18);
    x[11] ^= r(x[10] + x[9], 7); x[8] ^= r(x[11] + x[10], 9); x[9] ^= r(x[8] + x[11], 13); x[10] ^= r(x[9] + x[8], 18);
    x[12] ^= r(x[15] + x[14], 7); x[13] ^= r(x[12] + x[15], 9); x[14] ^= r(x[13] + x[12], 13); x[15] ^= r(x[14] + x[13], 18);
  }
  for (let i = 0; i < 16; i++) b[i] = (b[i] + x[i]) | 0;
}

function blockMix(b, r, out) {
  const x = b.slice((2 * r - 1) * 16, 2 * r * 16);
  for (let i = 0; i < 2 * r; i++) {
    for (let j = 0; j < 16; j++) x[j] ^= b[i * 16 + j];
    salsa20_8(x);
    out.set(x, ((i & 1) * r + (i >> 1)) * 16);
  }
}

export function scryptSync(password, salt, keylen, options = {}) {
  const N = options.N ?? options.cost ?? 16384;
  const r = options.r ?? options.blockSize ?? 8;
  const p = options.p ?? options.parallelization ?? 1;
  const maxmem = options.maxmem ?? 32 * 1024 * 1024;
  if (N < 2 || (N & (N - 1)) !== 0) throw Object.assign(new RangeError("Invalid scrypt params: N must be a power of 2 greater than 1"), { code: "ERR_CRYPTO_INVALID_SCRYPT_PARAMS" });
  if (128 * N * r > maxmem) throw Object.assign(new RangeError("Invalid scrypt params: memory limit exceeded"), { code: "ERR_CRYPTO_INVALID_SCRYPT_PARAMS" });
  const bytes = pbkdf2Sync(password, salt, 1, p * 128 * r, "sha256");
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const little = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < words.length; i++) words[i] = little.getUint32(i * 4, true);
  const size = 32 * r;
  const v = new Uint32Array(N * size);
  const tmp = new Uint32Array(size);
  for (let block = 0; block < p; block++) {
    const x = words.slice(block * size, (block + 1) * size);
    for (let i = 0; i < N; i++) {
      v.set(x, i * size);
      blockMix(x, r, tmp);
      x.set(tmp);
    }
    for (let i = 0; i < N; i++) {
      const j = x[(2 * r - 1) * 16] & (N - 1);
      for (let k = 0; k < size; k++) x[k] ^= v[j * size + k];
      blockMix(x, r, tmp);
      x.set(tmp);
    }
    words.set(x, block * size);
  }
  for (let i = 0; i < words.length; i++) little.setUint32(i * 4, words[i], true);
  return pbkdf2Sync(password, bytes, 1, keylen, "sha256");
}

export function scrypt(password, salt, keylen, options, callback) {
  if (typeof options === "function") [callback, options] = [options, {}];
  let result;
  try {
    result = scryptSync(password, salt, keylen, options);
  } catch (error) {
    queueMicrotask(() => callback(error));
    return;
  }
  queueMicrotask(() => callback(null, result));
}
export const sign = notYet("sign");
export const verify = notYet("verify");
export const publicEncrypt = notYet("publicEncrypt");
export const privateDecrypt = notYet("privateDecrypt");
export const createDiffieHellman = notYet("createDiffieHellman");
export const createECDH = notYet("createECDH");
export const constants = {};

export default {
  webcrypto, subtle, getRandomValues, randomFillSync, randomFill, randomBytes, pseudoRandomBytes,
  randomUUID, randomInt, timingSafeEqual, getHashes, getCiphers, createHash, createHmac, hash, pbkdf2Sync,
  pbkdf2, KeyObject, createSecretKey, createCipheriv, createDecipheriv, createSign, createVerify,
  createPrivateKey, createPublicKey, generateKeyPairSync, generateKeyPair, scrypt, scryptSync,
  sign, verify, publicEncrypt, privateDecrypt, createDiffieHellman, createECDH, constants,
};

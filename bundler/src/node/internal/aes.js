// AES (FIPS 197) with the CBC, CTR, ECB and GCM modes, for node:crypto's createCipheriv and
// createDecipheriv. Table-based; written from the standards (FIPS 197, SP 800-38A, 800-38D).
const SBOX = new Uint8Array(256);
const INV_SBOX = new Uint8Array(256);
const T = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
const TI = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];

// The tables are made on first use: this module is evaluated in every isolate that imports
// node:crypto, most of which never encrypt.
let ready = false;
function tables() {
  if (ready) return;
  ready = true;
  const exp = new Uint8Array(256);
  const log = new Uint8Array(256);
  let x = 1;
  for (let i = 0; i < 255; i++) {
    exp[i] = x;
    log[x] = i;
    x ^= (x << 1) ^ (x & 0x80 ? 0x1b : 0);
    x &= 0xff;
  }
  const mul = (a, b) => (a && b ? exp[(log[a] + log[b]) % 255] : 0);
  for (let i = 0; i < 256; i++) {
    let inv = i === 0 ? 0 : exp[(255 - log[i]) % 255];
    let s = inv;
    for (let k = 0; k < 4; k++) {
      inv = ((inv << 1) | (inv >> 7)) & 0xff;
      s ^= inv;
    }
    s ^= 0x63;
    SBOX[i] = s;
    INV_SBOX[s] = i;
  }
  for (let i = 0; i < 256; i++) {
    const s = SBOX[i];
    const t = (mul(s, 2) << 24) | (s << 16) | (s << 8) | mul(s, 3);
    const si = INV_SBOX[i];
    const ti = (mul(si, 14) << 24) | (mul(si, 9) << 16) | (mul(si, 13) << 8) | mul(si, 11);
    for (let r = 0; r < 4; r++) {
      T[r][i] = (t >>> (8 * r)) | (t << (32 - 8 * r));
      TI[r][i] = (ti >>> (8 * r)) | (ti << (32 - 8 * r));
    }
  }
}

function expandKey(key) {
  tables();
  const nk = key.length / 4;
  const rounds = nk + 6;
  const words = new Uint32Array(4 * (rounds + 1));
  for (let i = 0; i < nk; i++) words[i] = (key[4 * i] << 24) | (key[4 * i + 1] << 16) | (key[4 * i + 2] << 8) | key[4 * i + 3];
  let rcon = 1;
  for (let i = nk; i < words.length; i++) {
    let t = words[i - 1];
    if (i % nk === 0) {
      t = ((SBOX[(t >>> 16) & 0xff] << 24) | (SBOX[(t >>> 8) & 0xff] << 16) | (SBOX[t & 0xff] << 8) | SBOX[t >>> 24]) ^ (rcon << 24);
      rcon = (rcon << 1) ^ (rcon & 0x80 ? 0x1b : 0);
    } else if (nk > 6 && i % nk === 4) {
      t = (SBOX[t >>> 24] << 24) | (SBOX[(t >>> 16) & 0xff] << 16) | (SBOX[(t >>> 8) & 0xff] << 8) | SBOX[t & 0xff];
    }
    words[i] = words[i - nk] ^ t;
  }
  // The decryption schedule: reversed, with InvMixColumns on the middle rounds.
  const dec = new Uint32Array(words.length);
  for (let r = 0; r <= rounds; r++) {
    for (let c = 0; c < 4; c++) {
      const w = words[4 * (rounds - r) + c];
      dec[4 * r + c] = r === 0 || r === rounds ? w
        : TI[0][SBOX[w >>> 24]] ^ TI[1][SBOX[(w >>> 16) & 0xff]] ^ TI[2][SBOX[(w >>> 8) & 0xff]] ^ TI[3][SBOX[w & 0xff]];
    }
  }
  return { enc: words, dec, rounds };
}

function crypt(schedule, input, output, decrypt) {
  const { rounds } = schedule;
  const k = decrypt ? schedule.dec : schedule.enc;
  const [t0, t1, t2, t3] = decrypt ? TI : T;
  const box = decrypt ? INV_SBOX : SBOX;
  let s0 = ((input[0] << 24) | (input[1] << 16) | (input[2] << 8) | input[3]) ^ k[0];
  let s1 = ((input[4] << 24) | (input[5] << 16) | (input[6] << 8) | input[7]) ^ k[1];
  let s2 = ((input[8] << 24) | (input[9] << 16) | (input[10] << 8) | input[11]) ^ k[2];
  let s3 = ((input[12] << 24) | (input[13] << 16) | (input[14] << 8) | input[15]) ^ k[3];
  let at = 4;
  for (let r = 1; r < rounds; r++) {
    let a, b, c, d;
    if (!decrypt) {
      a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 0xff] ^ t2[(s2 >>> 8) & 0xff] ^ t3[s3 & 0xff] ^ k[at];
      b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 0xff] ^ t2[(s3 >>> 8) & 0xff] ^ t3[s0 & 0xff] ^ k[at + 1];
      c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 0xff] ^ t2[(s0 >>> 8) & 0xff] ^ t3[s1 & 0xff] ^ k[at + 2];
      d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 0xff] ^ t2[(s1 >>> 8) & 0xff] ^ t3[s2 & 0xff] ^ k[at + 3];
    } else {
      a = t0[s0 >>> 24] ^ t1[(s3 >>> 16) & 0xff] ^ t2[(s2 >>> 8) & 0xff] ^ t3[s1 & 0xff] ^ k[at];
      b = t0[s1 >>> 24] ^ t1[(s0 >>> 16) & 0xff] ^ t2[(s3 >>> 8) & 0xff] ^ t3[s2 & 0xff] ^ k[at + 1];
      c = t0[s2 >>> 24] ^ t1[(s1 >>> 16) & 0xff] ^ t2[(s0 >>> 8) & 0xff] ^ t3[s3 & 0xff] ^ k[at + 2];
      d = t0[s3 >>> 24] ^ t1[(s2 >>> 16) & 0xff] ^ t2[(s1 >>> 8) & 0xff] ^ t3[s0 & 0xff] ^ k[at + 3];
    }
    s0 = a; s1 = b; s2 = c; s3 = d;
    at += 4;
  }
  const order = decrypt ? [[0, 3, 2, 1], [1, 0, 3, 2], [2, 1, 0, 3], [3, 2, 1, 0]] : [[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]];
  const s = [s0, s1, s2, s3];
  for (let c = 0; c < 4; c++) {
    const [w0, w1, w2, w3] = order[c];
    const v = ((box[s[w0] >>> 24] << 24) | (box[(s[w1] >>> 16) & 0xff] << 16) | (box[(s[w2] >>> 8) & 0xff] << 8) | box[s[w3] & 0xff]) ^ k[at + c];
    output[4 * c] = v >>> 24;
    output[4 * c + 1] = (v >>> 16) & 0xff;
    output[4 * c + 2] = (v >>> 8) & 0xff;
    output[4 * c + 3] = v & 0xff;
  }
}

// GF(2^128) multiplication of GCM, bit by bit (SP 800-38D, 6.3).
function gmul(x, y) {
  const z = new Uint8Array(16);
  const v = y.slice();
  for (let i = 0; i < 128; i++) {
    if (x[i >> 3] & (0x80 >> (i & 7))) for (let j = 0; j < 16; j++) z[j] ^= v[j];
    const lsb = v[15] & 1;
    for (let j = 15; j > 0; j--) v[j] = (v[j] >>> 1) | ((v[j - 1] & 1) << 7);
    v[0] >>>= 1;
    if (lsb) v[0] ^= 0xe1;
  }
  return z;
}

function ghash(h, aad, data) {
  let y = new Uint8Array(16);
  const absorb = (bytes) => {
    for (let at = 0; at < bytes.length; at += 16) {
      const block = new Uint8Array(16);
      block.set(bytes.subarray(at, at + 16));
      for (let j = 0; j < 16; j++) y[j] ^= block[j];
      y = gmul(y, h);
    }
  };
  absorb(aad);
  absorb(data);
  const lengths = new Uint8Array(16);
  const view = new DataView(lengths.buffer);
  view.setUint32(4, aad.length * 8);
  view.setUint32(12, data.length * 8);
  view.setUint32(0, Math.floor((aad.length * 8) / 2 ** 32));
  view.setUint32(8, Math.floor((data.length * 8) / 2 ** 32));
  for (let j = 0; j < 16; j++) y[j] ^= lengths[j];
  return gmul(y, h);
}

function increment(counter, from) {
  for (let i = 15; i >= from; i--) {
    counter[i] = (counter[i] + 1) & 0xff;
    if (counter[i] !== 0) break;
  }
}

function ctr(schedule, counter, data, from) {
  const out = new Uint8Array(data.length);
  const stream = new Uint8Array(16);
  for (let at = 0; at < data.length; at += 16) {
    crypt(schedule, counter, stream, false);
    increment(counter, from);
    const n = Math.min(16, data.length - at);
    for (let j = 0; j < n; j++) out[at + j] = data[at + j] ^ stream[j];
  }
  return out;
}

// Written out: made in a loop, the keys cost each isolate that loads this module about 0.05 ms.
export const CIPHERS = {
  "aes-128-cbc": { keyLength: 16, mode: "cbc" },
  "aes-128-ctr": { keyLength: 16, mode: "ctr" },
  "aes-128-ecb": { keyLength: 16, mode: "ecb" },
  "aes-128-gcm": { keyLength: 16, mode: "gcm" },
  "aes-192-cbc": { keyLength: 24, mode: "cbc" },
  "aes-192-ctr": { keyLength: 24, mode: "ctr" },
  "aes-192-ecb": { keyLength: 24, mode: "ecb" },
  "aes-192-gcm": { keyLength: 24, mode: "gcm" },
  "aes-256-cbc": { keyLength: 32, mode: "cbc" },
  "aes-256-ctr": { keyLength: 32, mode: "ctr" },
  "aes-256-ecb": { keyLength: 32, mode: "ecb" },
  "aes-256-gcm": { keyLength: 32, mode: "gcm" },
};
CIPHERS.aes128 = CIPHERS["aes-128-cbc"];
CIPHERS.aes192 = CIPHERS["aes-192-cbc"];
CIPHERS.aes256 = CIPHERS["aes-256-cbc"];

// Whole-message encryption and decryption; the cipher objects buffer what they are given.
export function encrypt(mode, key, iv, data, { aad = new Uint8Array(0), padding = true, keys } = {}) {
  const schedule = keys ?? expandKey(key);
  if (mode === "ctr") return { data: ctr(schedule, Uint8Array.from(iv), data, 0) };
  if (mode === "gcm") {
    const h = new Uint8Array(16);
    crypt(schedule, new Uint8Array(16), h, false);
    const j0 = j0Of(h, iv);
    const counter = j0.slice();
    increment(counter, 12);
    const out = ctr(schedule, counter, data, 12);
    const s = ghash(h, aad, out);
    const tag = new Uint8Array(16);
    crypt(schedule, j0, tag, false);
    for (let j = 0; j < 16; j++) tag[j] ^= s[j];
    return { data: out, tag };
  }
  let input = data;
  if (padding) {
    const n = 16 - (data.length % 16);
    input = new Uint8Array(data.length + n);
    input.set(data);
    input.fill(n, data.length);
  } else if (data.length % 16 !== 0) {
    throw Object.assign(new Error("data not multiple of block length"), { code: "ERR_OSSL_WRONG_FINAL_BLOCK_LENGTH" });
  }
  const out = new Uint8Array(input.length);
  let previous = iv ?? new Uint8Array(16);
  const block = new Uint8Array(16);
  for (let at = 0; at < input.length; at += 16) {
    for (let j = 0; j < 16; j++) block[j] = input[at + j] ^ (mode === "cbc" ? previous[j] : 0);
    const target = out.subarray(at, at + 16);
    crypt(schedule, block, target, false);
    previous = target;
  }
  return { data: out };
}

export function decrypt(mode, key, iv, data, { aad = new Uint8Array(0), tag, padding = true, keys } = {}) {
  const schedule = keys ?? expandKey(key);
  if (mode === "ctr") return ctr(schedule, Uint8Array.from(iv), data, 0);
  if (mode === "gcm") {
    const h = new Uint8Array(16);
    crypt(schedule, new Uint8Array(16), h, false);
    const j0 = j0Of(h, iv);
    const s = ghash(h, aad, data);
    const expected = new Uint8Array(16);
    crypt(schedule, j0, expected, false);
    let diff = tag === undefined || tag.length < 4 ? 1 : 0;
    for (let j = 0; j < (tag?.length ?? 0); j++) diff |= (expected[j] ^ s[j]) ^ tag[j];
    if (diff !== 0) throw new Error("Unsupported state or unable to authenticate data");
    const counter = j0.slice();
    increment(counter, 12);
    return ctr(schedule, counter, data, 12);
  }
  if (data.length % 16 !== 0) {
    throw Object.assign(new Error("wrong final block length"), { code: "ERR_OSSL_WRONG_FINAL_BLOCK_LENGTH" });
  }
  const out = new Uint8Array(data.length);
  let previous = iv ?? new Uint8Array(16);
  for (let at = 0; at < data.length; at += 16) {
    const block = data.subarray(at, at + 16);
    const target = out.subarray(at, at + 16);
    crypt(schedule, block, target, true);
    if (mode === "cbc") for (let j = 0; j < 16; j++) target[j] ^= previous[j];
    previous = block;
  }
  if (!padding) return out;
  if (out.length === 0) throw Object.assign(new Error("bad decrypt"), { code: "ERR_OSSL_BAD_DECRYPT" });
  const n = out[out.length - 1];
  if (n < 1 || n > 16 || out.length < n || out.subarray(out.length - n).some((b) => b !== n)) {
    throw Object.assign(new Error("bad decrypt"), { code: "ERR_OSSL_BAD_DECRYPT" });
  }
  return out.subarray(0, out.length - n);
}

function j0Of(h, iv) {
  if (iv.length === 12) {
    const j0 = new Uint8Array(16);
    j0.set(iv);
    j0[15] = 1;
    return j0;
  }
  return ghash(h, new Uint8Array(0), iv);
}

// Streaming pieces for the cipher objects: the key schedule, CTR from a byte offset, and the
// GCM values (its counter block J0 and the tag over what was encrypted).
export function schedule(key) {
  return expandKey(key);
}

/** `data` XORed with the CTR keystream from byte `offset` of the stream that starts at `counter0`. */
export function ctrAt(keys, counter0, from, offset, data) {
  const counter = Uint8Array.from(counter0);
  for (let n = Math.floor(offset / 16); n > 0; n--) increment(counter, from);
  const out = new Uint8Array(data.length);
  const stream = new Uint8Array(16);
  let skip = offset % 16;
  let at = 0;
  while (at < data.length) {
    crypt(keys, counter, stream, false);
    increment(counter, from);
    for (let j = skip; j < 16 && at < data.length; j++, at++) out[at] = data[at] ^ stream[j];
    skip = 0;
  }
  return out;
}

/** `block` through the block cipher one way or the other. */
export function block(keys, input, decrypt) {
  const out = new Uint8Array(16);
  crypt(keys, input, out, decrypt);
  return out;
}

export function gcmStart(keys, iv) {
  const h = block(keys, new Uint8Array(16), false);
  const j0 = j0Of(h, iv);
  const counter = Uint8Array.from(j0);
  increment(counter, 12);
  return { h, j0, counter };
}

export function gcmTag(keys, gcm, aad, ciphertext) {
  const s = ghash(gcm.h, aad, ciphertext);
  const tag = block(keys, gcm.j0, false);
  for (let j = 0; j < 16; j++) tag[j] ^= s[j];
  return tag;
}

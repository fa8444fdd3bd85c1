// node:string_decoder: bytes to text across chunk boundaries.
import { Buffer } from "node:buffer";

export class StringDecoder {
  constructor(encoding = "utf8") {
    this.encoding = String(encoding).toLowerCase().replace("-", "");
    if (this.encoding === "utf8" || this.encoding === "utf16le" || this.encoding === "ucs2") {
      const label = this.encoding === "utf8" ? "utf-8" : "utf-16le";
      this.decoder = new TextDecoder(label);
    } else {
      this.pending = new Uint8Array(0);
    }
  }
  write(chunk) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.decoder) return this.decoder.decode(bytes, { stream: true });
    if (this.encoding === "base64" || this.encoding === "base64url") {
      const all = Buffer.concat([this.pending, bytes]);
      const whole = all.length - (all.length % 3);
      this.pending = all.subarray(whole);
      return all.subarray(0, whole).toString(this.encoding);
    }
    return Buffer.from(bytes).toString(this.encoding);
  }
  end(chunk) {
    let out = chunk ? this.write(chunk) : "";
    if (this.decoder) out += this.decoder.decode();
    else if (this.pending?.length) {
      out += Buffer.from(this.pending).toString(this.encoding);
      this.pending = new Uint8Array(0);
    }
    return out;
  }
}
export default { StringDecoder };

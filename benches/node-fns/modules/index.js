import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";

export default {
  fetch() {
    const digest = createHash("sha256").update(Buffer.from("hello")).digest("hex");
    return new Response(`${typeof Readable} ${digest}\n`);
  },
};

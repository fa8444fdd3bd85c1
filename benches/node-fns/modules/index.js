import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";

// What importing the modules costs: the handler itself does nothing with them.
export default {
  fetch() {
    return new Response(`${typeof Buffer} ${typeof createHash} ${typeof Readable}\n`);
  },
};

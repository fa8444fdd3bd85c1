import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
self.postMessage(typeof Buffer + typeof createHash + typeof Readable);

import { Buffer } from "node:buffer";
import process from "node:process";
import { setImmediate } from "node:timers";
self.postMessage(typeof Buffer + typeof process + typeof setImmediate);

// The global scope of a function: the WinterTC Minimum Common API from Deno's Web API
// extensions, with decompression in bounded pieces and uncaught errors reported.

import {
  core,
  primordials,
  webidl,
  url,
  urlPattern,
  domException,
  event,
  structuredCloneMod,
  messagePort,
  timers,
  abortSignal,
  globalInterfaces,
  base64,
  streams,
  encoding,
  file,
  compression,
  performanceMod,
  cryptoMod,
  headers,
  formData,
  request,
  response,
  fetchMod,
  nonEnumerable,
  getter,
  noop,
  op_isola_fail,
  op_isola_brotli_open,
  op_isola_brotli_push,
  op_isola_brotli_more,
  op_isola_brotli_ended,
  op_isola_brotli_close,
} from "ext:isola/00_base.js";
import {
  captureContext,
  currentNext,
  enterStore,
  markCurrent,
  runInContext,
  runWithStore,
  storeOf,
} from "ext:isola/01_invocation.js";
import {
  console,
  describe,
  print,
} from "ext:isola/02_logging.js";
const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  ArrayPrototypePush,
  ArrayPrototypeSplice,
  FunctionPrototypeCall,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  PromisePrototypeCatch,
  ReflectApply,
  SafeArrayIterator,
  SymbolFor,
  TypeError,
  TypedArrayPrototypeSubarray,
} = primordials;


// deno_web inflates each written chunk in one native call, which neither the CPU watchdog nor
// the memory checks can interrupt: a 1 MiB gzip chunk becomes 1 GiB before JavaScript runs
// again. Here the compressed input reaches it in pieces of at most 4 KiB: deflate and gzip
// inflate at most about 1032:1, so one call makes at most about 4 MiB. Brotli has no such
// bound (a few bytes can ask for megabytes), so it is refused, as on Workers.
const INFLATE_PIECE = 4096;
const innerWritable = ObjectGetOwnPropertyDescriptor(
  compression.DecompressionStream.prototype,
  "writable",
).get;

class DecompressionStream extends compression.DecompressionStream {
  #writable;
  constructor(format) {
    const prefix = "Failed to construct 'DecompressionStream'";
    webidl.requiredArguments(arguments.length, 1, prefix);
    format = webidl.converters.DOMString(format, prefix, "Argument 1");
    if (format === "brotli") {
      throw new TypeError(
        `${prefix}: 'brotli' cannot be inflated in bounded pieces here; use 'gzip', 'deflate' or 'deflate-raw'`,
      );
    }
    super(format);
    const pieces = new streams.TransformStream({
      transform(chunk, controller) {
        let bytes = null;
        if (ArrayBufferIsView(chunk)) {
          bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        } else if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, chunk)) {
          bytes = new Uint8Array(chunk);
        }
        if (bytes === null || bytes.byteLength <= INFLATE_PIECE) {
          controller.enqueue(chunk); // as it is: deno_web checks and converts it
          return;
        }
        for (let at = 0; at < bytes.byteLength; at += INFLATE_PIECE) {
          controller.enqueue(TypedArrayPrototypeSubarray(bytes, at, at + INFLATE_PIECE));
        }
      },
    });
    PromisePrototypeCatch(pieces.readable.pipeTo(FunctionPrototypeCall(innerWritable, this)), noop);
    this.#writable = pieces.writable;
  }

  get writable() {
    return this.#writable;
  }
}

// Each MessagePort is a resource outside the V8 heap, out of reach of the memory limit: an
// isolate may hold `MAX_MESSAGE_PORTS` open at once. deno_web's class does the work; the
// global constructor checks first, and is the prototype's `constructor` too, so the
// unchecked one cannot be reached from a channel.
const MAX_MESSAGE_PORTS = 1000;
const NativeMessageChannel = messagePort.MessageChannel;
function MessageChannel() {
  if (new.target === undefined) {
    throw new TypeError("Class constructor MessageChannel cannot be invoked without 'new'");
  }
  if (portsAtMost + 2 > MAX_MESSAGE_PORTS) {
    portsAtMost = openPorts();
    if (portsAtMost + 2 > MAX_MESSAGE_PORTS) {
      throw new RangeError(
        `at most ${MAX_MESSAGE_PORTS} MessagePorts may be open at once: close() the ones no longer used`,
      );
    }
  }
  portsAtMost += 2;
  return new NativeMessageChannel();
}
// At least as many ports as are open: counted exactly (a walk of the resource table) only when
// it nears the bound.
let portsAtMost = 0;
function openPorts() {
  let open = 0;
  const resources = core.resources();
  for (const rid in resources) {
    if (resources[rid] === "messagePort") open++;
  }
  return open;
}
MessageChannel.prototype = NativeMessageChannel.prototype;
ObjectDefineProperty(NativeMessageChannel.prototype, "constructor", nonEnumerable(MessageChannel));

// A blob: URL's origin is its inner URL's only when that is http or https (URL standard,
// "origin"); deno_web's getter gives any inner URL's (`blob:ftp://host/` would be ftp's).
const urlOrigin = ObjectGetOwnPropertyDescriptor(url.URL.prototype, "origin").get;
ObjectDefineProperty(url.URL.prototype, "origin", {
  __proto__: null,
  get() {
    const origin = FunctionPrototypeCall(urlOrigin, this);
    if (origin === "null" || this.protocol !== "blob:") return origin;
    const inner = url.URL.parse(this.pathname);
    return inner !== null && (inner.protocol === "http:" || inner.protocol === "https:")
      ? origin
      : "null";
  },
  enumerable: true,
  configurable: true,
});

// ---- the global scope (WinterTC Minimum Common API) ----------------------------------------

const globals = {
  // interfaces
  AbortController: abortSignal.AbortController,
  AbortSignal: abortSignal.AbortSignal,
  Blob: file.Blob,
  ByteLengthQueuingStrategy: streams.ByteLengthQueuingStrategy,
  CompressionStream: compression.CompressionStream,
  CountQueuingStrategy: streams.CountQueuingStrategy,
  Crypto: cryptoMod.Crypto,
  CryptoKey: cryptoMod.CryptoKey,
  CustomEvent: event.CustomEvent,
  DecompressionStream,
  DOMException: domException.DOMException,
  ErrorEvent: event.ErrorEvent,
  Event: event.Event,
  EventTarget: event.EventTarget,
  File: file.File,
  FormData: formData.FormData,
  Headers: headers.Headers,
  MessageChannel,
  MessageEvent: event.MessageEvent,
  MessagePort: messagePort.MessagePort,
  Performance: performanceMod.Performance,
  PromiseRejectionEvent: event.PromiseRejectionEvent,
  ReadableByteStreamController: streams.ReadableByteStreamController,
  ReadableStream: streams.ReadableStream,
  ReadableStreamBYOBReader: streams.ReadableStreamBYOBReader,
  ReadableStreamBYOBRequest: streams.ReadableStreamBYOBRequest,
  ReadableStreamDefaultController: streams.ReadableStreamDefaultController,
  ReadableStreamDefaultReader: streams.ReadableStreamDefaultReader,
  Request: request.Request,
  Response: response.Response,
  SubtleCrypto: cryptoMod.SubtleCrypto,
  TextDecoder: encoding.TextDecoder,
  TextDecoderStream: encoding.TextDecoderStream,
  TextEncoder: encoding.TextEncoder,
  TextEncoderStream: encoding.TextEncoderStream,
  TransformStream: streams.TransformStream,
  TransformStreamDefaultController: streams.TransformStreamDefaultController,
  URL: url.URL,
  URLPattern: urlPattern.URLPattern,
  URLSearchParams: url.URLSearchParams,
  WritableStream: streams.WritableStream,
  WritableStreamDefaultController: streams.WritableStreamDefaultController,
  WritableStreamDefaultWriter: streams.WritableStreamDefaultWriter,
  // functions
  atob: base64.atob,
  btoa: base64.btoa,
  clearInterval: timers.clearInterval,
  clearTimeout: timers.clearTimeout,
  fetch: fetchMod.fetch,
  reportError,
  setInterval,
  setTimeout,
  structuredClone: structuredCloneMod.structuredClone,
  // objects
  console,
};
for (const name in globals) {
  ObjectDefineProperty(globalThis, name, nonEnumerable(globals[name]));
}
ObjectDefineProperty(globalThis, "crypto", getter(() => cryptoMod.crypto));
ObjectDefineProperty(globalThis, "performance", getter(() => performanceMod.performance));
const navigator = ObjectFreeze({ __proto__: null, userAgent: "Isola/0.1" });
ObjectDefineProperty(globalThis, "navigator", getter(() => navigator));
ObjectDefineProperty(globalThis, "self", getter(() => globalThis));

// globalThis is an EventTarget (a branded WorkerGlobalScope): `error` and
// `unhandledrejection` are dispatched on it. Its prototype is set again by `prepare`: the
// global object's prototype is not kept in the snapshot.
ObjectSetPrototypeOf(globalThis, globalInterfaces.WorkerGlobalScope.prototype);
ObjectDefineProperty(globalThis, webidl.brand, nonEnumerable(webidl.brand));
// What node:async_hooks' AsyncLocalStorage (a module the bundler adds) is built on: V8's
// continuation-preserved data, which promise reactions carry and deno_web's timers restore,
// shared with the runtime's own record of which invocation code belongs to.
ObjectDefineProperty(globalThis, SymbolFor("isola.asyncContext"), nonEnumerable(ObjectFreeze({
  __proto__: null,
  storeOf,
  runWithStore,
  enterStore,
  captureContext,
  runInContext,
})));
// What node:zlib's Brotli (a module the bundler adds) is built on: streams that take and
// give at most 64 KiB a call (ext/brotli.rs). Wrappers, so each call reaches the ops as
// rebound on this isolate.
ObjectDefineProperty(globalThis, SymbolFor("isola.brotli"), nonEnumerable(ObjectFreeze({
  __proto__: null,
  open: (decode, quality, lgwin) => op_isola_brotli_open(decode, quality, lgwin),
  push: (id, bytes, last) => op_isola_brotli_push(id, bytes, last),
  more: (id) => op_isola_brotli_more(id),
  ended: (id) => op_isola_brotli_ended(id),
  close: (id) => op_isola_brotli_close(id),
})));
event.setEventTargetData(globalThis);
event.saveGlobalThisReference(globalThis);
event.defineEventHandler(globalThis, "error");
event.defineEventHandler(globalThis, "unhandledrejection");
event.defineEventHandler(globalThis, "rejectionhandled");

// EventTarget's own dispatchEvent: the function may replace `globalThis.dispatchEvent`.
const dispatchEvent = event.EventTarget.prototype.dispatchEvent;

// Dispatches `ev` on globalThis; whether a listener called preventDefault. A listener that
// throws is reported by deno_web (as an uncaught error of its own); a hostile event object
// or an isolate being stopped ends the dispatch, never the isolate.
function dispatchOnGlobal(ev) {
  try {
    FunctionPrototypeCall(dispatchEvent, globalThis, ev);
    return ev.defaultPrevented;
  } catch (error) {
    reportUncaught("Uncaught (in an error listener)", error);
    return false;
  }
}

// An error nobody handled: logged with the user's stack, and the invocation it belongs to
// (the async context it was thrown or rejected in) ends with `exception`. Its neighbours on
// the same isolate go on. Outside any invocation it is only logged.
function reportUncaught(prefix, error) {
  const text = describe(error);
  print(`${prefix} ${text}`, 3);
  const next = currentNext();
  if (next !== null) op_isola_fail(next.id, "exception", text);
}

function errorMessage(error) {
  try {
    const message = error?.message;
    return typeof message === "string" ? message : "";
  } catch {
    return "";
  }
}

// An exception nobody caught (a timer callback, a microtask, `reportError`) and a rejection
// nobody handled are dispatched on globalThis; unless a listener calls preventDefault they are
// reported as above. None of these paths may throw back into deno_core, which would end the
// whole isolate (every invocation on it) with an internal error.
function reportException(error) {
  const ev = new event.ErrorEvent("error", { cancelable: true, message: errorMessage(error), error });
  if (!dispatchOnGlobal(ev)) reportUncaught("Uncaught", error);
}
core.setReportExceptionCallback(reportException);

// `reportError`, on the same path (deno_web's looks up `globalThis.dispatchEvent`, which the
// function may have replaced).
function reportError(error) {
  webidl.requiredArguments(arguments.length, 1, "Failed to execute 'reportError'");
  reportException(error);
}

// A timer's callback reports its own exception, while the async context of the invocation
// that set the timer is still current (deno_web's timers restore the previous context before
// an exception leaves them). The callback's work, and what ran before a timer is set, are
// marked as the invocation's for the CPU meter (`markCurrent`): a computation split across
// timers is charged to the invocation that runs it.
function reportingCallback(callback) {
  if (typeof callback !== "function") return callback;
  return function () {
    try {
      return ReflectApply(callback, this, arguments);
    } catch (error) {
      reportException(error);
    } finally {
      markCurrent();
    }
  };
}
function setTimeout(callback, timeout = 0, ...args) {
  markCurrent();
  return ReflectApply(timers.setTimeout, this, [reportingCallback(callback), timeout, ...new SafeArrayIterator(args)]);
}
function setInterval(callback, timeout = 0, ...args) {
  markCurrent();
  return ReflectApply(timers.setInterval, this, [reportingCallback(callback), timeout, ...new SafeArrayIterator(args)]);
}
// What would otherwise stop the isolate: deno_core's `op_dispatch_exception`, which
// deno_web's `reportError` and a throwing event listener reach when nobody prevented the
// `error` event, is replaced by an op that calls this instead (registered by `prepare`).
function onDispatchedException(error, promise) {
  reportUncaught(promise ? "Uncaught (in promise)" : "Uncaught", error);
}
// While the entry module evaluates, unhandled rejections are held: a module that throws
// rejects its evaluation promise too, and that failure is reported once, as the start
// failure. When the module evaluated, what was held is reported (at most HELD_MAX of it).
let evaluating = false;
const held = [];
const HELD_MAX = 100;
function beginEvaluation() {
  evaluating = true;
}
function endEvaluation() {
  evaluating = false;
  const pending = ArrayPrototypeSplice(held, 0);
  for (let i = 0; i < pending.length; i++) reportUncaught("Uncaught (in promise)", pending[i]);
}
core.setUnhandledPromiseRejectionHandler((promise, reason) => {
  const ev = new event.PromiseRejectionEvent("unhandledrejection", {
    cancelable: true,
    promise,
    reason,
  });
  if (dispatchOnGlobal(ev)) return true;
  if (!evaluating) {
    reportUncaught("Uncaught (in promise)", reason);
  } else if (held.length < HELD_MAX) {
    ArrayPrototypePush(held, reason);
  }
  return true;
});
core.setHandledPromiseRejectionHandler(() => {});

export {
  INFLATE_PIECE,
  innerWritable,
  DecompressionStream,
  globals,
  navigator,
  dispatchEvent,
  dispatchOnGlobal,
  reportUncaught,
  errorMessage,
  reportException,
  reportError,
  reportingCallback,
  setTimeout,
  setInterval,
  onDispatchedException,
  beginEvaluation,
  endEvaluation,
};

// Isola's runtime: builds the global scope of a function from Deno's Web API extensions and
// runs the Workers module contract. Evaluated once, at build time, into the startup snapshot.
// Rust takes `globalThis[BOOTSTRAP]` out of the scope before any function code runs.

const { core, internals, primordials } = globalThis.__bootstrap;
const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  StringPrototypeCharCodeAt,
  ArrayFrom,
  ArrayPrototypePush,
  Error,
  FunctionPrototypeCall,
  JSONParse,
  JSONStringify,
  Number: NumberCtor,
  ObjectKeys,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  PromisePrototypeCatch,
  PromisePrototypeThen,
  PromiseReject,
  PromiseResolve,
  MathRound,
  ReflectApply,
  ArrayPrototypeSlice,
  SafeArrayIterator,
  SafeMap,
  SafePromiseAllSettled,
  StringPrototypeEndsWith,
  StringPrototypeSlice,
  StringPrototypeToUpperCase,
  Symbol,
  TypeError,
  TypedArrayPrototypeGetSymbolToStringTag,
  TypedArrayPrototypeSubarray,
} = primordials;
// The ops, bound again by `useFastCalls` once the isolate is made: what the snapshot holds
// are the ops' slow versions.
let {
  op_isola_log,
  op_isola_next,
  op_isola_take,
  op_isola_read,
  op_isola_header,
  op_isola_respond,
  op_isola_respond_text,
  op_isola_respond_stream,
  op_isola_write,
  op_isola_fail,
  op_isola_done,
  op_isola_event_blob,
  op_isola_event_result,
  op_isola_binding,
  op_isola_live,
  op_isola_charge,
} = core.ops;

// Called by Rust on every isolate made from the snapshot, before it gets a function: what a
// snapshot cannot hold. It has deno_core attach the ops' fast-call overloads (it does so on
// the first lazy module load) and binds the ops again, so the request path calls them without
// V8's API callback; it registers the WebAssembly streaming handler (kept by deno_core
// outside the heap); and it makes globalThis an EventTarget again.
function prepare() {
  core.setWasmStreamingCallback(fetchMod.handleWasmStreaming);
  core.ops.op_isola_set_uncaught(onDispatchedException);
  ObjectSetPrototypeOf(globalThis, globalInterfaces.WorkerGlobalScope.prototype);
  core.createLazyLoader("ext:isola/fast_calls.js")();
  ({
    op_isola_log,
    op_isola_next,
    op_isola_take,
    op_isola_read,
    op_isola_header,
    op_isola_respond,
    op_isola_respond_text,
    op_isola_respond_stream,
    op_isola_write,
    op_isola_fail,
    op_isola_done,
    op_isola_event_blob,
    op_isola_event_result,
    op_isola_binding,
    op_isola_live,
    op_isola_charge,
  } = core.ops);
}

const load = core.loadExtScript;

// deno_fetch traces through Deno's OpenTelemetry modules when they are loaded; tracing of
// outbound fetch is off here, so it gets inert stand-ins instead.
const noop = () => {};
internals.__telemetry = {
  TRACING_ENABLED: false,
  PROPAGATORS: [],
  DID_NOT_ENTER: {},
  builtinTracer: noop,
  ContextManager: { active: noop },
  enterSpan: noop,
  exitSpan: noop,
};
internals.__telemetryUtil = {
  updateSpanFromClientResponse: noop,
  updateSpanFromError: noop,
  updateSpanFromRequest: noop,
};
const webidl = load("ext:deno_webidl/00_webidl.js");
const url = load("ext:deno_web/00_url.js");
const urlPattern = load("ext:deno_web/01_urlpattern.js");
const consoleMod = load("ext:deno_web/01_console.js");
const domException = load("ext:deno_web/01_dom_exception.js");
const event = load("ext:deno_web/02_event.js");
const structuredCloneMod = load("ext:deno_web/02_structured_clone.js");
const timers = load("ext:deno_web/02_timers.js");
const abortSignal = load("ext:deno_web/03_abort_signal.js");
const globalInterfaces = load("ext:deno_web/04_global_interfaces.js");
const base64 = load("ext:deno_web/05_base64.js");
const streams = load("ext:deno_web/06_streams.js");
const encoding = load("ext:deno_web/08_text_encoding.js");
const file = load("ext:deno_web/09_file.js");
const compression = load("ext:deno_web/14_compression.js");
const performanceMod = load("ext:deno_web/15_performance.js");
const cryptoMod = load("ext:deno_crypto/00_crypto.js");
const headers = load("ext:deno_fetch/20_headers.js");
const formData = load("ext:deno_fetch/21_formdata.js");
const body = load("ext:deno_fetch/22_body.js");
const request = load("ext:deno_fetch/23_request.js");
const response = load("ext:deno_fetch/23_response.js");
const fetchMod = load("ext:deno_fetch/26_fetch.js");

function nonEnumerable(value) {
  return { __proto__: null, value, writable: true, enumerable: false, configurable: true };
}
function getter(get) {
  return { __proto__: null, get, enumerable: true, configurable: true };
}
function readOnly(value) {
  return { __proto__: null, value, writable: false, enumerable: true, configurable: true };
}

// ---- logging -------------------------------------------------------------------------------

// The invocation the running code belongs to: its `Next`, the async context that
// `runInvocation` and `invoke` set and that promise reactions and timers carry along. `null`
// outside any invocation (module start, background work).
function currentNext() {
  const next = core.getAsyncContext();
  return next !== undefined && next !== null && ObjectPrototypeIsPrototypeOf(NextPrototype, next)
    ? next
    : null;
}
function currentInvocation() {
  const next = currentNext();
  return next === null ? null : next.invocationId;
}
// console levels as deno_web's Console reports them: 0 debug, 1 log/info, 2 warn, 3 error.
function print(message, level) {
  if (StringPrototypeEndsWith(message, "\n")) {
    message = StringPrototypeSlice(message, 0, -1);
  }
  op_isola_log(level, message, currentInvocation() ?? "");
}
// Log records are plain text: no terminal colours in messages or stacks.
consoleMod.setNoColorFns(() => true, () => true);
const console = new consoleMod.Console(print);

// An error as the log shows it: its stack when it has one. A function's value may be hostile
// (a throwing getter, a proxy): describing it never throws.
function describe(error) {
  try {
    if (error !== null && typeof error === "object") {
      const stack = error.stack;
      if (typeof stack === "string") return stack;
    }
    return consoleMod.inspect(error);
  } catch {
    return "(a thrown value that cannot be described)";
  }
}

// ---- decompression in bounded pieces ----------------------------------------------------------

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
// an exception leaves them).
function reportingCallback(callback) {
  if (typeof callback !== "function") return callback;
  return function () {
    try {
      return ReflectApply(callback, this, arguments);
    } catch (error) {
      reportException(error);
    }
  };
}
function setTimeout(callback, timeout = 0, ...args) {
  return ReflectApply(timers.setTimeout, this, [reportingCallback(callback), timeout, ...new SafeArrayIterator(args)]);
}
function setInterval(callback, timeout = 0, ...args) {
  return ReflectApply(timers.setInterval, this, [reportingCallback(callback), timeout, ...new SafeArrayIterator(args)]);
}
// What would otherwise stop the isolate: deno_core's `op_dispatch_exception`, which
// deno_web's `reportError` and a throwing event listener reach when nobody prevented the
// `error` event, is replaced by an op that calls this instead (registered by `prepare`).
function onDispatchedException(error, promise) {
  reportUncaught(promise ? "Uncaught (in promise)" : "Uncaught", error);
}
core.setUnhandledPromiseRejectionHandler((promise, reason) => {
  const ev = new event.PromiseRejectionEvent("unhandledrejection", {
    cancelable: true,
    promise,
    reason,
  });
  if (!dispatchOnGlobal(ev)) reportUncaught("Uncaught (in promise)", reason);
  return true;
});
core.setHandledPromiseRejectionHandler(() => {});

// ---- WebCrypto bounds -----------------------------------------------------------------------

// deno_crypto derives bits on a blocking thread, off the isolate's CPU clock; as on Workers,
// PBKDF2 takes at most 100,000 iterations, so that one call's cost stays bounded.
const PBKDF2_MAX_ITERATIONS = 100000;
// Every member of the derivation algorithms' dictionaries (ECDH, X25519, HKDF, PBKDF2).
const DERIVE_MEMBERS = ["name", "hash", "salt", "iterations", "info", "public", "length"];

// The algorithm as a plain object whose members were each read once (a getter cannot show
// the check one count and deno_crypto another), refused if it asks PBKDF2 for too much.
function boundedDerivation(algorithm) {
  if (algorithm === null || typeof algorithm !== "object") return algorithm;
  const copy = {};
  for (let i = 0; i < DERIVE_MEMBERS.length; i++) {
    const value = algorithm[DERIVE_MEMBERS[i]];
    if (value !== undefined) copy[DERIVE_MEMBERS[i]] = value;
  }
  if (typeof copy.name === "string" && StringPrototypeToUpperCase(copy.name) === "PBKDF2") {
    const iterations = NumberCtor(copy.iterations);
    copy.iterations = iterations;
    if (iterations > PBKDF2_MAX_ITERATIONS) {
      throw new domException.DOMException(
        `Pbkdf2 failed: iteration counts above ${PBKDF2_MAX_ITERATIONS} are not supported (requested ${iterations})`,
        "NotSupportedError",
      );
    }
  }
  return copy;
}

{
  const SubtleCryptoPrototype = cryptoMod.SubtleCrypto.prototype;
  const deriveBits = SubtleCryptoPrototype.deriveBits;
  const deriveKey = SubtleCryptoPrototype.deriveKey;
  const bounded = {
    // The declared parameters keep each method's `length` (2 and 5) as the spec has it.
    async deriveBits(algorithm, baseKey, length = undefined) {
      return await FunctionPrototypeCall(
        deriveBits,
        this,
        boundedDerivation(algorithm),
        baseKey,
        length,
      );
    },
    async deriveKey(algorithm, baseKey, derivedKeyType, extractable, keyUsages) {
      return await ReflectApply(deriveKey, this, [
        boundedDerivation(algorithm),
        ...new SafeArrayIterator(ArrayPrototypeSlice(arguments, 1)),
      ]);
    },
  };
  for (const name of ["deriveBits", "deriveKey"]) {
    ObjectDefineProperty(SubtleCryptoPrototype, name, {
      __proto__: null,
      value: bounded[name],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}

// deno_crypto runs every SubtleCrypto method that does real work (hashing, ciphers,
// signatures, derivation, key generation and export) on the blocking pool, off the isolate
// thread's CPU clock, for as long as its input or parameters ask. An isolate's calls of these
// run one at a time, and each one's time is charged to the invocation that made it (or to the
// background budget): an invocation that spends its CPU time this way ends with
// `exceeded_cpu` like any other, and the calls it left queued do not run. One call at a time,
// its wall time is its thread's CPU time, or more when the machine is busy (then it is charged
// more, never less). `importKey` and `unwrapKey` run on the isolate's thread, on its clock.
const performanceNow = performanceMod.Performance.prototype.now;
const BLOCKING_SUBTLE = [
  "digest",
  "encrypt",
  "decrypt",
  "sign",
  "verify",
  "deriveBits",
  "deriveKey",
  "generateKey",
  "exportKey",
  "wrapKey",
  "encapsulateBits",
  "encapsulateKey",
];
let blockingTail = PromiseResolve();

function chargedSubtle(name, method) {
  const wrapper = {
    async [name]() {
      const next = currentNext();
      const turn = blockingTail;
      let done;
      blockingTail = new Promise((resolve) => {
        done = resolve;
      });
      try {
        await turn;
        if (next !== null && !op_isola_live(next.id)) {
          throw new domException.DOMException(
            "the invocation that asked for this has ended",
            "AbortError",
          );
        }
        const started = FunctionPrototypeCall(performanceNow, performanceMod.performance);
        try {
          return await ReflectApply(method, this, arguments);
        } finally {
          const took = FunctionPrototypeCall(performanceNow, performanceMod.performance) - started;
          op_isola_charge(next === null ? -1 : next.id, MathRound(took * 1000));
        }
      } finally {
        done();
      }
    },
  }[name];
  ObjectDefineProperty(wrapper, "length", nonEnumerable(method.length));
  return wrapper;
}

{
  const SubtleCryptoPrototype = cryptoMod.SubtleCrypto.prototype;
  for (let i = 0; i < BLOCKING_SUBTLE.length; i++) {
    const name = BLOCKING_SUBTLE[i];
    const method = SubtleCryptoPrototype[name];
    if (typeof method !== "function") continue;
    ObjectDefineProperty(SubtleCryptoPrototype, name, {
      __proto__: null,
      value: chargedSubtle(name, method),
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}

// ---- outbound fetch ------------------------------------------------------------------------

// Outbound requests made by each live invocation, held to the `subrequests` limit.
const subrequestCounts = new SafeMap();

function limitSubrequests(max) {
  const fetch = fetchMod.fetch;
  function limitedFetch(input, init = undefined) {
    const id = currentInvocation();
    if (id !== null) {
      const count = (subrequestCounts.get(id) ?? 0) + 1;
      if (count > max) {
        return PromiseReject(
          new TypeError(`too many subrequests: an invocation may make at most ${max}`),
        );
      }
      subrequestCounts.set(id, count);
    }
    return fetch(input, init);
  }
  ObjectDefineProperty(globalThis, "fetch", nonEnumerable(limitedFetch));
}

// ---- the Workers module contract -----------------------------------------------------------

class ExecutionContext {
  #pending;
  constructor(pending) {
    this.#pending = pending;
  }
  /** Keeps the invocation alive until `promise` settles, after the response is sent. */
  waitUntil(promise) {
    ArrayPrototypePush(this.#pending, promise);
  }
  /** Accepted for Workers compatibility; an exception answers 500 here. */
  passThroughOnException() {}
}

function readBody(id) {
  return new streams.ReadableStream({
    type: "bytes",
    async pull(controller) {
      const chunk = await op_isola_read(id);
      if (chunk.byteLength === 0) {
        controller.close();
        controller.byobRequest?.respond(0);
      } else {
        controller.enqueue(chunk);
      }
    },
  });
}

const EMPTY = new Uint8Array(0);

// Answers with a response whose body is whole already (or absent); `false` when the body is
// a stream, which `streamResponse` sends.
function respondWhole(id, res) {
  const inner = response.toInnerResponse(res);
  const innerBody = inner.body;
  const streamOrStatic = innerBody === null ? null : innerBody.streamOrStatic;
  if (ObjectPrototypeIsPrototypeOf(streams.ReadableStreamPrototype, streamOrStatic)) {
    return false;
  }
  sendHeaders(id, inner.headerList);
  if (innerBody === null) {
    op_isola_respond(id, inner.status, EMPTY);
    return true;
  }
  streamOrStatic.consumed = true;
  const staticBody = streamOrStatic.body;
  if (typeof staticBody === "string") {
    op_isola_respond_text(id, inner.status, staticBody);
  } else {
    op_isola_respond(id, inner.status, staticBody);
  }
  return true;
}

// The response's headers, one fast op call each, before the op that answers.
function sendHeaders(id, headerList) {
  for (let i = 0; i < headerList.length; i++) {
    const header = headerList[i];
    op_isola_header(id, header[0], header[1]);
  }
}

// Answers with a head now and the body's chunks as the stream yields them.
async function streamResponse(id, res) {
  const inner = response.toInnerResponse(res);
  sendHeaders(id, inner.headerList);
  op_isola_respond_stream(id, inner.status);
  const reader = inner.body.streamOrStatic.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (TypedArrayPrototypeGetSymbolToStringTag(value) !== "Uint8Array") {
        throw new TypeError("a response body stream must yield Uint8Array chunks");
      }
      if (value.byteLength === 0) continue;
      if (!(await op_isola_write(id, value))) {
        // The client went away: stop producing.
        await reader.cancel();
        return;
      }
    }
  } catch (error) {
    print(`Uncaught (in response stream) ${describe(error)}`, 3);
    op_isola_fail(id, "exception", describe(error));
  } finally {
    reader.releaseLock();
  }
}

// An exception nobody caught ends the invocation with `exception`, logged with its stack.
function uncaught(id, error) {
  print(`Uncaught ${describe(error)}`, 3);
  op_isola_fail(id, "exception", describe(error));
}

// The end of every invocation: its response is sent and its `waitUntil` work settled.
function endInvocation(next) {
  if (subrequestCounts.size !== 0) subrequestCounts.delete(next.invocationId);
  op_isola_done(next.id);
}

// Runs one invocation: its ExecutionContext, its async context (for console records), and
// whatever happens, its end (`op_isola_done`).
async function runInvocation(next, work) {
  const id = next.id;
  const waitUntil = [];
  const ctx = new ExecutionContext(waitUntil);
  const prev = core.getAsyncContext();
  core.setAsyncContext(next);
  try {
    await work(id, ctx, waitUntil);
  } catch (error) {
    uncaught(id, error);
  } finally {
    endInvocation(next);
    core.setAsyncContext(prev);
  }
}

// Waits for every `ctx.waitUntil` promise, those added meanwhile included.
async function settle(waitUntil) {
  while (waitUntil.length > 0) {
    const pending = waitUntil.splice(0, waitUntil.length);
    await SafePromiseAllSettled(pending);
  }
}

// The inner request (deno_fetch's shape) of a request the node received: what
// `request.newInnerRequest` makes, as a class, so a request costs one closure (its URL list,
// which deno_fetch calls) instead of six, and no accessor definitions of its own.
// Its headers come as one flat array (name, value, name, value, ...), made into deno_fetch's
// list of pairs only if the function looks at them.
class IncomingInnerRequest {
  // `flatHeaders` from index `flatFrom` on.
  constructor(method, url, flatHeaders, flatFrom, body) {
    this.methodInner = method;
    this.flatHeaders = flatHeaders;
    this.flatFrom = flatFrom;
    this.headerListInner = null;
    this.body = body;
    this.redirectMode = "follow";
    this.redirectCount = 0;
    this.urlList = [() => url];
    this.urlListProcessed = [url];
    this.clientRid = null;
    this.blobUrlEntry = null;
  }
  get method() {
    return this.methodInner;
  }
  set method(value) {
    this.methodInner = value;
  }
  get headerList() {
    if (this.headerListInner === null) {
      const flat = this.flatHeaders;
      const list = [];
      for (let i = this.flatFrom; i < flat.length; i += 2) {
        ArrayPrototypePush(list, [flat[i], flat[i + 1]]);
      }
      this.headerListInner = list;
      this.flatHeaders = null;
    }
    return this.headerListInner;
  }
  set headerList(value) {
    this.headerListInner = value;
    this.flatHeaders = null;
  }
  url() {
    return this.urlListProcessed[0];
  }
  currentUrl() {
    const last = this.urlList.length - 1;
    if (this.urlListProcessed[last] === undefined) {
      this.urlListProcessed[last] = this.urlList[last]();
    }
    return this.urlListProcessed[last];
  }
}

// `request.cf`, connection metadata: as in Workers, an accessor of Request.prototype, here
// reading a slot the node fills on the requests it receives (undefined on others). Its value
// is one frozen object per protocol, shared by the isolate's requests.
const cfSlot = Symbol("cf");
ObjectDefineProperty(request.Request.prototype, "cf", {
  __proto__: null,
  get() {
    return this[cfSlot];
  },
  enumerable: true,
  configurable: true,
});
// `request.cf.httpProtocol` by the number Rust sends (`Protocol` in ext/mod.rs).
const PROTOCOLS = ["", "HTTP/1.1", "HTTP/2", "HTTP/3", "HTTP/1.0", "HTTP/0.9"];
// No prototype: a missing entry must not be looked up on one the function can change.
let cfByProtocol = { __proto__: null };

function cfOf(protocol) {
  let cf = cfByProtocol[protocol];
  if (cf === undefined) {
    cf = ObjectFreeze({ __proto__: null, httpProtocol: PROTOCOLS[protocol], region: nodeRegion });
    cfByProtocol[protocol] = cf;
  }
  return cf;
}

// The Request a fetch handler gets for invocation `next`.
function incomingRequest(next) {
  const bodyStream = next.hasBody ? readBody(next.id) : null;
  const inner = new IncomingInnerRequest(
    next.method,
    next.url,
    next.fields,
    HEADERS_AT,
    bodyStream === null ? null : new body.InnerBody(bodyStream),
  );
  const req = request.fromInnerRequest(inner, "immutable");
  req[cfSlot] = cfOf(next.protocol);
  return req;
}

function checkResponse(res) {
  if (!ObjectPrototypeIsPrototypeOf(response.ResponsePrototype, res)) {
    throw new TypeError(
      `the fetch handler must return a Response, it returned ${consoleMod.inspect(res)}`,
    );
  }
}

// Runs a fetch invocation. A handler that returns a Response with a whole body at once, and
// leaves no `waitUntil` work, is answered and ended in the same turn, without a promise of
// the runtime's own; everything else goes on in `finishFetch`.
function invoke(handler, env, next) {
  const waitUntil = [];
  const ctx = new ExecutionContext(waitUntil);
  const prev = core.getAsyncContext();
  core.setAsyncContext(next);
  try {
    let res;
    let answered = false;
    try {
      res = handler.fetch(incomingRequest(next), env, ctx);
      if (ObjectPrototypeIsPrototypeOf(response.ResponsePrototype, res)) {
        answered = respondWhole(next.id, res);
        if (answered && waitUntil.length === 0) {
          endInvocation(next);
          return;
        }
      }
    } catch (error) {
      uncaught(next.id, error);
      endInvocation(next);
      return;
    }
    finishFetch(next, res, answered, waitUntil);
  } finally {
    core.setAsyncContext(prev);
  }
}

// The rest of a fetch invocation: the response the handler's promise brings (unless
// `answered`), a streamed body, the `waitUntil` work.
async function finishFetch(next, pending, answered, waitUntil) {
  const id = next.id;
  try {
    if (!answered) {
      let res;
      try {
        res = await pending;
        checkResponse(res);
      } catch (error) {
        uncaught(id, error);
        return;
      }
      if (!respondWhole(id, res)) await streamResponse(id, res);
    }
    if (waitUntil.length !== 0) await settle(waitUntil);
  } catch (error) {
    uncaught(id, error);
  } finally {
    endInvocation(next);
  }
}

// ---- events: scheduled, queue, storage, record ----------------------------------------------

// A queue batch as Workers shapes it; the handler's verdict per message is collected.
function messageBatch(id, payload) {
  const acked = new SafeMap();
  const messages = payload.messages.map((m) => {
    const bytes = op_isola_event_blob(id, m.blob);
    const body = m.encoding === "json" ? JSONParse(core.decode(bytes)) : core.deserialize(bytes);
    return ObjectFreeze({
      id: m.id,
      timestamp: new Date(m.timestamp),
      attempts: m.attempts,
      body,
      ack() {
        acked.set(m.id, { ack: true });
      },
      retry(options) {
        acked.set(m.id, { ack: false, delaySeconds: options?.delaySeconds ?? null });
      },
    });
  });
  const batch = ObjectFreeze({
    queue: payload.queue,
    messages: ObjectFreeze(messages),
    ackAll() {
      for (const m of messages) if (!acked.has(m.id)) acked.set(m.id, { ack: true });
    },
    retryAll(options) {
      for (const m of messages) {
        if (!acked.has(m.id)) acked.set(m.id, { ack: false, delaySeconds: options?.delaySeconds ?? null });
      }
    },
  });
  return { batch, verdicts: acked };
}

function invokeEvent(handler, env, next) {
  return runInvocation(next, async (id, ctx, waitUntil) => {
    const fn = handler[next.handler];
    if (typeof fn !== "function") {
      const message = `the function has no ${next.handler} handler`;
      print(message, 3);
      op_isola_fail(id, "exception", message);
      return;
    }
    const payload = JSONParse(next.payload);
    let result = {};
    try {
      if (next.handler === "queue") {
        const { batch, verdicts } = messageBatch(id, payload);
        await FunctionPrototypeCall(fn, handler, batch, env, ctx);
        const out = [];
        for (const [messageId, verdict] of verdicts) {
          ArrayPrototypePush(out, { id: messageId, ...verdict });
        }
        result = { verdicts: out };
      } else if (next.handler === "scheduled") {
        const event = ObjectFreeze({
          type: "scheduled",
          cron: payload.cron,
          scheduledTime: payload.scheduledTime,
          noRetry() {},
        });
        await FunctionPrototypeCall(fn, handler, event, env, ctx);
      } else {
        await FunctionPrototypeCall(fn, handler, ObjectFreeze(payload), env, ctx);
      }
    } catch (error) {
      print(`Uncaught ${describe(error)}`, 3);
      op_isola_fail(id, "exception", describe(error));
      return;
    }
    await settle(waitUntil);
    op_isola_event_result(id, JSONStringify(result));
  });
}

// ---- bindings: env.NAME for a queue ----------------------------------------------------------

function concat(parts) {
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function queueBinding(name) {
  const send = async (bodies) => {
    const parts = bodies.map((body) => core.serialize(body));
    const sizes = parts.map((p) => p.byteLength);
    await op_isola_binding(name, "send", JSONStringify({ sizes }), concat(parts));
  };
  return ObjectFreeze({
    send(body) {
      return send([body]);
    },
    sendBatch(messages) {
      return send(ArrayFrom(messages, (m) => m.body));
    },
  });
}


async function call(name, method, args, data) {
  return JSONParse(await op_isola_binding(name, method, JSONStringify(args), data ?? EMPTY));
}

function toBytes(data) {
  if (typeof data === "string") return core.encode(data);
  if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, data)) return new Uint8Array(data);
  if (ArrayBufferIsView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("an object's data is a string, an ArrayBuffer or a typed array");
}

function fromBase64(text) {
  const binary = base64.atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = StringPrototypeCharCodeAt(binary, i);
  return out;
}

function bucketBinding(name) {
  return ObjectFreeze({
    put(key, data, options) {
      return call(name, "put", { key, contentType: options?.contentType }, toBytes(data));
    },
    async get(key) {
      const found = await call(name, "get", { key });
      if (found === null) return null;
      const body = fromBase64(found.body);
      return ObjectFreeze({
        ...found.meta,
        body,
        text: () => core.decode(body),
        json: () => JSONParse(core.decode(body)),
        arrayBuffer: () => body.buffer,
      });
    },
    delete(key) {
      return call(name, "delete", { key });
    },
    list(options) {
      return call(name, "list", { prefix: options?.prefix ?? "", limit: options?.limit, cursor: options?.cursor });
    },
  });
}

function tableBinding(name) {
  return ObjectFreeze({
    get(key) {
      return call(name, "get", { key });
    },
    async put(key, value) {
      const text = JSONStringify(value);
      if (text === undefined) throw new TypeError("a record is a JSON value");
      await call(name, "put", { key, value: text });
    },
    delete(key) {
      return call(name, "delete", { key });
    },
    list(options) {
      return call(name, "list", { prefix: options?.prefix ?? "", limit: options?.limit, cursor: options?.cursor });
    },
  });
}

function binding(name, kind) {
  if (kind === "queue") return queueBinding(name);
  if (kind === "bucket") return bucketBinding(name);
  if (kind === "table") return tableBinding(name);
  throw new TypeError(`binding ${name}: unknown kind ${kind}`);
}

// Methods Rust sends by index (`METHODS` in ext/mod.rs).
const METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
// Where the request's headers start in what Rust sends (`NEXT_FIELDS` in ext/mod.rs).
const HEADERS_AT = 8;

// An invocation from `op_isola_next`, which hands it over as an array in this order.
class Next {
  constructor(fields) {
    this.id = fields[0];
    this.invocationId = fields[1];
    // 0 is `fetch`; an event's handler comes by name.
    this.handler = fields[2] === 0 ? "fetch" : fields[2];
    this.payload = fields[3];
    const method = fields[4];
    this.method = typeof method === "number" ? METHODS[method] : method;
    this.url = fields[5];
    this.hasBody = fields[6];
    this.protocol = fields[7];
    // The headers, flat, from HEADERS_AT on.
    this.fields = fields;
  }
}
const NextPrototype = Next.prototype;

// Invocations taken in one go before the event loop gets a turn.
const BATCH = 32;

const HANDLERS = ["fetch", "scheduled", "queue", "storage", "record"];

/**
 * Called by Rust once, after the function's module evaluated: checks the default export and
 * starts taking requests.
 */
// The region of the node this isolate runs on, set by `start`.
let nodeRegion = "";

function start(namespace, vars, subrequests, bindings, region) {
  nodeRegion = region;
  cfByProtocol = { __proto__: null };
  limitSubrequests(subrequests);
  const handler = namespace.default;
  if (
    handler === null || typeof handler !== "object" ||
    !HANDLERS.some((h) => typeof handler[h] === "function")
  ) {
    throw new TypeError(
      "the entry module must `export default { fetch(request, env, ctx) { ... } }` (or another handler: scheduled, queue, storage, record)",
    );
  }
  const bound = { __proto__: null };
  for (const key of ObjectKeys(bindings)) bound[key] = binding(key, bindings[key]);
  const env = ObjectFreeze({ __proto__: null, ...vars, ...bound });
  (async () => {
    let taken = 0;
    while (true) {
      // Invocations already waiting are taken at once, up to a batch; then (or when none
      // waits) through the event loop, so timers and I/O get their turn.
      let fields = taken < BATCH ? op_isola_take() : null;
      if (fields === null) {
        taken = 0;
        // Waiting for work does not keep the event loop alive: when nothing else is
        // pending, the handlers still in flight can never finish, and the worker says so
        // (no_response).
        const waiting = op_isola_next();
        core.unrefOpPromise(waiting);
        fields = await waiting;
        if (fields === null) break;
      } else {
        taken++;
      }
      const next = new Next(fields);
      if (next.handler === "fetch") {
        if (typeof handler.fetch === "function") {
          invoke(handler, env, next);
        } else {
          op_isola_fail(next.id, "exception", "the function has no fetch handler");
          op_isola_done(next.id);
        }
      } else {
        invokeEvent(handler, env, next);
      }
    }
  })();
}

// Warm-up, run once while the snapshot is made: the snapshot keeps the bytecode of what it
// compiles, so an isolate does not compile the request path again on its first request.
for (let i = 0; i < 2; i++) {
  const inner = new IncomingInnerRequest(
    "POST",
    "http://localhost/warm-up?q=1",
    ["content-type", "text/plain", "x-warm", "up"],
    0,
    null,
  );
  const req = request.fromInnerRequest(inner, "immutable");
  req[cfSlot] = cfOf(1);
  req.cf;
  req.method;
  req.url;
  req.headers.get("x-warm");
  const res = new response.Response("warm", {
    status: 201,
    headers: { "content-type": "text/plain" },
  });
  response.toInnerResponse(res).headerList;
  response.toInnerResponse(response.Response.json({ warm: true }));
  new ExecutionContext([]);
}
cfByProtocol = { __proto__: null };

// Rust takes this out, together with deno_core's own `Deno` and `__bootstrap` globals, before
// any function code runs (deno_core needs those while it restores the snapshot).
ObjectDefineProperty(globalThis, "__isolaStart", nonEnumerable(start));
ObjectDefineProperty(globalThis, "__isolaPrepare", nonEnumerable(prepare));

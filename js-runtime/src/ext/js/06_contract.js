// The Workers module contract: a request in, `fetch(request, env, ctx)` called, its Response
// answered (whole or streamed), `waitUntil` work settled.

import {
  core,
  primordials,
  consoleMod,
  streams,
  body,
  request,
  response,
  op_isola_read,
  op_isola_header,
  op_isola_respond,
  op_isola_respond_text,
  op_isola_respond_stream,
  op_isola_write,
  op_isola_fail,
  op_isola_done,
  op_isola_client_gone,
} from "ext:isola/00_base.js";
import {
  HEADERS_AT,
} from "ext:isola/01_invocation.js";
import {
  describe,
  print,
} from "ext:isola/02_logging.js";
import {
  subrequestCounts,
} from "ext:isola/05_outbound.js";
import {
  WEB_SOCKET,
  answerSocket,
} from "ext:isola/11_websocket.js";
const {
  ArrayPrototypePush,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  PromisePrototypeThen,
  SafePromiseAllSettled,
  Symbol,
  TypeError,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetSymbolToStringTag,
  TypedArrayPrototypeSubarray,
} = primordials;


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
// A whole body larger than this goes out in pieces of `PIECE`, as a stream does: the node
// then holds at most a few pieces per connection (a client that reads slowly holds the rest
// in the isolate, under its memory limit) rather than a copy of the whole body.
const WHOLE_MAX = 1024 * 1024;
const PIECE = 64 * 1024;

// Answers invocation `next` with a response whose body is whole already (or absent), or with
// the WebSocket a 101 carries; `false` when the body is a stream or large, which
// `streamResponse` sends.
function respondWhole(next, res) {
  const id = next.id;
  const inner = response.toInnerResponse(res);
  if (res[WEB_SOCKET] !== undefined) return answerSocket(next, res, sendHeaders, inner.headerList);
  const innerBody = inner.body;
  const streamOrStatic = innerBody === null ? null : innerBody.streamOrStatic;
  if (ObjectPrototypeIsPrototypeOf(streams.ReadableStreamPrototype, streamOrStatic)) {
    return false;
  }
  if (innerBody === null) {
    sendHeaders(id, inner.headerList);
    op_isola_respond(id, inner.status, EMPTY);
    return true;
  }
  const staticBody = streamOrStatic.body;
  const size = typeof staticBody === "string" ? staticBody.length : staticBody.byteLength;
  if (size > WHOLE_MAX) return false;
  sendHeaders(id, inner.headerList);
  streamOrStatic.consumed = true;
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

// Answers with a head now and the body's chunks as the stream yields them (or a large whole
// body in pieces).
async function streamResponse(next, res) {
  const id = next.id;
  const inner = response.toInnerResponse(res);
  const streamOrStatic = inner.body.streamOrStatic;
  if (!ObjectPrototypeIsPrototypeOf(streams.ReadableStreamPrototype, streamOrStatic)) {
    streamOrStatic.consumed = true;
    let bytes = streamOrStatic.body;
    if (typeof bytes === "string") bytes = core.encode(bytes);
    sendHeaders(id, inner.headerList);
    op_isola_respond_stream(id, inner.status, bytes.byteLength);
    for (let at = 0; at < bytes.byteLength; at += PIECE) {
      const piece = TypedArrayPrototypeSubarray(bytes, at, at + PIECE);
      if (!(await op_isola_write(id, piece))) return clientLeft(next);
    }
    return;
  }
  const reader = streamOrStatic.getReader();
  // The head goes out with the first chunk (or the end): a stream that fails before it
  // answers 500 like any other exception, instead of a head the body then breaks.
  let read;
  try {
    read = await reader.read();
    checkChunk(read);
  } catch (error) {
    reader.releaseLock();
    uncaught(id, error);
    return;
  }
  sendHeaders(id, inner.headerList);
  op_isola_respond_stream(id, inner.status, -1);
  try {
    while (!read.done) {
      const value = read.value;
      if (value.byteLength !== 0 && !(await op_isola_write(id, value))) {
        // The client went away: stop producing.
        clientLeft(next);
        await reader.cancel();
        return;
      }
      read = await reader.read();
      checkChunk(read);
    }
  } catch (error) {
    print(`Uncaught (in response stream) ${describe(error)}`, 3);
    op_isola_fail(id, "exception", describe(error));
  } finally {
    reader.releaseLock();
  }
}

// A write found the client gone: the request's signal aborts, if the function reads it.
function clientLeft(next) {
  if (next.abort !== null && !next.answered) next.abort();
}

function checkChunk(read) {
  if (!read.done && TypedArrayPrototypeGetSymbolToStringTag(read.value) !== "Uint8Array") {
    throw new TypeError("a response body stream must yield Uint8Array chunks");
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
  constructor(method, url, flatHeaders, flatFrom, body, next = null) {
    this.next = next;
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
  // Called by deno_fetch when the function first reads `request.signal`: it aborts when the
  // client goes away before the whole response has gone to it (before the head: the op says
  // so; during a streamed body: a write finds the client gone).
  onCancel(abort) {
    const next = this.next;
    if (next === null) return;
    next.abort = abort;
    // Not unref'd: a handler waiting on the signal is waiting for something. The op settles
    // when the invocation ends, whatever the client does.
    const gone = op_isola_client_gone(next.id);
    PromisePrototypeThen(gone, (left) => {
      if (left && !next.answered) abort();
    });
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
// `request.cf`, made when first read: the slot holds the protocol's number until then.
ObjectDefineProperty(request.Request.prototype, "cf", {
  __proto__: null,
  get() {
    let cf = this[cfSlot];
    if (typeof cf === "number") {
      cf = cfOf(cf, this);
      this[cfSlot] = cf;
    }
    return cf;
  },
  enumerable: true,
  configurable: true,
});
// `request.cf.httpProtocol` by the number Rust sends (`Protocol` in ext/mod.rs).
const PROTOCOLS = ["", "HTTP/1.1", "HTTP/2", "HTTP/3", "HTTP/1.0", "HTTP/0.9"];

// The region of the node this isolate runs on, set by `start`.
let nodeRegion = "";

function setRegion(region) {
  nodeRegion = region;
}

// What `request.cf` says of a request that came over `protocol`: its HTTP version, the
// node's region, and the client's address (the node's `CF-Connecting-IP` header).
function cfOf(protocol, req) {
  return ObjectFreeze({
    __proto__: null,
    httpProtocol: PROTOCOLS[protocol],
    region: nodeRegion,
    clientIp: req.headers.get("cf-connecting-ip") ?? "",
  });
}

// The Request a fetch handler gets for invocation `next`.
// A body that arrived whole comes as its bytes (`hasBody` is then a Uint8Array): it is read
// with no stream, as a body given to `new Request` is.
function incomingRequest(next) {
  const hasBody = next.hasBody;
  let innerBody = null;
  if (hasBody === true) {
    innerBody = new body.InnerBody(readBody(next.id));
  } else if (hasBody !== false) {
    innerBody = new body.InnerBody({ body: hasBody, consumed: false });
    innerBody.length = TypedArrayPrototypeGetByteLength(hasBody);
  }
  const inner = new IncomingInnerRequest(
    next.method,
    next.url,
    next.fields,
    HEADERS_AT,
    innerBody,
    next,
  );
  const req = request.fromInnerRequest(inner, "immutable");
  req[cfSlot] = next.protocol;
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
        answered = respondWhole(next, res);
        next.answered = answered;
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
      if (!respondWhole(next, res)) await streamResponse(next, res);
      next.answered = true;
    }
    if (waitUntil.length !== 0) await settle(waitUntil);
  } catch (error) {
    uncaught(id, error);
  } finally {
    endInvocation(next);
  }
}

export {
  ExecutionContext,
  readBody,
  EMPTY,
  respondWhole,
  sendHeaders,
  streamResponse,
  uncaught,
  endInvocation,
  runInvocation,
  settle,
  IncomingInnerRequest,
  cfSlot,
  PROTOCOLS,
  nodeRegion,
  setRegion,
  cfOf,
  incomingRequest,
  checkResponse,
  invoke,
  finishFetch,
};

// WebSockets accepted the Workers way: `new WebSocketPair()` makes a client end (returned in
// `new Response(null, { status: 101, webSocket: client })`) and a server end the function
// uses (`accept`, `send`, `close`, `message` and `close` events). The node bridges the
// socket to the client; each message is an entry of its own (ops in ext/socket.rs).

import {
  core,
  primordials,
  domException,
  event,
  file,
  response,
  url as urlMod,
  webidl,
  nonEnumerable,
} from "ext:isola/00_base.js";
const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  ArrayPrototypeJoin,
  ArrayPrototypePush,
  PromisePrototypeThen,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  FunctionPrototypeCall,
  RangeError,
  ReflectConstruct,
  String,
  Symbol,
  SymbolFor,
  TypeError,
  Uint8Array,
} = primordials;
const { ops } = core;

const TOKEN = Symbol("WebSocketPair");
const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

class WebSocket extends event.EventTarget {
  // The socket's id once the node has it (the 101 answer went out), else -1.
  #socket = -1;
  #state = OPEN;
  #accepted = false;
  // The other end of the pair; for the server end, the client end returned in the 101.
  #peer = null;
  // Messages and a close sent before the socket is attached, in order.
  #pending = [];
  #binaryType = "arraybuffer";
  // The invocation whose 101 answer carried this socket (or that opened it), for console
  // records of its handlers.
  #context = undefined;
  // An outbound socket's URL and the subprotocol its server chose.
  #url = null;
  #protocol = "";

  constructor(url, protocols = undefined) {
    super();
    event.setEventTargetData(this);
    if (url === TOKEN) return;
    // An outbound socket (WHATWG WebSocket), under the same policy as fetch.
    const prefix = "Failed to construct 'WebSocket'";
    url = webidl.converters.USVString(url, prefix, "Argument 1");
    let parsed;
    try {
      parsed = new urlMod.URL(url);
    } catch {
      throw new domException.DOMException(`invalid URL ${url}`, "SyntaxError");
    }
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    else if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new domException.DOMException("a WebSocket URL is ws: or wss:", "SyntaxError");
    }
    if (parsed.hash !== "") {
      throw new domException.DOMException("a WebSocket URL has no fragment", "SyntaxError");
    }
    if (protocols === undefined) protocols = [];
    else if (typeof protocols === "string") protocols = [protocols];
    else protocols = [...protocols].map((p) => String(p));
    this.#url = parsed.href;
    this.#state = CONNECTING;
    this.#accepted = true;
    this.#binaryType = "blob";
    this.#context = core.getAsyncContext();
    const opening = ops.op_isola_ws_connect(parsed.href, ArrayPrototypeJoin(protocols, ", "));
    PromisePrototypeThen(opening, (opened) => {
      this.#socket = opened[0];
      this.#protocol = opened[1];
      const closing = this.#state === CLOSING;
      this.#state = closing ? CLOSING : OPEN;
      const pending = this.#pending;
      this.#pending = [];
      for (const item of pending) item();
      if (!closing) this.#dispatch(new event.Event("open"));
      this.#pump();
    }, (error) => {
      this.#state = CLOSED;
      this.#dispatch(new event.ErrorEvent("error", { message: error?.message ?? String(error), error }));
      this.#dispatch(new event.CloseEvent("close", { code: 1006, reason: "", wasClean: false }));
    });
  }

  // Dispatches `ev` in the context of the invocation the socket belongs to.
  #dispatch(ev) {
    const prev = core.getAsyncContext();
    core.setAsyncContext(this.#context);
    try {
      this.dispatchEvent(ev);
    } finally {
      core.setAsyncContext(prev);
    }
  }

  static pair() {
    const client = new WebSocket(TOKEN);
    const server = new WebSocket(TOKEN);
    client.#peer = server;
    server.#peer = client;
    return { client, server };
  }

  // The server end of `client`, if `client` is the client end of a pair not yet returned.
  static serverOf(client) {
    if (!ObjectPrototypeIsPrototypeOf(WebSocketPrototype, client)) return null;
    const server = client.#peer;
    if (server === null || server.#socket !== -1) return null;
    return server;
  }

  // The node accepted the upgrade: socket id `socket`, answered by invocation `context`.
  static attach(server, socket, context) {
    server.#socket = socket;
    server.#context = context;
    const pending = server.#pending;
    server.#pending = [];
    for (const item of pending) {
      if (typeof item === "function") item();
      else server.#sendNow(item);
    }
    if (server.#accepted) server.#pump();
  }

  // The upgrade was refused (too many sockets): the socket is closed, never opened.
  static refused(server) {
    server.#state = CLOSED;
  }

  accept() {
    if (this.#accepted) throw new TypeError("WebSocket already accepted");
    this.#accepted = true;
    if (this.#socket !== -1) this.#pump();
  }

  send(data) {
    if (!this.#accepted) {
      throw new TypeError("You must call accept() on this WebSocket before sending messages.");
    }
    if (this.#state === CONNECTING) {
      throw new domException.DOMException("the WebSocket is still connecting", "InvalidStateError");
    }
    if (this.#state !== OPEN) throw new TypeError("Can't call WebSocket send() after close().");
    let message;
    if (typeof data === "string") {
      message = data;
    } else if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, data)) {
      message = new Uint8Array(data.slice(0));
    } else if (ArrayBufferIsView(data)) {
      message = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    } else {
      message = String(data);
    }
    if (this.#socket === -1) ArrayPrototypePush(this.#pending, message);
    else this.#sendNow(message);
  }

  #sendNow(message) {
    if (typeof message === "string") ops.op_isola_ws_send_text(this.#socket, message);
    else ops.op_isola_ws_send_binary(this.#socket, message);
  }

  close(code = undefined, reason = undefined) {
    if (code !== undefined) {
      code = code | 0;
      if (code !== 1000 && (code < 3000 || code > 4999)) {
        throw new RangeError(`invalid WebSocket close code ${code}: 1000 or 3000 to 4999`);
      }
    }
    reason = reason === undefined ? "" : String(reason);
    if (core.encode(reason).byteLength > 123) {
      throw new RangeError("a WebSocket close reason is at most 123 bytes");
    }
    if (this.#state === CLOSING || this.#state === CLOSED) return;
    this.#state = CLOSING;
    const close = () => ops.op_isola_ws_close(this.#socket, code ?? 1000, reason);
    if (this.#socket === -1) ArrayPrototypePush(this.#pending, close);
    else close();
  }

  get readyState() {
    return this.#state;
  }
  get binaryType() {
    return this.#binaryType;
  }
  set binaryType(value) {
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }
  get bufferedAmount() {
    return 0;
  }
  get url() {
    return this.#url;
  }
  get protocol() {
    return this.#protocol;
  }
  get extensions() {
    return "";
  }

  // Delivers the socket's events until it is over; each is an entry of its own, ended once
  // its listeners have run.
  async #pump() {
    const socket = this.#socket;
    while (true) {
      const next = ops.op_isola_ws_next(socket);
      const ev = await next;
      if (ev === null) break;
      try {
        if (ev[1] === 2) {
          this.#state = CLOSED;
          this.#dispatch(new event.CloseEvent("close", {
            code: ev[2],
            reason: ev[3],
            wasClean: ev[2] !== 1006,
          }));
        } else {
          let data = ev[2];
          if (ev[1] === 1 && this.#binaryType === "blob") data = new file.Blob([data]);
          this.#dispatch(new event.MessageEvent("message", { data }));
        }
      } finally {
        ops.op_isola_done(ev[0]);
      }
    }
    this.#state = CLOSED;
  }
}
const WebSocketPrototype = WebSocket.prototype;
for (const [name, value] of [["CONNECTING", CONNECTING], ["OPEN", OPEN], ["CLOSING", CLOSING], ["CLOSED", CLOSED]]) {
  ObjectDefineProperty(WebSocket, name, { __proto__: null, value, enumerable: true });
  ObjectDefineProperty(WebSocketPrototype, name, { __proto__: null, value, enumerable: true });
}
event.defineEventHandler(WebSocketPrototype, "message");
event.defineEventHandler(WebSocketPrototype, "close");
event.defineEventHandler(WebSocketPrototype, "error");
event.defineEventHandler(WebSocketPrototype, "open");

class WebSocketPair {
  constructor() {
    const { client, server } = WebSocket.pair();
    this[0] = client;
    this[1] = server;
  }
}

// ---- Response with `webSocket` ----------------------------------------------------------

// The client end a 101 Response carries.
const WEB_SOCKET = SymbolFor("isola.webSocket");
const NativeResponse = response.Response;

// `Response`, as deno_fetch's, except that `{ status: 101, webSocket: client }` makes the
// answer to a WebSocket upgrade (deno_fetch refuses any status below 200).
function Response(body = undefined, init = undefined) {
  if (new.target === undefined) {
    throw new TypeError("Class constructor Response cannot be invoked without 'new'");
  }
  if (init !== undefined && init !== null && init.webSocket != null) {
    const client = init.webSocket;
    if (WebSocket.serverOf(client) === null) {
      throw new TypeError("webSocket must be the client end of a WebSocketPair not yet returned");
    }
    if (init.status !== 101) {
      throw new RangeError("a Response with a webSocket has status 101");
    }
    const made = ReflectConstruct(NativeResponse, [null, { headers: init.headers }], new.target);
    made[WEB_SOCKET] = client;
    return made;
  }
  if (new.target === Response) return new NativeResponse(body, init);
  return ReflectConstruct(NativeResponse, [body, init], new.target);
}
Response.prototype = NativeResponse.prototype;
ObjectSetPrototypeOf(Response, NativeResponse);
ObjectDefineProperty(NativeResponse.prototype, "constructor", nonEnumerable(Response));
const nativeStatus = ObjectGetOwnPropertyDescriptor(NativeResponse.prototype, "status").get;
ObjectDefineProperty(NativeResponse.prototype, "status", {
  __proto__: null,
  get() {
    const status = FunctionPrototypeCall(nativeStatus, this);
    return this[WEB_SOCKET] === undefined ? status : 101;
  },
  enumerable: true,
  configurable: true,
});
ObjectDefineProperty(NativeResponse.prototype, "webSocket", {
  __proto__: null,
  get() {
    return this[WEB_SOCKET] ?? null;
  },
  enumerable: true,
  configurable: true,
});

// Answers invocation `next` (an upgrade) with the socket `res` carries; whether `res`
// carries one. Refused (too many sockets on this isolate), the node answers 503.
function answerSocket(next, res, sendHeaders, headerList) {
  const client = res[WEB_SOCKET];
  if (client === undefined) return false;
  const server = WebSocket.serverOf(client);
  if (server === null) throw new TypeError("this WebSocket was returned already");
  sendHeaders(next.id, headerList);
  const socket = ops.op_isola_ws_accept(next.id);
  if (socket < 0) WebSocket.refused(server);
  else WebSocket.attach(server, socket, next);
  return true;
}

ObjectDefineProperty(globalThis, "WebSocket", nonEnumerable(WebSocket));
ObjectDefineProperty(globalThis, "WebSocketPair", nonEnumerable(WebSocketPair));
ObjectDefineProperty(globalThis, "Response", nonEnumerable(Response));
ObjectDefineProperty(globalThis, "CloseEvent", nonEnumerable(event.CloseEvent));

export { answerSocket, Response, WEB_SOCKET };

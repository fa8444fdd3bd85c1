// The Cache API as on Workers: `caches.default` and `caches.open(name)`, each a `Cache` with
// `match`, `put` and `delete`. The node keeps the entries (per function, per node) and applies
// HTTP's caching rules; here a request becomes its URL and headers, and a stored answer a
// Response again.

import {
  core,
  primordials,
  body,
  request,
  response,
  getter,
  nonEnumerable,
} from "ext:isola/00_base.js";
const {
  ArrayPrototypePush,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  String,
  Symbol,
  TypeError,
  Uint8Array,
} = primordials;

const { Request, toInnerRequest } = request;
const { Response, fromInnerResponse, newInnerResponse, toInnerResponse } = response;
const { extractBody } = body;
const { ops } = core;

const TOKEN = Symbol("Cache");
const MAX_NAME = 1024;

// A header list (pairs of byte strings) as one string: `name:value` lines.
function lines(headerList) {
  let out = "";
  for (let i = 0; i < headerList.length; i++) {
    const header = headerList[i];
    out += header[0] + ":" + header[1] + "\n";
  }
  return out;
}

// The request a call is about, or null when it is not a GET and `ignoreMethod` is not set.
function requestOf(input, options) {
  const req = ObjectPrototypeIsPrototypeOf(Request.prototype, input)
    ? input
    : new Request(input);
  if (req.method !== "GET" && !options?.ignoreMethod) return null;
  return req;
}

class Cache {
  #name;

  constructor(token, name) {
    if (token !== TOKEN) throw new TypeError("Illegal constructor");
    this.#name = name;
  }

  /** The stored answer to `request`, or `undefined`. */
  async match(input, options) {
    const req = requestOf(input, options);
    if (req === null) return undefined;
    const inner = toInnerRequest(req);
    const found = ops.op_isola_cache_match(this.#name, inner.url(), lines(inner.headerList));
    if (found === null) return undefined;
    // Built as fetch builds a response it received: the node checked the headers already.
    const answer = newInnerResponse(found[0]);
    for (let i = 2; i < found.length; i += 2) {
      ArrayPrototypePush(answer.headerList, [found[i], found[i + 1]]);
    }
    if (found[1] !== null) answer.body = extractBody(found[1]).body;
    return fromInnerResponse(answer, "response");
  }

  /** Keeps `res` as the answer to `request`, when HTTP's caching rules allow it. */
  async put(input, res) {
    const req = ObjectPrototypeIsPrototypeOf(Request.prototype, input)
      ? input
      : new Request(input);
    if (req.method !== "GET") throw new TypeError("Cannot cache response to non-GET request.");
    if (!ObjectPrototypeIsPrototypeOf(Response.prototype, res)) {
      throw new TypeError("Cache.put: the second argument is not a Response");
    }
    if (res.status === 206) {
      throw new TypeError("Cannot cache response to a range request (206 Partial Content).");
    }
    const vary = res.headers.get("vary");
    if (vary !== null && vary.trim() === "*") {
      throw new TypeError("Cannot cache response with 'Vary: *' header.");
    }
    if (res.bodyUsed) throw new TypeError("Cache.put: the response body is already used");
    const body = new Uint8Array(await res.arrayBuffer());
    ops.op_isola_cache_put(
      this.#name,
      req.url,
      lines(toInnerRequest(req).headerList),
      res.status,
      lines(toInnerResponse(res).headerList),
      body,
    );
  }

  /** Removes the answer to `request`; whether there was one. */
  async delete(input, options) {
    const req = requestOf(input, options);
    if (req === null) return false;
    return ops.op_isola_cache_delete(this.#name, req.url);
  }
}

class CacheStorage {
  #default = new Cache(TOKEN, "");

  constructor(token) {
    if (token !== TOKEN) throw new TypeError("Illegal constructor");
  }

  /** The cache `caches.default` names. */
  get default() {
    return this.#default;
  }

  /** The cache named `name`, apart from every other name's. */
  async open(name) {
    name = String(name);
    if (name.length === 0 || name.length > MAX_NAME) {
      throw new TypeError(`a cache's name is 1 to ${MAX_NAME} characters long`);
    }
    return new Cache(TOKEN, name);
  }
}

const caches = new CacheStorage(TOKEN);
ObjectDefineProperty(globalThis, "caches", getter(() => caches));
ObjectDefineProperty(globalThis, "Cache", nonEnumerable(Cache));
ObjectDefineProperty(globalThis, "CacheStorage", nonEnumerable(CacheStorage));
ObjectFreeze(Cache.prototype);
ObjectFreeze(CacheStorage.prototype);

export { caches };

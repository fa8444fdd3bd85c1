// Bindings: `env.NAME` for a queue, a bucket or a table.

import {
  core,
  primordials,
  base64,
  body,
  op_isola_binding,
} from "ext:isola/00_base.js";
import {
  EMPTY,
} from "ext:isola/06_contract.js";
const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  StringPrototypeCharCodeAt,
  ArrayFrom,
  JSONParse,
  JSONStringify,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  TypeError,
} = primordials;


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

export {
  concat,
  queueBinding,
  call,
  toBytes,
  fromBase64,
  bucketBinding,
  tableBinding,
  binding,
};

// node:util: inspect and format, promisify/callbackify, inherits, deprecate, types, the
// text codecs, isDeepStrictEqual.
const isObject = (v) => v !== null && typeof v === "object";

function inspectValue(value, depth, seen) {
  if (typeof value === "string") return depth === 0 ? value : `'${value.replace(/'/g, "\\'")}'`;
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  if (typeof value === "function") return `[Function: ${value.name || "(anonymous)"}]`;
  if (!isObject(value)) return String(value);
  if (seen.includes(value)) return "[Circular *1]";
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof RegExp) return value.toString();
  if (depth > 2) return Array.isArray(value) ? "[Array]" : "[Object]";
  seen = [...seen, value];
  const inner = (v) => inspectValue(v, depth + 1, seen);
  if (Array.isArray(value)) {
    return value.length === 0 ? "[]" : `[ ${value.map(inner).join(", ")} ]`;
  }
  if (value instanceof Map) {
    return `Map(${value.size}) {${[...value].map(([k, v]) => ` ${inner(k)} => ${inner(v)}`).join(",")}${value.size ? " " : ""}}`;
  }
  if (value instanceof Set) {
    return `Set(${value.size}) {${[...value].map((v) => ` ${inner(v)}`).join(",")}${value.size ? " " : ""}}`;
  }
  if (ArrayBuffer.isView(value) && typeof value.inspect === "function") return value.inspect();
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${value.length}) [ ${Array.from(value).join(", ")} ]`;
  const keys = Object.keys(value);
  const name = value.constructor && value.constructor !== Object ? `${value.constructor.name} ` : "";
  if (keys.length === 0) return `${name}{}`;
  const key = (k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `'${k}'`);
  return `${name}{ ${keys.map((k) => `${key(k)}: ${inner(value[k])}`).join(", ")} }`;
}

export function inspect(value, options) {
  return inspectValue(value, typeof value === "string" ? 1 : 0, []);
}
inspect.custom = Symbol.for("nodejs.util.inspect.custom");
inspect.defaultOptions = { depth: 2 };

export function format(first, ...args) {
  if (typeof first !== "string") return [first, ...args].map((v) => inspect(v)).join(" ");
  let i = 0;
  let out = first.replace(/%[sdifjoOc%]/g, (token) => {
    if (token === "%%") return "%";
    if (i >= args.length) return token;
    const arg = args[i++];
    switch (token) {
      case "%s": return typeof arg === "string" ? arg : inspect(arg);
      case "%d": return typeof arg === "bigint" ? `${arg}n` : String(Number(arg));
      case "%i": return String(parseInt(arg, 10));
      case "%f": return String(parseFloat(arg));
      case "%j": try { return JSON.stringify(arg); } catch { return "[Circular]"; }
      case "%c": return "";
      default: return inspect(arg);
    }
  });
  for (; i < args.length; i++) out += ` ${typeof args[i] === "string" ? args[i] : inspect(args[i])}`;
  return out;
}

export function formatWithOptions(_options, ...args) {
  return format(...args);
}

const kCustomPromisify = Symbol.for("nodejs.util.promisify.custom");
export function promisify(original) {
  if (typeof original !== "function") {
    throw new TypeError(`The "original" argument must be of type function. Received ${typeof original}`);
  }
  if (original[kCustomPromisify]) return original[kCustomPromisify];
  function promisified(...args) {
    return new Promise((resolve, reject) => {
      original.call(this, ...args, (error, value) => (error ? reject(error) : resolve(value)));
    });
  }
  Object.setPrototypeOf(promisified, Object.getPrototypeOf(original));
  return Object.defineProperties(promisified, Object.getOwnPropertyDescriptors(original));
}
promisify.custom = kCustomPromisify;

export function callbackify(original) {
  return function (...args) {
    const callback = args.pop();
    original.apply(this, args).then(
      (value) => queueMicrotask(() => callback(null, value)),
      (error) => queueMicrotask(() => callback(error ?? new Error("Promise was rejected with a falsy value"))),
    );
  };
}

export function inherits(ctor, superCtor) {
  Object.defineProperty(ctor, "super_", { value: superCtor, writable: true, configurable: true });
  Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
}

export function deprecate(fn, message) {
  let warned = false;
  return function (...args) {
    if (!warned) {
      warned = true;
      console.warn(`DeprecationWarning: ${message}`);
    }
    return new.target ? Reflect.construct(fn, args, new.target) : fn.apply(this, args);
  };
}

export function debuglog() {
  const log = () => {};
  log.enabled = false;
  return log;
}
export const debug = debuglog;

export function isDeepStrictEqual(a, b) {
  if (Object.is(a, b)) return true;
  if (!isObject(a) || !isObject(b)) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof RegExp) return String(a) === String(b);
  if (ArrayBuffer.isView(a)) return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  if (a instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !isDeepStrictEqual(v, b.get(k))) return false;
    return true;
  }
  if (a instanceof Set) {
    if (a.size !== b.size) return false;
    for (const v of a) if (!b.has(v)) return false;
    return true;
  }
  const ka = Reflect.ownKeys(a).filter((k) => Object.prototype.propertyIsEnumerable.call(a, k));
  const kb = Reflect.ownKeys(b).filter((k) => Object.prototype.propertyIsEnumerable.call(b, k));
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && isDeepStrictEqual(a[k], b[k]));
}

const tag = (v) => Object.prototype.toString.call(v).slice(8, -1);
export const types = {
  isPromise: (v) => v instanceof Promise,
  isDate: (v) => v instanceof Date,
  isRegExp: (v) => v instanceof RegExp,
  isMap: (v) => v instanceof Map,
  isSet: (v) => v instanceof Set,
  isWeakMap: (v) => v instanceof WeakMap,
  isWeakSet: (v) => v instanceof WeakSet,
  isNativeError: (v) => v instanceof Error,
  isArrayBuffer: (v) => v instanceof ArrayBuffer,
  isAnyArrayBuffer: (v) => v instanceof ArrayBuffer || tag(v) === "SharedArrayBuffer",
  isArrayBufferView: (v) => ArrayBuffer.isView(v),
  isTypedArray: (v) => ArrayBuffer.isView(v) && !(v instanceof DataView),
  isUint8Array: (v) => v instanceof Uint8Array,
  isDataView: (v) => v instanceof DataView,
  isAsyncFunction: (v) => tag(v) === "AsyncFunction" || tag(v) === "AsyncGeneratorFunction",
  isGeneratorFunction: (v) => tag(v) === "GeneratorFunction" || tag(v) === "AsyncGeneratorFunction",
  isGeneratorObject: (v) => tag(v) === "Generator",
  isBoxedPrimitive: (v) => isObject(v) && ["Number", "String", "Boolean", "BigInt", "Symbol"].includes(tag(v)),
  isSymbolObject: (v) => isObject(v) && tag(v) === "Symbol",
  isProxy: () => false,
  isKeyObject: () => false,
  isCryptoKey: (v) => typeof CryptoKey !== "undefined" && v instanceof CryptoKey,
};

export const isArray = Array.isArray;
export const isBoolean = (v) => typeof v === "boolean";
export const isNull = (v) => v === null;
export const isNullOrUndefined = (v) => v == null;
export const isNumber = (v) => typeof v === "number";
export const isString = (v) => typeof v === "string";
export const isSymbol = (v) => typeof v === "symbol";
export const isUndefined = (v) => v === undefined;
export const isRegExp = types.isRegExp;

export const isDate = types.isDate;
export const isError = (v) => v instanceof Error;
export const isFunction = (v) => typeof v === "function";
export const isPrimitive = (v) => v === null || (typeof v !== "object" && typeof v !== "function");
export const TextEncoder = globalThis.TextEncoder;
export const TextDecoder = globalThis.TextDecoder;

export function stripVTControlCharacters(text) {
  return text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "");
}

export function toUSVString(text) {
  return String(text).toWellFormed();
}

export default {
  inspect, format, formatWithOptions, promisify, callbackify, inherits, deprecate, debuglog, debug,
  isDeepStrictEqual, types, isArray, isBoolean, isNull, isNullOrUndefined, isNumber, isString,
  isSymbol, isUndefined, isRegExp, isObject, isDate, isError, isFunction, isPrimitive,
  TextEncoder, TextDecoder, stripVTControlCharacters, toUSVString,
};

// node:querystring: parse and stringify as Node does (repeated keys become arrays).
export function escape(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function unescape(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export function parse(text, sep = "&", eq = "=", options) {
  const out = Object.create(null);
  if (typeof text !== "string" || text.length === 0) return out;
  const max = options?.maxKeys ?? 1000;
  const decode = options?.decodeURIComponent ?? unescape;
  let parts = text.split(sep);
  if (max > 0) parts = parts.slice(0, max);
  for (const part of parts) {
    if (part.length === 0) continue;
    const at = part.indexOf(eq);
    const rawKey = at >= 0 ? part.slice(0, at) : part;
    const rawValue = at >= 0 ? part.slice(at + eq.length) : "";
    const key = decode(rawKey.replace(/\+/g, " "));
    const value = decode(rawValue.replace(/\+/g, " "));
    if (!(key in out)) out[key] = value;
    else if (Array.isArray(out[key])) out[key].push(value);
    else out[key] = [out[key], value];
  }
  return out;
}

function primitive(value) {
  if (typeof value === "string") return value;
  if ((typeof value === "number" && Number.isFinite(value)) || typeof value === "bigint" || typeof value === "boolean") return String(value);
  return "";
}

export function stringify(object, sep = "&", eq = "=", options) {
  const encode = options?.encodeURIComponent ?? escape;
  if (object === null || typeof object !== "object") return "";
  return Object.keys(object)
    .map((key) => {
      const value = object[key];
      const k = encode(primitive(key)) + eq;
      if (Array.isArray(value)) return value.map((v) => k + encode(primitive(v))).join(sep);
      return k + encode(primitive(value));
    })
    .filter(Boolean)
    .join(sep);
}

export const decode = parse;
export const encode = stringify;
export default { parse, stringify, escape, unescape, decode, encode };

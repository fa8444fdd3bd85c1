// node:url: the WHATWG URL (the runtime's), file URL helpers and the legacy parse/format.
import * as qs from "node:querystring";

export const URL = globalThis.URL;
export const URLSearchParams = globalThis.URLSearchParams;

export function fileURLToPath(url) {
  const parsed = typeof url === "string" ? new URL(url) : url;
  if (parsed.protocol !== "file:") throw new TypeError("The URL must be of scheme file");
  return decodeURIComponent(parsed.pathname);
}

export function pathToFileURL(path) {
  return new URL(`file://${encodeURI(path.startsWith("/") ? path : `/${path}`)}`);
}

export function domainToASCII(domain) {
  try {
    return new URL(`http://${domain}`).hostname;
  } catch {
    return "";
  }
}

export function domainToUnicode(domain) {
  return domain;
}

// The legacy url.parse: the fields Node gives, from the WHATWG parser where it can.
export function parse(text, parseQuery = false) {
  const out = {
    protocol: null, slashes: null, auth: null, host: null, port: null, hostname: null, hash: null,
    search: null, query: parseQuery ? {} : null, pathname: null, path: null, href: text,
  };
  let url;
  try {
    url = new URL(text);
  } catch {
    const [beforeHash, hash] = text.split(/#(.*)/s);
    const [pathname, search] = beforeHash.split(/\?(.*)/s);
    out.pathname = pathname || null;
    out.search = search !== undefined ? `?${search}` : null;
    out.query = parseQuery ? qs.parse(search ?? "") : search ?? null;
    out.hash = hash !== undefined ? `#${hash}` : null;
    out.path = (out.pathname ?? "") + (out.search ?? "") || null;
    return out;
  }
  out.protocol = url.protocol;
  out.slashes = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
  out.auth = url.username ? decodeURIComponent(url.username) + (url.password ? `:${decodeURIComponent(url.password)}` : "") : null;
  out.host = url.host || null;
  out.port = url.port || null;
  out.hostname = url.hostname || null;
  out.hash = url.hash || null;
  out.search = url.search || null;
  out.query = parseQuery ? qs.parse(url.search.slice(1)) : url.search ? url.search.slice(1) : null;
  out.pathname = url.pathname || null;
  out.path = `${url.pathname}${url.search}`;
  out.href = url.href;
  return out;
}

export function format(object) {
  if (typeof object === "string") return object;
  if (object instanceof URL) return object.href;
  const protocol = object.protocol ? (object.protocol.endsWith(":") ? object.protocol : `${object.protocol}:`) : "";
  const auth = object.auth ? `${object.auth}@` : "";
  const host = object.host ?? (object.hostname ? object.hostname + (object.port ? `:${object.port}` : "") : "");
  const slashes = object.slashes || /^(https?|ftp|file|wss?):$/.test(protocol) ? "//" : "";
  let search = object.search ?? "";
  if (!search && object.query && typeof object.query === "object") {
    const text = qs.stringify(object.query);
    search = text ? `?${text}` : "";
  }
  const hash = object.hash ?? "";
  return `${protocol}${host ? slashes + auth + host : ""}${object.pathname ?? ""}${search}${hash}`;
}

export function resolve(from, to) {
  return new URL(to, new URL(from, "resolve://")).href.replace(/^resolve:\/\//, "");
}

export default { URL, URLSearchParams, fileURLToPath, pathToFileURL, domainToASCII, domainToUnicode, parse, format, resolve };

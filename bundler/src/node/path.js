// node:path, POSIX flavour (a function has no Windows paths).
function assertPath(path) {
  if (typeof path !== "string") {
    throw new TypeError(`The "path" argument must be of type string. Received ${typeof path}`);
  }
}

function normalizeString(path, allowAboveRoot) {
  const out = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (allowAboveRoot) out.push("..");
    } else {
      out.push(part);
    }
  }
  return out.join("/");
}

export const sep = "/";
export const delimiter = ":";

export function cwd() {
  return "/";
}

export function resolve(...paths) {
  let resolved = "";
  let absolute = false;
  for (let i = paths.length - 1; i >= -1 && !absolute; i--) {
    const path = i >= 0 ? paths[i] : cwd();
    assertPath(path);
    if (path.length === 0) continue;
    resolved = `${path}/${resolved}`;
    absolute = path.startsWith("/");
  }
  resolved = normalizeString(resolved, !absolute);
  return absolute ? `/${resolved}` : resolved.length > 0 ? resolved : ".";
}

export function normalize(path) {
  assertPath(path);
  if (path.length === 0) return ".";
  const absolute = path.startsWith("/");
  const trailing = path.endsWith("/");
  let out = normalizeString(path, !absolute);
  if (out.length === 0 && !absolute) out = ".";
  if (out.length > 0 && trailing) out += "/";
  return absolute ? `/${out}` : out;
}

export function isAbsolute(path) {
  assertPath(path);
  return path.startsWith("/");
}

export function join(...paths) {
  const parts = [];
  for (const path of paths) {
    assertPath(path);
    if (path.length > 0) parts.push(path);
  }
  return parts.length === 0 ? "." : normalize(parts.join("/"));
}

export function relative(from, to) {
  assertPath(from);
  assertPath(to);
  const a = resolve(from).split("/").filter(Boolean);
  const b = resolve(to).split("/").filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/");
}

export function dirname(path) {
  assertPath(path);
  if (path.length === 0) return ".";
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const at = path.lastIndexOf("/", end - 1);
  if (at === -1) return ".";
  if (at === 0) return "/";
  let stop = at;
  while (stop > 1 && path[stop - 1] === "/") stop--;
  return path.slice(0, stop);
}

export function basename(path, ext) {
  assertPath(path);
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const base = path.slice(path.lastIndexOf("/", end - 1) + 1, end);
  if (ext !== undefined && base.endsWith(ext) && base !== ext) return base.slice(0, base.length - ext.length);
  return base;
}

export function extname(path) {
  assertPath(path);
  const base = basename(path);
  const dot = base.lastIndexOf(".");
  if (dot <= 0 || dot === base.length - 1 && base.length === 1) return "";
  return base.slice(dot);
}

export function parse(path) {
  assertPath(path);
  const root = path.startsWith("/") ? "/" : "";
  const base = basename(path);
  const ext = extname(path);
  let dir = dirname(path);
  if (dir === "." && !path.includes("/")) dir = "";
  return { root, dir, base, ext, name: ext ? base.slice(0, base.length - ext.length) : base };
}

export function format(object) {
  const dir = object.dir || object.root || "";
  const base = object.base || `${object.name || ""}${object.ext ? (object.ext.startsWith(".") ? "" : ".") + object.ext : ""}`;
  if (!dir) return base;
  return dir === object.root ? `${dir}${base}` : `${dir}/${base}`;
}

export function toNamespacedPath(path) {
  return path;
}

const path = {
  sep, delimiter, resolve, normalize, isAbsolute, join, relative, dirname, basename, extname,
  parse, format, toNamespacedPath,
};
path.posix = path;
path.win32 = null;
export const posix = path;
export default path;

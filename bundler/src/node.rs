//! Node.js built-in modules for functions: `node:x` (and, from CommonJS, `require("x")`)
//! resolve to modules the bundler adds to the bundle, so a function that uses none pays
//! nothing. Our own curated set of polyfills (docs/node.md says what each supports); modules
//! that cannot work in a sandbox import fine and throw, naming the call, when called.

use std::borrow::Cow;

/// Where the built-ins live inside a bundle.
const PREFIX: &str = "__isola__/node/";

/// The module that puts Node's globals in the global scope (`nodejs_compat`).
pub(crate) const GLOBALS: &str = "__isola__/node/internal/globals.js";

/// The built-ins we implement, by name, with their code.
const MODULES: &[(&str, &str)] = &[
    ("assert", include_str!("node/assert.js")),
    ("async_hooks", include_str!("node/async_hooks.js")),
    ("assert/strict", include_str!("node/assert/strict.js")),
    ("buffer", include_str!("node/buffer.js")),
    ("crypto", include_str!("node/crypto.js")),
    ("diagnostics_channel", include_str!("node/diagnostics_channel.js")),
    ("events", include_str!("node/events.js")),
    ("http", include_str!("node/http.js")),
    ("internal/aes", include_str!("node/internal/aes.js")),
    ("internal/globals", include_str!("node/internal/globals.js")),
    // pako 2.1.0 (MIT and Zlib licenses, vendor/pako.LICENSE), the port of zlib node:zlib uses.
    ("internal/pako", include_str!("node/vendor/pako.mjs")),
    ("os", include_str!("node/os.js")),
    ("path", include_str!("node/path.js")),
    ("path/posix", include_str!("node/path.js")),
    ("perf_hooks", include_str!("node/perf_hooks.js")),
    ("process", include_str!("node/process.js")),
    ("punycode", include_str!("node/vendor/punycode.mjs")),
    ("querystring", include_str!("node/querystring.js")),
    ("stream", include_str!("node/stream.js")),
    ("stream/promises", include_str!("node/stream/promises.js")),
    ("stream/web", include_str!("node/stream_web.js")),
    ("string_decoder", include_str!("node/string_decoder.js")),
    ("timers", include_str!("node/timers.js")),
    ("timers/promises", include_str!("node/timers/promises.js")),
    ("url", include_str!("node/url.js")),
    ("util", include_str!("node/util.js")),
    ("zlib", include_str!("node/zlib.js")),
];

/// Built-ins a sandbox cannot have, with the names code commonly imports from them: each is
/// a function that throws
/// "… is not available in an edge function" when called.
const UNAVAILABLE: &[(&str, &[&str])] = &[
    (
        "child_process",
        &["exec", "execFile", "execSync", "execFileSync", "fork", "spawn", "spawnSync"],
    ),
    ("cluster", &["fork", "setupPrimary", "setupMaster"]),
    ("dgram", &["createSocket"]),
    ("dns", &["lookup", "resolve", "resolve4", "resolve6", "reverse"]),
    ("dns/promises", &["lookup", "resolve", "resolve4", "resolve6", "reverse"]),
    (
        "fs",
        &[
            "access",
            "accessSync",
            "appendFile",
            "appendFileSync",
            "createReadStream",
            "createWriteStream",
            "existsSync",
            "lstat",
            "lstatSync",
            "mkdir",
            "mkdirSync",
            "open",
            "openSync",
            "readFile",
            "readFileSync",
            "readdir",
            "readdirSync",
            "realpath",
            "realpathSync",
            "rm",
            "rmSync",
            "stat",
            "statSync",
            "unlink",
            "unlinkSync",
            "watch",
            "writeFile",
            "writeFileSync",
        ],
    ),
    (
        "fs/promises",
        &[
            "access",
            "appendFile",
            "lstat",
            "mkdir",
            "open",
            "readFile",
            "readdir",
            "rm",
            "stat",
            "unlink",
            "writeFile",
        ],
    ),
    ("http2", &["connect", "createServer", "createSecureServer"]),
    ("https", &["createServer", "request", "get", "Agent"]),
    ("inspector", &["open", "close", "url"]),
    ("module", &["createRequire", "builtinModules"]),
    ("net", &["connect", "createConnection", "createServer", "isIP", "isIPv4", "isIPv6", "Socket"]),
    ("readline", &["createInterface"]),
    ("repl", &["start"]),
    ("tls", &["connect", "createServer", "createSecureContext"]),
    ("tty", &["isatty"]),
    ("v8", &["serialize", "deserialize", "getHeapStatistics"]),
    ("vm", &["runInNewContext", "runInThisContext", "createContext", "Script"]),
    ("worker_threads", &["Worker", "isMainThread", "parentPort", "workerData"]),
];

/// The bundle path of the built-in `specifier` names (`node:fs`, or `fs` as CommonJS writes
/// it), if it is one.
pub(crate) fn path_of(specifier: &str) -> Option<String> {
    let name = specifier.strip_prefix("node:").unwrap_or(specifier);
    let known =
        MODULES.iter().any(|(n, _)| *n == name) || UNAVAILABLE.iter().any(|(n, _)| *n == name);
    known.then(|| format!("{PREFIX}{name}.js"))
}

/// A built-in's code, by its bundle path.
pub(crate) struct Builtin {
    pub code: Cow<'static, str>,
}

pub(crate) fn module_of_path(path: &str) -> Option<Builtin> {
    let name = path.strip_prefix(PREFIX)?.strip_suffix(".js")?;
    if let Some((_, code)) = MODULES.iter().find(|(n, _)| *n == name) {
        return Some(Builtin { code: Cow::Borrowed(code) });
    }
    let (_, names) = UNAVAILABLE.iter().find(|(n, _)| *n == name)?;
    Some(Builtin { code: Cow::Owned(unavailable(name, names)) })
}

/// A module whose every export (and every property of its default export) throws, naming
/// the call, when called.
fn unavailable(name: &str, names: &[&str]) -> String {
    let module = crate::commonjs::quote(&format!("node:{name}"));
    let mut code = format!(
        "// {module}: not available in an edge function.\n\
const unavailable = (call) => function () {{\n\
  const error = new Error(`${{{module}}}: ${{call}}() is not available in an edge function`);\n\
  error.code = \"ERR_NOT_AVAILABLE\";\n\
  throw error;\n\
}};\n\
export default new Proxy({{}}, {{ get: (_, call) => (typeof call === \"string\" ? unavailable(call) : undefined) }});\n"
    );
    for export in names {
        code.push_str(&format!("export const {export} = unavailable({:?});\n", export));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_with_and_without_the_prefix() {
        assert_eq!(path_of("node:events").as_deref(), Some("__isola__/node/events.js"));
        assert_eq!(path_of("events").as_deref(), Some("__isola__/node/events.js"));
        assert_eq!(
            path_of("node:timers/promises").as_deref(),
            Some("__isola__/node/timers/promises.js")
        );
        assert_eq!(path_of("node:fs").as_deref(), Some("__isola__/node/fs.js"));
        assert_eq!(path_of("lodash"), None);
        assert!(module_of_path("__isola__/node/fs.js")
            .unwrap()
            .code
            .contains("export const readFileSync"));
        assert!(module_of_path("__isola__/node/buffer.js").is_some());
    }
}

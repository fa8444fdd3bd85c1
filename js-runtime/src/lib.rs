//! One V8 isolate per worker, built on deno_core with the Web APIs of Deno's extension
//! crates and Isola's own extension, started from a snapshot made at build time.
//!
//! This crate knows no sockets, files or config: it takes plain [`WorkerOptions`] and injected
//! services ([`LogSink`]) and runs one function version.

mod code_cache;
mod ext;
mod fetch_policy;
mod limits;
mod loader;
mod runtime;
mod spare;
mod threads;
mod url_ops;
mod wakes;
pub mod websocket;
mod worker;

pub use code_cache::CodeCache;
pub use ext::{
    BindingError, Bindings, BodyChunk, BodyError, CacheError, Event, Failure, Finished,
    HttpResponse, Invocation, InvocationEnd, Level, LogRecord, LogSink, OutboundSpan, Outcome,
    Reply, RequestBody, ResponseBody, ResponseCache, SocketEnds, SocketIn, SocketOut, Work,
    USER_AGENT,
};
pub use fetch_policy::is_public;
pub use limits::Limits;
pub use runtime::{Runtime, RuntimeOptions};
pub use threads::raise_open_files_limit;
pub use worker::{
    compile_modules, EventError, InvokeError, StartError, WorkerHandle, WorkerOptions,
    WorkerServices,
};

/// The startup snapshot: the Web APIs and Isola's runtime, already evaluated.
static SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/SNAPSHOT.bin"));

/// Flags every isolate runs with. V8 caches the strings of small numbers in a table of 128
/// entries that grows, at the first collision, to 8,192 (and 4,096 for other numbers): an
/// allocation of about 100 KB in a page of its own, which cost a function that turned a few
/// numbers into strings as it loaded 0.1–0.2 ms of its cold start, and its isolate the memory.
/// Tables of 1,024 entries cost neither.
const DEFAULT_V8_FLAGS: &[&str] =
    &["--smi-string-cache-size=1024", "--double-string-cache-size=1024"];

/// Passes flags to V8 (`--expose-gc`, say) besides the runtime's own; call before the first
/// isolate is made. For benchmarks and diagnostics; the node adds none.
pub fn set_v8_flags(flags: &[&str]) {
    let mut first = false;
    V8_FLAGS.get_or_init(|| {
        first = true;
        let all: Vec<&str> = DEFAULT_V8_FLAGS.iter().chain(flags).copied().collect();
        let mut args = vec![String::from("isola")];
        args.extend(all.iter().map(|f| f.to_string()));
        let rejected = deno_core::v8_set_flags(args);
        for flag in rejected.iter().skip(1) {
            eprintln!("V8 does not know the flag {flag}");
        }
        all.join(" ")
    });
    if !first && !flags.is_empty() {
        eprintln!("V8's flags were set already; `{}` is ignored", flags.join(" "));
    }
}

static V8_FLAGS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The flags V8 runs with, the runtime's own and any given to [`set_v8_flags`]: V8 code caches
/// are only valid for the same flags.
pub fn v8_flags() -> &'static str {
    set_v8_flags(&[]);
    V8_FLAGS.get().map_or("", String::as_str)
}

/// The version of V8 the runtime embeds; V8 code caches are only valid for the same version.
pub fn v8_version() -> &'static str {
    deno_core::v8::V8::get_version()
}

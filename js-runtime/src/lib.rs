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

/// Passes flags to V8 (`--expose-gc`, say); call before the first isolate is made. For
/// benchmarks and diagnostics; the node sets none.
pub fn set_v8_flags(flags: &[&str]) {
    let _ = V8_FLAGS.set(flags.join(" "));
    let mut args = vec![String::from("isola")];
    args.extend(flags.iter().map(|f| f.to_string()));
    let rejected = deno_core::v8_set_flags(args);
    for flag in rejected.iter().skip(1) {
        eprintln!("V8 does not know the flag {flag}");
    }
}

static V8_FLAGS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The flags given to [`set_v8_flags`] (empty if none): V8 code caches are only valid for the
/// same flags.
pub fn v8_flags() -> &'static str {
    V8_FLAGS.get().map_or("", String::as_str)
}

/// The version of V8 the runtime embeds; V8 code caches are only valid for the same version.
pub fn v8_version() -> &'static str {
    deno_core::v8::V8::get_version()
}

//! Cold start: a new isolate from the startup snapshot, the function's module loaded and
//! evaluated, and its first response received. Prints p50, p90, p99 and max over N starts.
//!
//! Usage: cold-start [N] [--spare] [--fn DIR]  (default 200). With `--spare`, each start takes
//! an isolate made ahead of time (and the bench waits for the next one to be ready before it
//! starts). With `--fn DIR`, the function of that folder instead of hello world. With
//! `--code-cache`, V8's code cache as a node keeps it (the first start fills it).

#[path = "../function_dir.rs"]
mod function_dir;

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bundler::Bundle;
use js_runtime::{LogRecord, LogSink, ResponseBody, WorkerOptions, WorkerServices};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

const HELLO: &str = r#"export default {
  fetch(request, env) {
    return new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } });
  },
};"#;

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    if let Ok(flags) = std::env::var("EDGE_V8_FLAGS") {
        js_runtime::set_v8_flags(&flags.split_whitespace().collect::<Vec<_>>());
    }
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut sources = BTreeMap::new();
    sources.insert("index.js".to_string(), Arc::from(HELLO));
    let own = function_dir::from_args();
    let hello = own.is_none();
    let bundle = own.unwrap_or_else(|| {
        Arc::new(Bundle::from_sources("hello", "index.js", sources).expect("bundle"))
    });
    let cache_dir = tempfile::tempdir().expect("a folder for the code cache");
    let code_cache: Option<Arc<dyn js_runtime::CodeCache>> =
        std::env::args().any(|a| a == "--code-cache").then(|| {
            let store = edge_node::CodeCacheStore::open(cache_dir.path(), 256 * 1024 * 1024)
                .expect("code cache");
            Arc::new(store) as Arc<dyn js_runtime::CodeCache>
        });
    let services =
        WorkerServices { log_sink: Arc::new(Discard), code_cache, bindings: None, cache: None };
    let spare = std::env::args().any(|a| a == "--spare");
    let threads = js_runtime::Runtime::new(js_runtime::RuntimeOptions {
        front_threads: 0,
        spare_isolates: usize::from(spare),
    });
    let memory = js_runtime::Limits::default().memory;
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    rt.block_on(async {
        for i in 0..n + 10 {
            if spare && i > 0 {
                // Measure the start a spare makes possible: wait until one is ready (the
                // first start asks for spares of its memory limit).
                while threads.spares_ready(memory) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let options = WorkerOptions {
                name: Arc::from("hello"),
                bundle: bundle.clone(),
                vars: BTreeMap::new(),
                bindings: BTreeMap::new(),
                region: Arc::from("local"),
                allow_eval: false,
                limits: js_runtime::Limits::default(),
                fetch_allow: Vec::new(),
                enforce_limits: true,
                max_in_flight: 64,
                max_sockets: 1000,
            };
            let started = Instant::now();
            let worker = threads.start(options, services.clone()).await.expect("start");
            let request = http::Request::get("http://localhost/").body(None).expect("request");
            let response =
                worker.invoke(Arc::from(format!("cold-{i}")), request).await.expect("response");
            let elapsed = started.elapsed();
            assert!(
                !hello
                    || matches!(response.body(), ResponseBody::Full(b) if b.as_ref() == b"Hello, world!\n")
            );
            assert_eq!(response.status(), 200);
            drop(worker);
            // Let the dropped isolate's teardown finish: it runs on an isolate thread, which
            // the next start may share, and it is not part of a cold start.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if i >= 10 {
                samples.push(elapsed); // the first 10 warm up the process (page faults, caches)
            }
        }
    });
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold start{} over {n} isolates: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if spare { " from a spare isolate" } else { "" },
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
}

//! Memory per idle isolate and how many idle isolates one process holds: starts N hello-world
//! workers (each serves one request, then idles), then reports the RSS growth per isolate.
//!
//! Usage: isolates [N] [--gc] [--fn DIR]  (default 1000; `--gc`: each isolate runs a full
//! garbage collection after its request, so the figure is after GC; `--fn DIR`: the function
//! of that folder instead of hello world). `ISOLA_V8` in the environment: more V8 flags, for
//! diagnostics (`--trace-gc-object-stats` with `--gc` prints what the heap holds by object
//! type); `ISOLA_HOLD` set: the process stays up after its report, its isolates idle, for
//! reading `/proc/PID/smaps`.

#[path = "../function_dir.rs"]
mod function_dir;

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::collections::BTreeMap;
use std::sync::Arc;

use bundler::Bundle;
use js_runtime::{Limits, LogRecord, LogSink, WorkerOptions, WorkerServices};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let gc = std::env::args().any(|a| a == "--gc");
    // As the node does: every isolate's thread holds file descriptors.
    js_runtime::raise_open_files_limit();
    let extra = std::env::var("ISOLA_V8").unwrap_or_default();
    let mut flags: Vec<&str> = extra.split_whitespace().collect();
    if gc {
        flags.push("--expose-gc");
    }
    js_runtime::set_v8_flags(&flags);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut sources = BTreeMap::new();
    sources.insert(
        "index.js".to_string(),
        Arc::from(
            "export default { fetch() { globalThis.gc?.(); return new Response(`Hello, world! ${typeof gc}\\n`) } }",
        ),
    );
    let bundle = function_dir::from_args().unwrap_or_else(|| {
        Arc::new(Bundle::from_sources("hello", "index.js", sources).expect("bundle"))
    });
    rt.block_on(async move {
        let services = WorkerServices {
            log_sink: Arc::new(Discard),
            code_cache: None,
            bindings: None,
            cache: None,
        };
        let start = |bundle: Arc<Bundle>| WorkerOptions {
            name: Arc::from("hello"),
            bundle,
            vars: BTreeMap::new(),
            bindings: BTreeMap::new(),
            region: Arc::from("local"),
            allow_eval: false,
            limits: Limits::default(),
            fetch_allow: Vec::new(),
            enforce_limits: true,
            max_in_flight: 64,
            max_sockets: 1000,
        };
        let threads = js_runtime::Runtime::default();
        // One first, so the process's fixed costs are not counted per isolate.
        let first = threads.start(start(bundle.clone()), services.clone()).await.expect("start");
        let baseline = rss_bytes();
        let mut workers = vec![first];
        for i in 0..n {
            let worker = match threads.start(start(bundle.clone()), services.clone()).await {
                Ok(w) => w,
                Err(e) => {
                    println!("start {} failed: {e}", i + 1);
                    break;
                }
            };
            let request = http::Request::get("http://localhost/").body(None).expect("request");
            match worker.invoke(Arc::from("warm"), request).await {
                Ok(response) if i == 0 => {
                    if let js_runtime::ResponseBody::Full(body) = response.body() {
                        print!("first answer: {}", String::from_utf8_lossy(body));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    println!("isolate {} did not answer", i + 1);
                    break;
                }
            }
            workers.push(worker);
        }
        let held = workers.len() - 1;
        let grown = rss_bytes().saturating_sub(baseline);
        println!(
            "{held} idle isolates held; RSS grew {:.1} MiB, {:.2} MiB per isolate",
            grown as f64 / (1024.0 * 1024.0),
            grown as f64 / held.max(1) as f64 / (1024.0 * 1024.0)
        );
        let alive = workers.iter().filter(|w| w.is_alive()).count();
        println!("{alive} of {} still alive", workers.len());
        if std::env::var_os("ISOLA_HOLD").is_some() {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

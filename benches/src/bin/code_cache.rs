//! Cold start of a function of about 500 KB of JavaScript, with and without V8's code cache,
//! and lz4 decode time of bundles per MB.
//!
//! Usage: code-cache [N] [--spare]  (default 50 starts per mode). Each start: an isolate from
//! the snapshot (with `--spare`: one made ahead of time, as the node does by default), the
//! modules compiled (or deserialised from the cache) and evaluated, and the first response
//! received. The cache is the one V8 made on the first compilation, kept in memory as the node
//! keeps it; and the first start on a second node that took the pack of caches shipped with
//! the bundle into an empty store.

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bundler::Bundle;
use js_runtime::{CodeCache, LogRecord, LogSink, ResponseBody, WorkerOptions, WorkerServices};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

#[derive(Default)]
struct MemoryCache(Mutex<HashMap<String, Arc<[u8]>>>);
impl CodeCache for MemoryCache {
    fn get(&self, module_hash: &str) -> Option<Arc<[u8]>> {
        self.0.lock().expect("lock").get(module_hash).cloned()
    }
    fn put(&self, module_hash: &str, data: &[u8]) {
        self.0.lock().expect("lock").insert(module_hash.to_string(), Arc::from(data));
    }
}

/// One module of a generated "framework": `functions` small functions, a routing table built at
/// start-up that calls a tenth of them, and a handler that calls a few.
fn module(index: usize, functions: usize) -> String {
    let mut out = String::new();
    for f in 0..functions {
        let _ = writeln!(
            out,
            "export function m{index}_f{f}(input, options = {{}}) {{
  const parts = String(input).split('/').filter(Boolean);
  let score = {f};
  for (const [i, part] of parts.entries()) {{
    score += part.length * (i + 1) + (options.weight ?? 1);
    if (part.startsWith(':')) score -= {index};
  }}
  return {{ name: 'm{index}_f{f}', parts, score, tag: `${{parts.join('-')}}:${{score}}` }};
}}"
        );
    }
    let _ = writeln!(out, "export const table{index} = [");
    for f in (0..functions).step_by(10) {
        let _ = writeln!(out, "  m{index}_f{f}('/api/v{index}/items/:id/{f}'),");
    }
    let _ = writeln!(out, "];");
    out
}

fn bundle(modules: usize, functions: usize) -> Arc<Bundle> {
    let mut sources = BTreeMap::new();
    let mut entry = String::new();
    for m in 0..modules {
        sources.insert(format!("lib/m{m}.js"), Arc::from(module(m, functions)));
        let _ = writeln!(entry, "import * as m{m} from './lib/m{m}.js';");
    }
    let _ = writeln!(
        entry,
        "const modules = [{}];
export default {{
  fetch(request) {{
    let total = 0;
    for (const m of modules) total += m.m0_f0 ? 0 : Object.keys(m).length;
    const r = m0.m0_f1(new URL(request.url).pathname);
    return new Response(`${{r.tag}} ${{total}}`);
  }},
}};",
        (0..modules).map(|m| format!("m{m}")).collect::<Vec<_>>().join(", ")
    );
    sources.insert("index.js".to_string(), Arc::from(entry));
    Arc::new(Bundle::from_sources("big", "index.js", sources).expect("bundle"))
}

async fn cold_start(
    threads: &js_runtime::Runtime,
    bundle: &Arc<Bundle>,
    cache: Option<Arc<dyn CodeCache>>,
    spare: bool,
) -> Duration {
    // The first start asks for spares of its memory limit; later ones wait for one.
    static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let first = FIRST.swap(false, std::sync::atomic::Ordering::Relaxed);
    let memory = js_runtime::Limits::default().memory;
    while spare && !first && threads.spares_ready(memory) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let options = WorkerOptions {
        name: Arc::from("big"),
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
    let services = WorkerServices {
        log_sink: Arc::new(Discard),
        code_cache: cache,
        bindings: None,
        cache: None,
    };
    let started = Instant::now();
    let worker = threads.start(options, services).await.expect("start");
    let request = http::Request::get("http://localhost/a/b").body(None).expect("request");
    let response = worker.invoke(Arc::from("cold"), request).await.expect("response");
    let elapsed = started.elapsed();
    assert!(matches!(response.body(), ResponseBody::Full(b) if b.starts_with(b"a-b:")));
    elapsed
}

fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let spare = std::env::args().any(|a| a == "--spare");
    let threads = js_runtime::Runtime::new(js_runtime::RuntimeOptions {
        front_threads: 0,
        spare_isolates: usize::from(spare),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let big = bundle(20, 70);
    println!(
        "function: {} modules, {} KB of JavaScript",
        big.manifest().modules.len(),
        big.size() / 1000
    );
    let cache = Arc::new(MemoryCache::default());
    rt.block_on(async {
        // Warm the process, and let V8 make the caches.
        for _ in 0..5 {
            cold_start(&threads, &big, None, spare).await;
        }
        cold_start(&threads, &big, Some(cache.clone()), spare).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cached_bytes: usize = cache.0.lock().expect("lock").values().map(|d| d.len()).sum();
        println!(
            "code cache: {} modules, {} KB",
            cache.0.lock().expect("lock").len(),
            cached_bytes / 1000
        );
        // Shipped: the pack `edge-node bundle --code-cache` makes (or a deploying node
        // shares), taken by a second node into an empty store of its own on disk.
        let compiled = Arc::new(edge_node::MemoryCodeCache::default());
        js_runtime::compile_modules(big.clone(), compiled.clone()).expect("compiles");
        let pack = edge_node::pack_code_caches(&big, |h| compiled.get(h)).expect("a pack");
        println!("shipped pack: {} KB", pack.len() / 1000);
        let mut unpack_ms = Vec::new();
        let mut second_node = || {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = edge_node::CodeCacheStore::open(dir.path(), 64 << 20).expect("store");
            let started = Instant::now();
            store.unpack(&big, &pack).expect("the pack is taken");
            unpack_ms.push(started.elapsed());
            (dir, Arc::new(store))
        };
        let mut without = Vec::new();
        let mut with = Vec::new();
        let mut shipped = Vec::new();
        for _ in 0..n {
            without.push(cold_start(&threads, &big, None, spare).await);
            with.push(cold_start(&threads, &big, Some(cache.clone()), spare).await);
            let (_dir, store) = second_node();
            shipped.push(cold_start(&threads, &big, Some(store.clone()), spare).await);
            assert_eq!(store.stats().misses, 0, "the shipped caches were used");
        }
        let (w50, w99) = (percentile(&mut without, 0.5), percentile(&mut without, 0.99));
        let (c50, c99) = (percentile(&mut with, 0.5), percentile(&mut with, 0.99));
        let (s50, s99) = (percentile(&mut shipped, 0.5), percentile(&mut shipped, 0.99));
        let from = if spare { "from a spare isolate" } else { "isolate made on demand" };
        println!("{from}:");
        println!("cold start without code cache: p50 {w50:.2} ms, p99 {w99:.2} ms ({n} starts)");
        println!("cold start with code cache:    p50 {c50:.2} ms, p99 {c99:.2} ms ({n} starts)");
        println!("first start with a shipped one: p50 {s50:.2} ms, p99 {s99:.2} ms ({n} starts)");
        println!("ratio (p50 with / without): {:.2}", c50 / w50);
        println!("ratio (p50 shipped / without): {:.2}", s50 / w50);
        println!(
            "taking the pack (checksums, files written): p50 {:.2} ms",
            percentile(&mut unpack_ms, 0.5)
        );
    });

    // Decoding: lz4 blocks, hashes checked, per MB of code.
    let large = bundle(80, 60);
    let bytes = large.encode();
    let mb = large.size() as f64 / 1e6;
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        let decoded = Bundle::decode(&bytes).expect("decodes");
        assert_eq!(decoded.hash(), large.hash());
    }
    let per_mb = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64 / mb;
    println!(
        "bundle decode: {mb:.2} MB of code in {} KB compressed, {per_mb:.2} ms per MB (SHA-256 checks included)",
        bytes.len() / 1000
    );
}

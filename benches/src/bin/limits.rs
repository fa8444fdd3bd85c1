//! What enforcing limits costs and how precise it is, measured in-process on one worker:
//!
//! 1. Overshoot: a `while (true) {}` handler under a 50 ms CPU limit, 100 runs; how long after
//!    the limit its 503 arrives (p50, p99, max).
//! 2. Throughput: hello-world invocations per second with CPU and wall-time enforcement on
//!    and off, 64 invocations in flight, alternating runs.
//!
//! Usage: limits [seconds-per-throughput-run]  (default 3)

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bundler::Bundle;
use js_runtime::{
    InvokeError, Limits, LogRecord, LogSink, Outcome, WorkerHandle, WorkerOptions, WorkerServices,
};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

const CODE: &str = r#"export default {
  fetch(request) {
    if (request.url.endsWith("/loop")) { while (true) {} }
    return new Response("Hello, world!\n");
  },
};"#;

async fn worker(enforce_limits: bool) -> WorkerHandle {
    let mut sources = BTreeMap::new();
    sources.insert("index.js".to_string(), Arc::from(CODE));
    let bundle = Arc::new(Bundle::from_sources("bench", "index.js", sources).expect("bundle"));
    let options = WorkerOptions {
        name: Arc::from("bench"),
        bundle,
        vars: BTreeMap::new(),
        bindings: BTreeMap::new(),
        region: Arc::from("local"),
        allow_eval: false,
        limits: Limits { cpu_time: Duration::from_millis(50), ..Limits::default() },
        fetch_allow: Vec::new(),
        enforce_limits,
        max_in_flight: 64,
        max_sockets: 1000,
    };
    js_runtime::Runtime::default()
        .start(
            options,
            WorkerServices {
                log_sink: Arc::new(Discard),
                code_cache: None,
                bindings: None,
                cache: None,
            },
        )
        .await
        .expect("start")
}

fn request(path: &str) -> http::Request<js_runtime::RequestBody> {
    http::Request::get(format!("http://localhost{path}")).body(None).expect("request")
}

async fn throughput(enforce: bool, seconds: u64) -> f64 {
    let handle = worker(enforce).await;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (handle, stop, count) = (handle.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if handle.invoke(Arc::from("b"), request("/")).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // warm up
    let start_count = count.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let done = count.load(Ordering::Relaxed) - start_count;
    let rate = done as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    rate
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut overshoot = Vec::new();
        let mut handle = worker(true).await;
        for _ in 0..100 {
            if !handle.is_alive() {
                handle = worker(true).await;
            }
            let started = Instant::now();
            match handle.invoke(Arc::from("loop"), request("/loop")).await {
                Err(InvokeError::Failed(f)) if f.outcome == Outcome::ExceededCpu => {}
                Err(InvokeError::Gone(_)) => continue,
                other => panic!("the loop was not stopped for CPU: {:?}", other.err()),
            }
            overshoot.push(started.elapsed().saturating_sub(Duration::from_millis(50)));
        }
        overshoot.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| overshoot[((overshoot.len() as f64 * q) as usize).min(overshoot.len() - 1)];
        println!(
            "runaway loop, 50 ms CPU limit, {} runs: stopped after the limit by p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            overshoot.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(overshoot[overshoot.len() - 1])
        );

        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            off.push(throughput(false, seconds).await);
            on.push(throughput(true, seconds).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "hello-world invocations/s, 64 in flight, 3 runs of {seconds} s each: limits enforced {:.0}, not enforced {:.0}, ratio {:.3}",
            mean(&on),
            mean(&off),
            mean(&on) / mean(&off)
        );
    });
}

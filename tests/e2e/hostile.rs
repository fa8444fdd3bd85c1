//! A hostile tenant cannot take the node down: WebAssembly streaming, uncaught errors and
//! sabotaged error hooks, capped key derivation, timers left burning after the response, and
//! a start that fails while a dependency is down.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::NodeConfig;
use tests::{curl, function_dir, write_file, CurlResponse, MemorySink, NodeProcess, TestNode};

async fn get(node: &TestNode, path: &str) -> CurlResponse {
    curl("GET", &node.url(path), &[], None).await
}

/// Whether the function logged a record containing `needle` (waiting up to 10 s for it).
fn logged(logs: &MemorySink, needle: &str) -> Option<js_runtime::LogRecord> {
    logs.wait_for(Duration::from_secs(10), |r| r.message.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webassembly_compiles_from_a_response_and_a_wrong_one_is_an_error() {
    let node = TestNode::start(&[function_dir("hostile")]).await;
    let res = get(&node, "/h/wasm-stream").await;
    assert_eq!((res.status, res.text().as_str()), (200, "5 42"));

    let res = get(&node, "/h/wasm-stream-bad").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let lines: Vec<String> = res.text().lines().map(str::to_string).collect();
    assert_eq!(lines[0], "TypeError: Invalid WebAssembly content type");
    assert!(lines[1].starts_with("CompileError: "), "{lines:?}");
    assert!(lines[2].starts_with("TypeError: "), "{lines:?}");

    // The node, and the isolate, are still there.
    let res = get(&node, "/h/wasm-stream").await;
    assert_eq!((res.status, res.text().as_str()), (200, "5 42"));
    node.shutdown().await;
}

/// Starts `count` slow requests (each answering after `ms`) and waits until the function has
/// taken every one: they are in flight on its isolate together.
async fn in_flight(
    node: &TestNode,
    count: usize,
    ms: u64,
) -> Vec<tokio::task::JoinHandle<CurlResponse>> {
    let slow: Vec<_> = (0..count)
        .map(|n| {
            let url = node.url(&format!("/h/slow?n={n}&ms={ms}"));
            tokio::spawn(async move { curl("GET", &url, &[], None).await })
        })
        .collect();
    for n in 0..count {
        assert!(logged(&node.logs, &format!("slow {n} started")).is_some(), "slow {n} never began");
    }
    slow
}

async fn all_answer_200(slow: Vec<tokio::task::JoinHandle<CurlResponse>>) {
    for (n, request) in slow.into_iter().enumerate() {
        let res = request.await.unwrap();
        assert_eq!((res.status, res.text().as_str()), (200, "slow done"), "slow request {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_error_ends_only_the_invocation_it_belongs_to() {
    let node = TestNode::start(&[function_dir("hostile")]).await;
    let slow = in_flight(&node, 4, 3000).await;

    let res = get(&node, "/h/reject").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert!(res.text().starts_with("{\"error\":\"exception\""), "{}", res.text());
    let record = logged(&node.logs, "Uncaught (in promise) Error: x marks the spot")
        .expect("the user's error is in the function's log");
    assert!(record.message.contains("/src/index.js:"), "with the user's stack: {}", record.message);
    assert_eq!(
        record.invocation_id.as_deref(),
        res.header("x-request-id"),
        "logged as the failing invocation's"
    );

    let res = get(&node, "/h/timer-throw").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert!(logged(&node.logs, "Uncaught TypeError: thrown by a timer").is_some());

    // A rejection the function prevents is its own business: no error, the answer stands.
    let res = get(&node, "/h/prevented").await;
    assert_eq!((res.status, res.text().as_str()), (200, "prevented true"));
    assert!(logged(&node.logs, "handled: mine to handle").is_some());
    let uncaught = node.logs.records().into_iter().filter(|r| r.message.contains("mine to handle"));
    assert_eq!(uncaught.count(), 1, "only the function's own line mentions it");

    // The requests in flight beside them all along were not disturbed.
    all_answer_200(slow).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabotaged_error_hooks_do_not_stop_the_isolate() {
    let node = TestNode::start(&[function_dir("hostile")]).await;
    let slow = in_flight(&node, 2, 3000).await;

    let res = get(&node, "/h/sabotage").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert!(logged(&node.logs, "reported on purpose").is_some());
    assert!(logged(&node.logs, "listener sabotaged").is_some());
    assert!(logged(&node.logs, "Uncaught (in promise)").is_some());

    all_answer_200(slow).await;
    let res = get(&node, "/h/wasm-stream").await;
    assert_eq!((res.status, res.text().as_str()), (200, "5 42"), "the same isolate serves on");
    assert_eq!(node.node().cold_starts(), 1, "the isolate was never replaced");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webcrypto_is_bounded_and_charged() {
    let node = TestNode::start(&[function_dir("hostile")]).await;
    let res = get(&node, "/h/pbkdf2?n=1000").await;
    assert_eq!((res.status, res.text().as_str()), (200, "ok 32"));
    let res = get(&node, "/h/pbkdf2?n=100001").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (
            200,
            "NotSupportedError: Pbkdf2 failed: iteration counts above 100000 are not supported (requested 100001)"
        )
    );
    let res = get(&node, "/h/pbkdf2?n=10000000").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (
            200,
            "NotSupportedError: Pbkdf2 failed: iteration counts above 100000 are not supported (requested 10000000)"
        )
    );
    // Eight at once cost more CPU than the invocation's 50 ms, although none of it runs on
    // the isolate's thread: it is charged there all the same.
    let res = get(&node, "/h/pbkdf2-storm").await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.text().starts_with("{\"error\":\"exceeded_cpu\""), "{}", res.text());
    // Hashing is charged the same way: 64 MiB of SHA-512 costs more than 50 ms (uncharged,
    // it answered 200 after 95 ms).
    let res = get(&node, "/h/digest-storm?n=64&mib=1").await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.text().starts_with("{\"error\":\"exceeded_cpu\""), "{}", res.text());
    let res = get(&node, "/h/digest").await;
    assert_eq!((res.status, res.text().as_str()), (200, "ba7816bf"), "a small digest answers");
    node.shutdown().await;
}

// ---- work after the response ----------------------------------------------------------------

/// The CPU time (user and system) process `pid` has used.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux counts these in USER_HZ, 100 a second on every architecture it runs here.
    Duration::from_millis(ticks * 10)
}

/// The CPU process `pid` uses over the next `window` of wall time.
async fn cpu_over(pid: u32, window: Duration) -> Duration {
    let before = cpu_of(pid);
    tokio::time::sleep(window).await;
    cpu_of(pid).saturating_sub(before)
}

/// A node process with the admin API, and the folder its functions are written to.
async fn node_process(root: &Path) -> NodeProcess {
    write_file(
        root,
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n",
    );
    NodeProcess::start(&root.join("node.toml"), &[("EDGE_ADMIN_TOKEN", tests::ADMIN_TOKEN)]).await
}

/// A function that leaves an interval running, busy `busy_ms` of every millisecond.
fn zombie(root: &Path, name: &str, cpu_time: &str) -> PathBuf {
    let code = std::fs::read_to_string(function_dir("hostile").join("src/index.js")).unwrap();
    tests::function_folder(
        root,
        name,
        &format!("/{name}/*"),
        &format!("[limits]\ncpu_time = \"{cpu_time}\"\n"),
        &code.replace("\"/h/\"", &format!("\"/{name}/\"")),
    )
}

async fn admin(node: &NodeProcess, method: &str, path: &str, body: Option<&[u8]>) -> CurlResponse {
    let url = format!("http://{}{path}", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    curl(method, &url, &auth, body).await
}

async fn deploy(node: &NodeProcess, dir: &Path) {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let res =
        admin(node, "PUT", &format!("/v1/functions/{name}"), Some(&tests::bundle_of(dir))).await;
    assert_eq!(res.status, 201, "{}", res.text());
}

#[tokio::test]
async fn a_timer_left_burning_is_stopped_by_its_budget_and_by_delete() {
    let root = tempfile::tempdir().unwrap();
    let node = node_process(root.path()).await;
    let pid = node.child.id().unwrap();
    let idle = cpu_over(pid, Duration::from_millis(500)).await;

    // A budget of 50 ms after each invocation: the interval (40 ms busy a tick) is stopped
    // after a few ticks, and the function's log says why.
    let short = zombie(root.path(), "short", "50ms");
    deploy(&node, &short).await;
    let res = curl("GET", &format!("http://{}/short/zombie?ms=40", node.http), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "zombie set"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = admin(&node, "GET", "/v1/functions/short/logs", None).await.text();
        if logs.contains("work outside any invocation") {
            break;
        }
        assert!(Instant::now() < deadline, "the zombie was not stopped: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = cpu_over(pid, Duration::from_millis(500)).await;
    assert!(after < idle + Duration::from_millis(100), "still burning: {after:?} in 500 ms");

    // A budget of 30 s: the interval (5 ms busy a tick) burns a core until the function is
    // deleted, and not a moment after.
    let long = zombie(root.path(), "long", "30s");
    deploy(&node, &long).await;
    let res = curl("GET", &format!("http://{}/long/zombie?ms=5", node.http), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "zombie set"));
    let burning = cpu_over(pid, Duration::from_millis(500)).await;
    assert!(burning > Duration::from_millis(100), "the zombie should burn: {burning:?}");
    let res = admin(&node, "DELETE", "/v1/functions/long", None).await;
    assert!(res.status < 300, "{} {}", res.status, res.text());
    // At once: the first quiet window begins within a second of the delete.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let after = cpu_over(pid, Duration::from_millis(300)).await;
        if after < idle + Duration::from_millis(60) {
            break;
        }
        assert!(Instant::now() < deadline, "burning after delete: {after:?} in 300 ms");
    }
}

// ---- start failures -------------------------------------------------------------------------

/// A dependency on 127.0.0.1 that answers 503 until `up` is set, then 200 `v1`; counts hits.
async fn dependency(up: Arc<AtomicBool>, hits: Arc<AtomicUsize>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            hits.fetch_add(1, Ordering::SeqCst);
            let answer: &[u8] = if up.load(Ordering::SeqCst) {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nv1"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_failed_on_a_passing_problem_recovers() {
    let up = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let port = dependency(up.clone(), hits.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "flaky",
        "/*",
        "",
        &format!(
            "const res = await fetch('http://127.0.0.1:{port}/config');\n\
             if (!res.ok) throw new Error(`the dependency answered ${{res.status}}`);\n\
             const config = await res.text();\n\
             export default {{ fetch() {{ return new Response(`config ${{config}}`); }} }};\n"
        ),
    );
    let mut config = NodeConfig::default();
    config.fetch.allow = vec![format!("127.0.0.1:{port}")];
    let node = TestNode::start_with(config, &[dir]).await;

    let res = get(&node, "/").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert!(logged(&node.logs, "Error: the dependency answered 503").is_some());
    // Right after a failed start, requests are answered without starting it again.
    let res = get(&node, "/").await;
    assert_eq!(res.status, 500, "{}", res.text());
    let tried = hits.load(Ordering::SeqCst);
    assert!(tried <= 2, "the start was tried {tried} times at once");

    up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = get(&node, "/").await;
        if res.status == 200 {
            assert_eq!(res.text(), "config v1");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {} {}", res.status, res.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}

// ---- memory outside the V8 heap -------------------------------------------------------------

/// The most resident memory process `pid` has had, in bytes.
fn peak_rss_of(pid: u32) -> u64 {
    tests::proc_memory(&pid.to_string(), "VmHWM")
}

/// `size` bytes of zeros, gzipped: a few hundred KiB that inflate to `size`. Made with
/// Python's zlib, an independent encoder.
fn gzip_bomb(size: usize) -> Vec<u8> {
    let script = format!(
        "import sys, zlib\n\
         c = zlib.compressobj(9, zlib.DEFLATED, 31)\n\
         chunk = bytes(1 << 20)\n\
         out = [c.compress(chunk) for _ in range({})]\n\
         out.append(c.flush())\n\
         sys.stdout.buffer.write(b''.join(out))\n",
        size >> 20
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `size` bytes of zeros, Brotli-compressed by Node's own encoder: about 3 KiB for 2 GiB.
fn brotli_bomb(size: usize) -> Vec<u8> {
    let script = format!(
        "const z = require('zlib');\n\
         const c = z.createBrotliCompress({{ params: {{ [z.constants.BROTLI_PARAM_QUALITY]: 5 }} }});\n\
         const out = []; c.on('data', (d) => out.push(d));\n\
         c.on('end', () => process.stdout.write(Buffer.concat(out)));\n\
         const zero = Buffer.alloc(1 << 20); let i = 0;\n\
         function w() {{ while (i < {}) {{ i++; if (!c.write(zero)) {{ c.once('drain', w); return; }} }} c.end(); }}\n\
         w();\n",
        size >> 20
    );
    let out = std::process::Command::new("node").args(["-e", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[tokio::test]
async fn memory_held_outside_the_heap_counts_against_the_limit() {
    const MIB: u64 = 1 << 20;
    let root = tempfile::tempdir().unwrap();
    let node = node_process(root.path()).await;
    let pid = node.child.id().unwrap();
    deploy(&node, &function_dir("membomb")).await;
    let url = |case: &str| format!("http://{}/m/{case}", node.http);
    assert_eq!(curl("GET", &url("ok"), &[], None).await.text(), "ok");
    assert_eq!(
        curl("GET", &url("brotli"), &[], None).await.text(),
        "TypeError: Failed to construct 'DecompressionStream': 'brotli' cannot be inflated in bounded pieces here; use 'gzip', 'deflate' or 'deflate-raw'"
    );
    let bomb = gzip_bomb(2 << 30);
    assert!(bomb.len() < 4 << 20, "the bomb is small: {} bytes", bomb.len());

    let baseline = peak_rss_of(pid);
    let cases = ["encode", "wasm-memory", "blob", "decompress", "decompress-once"];
    for case in cases {
        let body = case.starts_with("decompress").then_some(bomb.as_slice());
        let method = if body.is_some() { "POST" } else { "GET" };
        let res = curl(method, &url(case), &[], body).await;
        assert_eq!(res.status, 503, "{case}: {}", res.text());
        assert!(res.text().starts_with("{\"error\":\"exceeded_memory\""), "{case}: {}", res.text());
        // Within the limit's order of magnitude (64 MiB): never the gigabytes asked for.
        let grown = peak_rss_of(pid).saturating_sub(baseline);
        assert!(grown < 640 * MIB, "{case}: the node's peak RSS grew by {} MiB", grown / MIB);
        assert_eq!(curl("GET", &url("ok"), &[], None).await.text(), "ok", "after {case}");
    }

    // A Brotli bomb through node:zlib, whole and as a stream (a function of its own: the
    // built-ins it imports change when V8 collects, which the cases above depend on).
    deploy(&node, &function_dir("brotlibomb")).await;
    let brotli = brotli_bomb(2 << 30);
    assert!(brotli.len() < 64 << 10, "the Brotli bomb is small: {} bytes", brotli.len());
    let url = |case: &str| format!("http://{}/b/{case}", node.http);
    assert_eq!(
        curl("GET", &url("brotli-streams"), &[], None).await.text(),
        "too many Brotli streams open at once in this isolate"
    );
    for case in ["brotli-sync", "brotli-stream"] {
        let res = curl("POST", &url(case), &[], Some(&brotli)).await;
        assert_eq!(res.status, 503, "{case}: {}", res.text());
        assert!(res.text().starts_with("{\"error\":\"exceeded_memory\""), "{case}: {}", res.text());
        let grown = peak_rss_of(pid).saturating_sub(baseline);
        assert!(grown < 640 * MIB, "{case}: the node's peak RSS grew by {} MiB", grown / MIB);
        assert_eq!(curl("GET", &url("ok"), &[], None).await.text(), "ok", "after {case}");
    }
}

// ---- the hostile-call walk ------------------------------------------------------------------

/// The last few lines a function logged, shortened, for a failure's message.
fn last_lines(logs: &MemorySink) -> Vec<String> {
    let records = logs.records();
    records.iter().rev().take(5).map(|r| r.message.chars().take(300).collect()).collect()
}

/// Methods called per request of the walk.
const WALK_CHUNK: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_global_called_with_hostile_arguments_leaves_the_node_serving() {
    let node = TestNode::start(&[function_dir("walker")]).await;
    let count: serde_json::Value =
        serde_json::from_slice(&get(&node, "/w/count").await.body).unwrap();
    let count = count["count"].as_u64().unwrap() as usize;
    assert!(count > 1000, "the walk reaches only {count} functions");
    let (mut calls, mut stopped) = (0, Vec::new());
    for from in (0..count).step_by(WALK_CHUNK) {
        let to = from + WALK_CHUNK;
        let res = get(&node, &format!("/w/run?from={from}&to={to}")).await;
        match res.status {
            200 => {
                let done: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
                calls += done["calls"].as_u64().unwrap();
            }
            // A call may run into a limit (a huge allocation), which ends the isolate cleanly,
            // or report an error as uncaught (`reportError`), which ends the invocation.
            503 if res.text().starts_with("{\"error\":\"exceeded_") => stopped.push(from),
            500 if res.text().starts_with("{\"error\":\"exception\"") => {}
            status => panic!(
                "functions {from}..{to}: {status} {}; the function's last lines: {:#?}",
                res.text(),
                last_lines(&node.logs)
            ),
        }
        let ok = get(&node, "/w/ok").await;
        assert_eq!(
            (ok.status, ok.text().as_str()),
            (200, "ok"),
            "after functions {from}..{to}; the function's last lines: {:#?}",
            last_lines(&node.logs)
        );
    }
    eprintln!("hostile walk: {count} functions, {calls} calls, limits stopped {stopped:?}");
    assert!(calls > 100_000, "only {calls} calls were made");
    assert!(stopped.len() * 10 < count / WALK_CHUNK, "limits stopped chunks {stopped:?}");
}

// ---- neighbours ----------------------------------------------------------------------------

/// A hostile function at `/{name}/` whose handler runs `body` (and answers if it ends).
fn hostile_function(root: &Path, name: &str, limits: &str, body: &str) -> PathBuf {
    tests::function_folder(
        root,
        name,
        &format!("/{name}/*"),
        &format!("[limits]\n{limits}\n"),
        &format!("export default {{ fetch() {{ {body}\n return new Response('done'); }} }};\n"),
    )
}

/// While a runaway loop, a heap bomb and a JSON bomb are hammered, every request of a
/// well-behaved neighbour is answered 200 (how long they take is measured in
/// benches/neighbours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_answers_every_request_beside_hostile_functions() {
    let root = tempfile::tempdir().unwrap();
    let hostile = [
        hostile_function(root.path(), "spin", "", "while (true) {}"),
        hostile_function(
            root.path(),
            "heap",
            "memory = \"64MiB\"",
            "const a = []; while (true) a.push(new Array(1e5).fill(Math.random()));",
        ),
        hostile_function(
            root.path(),
            "json",
            "",
            "let s = '[]'; for (let i = 0; i < 22; i++) s = `[${s},${s}]`; JSON.parse(s);",
        ),
    ];
    let mut dirs = vec![function_dir("neighbour")];
    dirs.extend(hostile.iter().cloned());
    let node = TestNode::start(&dirs).await;
    let done = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for name in ["spin", "heap", "json"] {
        for _ in 0..2 {
            let (url, done, attacks) =
                (node.url(&format!("/{name}/")), done.clone(), attacks.clone());
            attackers.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let res = curl("GET", &url, &[], None).await;
                    assert_eq!(res.status, 503, "{url}: {}", res.text());
                    attacks.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    // Four clients, each making at least 25 requests and going on until the hostile
    // functions have been stopped 12 times, so the attacks and the requests overlap.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, attacks) = (node.url("/n/work"), attacks.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while statuses.len() < 25
                || (attacks.load(Ordering::Relaxed) < 12 && statuses.len() < 2000)
            {
                statuses.push(curl("GET", &url, &[], None).await.status);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for c in clients {
        statuses.extend(c.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "the neighbour failed {failed} of {} requests", statuses.len());
    assert!(attacks.load(Ordering::Relaxed) >= 12, "the attacks overlapped too little");
    node.shutdown().await;
}

// ---- bindings -------------------------------------------------------------------------------

/// Bindings called with what a hostile function can pass (keys of the wrong type or size,
/// negative and huge limits, values that throw when serialised, oversized records and
/// messages): each call rejects with a clear error, nothing is written, and the node serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_refuse_hostile_arguments_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "binder",
        "/b/*",
        "[bindings]\nFILES = { bucket = \"files\" }\nUSERS = { table = \"users\" }\nJOBS = { queue = \"jobs\" }\n",
        r#"export default { async fetch(request, env) {
  const hostile = { toString() { throw new Error("no string") }, toJSON() { throw new Error("no JSON") } };
  const cases = {
    emptyKey: () => env.FILES.put("", "x"),
    longKey: () => env.FILES.put("k".repeat(1025), "x"),
    objectKey: () => env.FILES.get({ a: 1 }),
    hostileKey: () => env.FILES.delete(hostile),
    negativeLimit: () => env.FILES.list({ limit: -5 }),
    hugeLimit: () => env.USERS.list({ limit: 1e300 }),
    badData: () => env.FILES.put("k", { not: "bytes" }),
    hugeRecord: () => env.USERS.put("k", "x".repeat(1100000)),
    undefinedRecord: () => env.USERS.put("k", undefined),
    hugeMessage: () => env.JOBS.send("x".repeat(200000)),
    hostileMessage: () => env.JOBS.send(hostile),
  };
  const out = {};
  for (const [name, run] of Object.entries(cases)) {
    try { await run(); out[name] = "accepted"; } catch (e) { out[name] = `${e.name}: ${e.message}`; }
  }
  out.listed = (await env.FILES.list()).objects.length + (await env.USERS.list()).records.length;
  return Response.json(out);
} }"#,
    );
    let node = TestNode::start(&[dir]).await;
    let res = get(&node, "/b/").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let out: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    for (case, outcome) in out.as_object().unwrap() {
        if case == "listed" {
            assert_eq!(outcome, 0, "nothing was written");
            continue;
        }
        let outcome = outcome.as_str().unwrap();
        assert!(outcome.contains(": "), "{case}: {outcome}");
        assert_ne!(outcome, "accepted", "{case} was accepted");
    }
    assert_eq!(out["emptyKey"], "Error: a key is 1 to 1024 bytes long");
    assert_eq!(out["longKey"], "Error: a key is 1 to 1024 bytes long");
    assert!(out["hugeRecord"].as_str().unwrap().contains("is at most"), "{out}");
    assert!(out["hugeMessage"].as_str().unwrap().contains("a message is at most"), "{out}");
    // The node and the function serve on.
    assert_eq!(get(&node, "/b/").await.status, 200);
    node.shutdown().await;
}

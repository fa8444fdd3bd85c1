//! Limits hold under repetition and load: memory bombs do not grow the process, and a
//! function killed over and over does not disturb its neighbours.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tests::{function_dir, TestNode};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &HttpClient, url: &str) -> (u16, Bytes) {
    let response = client.get(url.parse().unwrap()).await.expect("the node answers");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_heap_bombs_leave_the_process_as_it_was() {
    // The node in a process of its own, so what is measured is the node, not the other
    // tests running beside this one.
    let root = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/limits-memory");
    tests::copy_dir(&spec, &root.path().join("fns/limits-memory"));
    tests::write_file(
        root.path(),
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[functions]\ndir = \"fns\"\n",
    );
    let node = tests::NodeProcess::start(&root.path().join("node.toml"), &[]).await;
    let pid = node.child.id().unwrap().to_string();
    let rss = || tests::proc_memory(&pid, "VmRSS");
    let client = client();
    let url = |path: &str| format!("http://{}{path}", node.http);
    let bomb = url("/heap");
    for _ in 0..5 {
        assert_eq!(get(&client, &bomb).await.0, 503);
    }
    let baseline = rss();
    for run in 0..100 {
        let (status, body) = get(&client, &bomb).await;
        assert_eq!(status, 503, "run {run}: {body:?}");
        assert!(body.starts_with(b"{\"error\":\"exceeded_memory\""), "run {run}: {body:?}");
    }
    assert_eq!(get(&client, &url("/ok")).await, (200, Bytes::from("ok")));
    let after = rss();
    // Each bomb filled a 64 MiB heap; a leak of even a tenth of that per run would show here.
    let grown = after.saturating_sub(baseline);
    assert!(grown < 200 * 1024 * 1024, "RSS grew by {} MiB over 100 bombs", grown / (1024 * 1024));
    node.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_killed_over_and_over_does_not_disturb_its_neighbour() {
    let node = TestNode::start(&[function_dir("attacker"), function_dir("neighbour")]).await;
    let client = client();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let attack = {
        let (client, url, done, kills) =
            (client.clone(), node.url("/x/loop"), done.clone(), kills.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let (status, body) = get(&client, &url).await;
                assert_eq!(status, 503, "{body:?}");
                kills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // 20 clients, each making at least 25 requests and going on until the attacker has been
    // killed 5 times, so the load and the kills overlap.
    let mut load = Vec::new();
    for _ in 0..20 {
        let (client, url, kills) = (client.clone(), node.url("/n/work"), kills.clone());
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while statuses.len() < 25
                || (kills.load(Ordering::Relaxed) < 5 && statuses.len() < 5000)
            {
                let (status, body) = get(&client, &url).await;
                statuses.push((status, if status == 200 { Default::default() } else { body }));
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for task in load {
        statuses.extend(task.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    attack.await.unwrap();
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "the neighbour failed {} of {} requests: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(kills.load(Ordering::Relaxed) >= 5, "the attacker was killed only {kills:?} times");
    node.shutdown().await;
}

/// A worker's inbox holds at most `max_in_flight` invocations its isolate has not taken: one
/// more is handed straight back (`Gone`), never queued without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_inbox_is_bounded() {
    use js_runtime::{InvokeError, LogRecord, LogSink, WorkerOptions, WorkerServices};
    /// Says when the function logs.
    struct Signal(tokio::sync::mpsc::UnboundedSender<String>);
    impl LogSink for Signal {
        fn log(&self, record: LogRecord) {
            let _ = self.0.send(record.message);
        }
    }
    let mut sources = std::collections::BTreeMap::new();
    // A request keeps the isolate busy, so it takes nothing else for a while.
    sources.insert(
        "index.js".to_string(),
        Arc::from("export default { fetch() { console.log('busy'); const t = Date.now(); while (Date.now() - t < 1000) {} return new Response('done') } }"),
    );
    let bundle = Arc::new(bundler::Bundle::from_sources("busy", "index.js", sources).unwrap());
    let options = WorkerOptions {
        name: Arc::from("busy"),
        bundle,
        vars: Default::default(),
        bindings: Default::default(),
        region: Arc::from("local"),
        allow_eval: false,
        limits: js_runtime::Limits {
            cpu_time: std::time::Duration::from_secs(10),
            ..Default::default()
        },
        fetch_allow: Vec::new(),
        enforce_limits: true,
        max_in_flight: 2,
        max_sockets: 1000,
    };
    let (said, mut logged) = tokio::sync::mpsc::unbounded_channel();
    let services = WorkerServices {
        log_sink: Arc::new(Signal(said)),
        code_cache: None,
        bindings: None,
        cache: None,
    };
    let runtime = js_runtime::Runtime::default();
    let worker = runtime.start(options, services).await.unwrap();
    let request = || http::Request::get("http://localhost/").body(None).unwrap();
    let mut first = Box::pin(worker.invoke(Arc::from("1"), request()));
    assert!(futures_util::poll!(&mut first).is_pending());
    // The isolate has taken the first and is busy with it: two fit in the inbox...
    assert_eq!(logged.recv().await.as_deref(), Some("busy"));
    let mut second = Box::pin(worker.invoke(Arc::from("2"), request()));
    let mut third = Box::pin(worker.invoke(Arc::from("3"), request()));
    assert!(futures_util::poll!(&mut second).is_pending());
    assert!(futures_util::poll!(&mut third).is_pending());
    // ...and a fourth is handed back at once.
    let refused = worker.invoke(Arc::from("4"), request()).await;
    assert!(matches!(refused, Err(InvokeError::Gone(_))), "a fourth was queued");
    for answered in [first.await, second.await, third.await] {
        assert!(answered.is_ok(), "the ones taken and queued run");
    }
}

/// A handler that spends its CPU in pieces, each in a timer's callback or after one, is
/// charged all of them, though other requests of its function begin and answer between the
/// pieces: 60 pieces of about 2 ms each (each under the 50 ms `cpu_time`, together
/// well over it) end it with `exceeded_cpu` while light requests keep coming. The runtime
/// marks the time up to a timer set, and a timer's callback, as the work of the invocation
/// whose async context it runs in; without those marks a piece lands on whichever light
/// request marks next, and the handler answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_split_across_timers_is_charged_to_its_handler_among_other_requests() {
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "halves",
        "/*",
        "[limits]\ncpu_time = \"50ms\"\n",
        r#"const spin = (n) => { let x = 0; for (let i = 0; i < n; i++) x += Math.sqrt(i); return x; };
export default {
  async fetch(request) {
    if (new URL(request.url).pathname !== "/heavy") {
      // Light, but live for a while: without the marks, work nobody marks is shared by
      // the invocations live, so the heavy one would pay a small part of its own.
      await new Promise((r) => setTimeout(r, 10));
      return new Response("light");
    }
    for (let piece = 0; piece < 60; piece++) {
      if (piece % 2 === 0) {
        spin(1e6);
        await new Promise((r) => setTimeout(r, 0));
      } else {
        await new Promise((r) => setTimeout(() => { spin(1e6); r(); }, 0));
      }
    }
    return new Response("done");
  },
};
"#,
    );
    let node = TestNode::start(&[dir]).await;
    let client = client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lights = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..16 {
        let (client, url, stop, lights) =
            (client.clone(), node.url("/light"), stop.clone(), lights.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                get(&client, &url).await;
                lights.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while lights.load(Ordering::Relaxed) < 50 {
        tokio::task::yield_now().await;
    }
    for _ in 0..5 {
        let (status, body) = get(&client, &node.url("/heavy")).await;
        let said = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 503, "{said}");
        assert!(said.contains("exceeded_cpu"), "{said}");
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    node.shutdown().await;
}

/// A node serving `code` as function `name` (`cpu_time` 20 ms) on one isolate at a time, its
/// isolate started by a first request.
async fn on_one_isolate(root: &Path, name: &str, code: &str) -> TestNode {
    let dir = tests::function_folder(root, name, "/*", "[limits]\ncpu_time = \"20ms\"\n", code);
    let mut config = config::NodeConfig::default();
    config.pool.max_isolates_per_function = 1;
    let node = TestNode::start_with(config, &[dir]).await;
    assert_eq!(get(&client(), &node.url("/warm")).await.0, 200);
    node
}

/// The invocations one entry into the isolate runs one after another (all those waiting are
/// taken in one go) are each held to their own CPU time, not to their sum: 24 requests of
/// about 4 ms each, arriving together (about 96 ms in all, over the 20 ms `cpu_time`), all
/// answer 200. When the watchdog counted an entry's budget from its start, it stopped the
/// isolate in the middle of such a batch: the requests in it answered `exceeded_cpu`, and
/// those handed back and stopped again 500 (checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_in_one_entry_are_not_stopped_for_their_sum() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"export default {
  fetch() {
    const t = Date.now();
    while (Date.now() - t < 4) {}
    return new Response("done");
  },
};
"#;
    let node = on_one_isolate(root.path(), "batch", code).await;
    let client = client();
    for _round in 0..3 {
        let requests: Vec<_> = (0..24)
            .map(|_| {
                let (client, url) = (client.clone(), node.url("/work"));
                tokio::spawn(async move { get(&client, &url).await })
            })
            .collect();
        for request in requests {
            let (status, body) = request.await.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
    }
    node.shutdown().await;
}

/// Requests queued on isolates that a runaway request of the same function gets stopped are
/// handed to another isolate; when that one is stopped too before taking them, they answer
/// 503 `load_shed` (the node could not find room for them), not a 500 of the node's, and
/// each is in the function's log. Three runaway loops and twenty light requests at once, on
/// one isolate at a time, a few rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_isolates_are_stopped_twice_answer_503_and_are_logged() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/loop") while (true) {}
    return new Response("light");
  },
};
"#;
    let node = on_one_isolate(root.path(), "runaway", code).await;
    let client = client();
    let mut statuses = std::collections::BTreeMap::new();
    for _round in 0..4 {
        let requests: Vec<_> = ["/loop", "/loop", "/loop"]
            .into_iter()
            .chain(std::iter::repeat_n("/light", 20))
            .map(|path| {
                let (client, url) = (client.clone(), node.url(path));
                tokio::spawn(async move { (path, get(&client, &url).await) })
            })
            .collect();
        for request in requests {
            let (path, (status, body)) = request.await.unwrap();
            let said = String::from_utf8_lossy(&body).to_string();
            assert_ne!(status, 500, "{path}: {said}");
            if path == "/light" && status != 200 {
                assert_eq!(status, 503, "{said}");
            }
            let outcome = if said.contains("load_shed") { "load_shed" } else { "other" };
            *statuses.entry((path, status, outcome)).or_insert(0) += 1;
        }
    }
    // Every request is in the function's log, the refused ones as `load_shed`.
    let shed: usize = statuses
        .iter()
        .filter(|((_, _, outcome), _)| *outcome == "load_shed")
        .map(|(_, n)| n)
        .sum();
    let logged = |outcome: &str| {
        let dir = node.data_dir.join("logs").join("runaway");
        std::fs::read_dir(&dir)
            .map(|files| {
                files
                    .flatten()
                    .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                    .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
                    .filter(|line| line.contains(&format!("\"outcome\":\"{outcome}\"")))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logged("load_shed") < shed && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert!(shed > 0, "no request was handed back twice: {statuses:?}");
    assert_eq!(logged("load_shed"), shed, "{statuses:?}");
    node.shutdown().await;
}

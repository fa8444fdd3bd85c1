//! Observability: /metrics counts every outcome exactly and parses as OpenMetrics (checked by
//! prometheus_client's parser), a live tail sees a request's console lines (also before a CPU
//! kill, also while the request still runs), stored logs answer by invocation, and the
//! dashboard's figures (its pages are tested in dashboard.rs).

use std::path::Path;
use std::time::{Duration, Instant};

use edge_node::AdminClient;
use tests::{curl, function_dir, TestNode, ADMIN_TOKEN};
use tokio::sync::mpsc;

async fn get(node: &TestNode, path: &str) -> tests::CurlResponse {
    curl("GET", &node.url(path), &[], None).await
}

/// The samples of /metrics, parsed by the reference parser.
async fn metrics(node: &TestNode) -> Vec<serde_json::Value> {
    let text = curl("GET", &format!("http://{}/metrics", node.admin.unwrap()), &[], None).await;
    assert_eq!(text.status, 200);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/metrics.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &text.body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "not valid OpenMetrics: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text.text()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_count_each_outcome_exactly() {
    let node = TestNode::start(&[function_dir("outcomes")]).await;
    let plan =
        [("/ok", 7, 200, "ok"), ("/throw", 3, 500, "exception"), ("/spin", 2, 503, "exceeded_cpu")];
    // In this order: 4 ok, 2 spins, 3 throws, 3 ok.
    for (path, times) in [("/ok", 4), ("/spin", 2), ("/throw", 3), ("/ok", 3)] {
        let status = plan.iter().find(|p| p.0 == path).unwrap().2;
        for _ in 0..times {
            assert_eq!(get(&node, path).await.status, status, "{path}");
        }
    }
    let total: f64 = plan.iter().map(|p| f64::from(p.1)).sum();
    // Counts land when an invocation is over, just after its response: poll until all are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut samples = metrics(&node).await;
    while sample(&samples, "edge_invocations_total", &[]) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        samples = metrics(&node).await;
    }
    let f = [("function", "outcomes"), ("node", "local"), ("region", "local")];
    for (path, times, _, outcome) in plan {
        let labels = [f[0], f[1], f[2], ("trigger", "http"), ("outcome", outcome)];
        assert_eq!(sample(&samples, "edge_invocations_total", &labels), f64::from(times), "{path}");
    }
    assert_eq!(sample(&samples, "edge_invocations_total", &[]), total, "no other outcome counted");
    assert_eq!(sample(&samples, "edge_invocation_duration_seconds_count", &f), total);
    assert_eq!(sample(&samples, "edge_invocation_cpu_seconds_count", &f), total);
    let cold = sample(&samples, "edge_cold_starts_total", &f);
    let warm = sample(&samples, "edge_warm_starts_total", &f);
    assert_eq!(cold + warm, total);
    // The first isolate starts with the function, before any request; each spin's CPU kill
    // discards the isolate, so the second spin and the first throw start new ones.
    assert_eq!(cold, 2.0, "cold starts");
    assert!(
        sample(&samples, "edge_invocation_cpu_seconds_sum", &f) >= 2.0 * 0.05,
        "two spins charged"
    );
    assert_eq!(sample(&samples, "edge_isolates", &f), 1.0);
    assert!(sample(&samples, "edge_isolate_memory_bytes", &f) > 1e6);
    node.shutdown().await;
}

/// Follows a function's log through the admin API, passing records on.
fn tail(node: &TestNode, function: &str) -> mpsc::UnboundedReceiver<serde_json::Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client =
        AdminClient::new(&format!("http://{}", node.admin.unwrap()), Some(ADMIN_TOKEN.into()))
            .unwrap();
    let path = format!("/v1/functions/{function}/logs?follow=1");
    tokio::spawn(async move {
        let _ = client
            .follow(&path, |record| {
                let _ = tx.send(record);
            })
            .await;
    });
    rx
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let record = rx.recv().await.expect("the tail goes on");
            if pred(&record) {
                return record;
            }
        }
    })
    .await
    .expect("the tail shows the record")
}

#[tokio::test]
async fn a_tail_sees_console_lines_as_they_are_written() {
    let node = TestNode::start(&[function_dir("outcomes")]).await;
    let mut rx = tail(&node, "outcomes");
    // The tail is subscribed once it answers; a first request proves it.
    let ok = get(&node, "/ok").await;
    let id = ok.header("x-request-id").unwrap().to_string();
    let line = next_matching(&mut rx, |r| r["message"] == "ok line").await;
    assert_eq!(line["invocation_id"], id.as_str());
    assert_eq!(line["level"], "log");
    let summary = next_matching(&mut rx, |r| r["kind"] == "invocation").await;
    assert_eq!(
        (summary["invocation_id"].as_str(), summary["outcome"].as_str()),
        (Some(id.as_str()), Some("ok"))
    );
    assert_eq!(summary["status"], 200);

    // A line written before the CPU limit killed the isolate.
    let spin = get(&node, "/spin").await;
    assert_eq!(spin.status, 503);
    let spin_id = spin.header("x-request-id").unwrap().to_string();
    let line = next_matching(&mut rx, |r| r["message"] == "before the spin").await;
    assert_eq!(line["invocation_id"], spin_id.as_str());
    let summary = next_matching(&mut rx, |r| {
        r["kind"] == "invocation" && r["invocation_id"] == spin_id.as_str()
    })
    .await;
    assert_eq!(summary["outcome"], "exceeded_cpu");

    // A line of a request still running reaches the tail before the response does.
    let url = node.url("/linger");
    let lingering = tokio::spawn(async move { curl("GET", &url, &[], None).await });
    let line = next_matching(&mut rx, |r| r["message"] == "lingering").await;
    assert!(!lingering.is_finished(), "the request is still running");
    let done = lingering.await.unwrap();
    assert_eq!(line["invocation_id"], done.header("x-request-id").unwrap());

    // Stored: the records of one invocation, and long lines cut with a marker.
    let long = get(&node, "/long-line").await;
    let long_id = long.header("x-request-id").unwrap().to_string();
    let client =
        AdminClient::new(&format!("http://{}", node.admin.unwrap()), Some(ADMIN_TOKEN.into()))
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let answer = client
            .call(
                http::Method::GET,
                &format!("/v1/functions/outcomes/logs?invocation={long_id}"),
                None,
            )
            .await
            .unwrap();
        let records = answer["records"].as_array().cloned().unwrap_or_default();
        if records.len() >= 2 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(records.len(), 2, "the line and the summary: {records:?}");
    assert!(records.iter().all(|r| r["invocation_id"] == long_id.as_str()));
    let message = records[0]["message"].as_str().unwrap();
    assert!(message.starts_with(&"y".repeat(10_000)));
    assert!(message.ends_with("… [truncated 15000 characters]"), "{}", &message[9_990..]);
    node.shutdown().await;
}

#[tokio::test]
async fn request_spans_are_exported_over_otlp() {
    let (collector, mut posts) = tests::collector().await;
    let dir = tempfile::tempdir().unwrap();
    tests::write_file(
        dir.path(),
        "node.toml",
        "version = 1\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[functions]\ndir = \"fns\"\n",
    );
    let fixture = function_dir("outcomes");
    for file in ["edge.toml", "index.js"] {
        let text = std::fs::read_to_string(fixture.join(file)).unwrap();
        tests::write_file(dir.path(), &format!("fns/outcomes/{file}"), &text);
    }
    let endpoint = format!("http://{collector}");
    let node = tests::NodeProcess::start(
        &dir.path().join("node.toml"),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let res = curl("GET", &format!("http://{}/ok", node.http), &[], None).await;
    let id = res.header("x-request-id").unwrap().to_string();
    let (path, body) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (path, body) = posts.recv().await.unwrap();
            if body.windows(id.len()).any(|w| w == id.as_bytes()) {
                return (path, body);
            }
        }
    })
    .await
    .expect("the collector receives the request's span");
    assert_eq!(path, "/v1/traces");
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"request") && has(b"outcomes") && has(b"edge-node"),
        "span name, function, service"
    );
    node.kill_9().await;
}

/// A function that logs far more than the node's log takes cannot flood it: the node's log
/// keeps about a megabyte of it, counts what it left out, and says so; the function's own log
/// still has its records.
#[tokio::test]
async fn a_loud_function_cannot_flood_the_node_log() {
    let root = tempfile::tempdir().unwrap();
    tests::write_file(
        root.path(),
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[functions]\ndir = \"fns\"\n",
    );
    tests::function_folder(
        &root.path().join("fns"),
        "loud",
        "/*",
        "[limits]\ncpu_time = \"5s\"\n",
        "export default { fetch() { const line = 'x'.repeat(10000); for (let i = 0; i < 400; i++) console.log(line); return new Response('said'); } }",
    );
    let mut node = tests::NodeProcess::start(
        &root.path().join("node.toml"),
        &[("EDGE_ADMIN_TOKEN", tests::ADMIN_TOKEN)],
    )
    .await;
    // 2 x 400 records of 10,000 characters: 8 MB of output. The node's log is read meanwhile
    // (a pipe nobody reads would hold the node up).
    let url = format!("http://{}/", node.http);
    let requests = tokio::spawn(async move {
        for _ in 0..2 {
            let res = tests::curl("GET", &url, &[], None).await;
            assert_eq!((res.status, res.text().as_str()), (200, "said"));
        }
    });
    node.wait_for_line("records were left out of it").await;
    requests.await.unwrap();
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let admin = node.admin.unwrap();
    let metrics = tests::curl("GET", &format!("http://{admin}/metrics"), &auth, None).await.text();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("edge_function_log_dropped_total{") && l.contains("loud"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count: {metrics}"));
    assert!(dropped >= 600.0, "{dropped} records left out of 800");
    let url = format!("http://{admin}/v1/functions/loud/logs?limit=10");
    let stored: serde_json::Value =
        serde_json::from_slice(&tests::curl("GET", &url, &auth, None).await.body).unwrap();
    let records = stored["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["message"].as_str().is_some_and(|m| m.len() == 10000)));
    let log = node.kill_9().await;
    let bytes: usize = log.iter().map(|l| l.len() + 1).sum();
    assert!(bytes < 2 << 20, "the node logged {bytes} bytes of 8 MB");
}

/// A request with a `traceparent`: the node's exported span continues the caller's trace, and
/// the function's outbound fetch carries the same trace id with a span id of its own, under
/// which it is exported too.
#[tokio::test]
async fn trace_context_is_continued_into_spans_and_outbound_fetches() {
    let (collector, mut posts) = tests::collector().await;
    let dir = tempfile::tempdir().unwrap();
    tests::write_file(
        dir.path(),
        "node.toml",
        "version = 1\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[fetch]\nallow = [\"127.0.0.1\"]\n[functions]\ndir = \"fns\"\n",
    );
    let fns = dir.path().join("fns");
    tests::function_folder(
        &fns,
        "caller",
        "/caller",
        "",
        "export default { async fetch(request) { const url = new URL('/callee', request.url); return new Response(await (await fetch(url)).text()); } }",
    );
    tests::function_folder(
        &fns,
        "callee",
        "/callee",
        "",
        "export default { fetch(request) { return new Response(request.headers.get('traceparent') ?? 'none'); } }",
    );
    let endpoint = format!("http://{collector}");
    let node = tests::NodeProcess::start(
        &dir.path().join("node.toml"),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace}-00f067aa0ba902b7-01");
    let headers = vec![("traceparent".to_string(), incoming.clone())];
    let res = curl("GET", &format!("http://{}/caller", node.http), &headers, None).await;
    let seen = res.text();
    assert!(seen.starts_with(&format!("00-{trace}-")) && seen.ends_with("-01"), "{seen}");
    assert_ne!(seen, incoming, "the outbound request has a span of its own");
    // Without a trace, no traceparent is made up.
    let plain = curl("GET", &format!("http://{}/caller", node.http), &[], None).await;
    assert_eq!(plain.text(), "none");
    // The exported spans carry the caller's trace id (16 raw bytes in OTLP's protobuf).
    let trace_bytes: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap()).collect();
    // The outbound request's span: its span id (protobuf field 2, 8 bytes) is the one its
    // `traceparent` carried, and it is named for the fetch.
    let outbound_id: Vec<u8> =
        (0..8).map(|i| u8::from_str_radix(&seen[36 + 2 * i..38 + 2 * i], 16).unwrap()).collect();
    let outbound_span: Vec<u8> = [0x12, 0x08].iter().chain(&outbound_id).copied().collect();
    let (mut traced, mut outbound) = (false, false);
    let exported = tokio::time::timeout(Duration::from_secs(20), async {
        while !(traced && outbound) {
            let (_, body) = posts.recv().await.unwrap();
            traced |= body.windows(16).any(|w| w == trace_bytes.as_slice());
            outbound |= body.windows(10).any(|w| w == outbound_span.as_slice())
                && body.windows(9).any(|w| w == b"fetch GET");
        }
    })
    .await;
    assert!(traced, "no exported span carries the trace id");
    assert!(outbound, "no span of the outbound request was exported");
    assert!(exported.is_ok());
    node.kill_9().await;
}

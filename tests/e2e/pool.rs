//! Scale to zero: an isolate unused for `idle_timeout` is dropped, and the next request
//! starts a new one.

use std::time::{Duration, Instant};

use tests::{curl, function_dir, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_function_holds_no_isolate_and_the_next_request_is_a_cold_start() {
    let mut config = config::NodeConfig::default();
    config.pool.idle_timeout = Duration::from_millis(300);
    let node = TestNode::start_with(config, &[function_dir("neighbour")]).await;
    assert_eq!(curl("GET", &node.url("/n/1"), &[], None).await.status, 200);
    assert_eq!(node.node().isolates(), 1);
    let starts = node.node().cold_starts();

    let deadline = Instant::now() + Duration::from_secs(10);
    while node.node().isolates() > 0 {
        assert!(Instant::now() < deadline, "the idle isolate was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.node().cold_starts(), starts, "dropping is not starting");

    assert_eq!(curl("GET", &node.url("/n/2"), &[], None).await.status, 200);
    assert_eq!(node.node().isolates(), 1);
    assert_eq!(node.node().cold_starts(), starts + 1, "the next request started a new isolate");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_function_keeps_its_isolate() {
    let mut config = config::NodeConfig::default();
    config.pool.idle_timeout = Duration::from_millis(300);
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    // A request that takes 1.5 s outlives the idle timeout without losing its isolate.
    let res = curl("GET", &node.url("/slow"), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "slow done"));
    assert_eq!(node.node().cold_starts(), 1);
    node.shutdown().await;
}

async fn get_all(node: &TestNode, path: &str, count: usize) -> Vec<tests::CurlResponse> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let url = node.url(path);
        tasks.push(tokio::spawn(async move { curl("GET", &url, &[], None).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_succeed_within_the_isolate_maximum() {
    let mut config = config::NodeConfig::default();
    config.pool.concurrency = 64;
    config.pool.max_isolates_per_function = 4;
    let node = TestNode::start_with(config, &[function_dir("sleepy")]).await;
    let answers = get_all(&node, "/?ms=100", 200).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.text() == "rested"));
    assert!(node.node().cold_starts() <= 4, "{} isolates started", node.node().cold_starts());
    assert!(node.node().isolates() <= 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_maximum_and_the_queue_requests_are_shed() {
    let mut config = config::NodeConfig::default();
    config.pool.concurrency = 1;
    config.pool.max_isolates_per_function = 2;
    config.pool.max_queue = 2;
    config.pool.queue_timeout = Duration::from_secs(10);
    let node = TestNode::start_with(config, &[function_dir("sleepy")]).await;
    let answers = get_all(&node, "/?ms=1000", 20).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let shed: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(ok + shed.len(), 20, "only 200 and 503 answers");
    // Two running and two waiting get through; the rest are shed at once.
    assert!((2..=4).contains(&ok), "{ok} succeeded");
    for a in &shed {
        assert_eq!(a.header("retry-after"), Some("1"));
        assert!(a.text().starts_with("{\"error\":\"load_shed\""), "{}", a.text());
    }
    assert!(node.node().isolates() <= 2);
    node.shutdown().await;
}

fn versioned(dir: &std::path::Path, version: &str) -> edge_node::FunctionSpec {
    let folder = dir.join(version);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("edge.toml"),
        "name = \"app\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n",
    )
    .unwrap();
    let code = format!(
        "export default {{ async fetch(req) {{ if (new URL(req.url).pathname === '/slow') {{ console.log('in flight'); await new Promise((r) => setTimeout(r, 1000)); }} return new Response('{version}'); }} }}"
    );
    std::fs::write(folder.join("index.js"), code).unwrap();
    edge_node::FunctionSpec::load(&folder, &config::LimitsConfig::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_lets_requests_in_flight_finish_on_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_specs(vec![versioned(dir.path(), "v1")]).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let url = node.url("/slow");
        slow.push(tokio::spawn(async move { curl("GET", &url, &[], None).await }));
    }
    // Wait until all 50 are running in the old version, then deploy v2.
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.logs.records().iter().filter(|r| r.message == "in flight").count() < 50 {
        assert!(Instant::now() < deadline, "the 50 requests did not all reach v1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.node().replace_functions(vec![versioned(dir.path(), "v2")]).await;
    assert_eq!(
        curl("GET", &node.url("/"), &[], None).await.text(),
        "v2",
        "new requests get v2 at once"
    );
    for task in slow {
        let res = task.await.unwrap();
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, "v1"),
            "a request in flight was cut off"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_hello_naming_a_function_starts_its_isolate() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("app");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("edge.toml"),
        "name = \"app\"\nentry = \"index.js\"\nroutes = [\"app.test/*\"]\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("index.js"),
        "export default { fetch() { return new Response('app') } }",
    )
    .unwrap();
    let mut config = config::NodeConfig::default();
    config.pool.idle_timeout = Duration::from_millis(200);
    let node = TestNode::start_tls(config, &[folder], false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.node().isolates() > 0 {
        assert!(Instant::now() < deadline, "the idle isolate was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let starts = node.node().cold_starts();

    // Only a ClientHello for app.test: the client trusts nothing, so the handshake fails and
    // no request is ever sent.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(node.https.unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
    assert!(connector.connect(name, tcp).await.is_err(), "the handshake cannot succeed");

    let deadline = Instant::now() + Duration::from_secs(10);
    while node.node().isolates() == 0 {
        assert!(Instant::now() < deadline, "the ClientHello did not pre-warm the function");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.node().cold_starts(), starts + 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_memory_pressure_the_least_recently_used_idle_isolate_goes_first() {
    let mut config = config::NodeConfig::default();
    // Room for two isolates of 128 MiB; three functions want one each.
    config.pool.memory_budget = 2 * 128 * 1024 * 1024;
    let node = TestNode::start_with(
        config,
        &[function_dir("iso-a"), function_dir("iso-b"), function_dir("neighbour")],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // iso-b and neighbour stay in use; iso-a is used by nobody.
        assert_eq!(curl("GET", &node.url("/b/"), &[], None).await.status, 200);
        assert_eq!(curl("GET", &node.url("/n/x"), &[], None).await.status, 200);
        if node.node().isolates() <= 2 && node.node().isolates_of("iso-a") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "iso-a kept its isolate: {} isolates",
            node.node().isolates()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.node().isolates_of("iso-b"), 1);
    assert_eq!(node.node().isolates_of("neighbour"), 1);
    node.shutdown().await;
}

/// Threads of a process, by name.
fn threads_of(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

const WAIT_AND_SPIN: &str = r#"
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/spin") {
      console.log("spinning");
      const until = Date.now() + 1500;
      while (Date.now() < until) {}
      return new Response("spun");
    }
    // Long enough that all forty requests arrive while the first still waits, even when
    // starting isolates holds up the threads serving the connections.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    return new Response("waited");
  },
};
"#;

/// Every isolate has a thread of its own, which ends with it (so a busy isolate holds up no
/// other); connections are served on the fixed set of front threads (`[pool] threads`); while
/// isolates are busy the admin API and the metrics answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_isolates_have_a_thread_each_and_the_admin_api_never_waits() {
    let root = tempfile::tempdir().unwrap();
    let toml = "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[functions]\ndir = \"fns\"\n[pool]\nthreads = 2\nconcurrency = 1\nmax_isolates_per_function = 48\nidle_timeout = \"2s\"\n";
    tests::write_file(root.path(), "node.toml", toml);
    tests::write_file(
        root.path(),
        "fns/w/edge.toml",
        "name = \"w\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n[limits]\ncpu_time = \"5s\"\n",
    );
    tests::write_file(root.path(), "fns/w/index.js", WAIT_AND_SPIN);
    let mut node = tests::NodeProcess::start(
        &root.path().join("node.toml"),
        &[("EDGE_ADMIN_TOKEN", "pool-token")],
    )
    .await;
    let pid = node.child.id().unwrap();
    let named =
        |threads: &[String], prefix: &str| threads.iter().filter(|n| n.starts_with(prefix)).count();

    let http = node.http;
    let waits: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move { curl("GET", &format!("http://{http}/"), &[], None).await })
        })
        .collect();
    let metrics_url = format!("http://{}/metrics", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), "Bearer pool-token".to_string())];
    let isolates = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("edge_isolates{") && l.contains("function=\"w\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = 0.0;
    while held < 40.0 && Instant::now() < deadline {
        held = isolates(&curl("GET", &metrics_url, &auth, None).await.text());
    }
    assert!(held >= 40.0, "forty concurrent requests at concurrency 1 hold forty isolates: {held}");
    let during = threads_of(pid);
    assert!(named(&during, "isolate-") >= 40, "an isolate thread each: {during:?}");
    assert_eq!(named(&during, "front-"), 2, "the front threads: {during:?}");
    for w in waits {
        let res = w.await.unwrap();
        assert_eq!((res.status, res.text().as_str()), (200, "waited"));
    }

    // Busy isolates on both threads: the admin API and metrics answer regardless.
    let spins: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(
                async move { curl("GET", &format!("http://{http}/spin"), &[], None).await },
            )
        })
        .collect();
    for _ in 0..4 {
        node.wait_for_line("spinning").await;
    }
    for path in ["/metrics", "/v1/functions"] {
        let url = format!("http://{}{path}", node.admin.unwrap());
        let res = curl("GET", &url, &auth, None).await;
        assert_eq!(res.status, 200, "{path}");
        // How long it takes is measured in benches/ (neighbours); here: before the spins end.
        assert!(!spins.iter().all(|s| s.is_finished()), "{path} waited behind busy isolates");
    }
    for s in spins {
        let res = s.await.unwrap();
        assert_eq!((res.status, res.text().as_str()), (200, "spun"));
    }

    // Idle isolates are dropped after `idle_timeout`, and their threads end with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = named(&threads_of(pid), "isolate-");
        if left <= 2 {
            break; // the spare isolates' threads
        }
        assert!(Instant::now() < deadline, "{left} isolate threads are left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill_9().await;
}

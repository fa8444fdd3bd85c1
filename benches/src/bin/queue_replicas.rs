//! Queue throughput through JetStream with every stream replicated 3 times vs once, side by
//! side: for each round and each replica count, three nats-servers forming one cluster on
//! loopback (fresh storage) and one node (in-process, release build) with `[cluster]
//! replicas` set, sending MESSAGES messages of 1 KB through its queue API in batches of 500
//! while a no-op consumer (batches of 100) drains them. Reported per round: send rate (each
//! batch acknowledged by JetStream, so stored on a majority of the replicas) and messages
//! consumed per second from the first send until the queue is empty.
//!
//! Usage: queue-replicas [MESSAGES] [ROUNDS]  (defaults 10000 and 3). Needs `nats-server` on
//! PATH (scripts/test installs it).

#[path = "../function_folder.rs"]
mod function_folder;

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::{Encoding, Node, NodeOptions};
use function_folder::function;
use js_runtime::{LogRecord, LogSink};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Three nats-servers in one cluster, killed when dropped.
struct NatsCluster {
    children: Vec<std::process::Child>,
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all_routes =
            routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let children = (0..3)
            .map(|i| {
                std::process::Command::new("nats-server")
                    .args(["-js", "-a", "127.0.0.1", "-p", &clients[i].to_string()])
                    .args(["-n", &format!("n{i}"), "--cluster_name", "bench"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                    .args(["--routes", &all_routes, "-sd"])
                    .arg(dir.path().join(format!("n{i}")))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("nats-server on PATH")
            })
            .collect();
        for port in &clients {
            let until = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < until, "nats-server did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let url = clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>();
        NatsCluster { children, url: url.join(","), _dir: dir }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One node on a fresh three-server cluster with `replicas`; answers (send rate, consume
/// rate) in messages per second.
async fn round(replicas: usize, messages: usize) -> (f64, f64) {
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().expect("tempdir");
    let consumer = function(
        root.path(),
        "consumer",
        "name = \"consumer\"\nentry = \"index.js\"\n[[triggers.queue]]\nqueue = \"bench\"\nmax_batch_size = 100\nmax_batch_timeout = \"5ms\"\n",
        "export default { async queue(batch) {} }",
    );
    let mut config = config::NodeConfig::default();
    config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    config.admin.listen = Vec::new();
    config.node.data_dir = root.path().join("data");
    config.cluster = Some(config::ClusterConfig {
        nats_url: nats.url.clone(),
        replicas: Some(replicas),
        ..Default::default()
    });
    let node = Node::start(NodeOptions {
        config,
        functions: vec![consumer],
        log_sink: Arc::new(Discard),
        tls: None,
        deployments: false,
        admin_token: None,
    })
    .await
    .expect("node");
    let node = Arc::new(node);
    let body = format!("\"{}\"", "x".repeat(1022)).into_bytes();
    // The node joins the cluster in the background: the first send waits for it.
    let until = Instant::now() + Duration::from_secs(60);
    while node.send("bench", Encoding::Json, vec![body.clone()]).await.is_err() {
        assert!(Instant::now() < until, "the node never reached the cluster");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while node.queue_depth("bench").await.expect("stats") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for _ in 0..messages / 500 {
        let batch: Vec<Vec<u8>> = (0..500).map(|_| body.clone()).collect();
        node.send("bench", Encoding::Json, batch).await.expect("send");
    }
    let sent_in = started.elapsed();
    while node.queue_depth("bench").await.expect("stats") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_in = started.elapsed();
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
    let n = (messages / 500 * 500) as f64;
    (n / sent_in.as_secs_f64(), n / drained_in.as_secs_f64())
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("{messages} messages of 1 KB per run, three nats-servers, one node");
    rt.block_on(async move {
        for r in 1..=rounds {
            let (send1, consume1) = round(1, messages).await;
            let (send3, consume3) = round(3, messages).await;
            println!(
                "round {r}: replicas 1: sent {send1:.0}/s, consumed {consume1:.0}/s | replicas 3: sent {send3:.0}/s, consumed {consume3:.0}/s | ratio 3/1: send {:.2}, consume {:.2}",
                send3 / send1,
                consume3 / consume1
            );
        }
    });
}

//! Queue throughput and cron firing delay on one node (in-process, release build).
//!
//! Usage: triggers [MESSAGES] [CRON_SECONDS]  (defaults 20000 and 30).
//! Queue: MESSAGES messages of 1 KB are sent through the node's queue API in batches of 500
//! while a no-op consumer (batches of 100) drains them; reported: send rate, and messages
//! consumed per second from the first send until the queue is empty.
//! Cron: a schedule firing every second runs for CRON_SECONDS; reported: p50/p99/max of the
//! delay between the due second and the start of the run.

#[path = "../function_folder.rs"]
mod function_folder;

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::Encoding;
use edge_node::{Node, NodeOptions};
use function_folder::function;
use js_runtime::{LogRecord, LogSink};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let cron_seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let root = tempfile::tempdir().expect("tempdir");
        let consumer = function(
            root.path(),
            "consumer",
            "name = \"consumer\"\nentry = \"index.js\"\n[[triggers.queue]]\nqueue = \"bench\"\nmax_batch_size = 100\nmax_batch_timeout = \"5ms\"\n",
            "export default { async queue(batch) {} }",
        );
        let ticker = function(
            root.path(),
            "ticker",
            "name = \"ticker\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"* * * * * *\"\n",
            "export default { async scheduled(event) {} }",
        );
        let mut config = config::NodeConfig::default();
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.admin.listen = Vec::new();
        config.node.data_dir = root.path().join("data");
        let node = Node::start(NodeOptions {
            config,
            functions: vec![consumer, ticker],
            log_sink: Arc::new(Discard),
            tls: None,
            deployments: false,
            admin_token: None,
        })
        .await
        .expect("node");
        let node = Arc::new(node);

        let body = format!("\"{}\"", "x".repeat(1022));
        let started = Instant::now();
        let sender = {
            let node = node.clone();
            let body = body.clone();
            tokio::spawn(async move {
                for _ in 0..messages / 500 {
                    let batch: Vec<Vec<u8>> = (0..500).map(|_| body.clone().into_bytes()).collect();
                    node.send("bench", Encoding::Json, batch).await.expect("send");
                }
                started.elapsed()
            })
        };
        let sent_in = sender.await.expect("sender");
        while node.queue_depth("bench").await.expect("stats") > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained_in = started.elapsed();
        let n = (messages / 500 * 500) as f64;
        println!(
            "queue: {n} messages of 1 KB: sent at {:.0}/s (batches of 500, each synced), consumed at {:.0}/s (first send to empty queue, batches of 100)",
            n / sent_in.as_secs_f64(),
            n / drained_in.as_secs_f64()
        );

        tokio::time::sleep(Duration::from_secs(cron_seconds)).await;
        let mut delays: Vec<u64> = node
            .cron_runs("ticker")
            .iter()
            .filter(|r| r.outcome == "ok")
            .map(|r| r.started_ms.saturating_sub(r.scheduled_ms))
            .collect();
        delays.sort_unstable();
        let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
        println!(
            "cron: {} runs of an every-second schedule: delay after the due second p50 {} ms, p99 {} ms, max {} ms",
            delays.len(),
            at(0.5),
            at(0.99),
            delays[delays.len() - 1]
        );
        if let Ok(node) = Arc::try_unwrap(node) {
            node.shutdown().await;
        }
    });
}

//! How soon a function hears that its client left: a node in-process serving a function
//! that streams a chunk every 2 ms (each after 1 ms of CPU work) and logs when
//! `request.signal` aborts and when its stream stops producing. A client reads the first
//! chunk and leaves (HTTP/1.1: closes the connection; HTTP/2: resets the stream on a
//! connection it keeps). Prints, per protocol, the time from the client leaving to the abort
//! listener running and to the stream's last work (p50, p99, max), from the log records'
//! own timestamps.
//!
//! Usage: abort [rounds]  (default 200)

#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use js_runtime::{LogRecord, LogSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const FUNCTION: &str = r#"export default {
  async fetch(request) {
    const id = new URL(request.url).searchParams.get("id");
    const signal = request.signal;
    signal.addEventListener("abort", () => console.log(`aborted ${id}`));
    let n = 0;
    let stopped = false;
    const stop = () => { if (!stopped) { stopped = true; console.log(`stopped ${id}`); } };
    return new Response(new ReadableStream({
      async pull(controller) {
        if (signal.aborted) { stop(); controller.close(); return; }
        await new Promise((r) => setTimeout(r, 2));
        const t = Date.now(); while (Date.now() - t < 1) {}
        controller.enqueue(new TextEncoder().encode(`${n++}\n`));
      },
      cancel: stop,
    }));
  },
};"#;

struct Records(mpsc::UnboundedSender<LogRecord>);
impl LogSink for Records {
    fn log(&self, record: LogRecord) {
        let _ = self.0.send(record);
    }
}

/// Waits for the records `aborted ID` and `stopped ID`; their timestamps.
async fn heard(
    records: &mut mpsc::UnboundedReceiver<LogRecord>,
    id: usize,
) -> (SystemTime, SystemTime) {
    let (aborted, stopped) = (format!("aborted {id}"), format!("stopped {id}"));
    let (mut a, mut s) = (None, None);
    while a.is_none() || s.is_none() {
        let record = tokio::time::timeout(Duration::from_secs(10), records.recv())
            .await
            .expect("the function heard the client leave within 10 s")
            .expect("the node logs");
        if record.message == aborted {
            a = Some(record.ts);
        } else if record.message == stopped {
            s = Some(record.ts);
        }
    }
    (a.unwrap(), s.unwrap())
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!("| {label} | {} | {:.2} | {:.2} | {:.2} |", ms.len(), at(0.5), at(0.99), at(1.0));
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let root = tempfile::tempdir().expect("a folder");
        let dir = root.path().join("leaving");
        std::fs::create_dir_all(&dir).expect("a function folder");
        std::fs::write(
            dir.join("edge.toml"),
            "name = \"leaving\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n",
        )
        .expect("edge.toml");
        std::fs::write(dir.join("index.js"), FUNCTION).expect("index.js");
        let mut config = config::NodeConfig::default();
        config.http.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
        config.node.data_dir = root.path().join("data");
        let functions =
            vec![edge_node::FunctionSpec::load(&dir, &config.limits).expect("the function")];
        let (tx, mut records) = mpsc::unbounded_channel();
        let node = edge_node::Node::start(edge_node::NodeOptions {
            config,
            functions,
            log_sink: Arc::new(Records(tx)),
            tls: None,
            deployments: false,
            admin_token: None,
        })
        .await
        .expect("the node starts");
        let addr = node.http_addrs()[0];
        let ms = |from: SystemTime, to: SystemTime| {
            to.duration_since(from).unwrap_or_default().as_secs_f64() * 1000.0
        };

        let (mut abort, mut stop) = (Vec::new(), Vec::new());
        for id in 0..rounds {
            let mut socket = tokio::net::TcpStream::connect(addr).await.expect("a connection");
            let ask = format!("GET /?id={id} HTTP/1.1\r\nHost: a\r\n\r\n");
            socket.write_all(ask.as_bytes()).await.expect("the request goes");
            let mut buf = [0u8; 512];
            let _ = socket.read(&mut buf).await.expect("the first chunk");
            let left = SystemTime::now();
            drop(socket);
            let (a, s) = heard(&mut records, id).await;
            abort.push(ms(left, a));
            stop.push(ms(left, s));
        }
        println!("| client leaves | rounds | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        summary("HTTP/1.1 close: abort listener ran", abort);
        summary("HTTP/1.1 close: stream's last work", stop);

        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<Empty<Bytes>>();
        let (mut abort, mut stop) = (Vec::new(), Vec::new());
        for id in rounds..2 * rounds {
            let url = format!("http://{addr}/?id={id}").parse().expect("a URL");
            let response = client.get(url).await.expect("a response");
            let mut body = response.into_body();
            let _ = body.frame().await.expect("the first chunk");
            let left = SystemTime::now();
            drop(body); // RST_STREAM; the connection stays
            let (a, s) = heard(&mut records, id).await;
            abort.push(ms(left, a));
            stop.push(ms(left, s));
        }
        summary("HTTP/2 reset: abort listener ran", abort);
        summary("HTTP/2 reset: stream's last work", stop);
        node.shutdown().await;
    });
}

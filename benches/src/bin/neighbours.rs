//! How long a well-behaved function waits while hostile or heavy functions run on the same
//! node: a node in-process with a neighbour (a timer and a SHA-256 digest per request) and one
//! hostile function at a time, attacked by concurrent clients while 4 clients request the
//! neighbour one request after another. Prints the neighbour's p50, p99 and max latency and
//! its share of 200s under each load, and alone first.
//!
//! Usage: neighbours [seconds-per-case]  (default 5)

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use js_runtime::{LogRecord, LogSink};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

const NEIGHBOUR: &str = r#"export default {
  async fetch(request) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(request.url));
    return new Response(String(new Uint8Array(digest)[0]));
  },
};"#;

/// The hostile loads: name, edge.toml's `[limits]`, the handler's body, attacking clients.
const CASES: [(&str, &str, &str, usize); 5] = [
    ("cpu-loop", "", "while (true) {}", 8),
    (
        "heap-bomb",
        "memory = \"64MiB\"",
        "const a = []; while (true) a.push(new Array(1e5).fill(Math.random()));",
        8,
    ),
    (
        "json-bomb",
        "",
        "let s = '[]'; for (let i = 0; i < 22; i++) s = `[${s},${s}]`; return new Response(String(JSON.parse(s).length));",
        8,
    ),
    ("cpu-4s", "cpu_time = \"4s\"", "const t = Date.now(); while (Date.now() - t < 3500) {}", 2),
    ("busy-40ms", "", "const t = Date.now(); while (Date.now() - t < 40) {}", 64),
];

fn write_function(root: &Path, name: &str, limits: &str, body: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("a function folder");
    let edge = format!(
        "name = \"{name}\"\nentry = \"index.js\"\nroutes = [\"/{name}/*\"]\n[limits]\n{limits}\n"
    );
    std::fs::write(dir.join("edge.toml"), edge).expect("edge.toml");
    let code = if body.contains("return ") {
        format!("export default {{ fetch() {{ {body} }} }};\n")
    } else {
        format!("export default {{ fetch() {{ {body}\n return new Response('done'); }} }};\n")
    };
    std::fs::write(dir.join("index.js"), code).expect("index.js");
    dir
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> u16 {
    match client.get(url.parse().expect("a URL")).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

/// The neighbour's latencies and statuses over `seconds`, with `attackers` clients hitting
/// `attack` meanwhile (none when `attack` is `None`).
async fn measure(
    client: &HttpClient,
    base: &str,
    attack: Option<(&str, usize)>,
    seconds: u64,
) -> (Vec<Duration>, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    if let Some((name, count)) = attack {
        for _ in 0..count {
            let (client, url, stop) = (client.clone(), format!("{base}/{name}/"), stop.clone());
            attackers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    get(&client, &url).await;
                }
            }));
        }
        // Let the attack get going (and the hostile function start) first.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let samples = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, samples) = (client.clone(), format!("{base}/n/x"), samples.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let status = get(&client, &url).await;
                let took = started.elapsed();
                let mut samples = samples.lock().expect("samples");
                samples.0.push(took);
                if status != 200 {
                    samples.1 += 1;
                }
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    let (mut latencies, failed) = std::mem::take(&mut *samples.lock().expect("samples"));
    latencies.sort();
    (latencies, failed)
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let root = tempfile::tempdir().expect("a folder");
        let mut config = config::NodeConfig::default();
        config.http.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
        config.node.data_dir = root.path().join("data");
        let mut dirs = vec![write_function(root.path(), "n", "", "")];
        std::fs::write(dirs[0].join("index.js"), NEIGHBOUR).expect("the neighbour");
        for (name, limits, body, _) in CASES {
            dirs.push(write_function(root.path(), name, limits, body));
        }
        let functions = dirs
            .iter()
            .map(|d| edge_node::FunctionSpec::load(d, &config.limits).expect("a function"))
            .collect();
        let node = edge_node::Node::start(edge_node::NodeOptions {
            config,
            functions,
            log_sink: Arc::new(Discard),
            tls: None,
            deployments: false,
            admin_token: None,
        })
        .await
        .expect("the node starts");
        let base = format!("http://{}", node.http_addrs()[0]);
        let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        get(&client, &format!("{base}/n/x")).await;

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("| load on the node | neighbour requests | 200s | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        let loads = std::iter::once(("alone", None))
            .chain(CASES.iter().map(|(name, _, _, n)| (*name, Some((*name, *n)))));
        for (label, attack) in loads {
            let (latencies, failed) = measure(&client, &base, attack, seconds).await;
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            let attackers = attack.map_or(String::new(), |(_, n)| format!(" ({n} clients)"));
            println!(
                "| {label}{attackers} | {} | {:.1}% | {:.1} | {:.1} | {:.1} |",
                latencies.len(),
                100.0 * (latencies.len() - failed) as f64 / latencies.len() as f64,
                ms(at(0.5)),
                ms(at(0.99)),
                ms(latencies[latencies.len() - 1]),
            );
        }
        node.shutdown().await;
    });
}

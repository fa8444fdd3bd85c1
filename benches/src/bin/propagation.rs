//! Deploy propagation in a cluster: three `edge-node serve` processes (release build) on one
//! nats-server (JetStream), on loopback. Each round deploys a new version through node A's
//! admin API and times, from the upload's start, until nodes B and C each answer with the new
//! version. Prints p50, p99 and max over the rounds, for B and C together.
//!
//! Usage: propagation [ROUNDS]  (default 50). Needs `nats-server` on PATH (scripts/test
//! installs it) and the release `edge-node` beside this binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The body of `GET /` from 127.0.0.1:`port`, or `None` if the node does not answer yet.
fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Killed(Vec<std::process::Child>);
impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let root = tempfile::tempdir().expect("tempdir");
    let bin = std::env::current_exe().expect("exe").with_file_name("edge-node");
    let nats_port = free_port();
    let mut children = Killed(Vec::new());
    children.0.push(
        std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &nats_port.to_string(), "-sd"])
            .arg(root.path().join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH"),
    );
    wait_until("nats-server starts", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", nats_port)).is_ok()
    });
    let token = "bench-token";
    let mut http = Vec::new();
    let admin_port = free_port();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let port = free_port();
        http.push(port);
        let admin = if i == 0 { format!("[\"127.0.0.1:{admin_port}\"]") } else { "[]".into() };
        let toml = format!(
            "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = {admin}\n[cluster]\nnats_url = \"nats://127.0.0.1:{nats_port}\"\n"
        );
        let path = root.path().join(format!("{id}.toml"));
        std::fs::write(&path, toml).expect("node.toml");
        children.0.push(
            std::process::Command::new(&bin)
                .args(["serve", "--config"])
                .arg(&path)
                .env("EDGE_ADMIN_TOKEN", token)
                .env("EDGE_SECRETS_KEY", "ab".repeat(32))
                .env("EDGE_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("edge-node beside this binary"),
        );
    }
    for port in &http {
        wait_until("a node starts", Duration::from_secs(30), || get(*port).is_some());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client =
        edge_node::AdminClient::new(&format!("http://127.0.0.1:{admin_port}"), Some(token.into()))
            .expect("client");
    let bundle = |version: usize| {
        let code =
            format!("export default {{ fetch() {{ return new Response('version {version}') }} }}");
        let sources = BTreeMap::from([("index.js".to_string(), Arc::<str>::from(code))]);
        let edge = "name = \"app\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n".to_string();
        bundler::Bundle::from_sources("app", "index.js", sources)
            .expect("bundle")
            .with_config(edge)
            .encode()
    };
    // One deploy first, so every node has joined and serves the function.
    rt.block_on(client.upload("/v1/functions/app", bundle(0).into(), None)).expect("first deploy");
    for port in &http[1..] {
        wait_until("the first deploy reaches every node", Duration::from_secs(30), || {
            get(*port).as_deref() == Some("version 0")
        });
    }
    let mut samples = Vec::new();
    for round in 1..=rounds {
        let bytes = bundle(round);
        let expected = format!("version {round}");
        let started = Instant::now();
        rt.block_on(client.upload("/v1/functions/app", bytes.into(), None)).expect("deploy");
        let mut pending: Vec<u16> = http[1..].to_vec();
        while !pending.is_empty() {
            pending.retain(|port| {
                if get(*port).as_deref() == Some(expected.as_str()) {
                    samples.push(started.elapsed());
                    false
                } else {
                    true
                }
            });
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round} never reached every node"
            );
        }
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "deploy through A until B and C serve it, {rounds} deploys: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
}

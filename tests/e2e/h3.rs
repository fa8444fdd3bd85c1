//! HTTP/3 with a client that is not ours (aioquic): hello, a streamed response, a 10 MiB
//! echo, 100 concurrent streams, the same answer as HTTP/1.1 and HTTP/2, and a node that
//! shrugs off garbage datagrams and streams that never finish.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tests::{curl_with, function_dir, TestNode};

struct H3 {
    cafile: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

async fn node() -> (TestNode, H3) {
    let node =
        TestNode::start_tls(config::NodeConfig::default(), &[function_dir("echo")], true).await;
    let dir = tempfile::tempdir().unwrap();
    let cafile = dir.path().join("cert.pem");
    std::fs::write(&cafile, node.cert_pem.as_ref().unwrap()).unwrap();
    let url = format!("https://127.0.0.1:{}", node.https.unwrap().port());
    (node, H3 { cafile, url, _dir: dir })
}

fn client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/h3client.py")
}

/// An aioquic client that starts `count` handshakes and never finishes them, once the node
/// has answered every Initial.
async fn stall(cafile: &Path, url: &str, count: usize) -> tokio::process::Child {
    let mut child = tokio::process::Command::new("python3")
        .arg(client())
        .arg("--cafile")
        .arg(cafile)
        .args(["--stall-handshake", "--count", &count.to_string()])
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("the node answered every Initial")
    .unwrap();
    assert_eq!(line.trim(), "stalled");
    child
}

/// Runs the aioquic client; one JSON value per response.
async fn h3(h3: &H3, path: &str, extra: &[&str]) -> Vec<Value> {
    let out = tokio::process::Command::new("python3")
        .arg(client())
        .arg("--cafile")
        .arg(&h3.cafile)
        .args(extra)
        .arg(format!("{}{path}", h3.url))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("h3 client finishes")
        .unwrap();
    assert!(out.status.success(), "h3 client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_gets_hello_a_stream_and_a_10_mib_echo() {
    let (node, h) = node().await;
    let hello = &h3(&h, "/hello", &[]).await[0];
    assert_eq!(hello["status"], 200);
    assert_eq!(hello["body"], "hello world\n");
    assert_eq!(hello["headers"]["content-type"], "text/plain");

    let stream = &h3(&h, "/stream", &[]).await[0];
    assert_eq!(stream["body"], "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert!(stream["chunks"].as_u64().unwrap() >= 2, "the body arrived in pieces: {stream}");

    let data: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = h._dir.path().join("upload");
    std::fs::write(&file, &data).unwrap();
    let echo =
        &h3(&h, "/echo", &["--method", "POST", "--data-file", file.to_str().unwrap()]).await[0];
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["length"], data.len());
    assert_eq!(echo["sha256"], format!("{:x}", Sha256::digest(&data)));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_streams_on_one_connection_complete() {
    let (node, h) = node().await;
    let answers = h3(&h, "/hello", &["--count", "100"]).await;
    assert_eq!(answers.len(), 100);
    assert!(answers.iter().all(|a| a["status"] == 200 && a["body"] == "hello world\n"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_function_answers_the_same_over_every_protocol() {
    let (node, h) = node().await;
    let cafile = h.cafile.to_str().unwrap();
    let path = "/describe?x=1&y=two";
    let mut answers = Vec::new();
    for options in [vec!["--http1.1"], vec!["--http2"]] {
        let mut args = options.clone();
        args.extend(["--cacert", cafile]);
        let headers = vec![("x-agent".to_string(), "tester".to_string())];
        let res = curl_with(&args, "GET", &format!("{}{path}", h.url), &headers, None).await;
        assert_eq!(
            res.header("alt-svc"),
            Some(format!("h3=\":{}\"; ma=86400", node.https.unwrap().port()).as_str())
        );
        answers.push((res.status, res.header("x-answer").map(str::to_string), res.text()));
    }
    // aioquic sends no x-agent header; ask the node the same question without it over h1.
    let h1 = curl_with(&["--cacert", cafile], "GET", &format!("{}{path}", h.url), &[], None).await;
    let over_h3 = &h3(&h, path, &[]).await[0];
    assert_eq!(over_h3["status"], 203);
    assert_eq!(over_h3["headers"]["x-answer"], "same");
    assert_eq!(over_h3["body"].as_str().unwrap(), h1.text(), "HTTP/3 and HTTP/1.1 answer alike");
    assert!(
        over_h3["headers"].get("alt-svc").is_none(),
        "HTTP/3 responses do not advertise HTTP/3"
    );
    assert_eq!(answers[0], answers[1], "HTTP/1.1 and HTTP/2 answer alike");
    assert_eq!(answers[0].0, 203);
    let body: Value = serde_json::from_str(&answers[0].2).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "method": "GET", "path": "/describe", "query": { "x": "1", "y": "two" }, "hasBody": false, "agent": "tester" })
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unfinished_streams_do_not_take_the_node_down() {
    let (node, h) = node().await;
    let port = node.https.unwrap().port();
    // Garbage datagrams of every size.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..2000usize {
        let len = 1 + (i * 7919) % 1500;
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send_to(&datagram, ("127.0.0.1", port)).await.unwrap();
    }
    // A client that opens streams and never finishes them.
    let mut hanging = tokio::process::Command::new("python3")
        .arg(client())
        .arg("--cafile")
        .arg(&h.cafile)
        .args(["--hang", "--count", "50"])
        .arg(format!("{}/echo", h.url))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(hanging.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("the hanging client connects")
    .unwrap();
    assert_eq!(line.trim(), "hanging");
    // Normal clients keep being served, over HTTP/3 and HTTP/1.1.
    for _ in 0..5 {
        let answers = h3(&h, "/hello", &["--count", "10"]).await;
        assert!(answers.iter().all(|a| a["status"] == 200), "{answers:?}");
    }
    let cafile = h.cafile.to_str().unwrap();
    let res = curl_with(&["--cacert", cafile], "GET", &format!("{}/hello", h.url), &[], None).await;
    assert_eq!(res.status, 200);
    hanging.kill().await.unwrap();
    node.shutdown().await;
}

/// QUIC handshakes that never finish hold none of the node's connection slots: with two of
/// them hanging and a TCP client holding a slot, the last free slots still serve TLS clients.
/// (Before, each hanging handshake held a slot for up to `header_read_timeout`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_quic_handshakes_hold_no_connection_slot() {
    let mut config = config::NodeConfig::default();
    // Each listener waits for a connection with a slot in hand: plaintext, TLS, QUIC.
    config.http.max_connections = 4;
    config.http.header_read_timeout = Duration::from_secs(60);
    config.node.shutdown_grace_period = Duration::from_millis(100);
    let node = TestNode::start_tls(config, &[function_dir("echo")], true).await;
    let dir = tempfile::tempdir().unwrap();
    let cafile = dir.path().join("cert.pem");
    std::fs::write(&cafile, node.cert_pem.as_ref().unwrap()).unwrap();
    let https = node.https.unwrap();
    let url = format!("https://127.0.0.1:{}", https.port());
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stall(&cafile, &url, 1).await);
    }
    // A TCP client that never starts its TLS handshake holds a slot.
    let _held = tokio::net::TcpStream::connect(https).await.unwrap();
    let cafile = cafile.to_str().unwrap();
    let res = curl_with(
        &["--cacert", cafile, "--max-time", "10"],
        "GET",
        &format!("{url}/hello"),
        &[],
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    for mut child in stalled {
        child.kill().await.unwrap();
    }
    node.shutdown().await;
}

/// While more than half of the handshake table is taken (128 of 256 unfinished handshakes),
/// a new QUIC client must prove its address with a Retry first, and then is served; a node
/// with room asks no Retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_handshake_table_asks_new_clients_for_a_retry() {
    let (node, h) = node().await;
    let quiet = &h3(&h, "/hello", &[]).await[0];
    assert_eq!((quiet["status"].as_u64(), quiet["retried"].as_bool()), (Some(200), Some(false)));
    let mut stalled = stall(&h.cafile, &h.url, 140).await;
    let busy = &h3(&h, "/hello", &[]).await[0];
    assert_eq!(busy["status"], 200);
    assert_eq!(busy["retried"], true, "no Retry with 140 handshakes unfinished");
    stalled.kill().await.unwrap();
    node.shutdown().await;
}

/// `request.signal` over HTTP/3: a client whose connection closes while the function waits,
/// and a client that cancels a streamed response (STOP_SENDING) on a connection it keeps
/// open; each function sees its abort, and the stream stops producing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_signal_aborts_when_an_http3_client_leaves() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "leaving",
        "/*",
        "[limits]\nwall_time = \"60s\"\n",
        r#"export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    const signal = request.signal;
    signal.addEventListener("abort", () => console.log(`aborted ${path}`));
    if (path === "/wait") {
      console.log("waiting");
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
      return new Response("nobody reads this");
    }
    let n = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        if (signal.aborted) { console.log(`stream stopped after ${n}`); controller.close(); return; }
        await new Promise((r) => setTimeout(r, 5));
        controller.enqueue(new TextEncoder().encode(`${n++}\n`));
      },
      cancel() { console.log(`stream stopped after ${n}`); },
    }));
  },
};"#,
    );
    let node = TestNode::start_tls(config::NodeConfig::default(), &[dir], true).await;
    let cafile = root.path().join("cert.pem");
    std::fs::write(&cafile, node.cert_pem.as_ref().unwrap()).unwrap();
    let base = format!("https://127.0.0.1:{}", node.https.unwrap().port());
    let logged = |needle: &'static str| {
        let logs = node.logs.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                logs.wait_for(Duration::from_secs(30), |r| r.message.contains(needle)).is_some()
            })
            .await
            .unwrap()
        }
    };
    let start = |path: &str, how: &str| {
        let mut child = tokio::process::Command::new("python3")
            .arg(client())
            .arg("--cafile")
            .arg(&cafile)
            .args(["--leave", how])
            .arg(format!("{base}{path}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, out)
    };

    // The connection closes while the function waits.
    let (mut child, mut out) = start("/wait", "close");
    assert_eq!(out.next_line().await.unwrap().as_deref(), Some("sent"));
    assert!(logged("waiting").await);
    child.stdin.as_mut().unwrap().write_all(b"go\n").await.unwrap();
    assert_eq!(out.next_line().await.unwrap().as_deref(), Some("closed"));
    assert!(logged("aborted /wait").await, "closing the connection did not abort");

    // The request is cancelled mid-stream; the connection stays open meanwhile.
    let (mut child2, mut out2) = start("/stream", "stop");
    assert_eq!(out2.next_line().await.unwrap().as_deref(), Some("sent"));
    assert_eq!(out2.next_line().await.unwrap().as_deref(), Some("stopped"));
    assert!(logged("aborted /stream").await, "cancelling the request did not abort");
    assert!(logged("stream stopped after").await);
    child2.stdin.as_mut().unwrap().write_all(b"done\n").await.unwrap();
    let _ = child2.wait().await;
    let _ = child.wait().await;
    node.shutdown().await;
}

//! Bodies stream both ways: a response's first chunk reaches the client before its last is
//! produced, and a function sees an upload before the client has finished sending it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tests::{curl, function_dir, TestNode};
use tokio::time::timeout;

/// Long enough for anything that is going to happen on loopback; a test that hits it failed.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_streams_before_it_is_complete() {
    let node = TestNode::start(&[function_dir("stream")]).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = timeout(PATIENCE, client.get(node.url("/stream").parse().unwrap()))
        .await
        .expect("the response head arrives while the body is still being produced")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = timeout(PATIENCE, body.frame())
        .await
        .expect("the first chunk arrives before the function produces the last")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first\n");

    // Only now may the function produce its last chunk.
    assert_eq!(curl("GET", &node.url("/release"), &[], None).await.text(), "released");
    let rest = timeout(PATIENCE, body.collect()).await.expect("the body ends").unwrap().to_bytes();
    assert_eq!(rest, "last\n");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_reaches_the_function_before_it_is_complete() {
    let node = TestNode::start(&[function_dir("stream")]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let body = StreamBody::new(tokio_stream_from(rx));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(node.url("/upload")).body(body).unwrap();
    let pending = tokio::spawn(client.request(request));

    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    // The upload is unfinished: a node that buffered it whole would never answer here.
    let response = timeout(PATIENCE, pending)
        .await
        .expect("the function answers before the upload is complete")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);

    // Now send the rest: 10 MiB in all.
    let total = 10 * 1024 * 1024;
    for _ in 1..(total / chunk.len()) {
        tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    }
    drop(tx);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "first chunk seen\n");
    let expected = format!("upload complete: {total} bytes");
    let logged = node.logs.wait_for(PATIENCE, |r| r.message == expected);
    assert!(logged.is_some(), "the function counted the whole upload: {:?}", node.logs.records());
    node.shutdown().await;
}

/// A receiver as a stream of frames.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A large whole body (`new Response(bytes)`) goes out in pieces with its length, so a client
/// that reads slowly leaves the rest in the function's memory, under its limit, and not in a
/// copy the node holds outside it: while one slow client holds a 24 MiB answer (48 MiB with
/// the copy `new Response` makes) of a 64 MiB function, the next one is refused for memory.
/// Read at once, the body is whole. The CPU budget is ample: filling and copying 24 MiB takes
/// about 20 ms each in a debug build, and with 50 ms the test would be one of CPU, not memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_whole_body_stays_in_the_functions_memory_while_a_client_reads_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "big",
        "/*",
        "[limits]\nmemory = \"64MiB\"\ncpu_time = \"5s\"\n",
        "export default { fetch() { return new Response(new Uint8Array(24 << 20).fill(7)) } }",
    );
    let node = TestNode::start(&[dir]).await;
    let whole = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-length"), Some("25165824"));
    assert!(whole.body.len() == 24 << 20 && whole.body.iter().all(|b| *b == 7));

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(node.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    timeout(PATIENCE, slow.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let refused = curl("GET", &node.url("/"), &[], None).await;
    let said: String = refused.text().chars().take(200).collect();
    assert_eq!(refused.status, 503, "{said}");
    assert!(said.contains("exceeded_memory"), "{said}");
    drop(slow);
    node.shutdown().await;
}

/// A response that streams (a chunk every 5 ms, as server-sent events do) while the isolate
/// serves other requests is charged only its own part of the CPU: 100 requests burning 2 ms
/// each meanwhile (four times the default `cpu_time` of 50 ms in all) do not end it with
/// `exceeded_cpu`; it ends whole when the function closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_is_not_charged_the_requests_served_meanwhile() {
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "feed",
        "/*",
        "",
        r#"let ended = false;
export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/feed") {
      const bytes = (text) => new TextEncoder().encode(text);
      return new Response(new ReadableStream({
        start(c) {
          const timer = setInterval(() => {
            if (ended) {
              clearInterval(timer);
              c.enqueue(bytes("end"));
              c.close();
            } else {
              c.enqueue(bytes("t"));
            }
          }, 5);
        },
      }));
    }
    if (path === "/end") {
      ended = true;
      return new Response("ended");
    }
    const t = Date.now();
    while (Date.now() - t < 2) {}
    return new Response("tick");
  },
};
"#,
    );
    let node = TestNode::start(&[dir]).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let feed = timeout(PATIENCE, client.get(node.url("/feed").parse().unwrap()))
        .await
        .expect("the feed's head arrives")
        .unwrap();
    assert_eq!(feed.status(), 200);
    for _ in 0..100 {
        let tick = client.get(node.url("/tick").parse().unwrap()).await.unwrap();
        assert_eq!(tick.status(), 200);
        tick.into_body().collect().await.unwrap();
    }
    assert_eq!(curl("GET", &node.url("/end"), &[], None).await.text(), "ended");
    let body = timeout(PATIENCE, feed.into_body().collect())
        .await
        .expect("the feed ends")
        .expect("the feed is whole, not cut off")
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.ends_with("end") && body.trim_end_matches("end").chars().all(|c| c == 't'),
        "{body}"
    );
    node.shutdown().await;
}

/// `request.signal` aborts when the client goes away before the response is complete: while
/// the function waits (HTTP/1.1 and HTTP/2 clients that leave), and while it streams (the
/// stream stops producing). A request answered in full does not abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_signal_aborts_when_the_client_leaves() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "leaving",
        "/*",
        "[limits]\nwall_time = \"60s\"\n",
        r#"export default {
  async fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    const signal = request.signal;
    signal.addEventListener("abort", () => console.log(`aborted ${path}: ${signal.reason.name}`));
    if (path === "/done") {
      ctx.waitUntil(new Promise((r) => setTimeout(r, 200)).then(() => console.log(`after /done: ${signal.aborted}`)));
      return new Response("whole");
    }
    if (path.startsWith("/wait")) {
      console.log(`waiting ${path}`);
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
      return new Response("nobody reads this");
    }
    let n = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        if (signal.aborted) { console.log(`stream stopped after ${n}`); controller.close(); return; }
        await new Promise((r) => setTimeout(r, 10));
        controller.enqueue(new TextEncoder().encode(`${n++}\n`));
      },
      cancel() { console.log(`stream stopped after ${n}`); },
    }));
  },
};"#,
    );
    let node = TestNode::start(&[dir]).await;
    let logged = |needle: &'static str| {
        let logs = node.logs.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                logs.wait_for(PATIENCE, |r| r.message.contains(needle)).is_some()
            })
            .await
            .unwrap()
        }
    };

    // HTTP/1.1: the client closes its connection while the function waits.
    let mut client = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    client.write_all(b"GET /wait HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert!(logged("waiting /wait").await);
    drop(client);
    assert!(logged("aborted /wait: AbortError").await, "HTTP/1.1 leaving did not abort");

    // HTTP/2: curl gives up after a second.
    let url = node.url("/wait-h2");
    let gave_up = curl_with_timeout(&url).await;
    assert!(gave_up, "curl got an answer");
    assert!(logged("aborted /wait-h2: AbortError").await, "HTTP/2 leaving did not abort");

    // Mid-stream: the client reads a few chunks and leaves; the stream stops.
    let mut client = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    client.write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    timeout(PATIENCE, client.read(&mut buf)).await.unwrap().unwrap();
    drop(client);
    assert!(logged("aborted /stream").await);
    assert!(logged("stream stopped after").await);

    // The summaries of the invocations whose clients left say so.
    let url = format!("http://{}/v1/functions/leaving/logs", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let logs: serde_json::Value =
            serde_json::from_slice(&curl("GET", &url, &auth, None).await.body).unwrap();
        let left = logs["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["outcome"] == "client_disconnected")
            .count();
        if left == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} client_disconnected: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // HEAD of a streamed answer: the node sends the head and drops the body unread, which is
    // no client leaving.
    let head = tests::curl_with(&["--head"], "HEAD", &node.url("/stream-head"), &[], None).await;
    assert_eq!(head.status, 200);
    let id = head.header("x-request-id").unwrap().to_string();
    let deadline = std::time::Instant::now() + PATIENCE;
    let outcome = loop {
        let logs: serde_json::Value =
            serde_json::from_slice(&curl("GET", &url, &auth, None).await.body).unwrap();
        let summary = logs["records"].as_array().unwrap().iter().find(|r| {
            r["kind"] == "invocation" && r["invocation_id"].as_str() == Some(id.as_str())
        });
        if let Some(summary) = summary {
            break summary["outcome"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no summary of the HEAD request: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcome, "ok");

    // Answered in full: the client leaving afterwards aborts nothing.
    assert_eq!(curl("GET", &node.url("/done"), &[], None).await.text(), "whole");
    assert!(logged("after /done: false").await);
    assert!(!node.logs.records().iter().any(|r| r.message.contains("aborted /done")));
    node.shutdown().await;
}

/// curl over HTTP/2 (prior knowledge) that gives up after a second; whether it gave up.
async fn curl_with_timeout(url: &str) -> bool {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "1", url])
        .output()
        .await
        .unwrap();
    !out.status.success()
}

/// A small body (which reaches the function whole, as bytes) and a large one (streamed) read
/// alike: text, a clone's bytes, `bodyUsed`, a second read refused, `request.body` echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_request_bodies_read_alike() {
    let node = TestNode::start(&[function_dir("echo")]).await;
    for size in [1usize, 900, 300_000] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let read = curl("POST", &node.url("/consume"), &[], Some(&body)).await;
        assert_eq!(read.status, 200, "{size}: {}", read.text());
        let json: serde_json::Value = serde_json::from_str(&read.text()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "used": true, "length": size, "bytes": size, "same": true, "again": "TypeError"
            }),
            "{size}"
        );
        let echoed = curl("POST", &node.url("/echo"), &[], Some(&body)).await;
        assert_eq!(echoed.body, body, "{size}");
    }
    node.shutdown().await;
}

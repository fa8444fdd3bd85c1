//! WebSockets a function accepts (`WebSocketPair`), with a client that is not ours (Python's
//! `websockets`) over HTTP/1.1: echo, fragments, ping, the message size limit, close codes
//! both ways, a client that vanishes, many sockets on one isolate, and a handler that spins.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tests::{curl, function_dir, TestNode};

fn client() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/wsclient.py")
}

async fn ws(url: &str, scenario: &[&str]) -> Value {
    let out =
        tokio::process::Command::new("python3").arg(client()).arg(url).args(scenario).output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the client finishes")
        .unwrap();
    assert!(out.status.success(), "{scenario:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The first invocation summary in the function's log that `matches`, once there is one.
async fn summary_where(node: &TestNode, matches: impl Fn(&Value) -> bool) -> Value {
    let url = format!("http://{}/v1/functions/ws-echo/logs", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let logs: Value =
            serde_json::from_slice(&curl("GET", &url, &auth, None).await.body).unwrap();
        let found = logs["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "invocation" && matches(r))
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "no such summary: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn logged(node: &TestNode, needle: &str) -> bool {
    let needle = needle.to_string();
    node.logs.wait_for(Duration::from_secs(30), move |r| r.message.contains(&needle)).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_accepts_a_websocket_over_http1() {
    let node = TestNode::start(&[function_dir("ws-echo")]).await;
    let url = format!("ws://{}/chat", node.addr);

    let echo = ws(&url, &["echo"]).await;
    assert_eq!(echo["text"], "hello");
    assert_eq!(echo["binary_equal"], true);
    assert_eq!(echo["binary_type"], "bytes");
    // The accepting invocation's summary: a 101 lasting the socket's lifetime, its messages.
    let summary = summary_where(&node, |r| r["status"] == 101).await;
    assert_eq!(
        (summary["messages_in"].as_u64(), summary["messages_out"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(summary["outcome"], "ok");

    let fragments = ws(&url, &["fragments"]).await;
    assert_eq!(
        (fragments["equal"].as_bool(), fragments["length"].as_u64()),
        (Some(true), Some(102400))
    );

    assert!(ws(&url, &["ping"]).await["latency"].as_f64().is_some());

    let too_big = ws(&url, &["too-big"]).await;
    assert_eq!(too_big["code"], 1009, "{too_big}");
    assert!(logged(&node, "closed 1009"));

    assert_eq!(ws(&url, &["close"]).await["code"], 4001);
    assert!(logged(&node, "closed 4001 bye true"), "the function saw the client's close");

    let closed_by = ws(&url, &["closed-by"]).await;
    assert_eq!(
        (closed_by["code"].as_u64(), closed_by["reason"].as_str()),
        (Some(4002), Some("as asked"))
    );

    assert_eq!(ws(&url, &["vanish"]).await["echo"], "ready");
    assert!(logged(&node, "closed 1006  false"), "the function saw the client vanish");

    // Not an upgrade: the function's own answer.
    let plain = curl("GET", &node.url("/chat"), &[], None).await;
    assert_eq!(plain.status, 426);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sockets_on_one_isolate_and_a_spinning_handler() {
    let root = tempfile::tempdir().unwrap();
    let mut config = config::NodeConfig::default();
    config.pool.max_isolates_per_function = 1;
    // One client address opens them all.
    config.http.max_connections_per_ip = 2000;
    let spinner = tests::function_folder(
        root.path(),
        "spinner",
        "/spin/*",
        "[limits]\ncpu_time = \"50ms\"\n",
        &std::fs::read_to_string(function_dir("ws-echo").join("src/index.js")).unwrap(),
    );
    let node = TestNode::start_with(config, &[function_dir("ws-echo"), spinner]).await;
    let url = format!("ws://{}/chat", node.addr);
    // Raise this process's open-file limit: 1,000 sockets on each side.
    js_runtime::raise_open_files_limit();

    let many = ws(&url, &["many", "1000"]).await;
    assert_eq!(many["echoed"], 1000, "{many}");
    assert_eq!(node.node().isolates_of("ws-echo"), 1);

    // A handler that spins is stopped by its CPU limit; its socket closes with 1011 and
    // other functions' sockets keep answering.
    let spin = tokio::spawn({
        let url = format!("ws://{}/spin/x", node.addr);
        async move { ws(&url, &["spin"]).await }
    });
    for _ in 0..3 {
        assert_eq!(ws(&url, &["echo"]).await["text"], "hello");
    }
    let spun = spin.await.unwrap();
    assert_eq!(spun["code"], 1011, "{spun}");
    node.shutdown().await;
}

/// The same echo over HTTP/2: extended CONNECT (RFC 8441) with hyper's HTTP/2 client, then
/// WebSocket frames (tokio-tungstenite) over the stream. A quiet socket keeps its connection
/// past the connection idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_accepts_a_websocket_over_http2_extended_connect() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    let mut config = config::NodeConfig::default();
    config.http.idle_timeout = Duration::from_millis(200);
    // An idle connection is asked to close (GOAWAY), then dropped this much later.
    config.http.header_read_timeout = Duration::from_millis(200);
    let node = TestNode::start_with(config, &[function_dir("ws-echo")]).await;
    let tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}/chat", node.addr))
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    for text in ["hello over HTTP/2", "and again"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text(text));
        // Quiet for five connection idle timeouts: the open socket keeps the connection.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::binary(vec![1u8, 2, 3]));
    // The node answers the close and ends the stream (RST_STREAM NO_ERROR may reach the
    // client before its own close frame is flushed): what matters is what the function saw.
    let _ = socket.close(None).await;
    assert!(logged(&node, "closed 1005"), "the function saw the close");
    node.shutdown().await;
}

/// Headless Chromium loads a page from a function, opens a WebSocket to it and shows the
/// echo of its message (Chromium offers permessage-deflate; the node declines it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_a_websocket_to_a_function() {
    let root = tempfile::tempdir().unwrap();
    let page = r#"<!doctype html><body><script>
const socket = new WebSocket(`ws://${location.host}/socket`);
socket.onopen = () => socket.send("hello from the page");
const tell = (what) => fetch("/seen", { method: "POST", body: what });
socket.onmessage = (event) => tell(event.data);
socket.onerror = () => tell("error");
</script></body>"#;
    let code = format!(
        r#"const PAGE = {page:?};
export default {{
  async fetch(request) {{
    if (new URL(request.url).pathname === "/seen") {{
      console.log(`the page saw: ${{await request.text()}}`);
      return new Response("noted");
    }}
    if (request.headers.get("upgrade") !== "websocket") {{
      return new Response(PAGE, {{ headers: {{ "content-type": "text/html" }} }});
    }}
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("message", (event) => server.send(`echo: ${{event.data}}`));
    return new Response(null, {{ status: 101, webSocket: client }});
  }},
}};"#
    );
    let dir = tests::function_folder(root.path(), "page", "/*", "", &code);
    let node = TestNode::start(&[dir]).await;
    // The page tells the function what it got; Chromium runs until the function has heard
    // (a virtual time budget does not wait for the socket's real network events).
    let profile = tempfile::tempdir().unwrap();
    let mut chromium = tokio::process::Command::new("chromium");
    chromium
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(node.url("/"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut browser = chromium.spawn().expect("chromium runs");
    let logs = node.logs.clone();
    let seen = tokio::task::spawn_blocking(move || {
        logs.wait_for(Duration::from_secs(60), |r| r.message.starts_with("the page saw: "))
    })
    .await
    .unwrap();
    let _ = browser.kill().await;
    let seen = seen.expect("the page reported what its socket got");
    assert_eq!(seen.message, "the page saw: echo: hello from the page");
    node.shutdown().await;
}

/// `new WebSocket(url)` from a function: refused for a loopback address unless `[fetch] allow`
/// names it; allowed, it exchanges a message with a local server (tokio-tungstenite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_websockets_follow_the_outbound_policy() {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() {
                        let text = format!("server saw: {}", message.to_text().unwrap());
                        let _ = ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await;
                    }
                }
            });
        }
    });
    let root = tempfile::tempdir().unwrap();
    let code = r#"export default {
  fetch(request) {
    const target = new URL(request.url).searchParams.get("to");
    return new Promise((resolve) => {
      const ws = new WebSocket(target);
      ws.addEventListener("open", () => ws.send(`hello, protocol "${ws.protocol}"`));
      ws.addEventListener("message", (event) => {
        resolve(new Response(event.data));
        ws.close();
      });
      ws.addEventListener("error", (event) => resolve(new Response(`error: ${event.message}`, { status: 502 })));
    });
  },
};"#;
    let dir = tests::function_folder(root.path(), "opener", "/*", "", code);
    let target = format!("/?to=ws://127.0.0.1:{port}/socket");

    let refusing = TestNode::start(std::slice::from_ref(&dir)).await;
    let refused = curl("GET", &refusing.url(&target), &[], None).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(refused.text().contains("refused"), "{}", refused.text());
    refusing.shutdown().await;

    let mut config = config::NodeConfig::default();
    config.fetch.allow = vec![format!("127.0.0.1:{port}")];
    let allowing = TestNode::start_with(config, &[dir]).await;
    let answered = curl("GET", &allowing.url(&target), &[], None).await;
    assert_eq!(
        (answered.status, answered.text().as_str()),
        (200, "server saw: hello, protocol \"\"")
    );
    allowing.shutdown().await;
}

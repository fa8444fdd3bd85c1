//! The node as an operator runs it: every protocol reaches the function, the request limits
//! answer their statuses, slow and idle clients are cut off while others are served, and the
//! connection cap holds.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use tests::{curl, curl_with, function_dir, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(10);

fn json(res: &tests::CurlResponse) -> serde_json::Value {
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_h2load_over_every_protocol() {
    let node =
        TestNode::start_tls(config::NodeConfig::default(), &[function_dir("proto")], false).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, node.cert_pem.as_ref().unwrap()).unwrap();
    let cert = cert.to_str().unwrap();
    let tls = node.https.unwrap();
    let plain = node.url("/");
    let secure = format!("https://127.0.0.1:{}/", tls.port());
    for (options, url, protocol, scheme) in [
        (vec!["--http1.1"], &plain, "HTTP/1.1", "http:"),
        (vec!["--http2-prior-knowledge"], &plain, "HTTP/2", "http:"),
        (vec!["--http1.1", "--cacert", cert], &secure, "HTTP/1.1", "https:"),
        (vec!["--http2", "--cacert", cert], &secure, "HTTP/2", "https:"),
    ] {
        let res = curl_with(&options, "POST", url, &[], Some(b"twelve bytes")).await;
        assert_eq!(res.status, 200, "{options:?}: {}", res.text());
        assert_eq!(
            json(&res),
            serde_json::json!({
                "protocol": protocol,
                "clientIp": "127.0.0.1",
                "forwardedFor": null,
                "scheme": scheme,
                "method": "POST",
                "bytes": 12
            }),
            "{options:?}"
        );
    }
    // h2load, over TLS (ALPN h2) and cleartext (prior knowledge): every request succeeds.
    for url in [&secure, &plain] {
        let out = tokio::process::Command::new("h2load")
            .args(["-n", "400", "-c", "4", "-m", "10", url])
            .output()
            .await
            .expect("h2load is installed (scripts/test installs nghttp2-client)");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains("400 total, 400 started, 400 done, 400 succeeded, 0 failed"),
            "h2load {url}: {report}"
        );
        assert!(report.contains("status codes: 400 2xx"), "h2load {url}: {report}");
    }
    node.shutdown().await;
}

fn limited_config() -> config::NodeConfig {
    let mut config = config::NodeConfig::default();
    config.http.max_body_size = 1024 * 1024;
    config.http.header_read_timeout = Duration::from_secs(1);
    config.http.idle_timeout = Duration::from_millis(500);
    config
}

/// Sends `parts` of a raw request with a pause between them and returns the status code.
async fn raw_status(addr: std::net::SocketAddr, parts: &[Vec<u8>]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for part in parts {
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut head)).await.unwrap().unwrap();
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_answer_their_statuses() {
    let node = TestNode::start_with(limited_config(), &[function_dir("proto")]).await;
    let long_url = node.url(&format!("/{}", "a".repeat(17 * 1024)));
    assert_eq!(curl("GET", &long_url, &[], None).await.status, 414);

    let big = vec![("x-big".to_string(), "b".repeat(33 * 1024))];
    assert_eq!(curl("GET", &node.url("/"), &big, None).await.status, 431);
    let many: Vec<_> = (0..101).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    assert_eq!(curl("GET", &node.url("/"), &many, None).await.status, 431);

    // The same, with the head arriving in pieces.
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    head.extend(format!("x-big: {}\r\n", "b".repeat(33 * 1024)).into_bytes());
    let pieces: Vec<Vec<u8>> =
        head.chunks(4096).map(<[u8]>::to_vec).chain([b"\r\n".to_vec()]).collect();
    assert_eq!(raw_status(node.addr, &pieces).await, 431);
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..101 {
        head.extend(format!("x-h{i}: v\r\n").into_bytes());
    }
    let pieces: Vec<Vec<u8>> =
        head.chunks(100).map(<[u8]>::to_vec).chain([b"\r\n".to_vec()]).collect();
    assert_eq!(raw_status(node.addr, &pieces).await, 431);

    // Bodies: declared too large, and streamed (chunked) past the limit.
    let body = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(curl("POST", &node.url("/"), &[], Some(&body)).await.status, 413);
    let chunked = vec![("transfer-encoding".to_string(), "chunked".to_string())];
    assert_eq!(curl("POST", &node.url("/"), &chunked, Some(&body)).await.status, 413);
    // Within the limits, everything passes.
    let ok = curl("POST", &node.url("/"), &chunked, Some(&body[..1000])).await;
    assert_eq!((ok.status, json(&ok)["bytes"].clone()), (200, serde_json::json!(1000)));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed_while_others_are_served() {
    let node = TestNode::start_with(limited_config(), &[function_dir("proto")]).await;
    let addr = node.addr;
    // A client that never finishes its headers.
    let slow = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("x-slow-{i}: drip\r\n");
            if stream.write_all(line.as_bytes()).await.is_err() {
                return true; // the node closed the connection
            }
            let mut probe = [0u8; 1024];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
            {
                if n == 0 || String::from_utf8_lossy(&probe[..n]).starts_with("HTTP/1.1 408") {
                    return true;
                }
            }
        }
        false
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut ok = 0;
    while !slow.is_finished() && ok < 2000 {
        let response = client.get(node.url("/").parse().unwrap()).await.unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        assert_eq!(status, 200);
        ok += 1;
    }
    assert!(slow.await.unwrap(), "the slowloris connection was not cut off in 10 s");
    assert!(ok > 0);

    // An idle keep-alive connection is closed after idle_timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"), "served first");
    assert!(closed, "the idle connection was not closed");
    node.shutdown().await;
}

/// Methods reach the function as sent (the common ones travel as numbers, the rest as
/// text), and a Host that is no authority is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_reach_the_function_as_sent_and_a_bad_host_is_refused() {
    let node = TestNode::start_with(config::NodeConfig::default(), &[function_dir("proto")]).await;
    for method in ["GET", "DELETE", "PATCH", "OPTIONS", "PROPFIND"] {
        let res = curl(method, &node.url("/"), &[], None).await;
        assert_eq!((res.status, json(&res)["method"].clone()), (200, serde_json::json!(method)));
    }
    let bad_host = b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n".to_vec();
    assert_eq!(raw_status(node.addr, &[bad_host]).await, 400);
    node.shutdown().await;
}

/// The head timeout is for heads under way: a keep-alive connection waiting for its next
/// request is governed by `idle_timeout`, however much longer that is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_outlives_the_header_timeout_until_it_is_idle_too_long() {
    let mut config = config::NodeConfig::default();
    config.http.header_read_timeout = Duration::from_millis(300);
    config.http.idle_timeout = Duration::from_secs(30);
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        let mut rest = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut rest)).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    // A head that does not finish is still cut off.
    let mut slow = TcpStream::connect(node.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the slow head was not cut off: {read:?}");
    node.shutdown().await;
}

/// A response that streams while the client still uploads is in flight the whole time:
/// the bytes it sends meanwhile are no slow request head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_streamed_back_outlasts_the_header_timeout() {
    let mut config = config::NodeConfig::default();
    config.http.header_read_timeout = Duration::from_millis(300);
    let node = TestNode::start_with(config, &[function_dir("echo")]).await;
    let stream = TcpStream::connect(node.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    write.write_all(head.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            match tokio::time::timeout(PATIENCE, read.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    for _ in 0..12 {
        write.write_all(b"5\r\nhello\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write.write_all(b"0\r\n\r\n").await.unwrap();
    let seen = reader.await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert_eq!(seen.matches("hello").count(), 12, "the echo was cut off: {seen}");
    assert!(seen.ends_with("0\r\n\r\n"), "{seen}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds() {
    let mut config = config::NodeConfig::default();
    config.http.max_connections = 2;
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(stream);
    }
    // A third connection is not served while two are open...
    let url = node.url("/");
    let third = tokio::spawn(async move { curl("GET", &url, &[], None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served past the cap");
    // ...and is, once one of them closes.
    drop(held.pop());
    let res =
        tokio::time::timeout(PATIENCE, third).await.expect("served after a slot freed").unwrap();
    assert_eq!(res.status, 200);
    node.shutdown().await;
}

/// Writes a self-signed certificate for 127.0.0.1 and its key; returns the certificate PEM.
fn write_cert(dir: &std::path::Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    made.cert.pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_serves_new_handshakes_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let mut config = config::NodeConfig::default();
    config.https = Some(config::HttpsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        http3: false,
    });
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let addr = node.node().https_addrs()[0];

    // An HTTP/1.1 connection that trusts only the first certificate, kept open.
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(first.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let get =
        || http::Request::get("/").header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);

    let second = write_cert(dir.path());
    node.node().reload_tls().expect("the new certificate loads");

    // The open connection goes on...
    sender.ready().await.expect("the open connection survives the reload");
    let response =
        sender.send_request(get()).await.expect("the open connection survives the reload");
    assert_eq!(response.status(), 200);
    // ...and new handshakes get the new certificate.
    let url = format!("https://127.0.0.1:{}/", addr.port());
    std::fs::write(dir.path().join("second.pem"), &second).unwrap();
    std::fs::write(dir.path().join("first.pem"), &first).unwrap();
    let with_second =
        ["--cacert", dir.path().join("second.pem").to_str().unwrap()].map(String::from);
    let res = curl_with(&[&with_second[0], &with_second[1]], "GET", &url, &[], None).await;
    assert_eq!(res.status, 200);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--cacert", dir.path().join("first.pem").to_str().unwrap(), &url])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "a new handshake still presented the old certificate");

    // A broken file is refused and the current certificate stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    assert!(node.node().reload_tls().is_err());
    let res = curl_with(&[&with_second[0], &with_second[1]], "GET", &url, &[], None).await;
    assert_eq!(res.status, 200);
    node.shutdown().await;
}

/// An h2c connection that keeps sending PINGs and never a request (preface, SETTINGS, then a
/// PING now and then) is closed: after `header_read_timeout` with no request at all, and
/// HTTP/2 frames that ask nothing do not keep a connection from being idle. While such
/// connections hold every slot of `max_connections`, a neighbour is served once they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_that_only_ping_are_closed() {
    let mut config = limited_config();
    config.http.max_connections = 4;
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let addr = node.addr;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const PING: [u8; 17] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let trickles: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(PREFACE).await.unwrap();
                stream.write_all(&SETTINGS).await.unwrap();
                // A PING every 200 ms until the node closes the connection (its answers,
                // PING ACKs and SETTINGS, are read and dropped).
                let started = std::time::Instant::now();
                let mut buf = [0u8; 4096];
                while started.elapsed() < Duration::from_secs(20) {
                    if stream.write_all(&PING).await.is_err() {
                        return true;
                    }
                    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        _ => {}
                    }
                }
                false
            })
        })
        .collect();
    for trickle in trickles {
        assert!(trickle.await.unwrap(), "a PING-only connection was kept for 20 s");
    }
    let res = tokio::time::timeout(PATIENCE, curl("GET", &node.url("/"), &[], None))
        .await
        .expect("the neighbour is served");
    assert_eq!(res.status, 200);
    node.shutdown().await;
}

/// An h2c connection that has sent a request may PING, but a flood of PINGs (more than 600
/// in a minute) ends it; a connection under the limit gets every PING answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_ping_floods_end_the_connection() {
    let node = TestNode::start(&[function_dir("proto")]).await;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const PING: [u8; 17] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    // GET / on stream 1 (HPACK: :method GET, :scheme http, :path /, :authority "a").
    const GET: [u8; 15] = [0, 0, 6, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 1, b'a'];
    /// Sends a request then `pings` PINGs; the PING ACKs read back before the connection
    /// ends or goes quiet, and whether it ended.
    async fn ping(addr: std::net::SocketAddr, pings: usize) -> (usize, bool) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = PREFACE.to_vec();
        out.extend_from_slice(&SETTINGS);
        out.extend_from_slice(&GET);
        for _ in 0..pings {
            out.extend_from_slice(&PING);
        }
        let _ = stream.write_all(&out).await;
        let (mut bytes, mut acks, mut at) = (Vec::new(), 0, 0);
        let mut buf = [0u8; 65536];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (acks, true),
                Err(_) => return (acks, false),
                Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            }
            while bytes.len() >= at + 9 {
                let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
                if bytes.len() < at + 9 + len {
                    break;
                }
                if bytes[at + 3] == 6 && bytes[at + 4] & 1 == 1 {
                    acks += 1;
                }
                at += 9 + len;
            }
        }
    }
    let (acks, ended) = ping(node.addr, 100).await;
    assert_eq!((acks, ended), (100, false), "under the limit, every PING is answered");
    let (acks, ended) = ping(node.addr, 2000).await;
    assert!(ended, "a flood of PINGs kept its connection ({acks} answered)");
    assert!(acks <= 600, "{acks} PINGs answered");
    let res = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!(res.status, 200);
    node.shutdown().await;
}

/// A client that stops reading a large answer loses its connection after `write_timeout`,
/// and a client address holds at most `max_connections_per_ip` connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_are_cut_off_and_one_address_holds_few_connections() {
    let root = tempfile::tempdir().unwrap();
    let big = tests::function_folder(
        root.path(),
        "big",
        "/*",
        "",
        "export default { fetch(r) { return new Response(r.url.endsWith('/small') ? 'small' : new Uint8Array(32 << 20)) } }",
    );
    let mut config = config::NodeConfig::default();
    config.http.write_timeout = Duration::from_secs(1);
    config.http.max_connections_per_ip = 3;
    let node = TestNode::start_with(config, &[big]).await;

    // Ask for 32 MiB through a small receive buffer, and read nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(node.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    // The next connections: the slow one and two more fill the address's three slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(node.addr).await.unwrap());
    }
    let mut refused = TcpStream::connect(node.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(PATIENCE, refused.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(got, Ok(0) | Err(_)), "a fourth connection from one address was served");
    drop(held);

    // Once the slow reader's writes have been stuck for a second, its connection goes: what
    // it reads then ends well before 32 MiB.
    let deadline = std::time::Instant::now() + PATIENCE;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(2), slow.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => total += n,
            Err(_) => break false,
        }
        assert!(std::time::Instant::now() < deadline + PATIENCE, "still reading");
    };
    assert!(ended && total < 32 << 20, "read {total} bytes; ended: {ended}");
    // A slot is free again. (A small answer: a 32 MiB one could itself meet the 1 s write
    // timeout on a machine busy with other tests.)
    let res = curl("GET", &node.url("/small"), &[], None).await;
    assert_eq!((res.status, res.text()), (200, "small".to_string()));
    node.shutdown().await;
}

/// The function learns the client's address from `CF-Connecting-IP` and `request.cf.clientIp`:
/// the peer's, over every protocol, whatever a client claims in `X-Forwarded-For` or
/// `CF-Connecting-IP`; behind a proxy in `[http] trusted_proxies`, the address the proxy
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_learns_the_clients_address() {
    let claims = [
        ("x-forwarded-for".to_string(), "198.51.100.7".to_string()),
        ("cf-connecting-ip".to_string(), "6.6.6.6".to_string()),
    ];
    let node = TestNode::start(&[function_dir("proto")]).await;
    for extra in [&[][..], &["--http2-prior-knowledge"][..]] {
        let res = tests::curl_with(extra, "GET", &node.url("/"), &claims, None).await;
        let seen: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(seen["clientIp"], "127.0.0.1", "{extra:?}: {seen}");
        assert_eq!(seen["forwardedFor"], serde_json::Value::Null, "{extra:?}: {seen}");
    }
    node.shutdown().await;

    let mut config = config::NodeConfig::default();
    config.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let res = curl("GET", &node.url("/"), &claims, None).await;
    let seen: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(seen["clientIp"], "198.51.100.7", "{seen}");
    assert_eq!(seen["forwardedFor"], "198.51.100.7", "{seen}");
    node.shutdown().await;
}

/// Behind a trusted load balancer speaking the PROXY protocol (v2), the client's address is
/// the one the header carries; from an untrusted peer the same header is not believed (the
/// bytes are not HTTP, and the connection gets no answer from a function).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_with_the_proxy_protocol() {
    let header = |src: [u8; 4]| {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&[127, 0, 0, 1, 0x1f, 0x90, 0x1f, 0x90]);
        h
    };
    async fn ask(addr: std::net::SocketAddr, preface: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = preface.to_vec();
        out.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        stream.write_all(&out).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }
    let mut config = config::NodeConfig::default();
    config.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    let answer = ask(node.addr, &header([203, 0, 113, 5])).await;
    assert!(answer.contains(r#""clientIp":"203.0.113.5""#), "{answer}");
    // Without a header, a trusted peer is itself the client.
    let answer = ask(node.addr, b"").await;
    assert!(answer.contains(r#""clientIp":"127.0.0.1""#), "{answer}");
    node.shutdown().await;

    let node = TestNode::start(&[function_dir("proto")]).await;
    let answer = ask(node.addr, &header([203, 0, 113, 5])).await;
    assert!(!answer.contains("203.0.113.5"), "{answer}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    node.shutdown().await;
}

//! Outbound fetch: non-public addresses are refused in every spelling, after DNS and on
//! redirects, unless `[fetch] allow` names them; an invocation's subrequests are capped.
//! Every target here is on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::{curl, function_dir, TestNode};

/// A loopback HTTP server: `/hello` answers, `/redirect?to=URL` redirects; counts requests.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let query = req.uri().query().unwrap_or("").to_string();
                    async move {
                        let response = match query.strip_prefix("to=") {
                            Some(to) => http::Response::builder()
                                .status(302)
                                .header("location", to)
                                .body(Full::new(Bytes::new())),
                            None => http::Response::builder()
                                .body(Full::new(Bytes::from("hello from loopback"))),
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

async fn fetch_through(node: &TestNode, url: &str, n: usize) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("url", url)
        .append_pair("n", &n.to_string())
        .finish();
    curl("GET", &node.url(&format!("/?{query}")), &[], None).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_public_addresses_are_refused_in_every_spelling() {
    let (canary, canary_hits) = server().await;
    let (allowed, allowed_hits) = server().await;
    let mut config = config::NodeConfig::default();
    config.fetch.allow = vec![format!("127.0.0.1:{}", allowed.port())];
    let node = TestNode::start_with(config, &[function_dir("fetcher")]).await;
    let port = canary.port();
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://127.1:{port}/hello"),
        format!("http://2130706433:{port}/hello"),
        format!("http://0x7f000001:{port}/hello"),
        format!("http://0177.0.0.1:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
        format!("http://[::1]:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://0.0.0.0:{port}/hello"),
        // A host that is allowed, redirecting to one that is not.
        format!("http://127.0.0.1:{}/?to=http://127.0.0.1:{port}/hello", allowed.port()),
        format!("http://127.0.0.1:{}/?to=http://localhost:{port}/hello", allowed.port()),
    ] {
        let answer = fetch_through(&node, &url, 1).await;
        assert!(
            answer.starts_with("error:") && answer.contains("not a public address"),
            "{url} was not refused: {answer}"
        );
    }
    assert_eq!(canary_hits.load(Ordering::SeqCst), 0, "a refused request reached the canary");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 2, "the two redirects were served");

    // The allowed host, on its port only.
    let answer =
        fetch_through(&node, &format!("http://127.0.0.1:{}/hello", allowed.port()), 1).await;
    assert_eq!(answer, "200 hello from loopback");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_makes_at_most_its_subrequests() {
    let (allowed, hits) = server().await;
    let mut config = config::NodeConfig::default();
    config.fetch.allow = vec![format!("127.0.0.1:{}", allowed.port())];
    let node = TestNode::start_with(config, &[function_dir("fetcher")]).await;
    let url = format!("http://127.0.0.1:{}/hello", allowed.port());
    let answer = fetch_through(&node, &url, 5).await;
    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(lines[..3], ["200 hello from loopback"; 3], "{answer}");
    assert!(lines[3].contains("too many subrequests"), "{answer}");
    assert!(lines[4].contains("too many subrequests"), "{answer}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // The count is per invocation: the next one starts again.
    assert_eq!(fetch_through(&node, &url, 1).await, "200 hello from loopback");
    node.shutdown().await;
}

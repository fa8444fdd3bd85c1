//! The Cache API end to end: a function stores and matches through `caches.default` and
//! `caches.open`, and curl's own request headers (Vary, If-None-Match, Range) reach `match`.

use std::path::Path;
use std::time::{Duration, Instant};

use config::NodeConfig;
use tests::{curl, function_folder, CurlResponse, TestNode};

/// `/put?key=K&body=B&headers=JSON[&name=N]` stores `B` under `https://cache.test/K` with the
/// client's request headers; `/match?key=K` answers what `match` found (`x-cache: hit`) or
/// 404; `/delete?key=K` answers what `delete` said.
const CACHING: &str = r#"
export default {
  async fetch(request) {
    const url = new URL(request.url);
    const q = url.searchParams;
    const key = new Request("https://cache.test/" + q.get("key"), { headers: request.headers });
    const cache = q.has("name") ? await caches.open(q.get("name")) : caches.default;
    switch (url.pathname.slice(url.pathname.lastIndexOf("/"))) {
      case "/put": {
        const headers = JSON.parse(q.get("headers") ?? "{}");
        await cache.put(key, new Response(q.get("body") ?? "", { headers }));
        return new Response("stored");
      }
      case "/match": {
        const found = await cache.match(key);
        if (found === undefined) return new Response("miss", { status: 404 });
        const answer = new Response(found.body, found);
        answer.headers.set("x-cache", "hit");
        return answer;
      }
      case "/delete":
        return new Response(String(await cache.delete(key)));
      case "/refused": {
        try {
          await cache.put(key, new Response("x", { headers: { vary: "*" } }));
          return new Response("stored");
        } catch (e) {
          return new Response(String(e), { status: 400 });
        }
      }
    }
    return new Response("no such path", { status: 404 });
  },
};
"#;

fn caching(root: &Path, name: &str, route: &str) -> std::path::PathBuf {
    function_folder(root, name, route, "", CACHING)
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&urlencoding(v));
    }
    out
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn put(node: &TestNode, prefix: &str, key: &str, body: &str, headers: &str) {
    let path =
        format!("{prefix}/put{}", query(&[("key", key), ("body", body), ("headers", headers)]));
    let res = curl("GET", &node.url(&path), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "stored"), "put {key}");
}

async fn matched(
    node: &TestNode,
    prefix: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> CurlResponse {
    let headers: Vec<_> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    curl("GET", &node.url(&format!("{prefix}/match{}", query(&[("key", key)]))), &headers, None)
        .await
}

#[tokio::test]
async fn match_honours_vary_conditionals_ranges_and_no_store() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start(&[caching(root.path(), "cacher", "/*")]).await;
    assert_eq!(matched(&node, "", "a", &[]).await.status, 404, "empty cache misses");

    put(&node, "", "a", "hello", r#"{"cache-control": "max-age=300", "etag": "\"v1\""}"#).await;
    let hit = matched(&node, "", "a", &[]).await;
    assert_eq!((hit.status, hit.text().as_str()), (200, "hello"));
    assert_eq!(hit.header("x-cache"), Some("hit"));
    assert_eq!(hit.header("etag"), Some("\"v1\""));

    // A matching If-None-Match is answered 304 without a body; another tag gets the body.
    let not_modified = matched(&node, "", "a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    assert_eq!(matched(&node, "", "a", &[("if-none-match", "\"v0\"")]).await.status, 200);

    // Range from the cached whole body.
    let part = matched(&node, "", "a", &[("range", "bytes=1-3")]).await;
    assert_eq!((part.status, part.text().as_str()), (206, "ell"));
    assert_eq!(part.header("content-range"), Some("bytes 1-3/5"));

    // Vary: only a request with the same Accept-Language matches.
    let vary = r#"{"cache-control": "max-age=300", "vary": "Accept-Language"}"#;
    let path = format!("/put{}", query(&[("key", "v"), ("body", "bonjour"), ("headers", vary)]));
    curl("GET", &node.url(&path), &[("accept-language".into(), "fr".into())], None).await;
    let fr = matched(&node, "", "v", &[("accept-language", "fr")]).await;
    assert_eq!((fr.status, fr.text().as_str()), (200, "bonjour"));
    assert_eq!(matched(&node, "", "v", &[("accept-language", "de")]).await.status, 404);
    assert_eq!(matched(&node, "", "v", &[]).await.status, 404);

    // What HTTP says not to keep is not kept: no-store, private, Set-Cookie.
    put(&node, "", "n", "x", r#"{"cache-control": "no-store"}"#).await;
    put(&node, "", "p", "x", r#"{"cache-control": "private, max-age=300"}"#).await;
    put(&node, "", "c", "x", r#"{"cache-control": "max-age=300", "set-cookie": "a=b"}"#).await;
    for key in ["n", "p", "c"] {
        assert_eq!(matched(&node, "", key, &[]).await.status, 404, "{key} was kept");
    }

    // A named cache is apart from the default one; delete removes.
    let res = curl("GET", &node.url("/match?key=a&name=other"), &[], None).await;
    assert_eq!(res.status, 404);
    assert_eq!(curl("GET", &node.url("/delete?key=a"), &[], None).await.text(), "true");
    assert_eq!(curl("GET", &node.url("/delete?key=a"), &[], None).await.text(), "false");
    assert_eq!(matched(&node, "", "a", &[]).await.status, 404);

    let refused = curl("GET", &node.url("/refused?key=r"), &[], None).await;
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("Vary: *"), "{}", refused.text());
    node.shutdown().await;
}

#[tokio::test]
async fn entries_expire_after_max_age() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start(&[caching(root.path(), "cacher", "/*")]).await;
    let stored = Instant::now();
    put(&node, "", "short", "soon gone", r#"{"cache-control": "max-age=1"}"#).await;
    assert_eq!(matched(&node, "", "short", &[]).await.status, 200);
    let deadline = stored + Duration::from_secs(10);
    loop {
        if matched(&node, "", "short", &[]).await.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still cached 10 s after max-age=1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored.elapsed() >= Duration::from_millis(900), "gone after {:?}", stored.elapsed());
    node.shutdown().await;
}

#[tokio::test]
async fn two_functions_caching_one_url_never_see_each_others_entries() {
    let root = tempfile::tempdir().unwrap();
    let one = caching(root.path(), "one", "/one/*");
    let two = caching(root.path(), "two", "/two/*");
    let node = TestNode::start(&[one, two]).await;
    put(&node, "/one", "same", "one's", r#"{"cache-control": "max-age=300"}"#).await;
    assert_eq!(matched(&node, "/two", "same", &[]).await.status, 404);
    assert_eq!(curl("GET", &node.url("/two/delete?key=same"), &[], None).await.text(), "false");
    put(&node, "/two", "same", "two's", r#"{"cache-control": "max-age=300"}"#).await;
    assert_eq!(matched(&node, "/one", "same", &[]).await.text(), "one's");
    assert_eq!(matched(&node, "/two", "same", &[]).await.text(), "two's");
    node.shutdown().await;
}

#[tokio::test]
async fn the_memory_bound_evicts_the_least_recently_used_entries() {
    let root = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.cache.memory = 128 * 1024;
    let node = TestNode::start_with(config, &[caching(root.path(), "cacher", "/*")]).await;
    let body = "x".repeat(1024);
    let headers = r#"{"cache-control": "max-age=300"}"#;
    // An entry weighs 1.3 to 2 KiB (its body, both sets of headers, its key): 60 fit in
    // 128 KiB, 100 do not.
    for i in 0..60 {
        put(&node, "", &format!("k{i}"), &body, headers).await;
    }
    assert_eq!(matched(&node, "", "k0", &[]).await.status, 200, "the first 60 fit");
    assert_eq!(matched(&node, "", "k1", &[]).await.status, 200, "the first 60 fit");
    // k0 was used last of the first entries: 40 more evict k2, k3, ... before it.
    assert_eq!(matched(&node, "", "k0", &[]).await.status, 200);
    for i in 60..100 {
        put(&node, "", &format!("k{i}"), &body, headers).await;
    }
    assert_eq!(matched(&node, "", "k0", &[]).await.status, 200, "recently used, kept");
    assert_eq!(matched(&node, "", "k2", &[]).await.status, 404, "least recently used, evicted");
    assert_eq!(matched(&node, "", "k99", &[]).await.status, 200);
    let metrics = curl("GET", &format!("http://{}/metrics", node.admin.unwrap()), &[], None).await;
    let text = metrics.text();
    let evictions = text
        .lines()
        .find(|l| l.starts_with("edge_cache_evictions_total{") && l.contains("function=\"cacher\""))
        .unwrap_or_else(|| panic!("no eviction count in {text}"));
    let count: f64 = evictions.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{evictions}");
    assert!(text.contains("edge_cache_hits_total{"), "{text}");
    node.shutdown().await;
}

#[tokio::test]
async fn copies_of_a_cached_body_count_against_the_memory_limit() {
    let root = tempfile::tempdir().unwrap();
    // Stores one 8 MiB entry, then keeps every body `match` hands back.
    let code = r#"
const kept = [];
export default {
  async fetch(request) {
    const key = "https://cache.test/big";
    const big = new Uint8Array(8 * 1024 * 1024).fill(7);
    await caches.default.put(key, new Response(big, { headers: { "cache-control": "max-age=300" } }));
    for (let i = 0; i < 64; i++) kept.push(await (await caches.default.match(key)).arrayBuffer());
    return new Response(`kept ${kept.length}`);
  },
};
"#;
    let more = "[limits]\nmemory = \"64MiB\"\ncpu_time = \"10s\"\n";
    let hoarder = function_folder(root.path(), "hoarder", "/hoard", more, code);
    let plain = function_folder(
        root.path(),
        "plain",
        "/ok",
        "",
        "export default { fetch() { return new Response('ok'); } };",
    );
    let node = TestNode::start(&[hoarder, plain]).await;
    let res = curl("GET", &node.url("/hoard"), &[], None).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.text().starts_with("{\"error\":\"exceeded_memory\""), "{}", res.text());
    assert_eq!(curl("GET", &node.url("/ok"), &[], None).await.text(), "ok");
    node.shutdown().await;
}

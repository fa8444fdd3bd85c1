//! The dashboard in headless Chromium: assertions on the DOM it builds, and screenshots in
//! target/test-artifacts for review.

use std::path::{Path, PathBuf};

use tests::{bundle_of, curl, function_dir, function_folder, TestNode, ADMIN_TOKEN};

/// Chromium's answer for `url`: its DOM after the page's scripts ran (`--dump-dom`), or a
/// screenshot written to `png`.
async fn chromium(url: &str, png: Option<&Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=8000",
        "--window-size=1280,1400",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match png {
        Some(png) => cmd.arg(format!("--screenshot={}", png.display())),
        None => cmd.arg("--dump-dom"),
    };
    cmd.arg(url);
    let out =
        tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("chromium runs");
    if let Some(png) = png {
        assert!(png.is_file(), "screenshot saved: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where a test's screenshot goes (replacing an older one).
fn artifact(name: &str) -> PathBuf {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join(name);
    let _ = std::fs::remove_file(&png);
    png
}

async fn admin(
    node: &TestNode,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> tests::CurlResponse {
    let url = format!("http://{}{path}", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    curl(method, &url, &auth, body).await
}

/// The number in `attr="N"` after the element whose `marker` the DOM holds.
fn number_after(dom: &str, marker: &str, attr: &str) -> Option<f64> {
    dom.split(marker).nth(1)?.split(&format!("{attr}=\"")).nth(1)?.split('"').next()?.parse().ok()
}

#[tokio::test]
async fn the_dashboard_shows_functions_and_charts_in_chromium() {
    let node = TestNode::start(&[function_dir("outcomes"), function_dir("echo")]).await;
    for path in ["/ok", "/ok", "/ok", "/throw", "/unavailable"] {
        curl("GET", &node.url(path), &[], None).await;
    }
    // The function's own 503 counts as an error beside the exception.
    let stats = admin(&node, "GET", "/v1/stats", None).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let outcomes = stats["functions"].as_array().unwrap().iter().find(|f| f["name"] == "outcomes");
    let points = outcomes.unwrap()["points"].as_array().unwrap().clone();
    let sum = |key: &str| points.iter().map(|p| p[key].as_u64().unwrap_or(0)).sum::<u64>();
    assert_eq!((sum("requests"), sum("errors")), (5, 2), "{stats}");
    let url = format!("http://{}/#token={ADMIN_TOKEN}&function=outcomes", node.admin.unwrap());
    let dom = chromium(&url, None).await;
    assert!(dom.contains(r#"data-function="outcomes""#), "the function is listed: {dom}");
    assert!(dom.contains(r#"data-function="echo""#), "every function is listed");
    let requests = number_after(&dom, "data-title=\"Requests and errors\"", "data-total")
        .expect("the requests chart is drawn");
    assert!(requests >= 4.0, "the chart has the traffic: {requests}");
    // Its axes are labelled: a value axis from 0 and a time axis ending now.
    assert!(dom.contains(r#"data-axis="y""#) && dom.contains(r#"data-axis="x""#), "{dom}");
    assert!(dom.contains("now ("), "the time axis ends now");
    assert!(dom.contains("data-invocation="), "recent invocations are listed");
    // The status breakdown: the 503 answer with the 5xx, the exception by its outcome.
    assert!(dom.contains(r#"data-status-class="2xx" class="">2xx: 3<"#), "{dom}");
    assert!(dom.contains(r#"data-status-class="5xx" class="bad">5xx: 1<"#), "{dom}");
    assert!(dom.contains(r#"data-status-class="exception" class="bad">exception: 1<"#), "{dom}");
    chromium(&url, Some(&artifact("dashboard.png"))).await;
    node.shutdown().await;
}

/// A deployed function's page: its versions with rollback buttons, its secrets' names, its
/// cron history (a run by hand marked), method and path per invocation with one
/// invocation's log lines opened, the node's queues and the cluster's nodes.
#[tokio::test]
async fn the_dashboard_shows_versions_secrets_cron_queues_and_nodes() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start(&[]).await;
    let more = "[[triggers.cron]]\nschedule = \"0 0 1 1 *\"\n[bindings]\nJOBS = { queue = \"shop-jobs\" }\n";
    let code = |v: &str| {
        format!(
            "export default {{
  async fetch(request, env) {{
    const path = new URL(request.url).pathname;
    console.log(`{v} saw ${{request.method}} ${{path}}`);
    if (path === '/queue') {{ await env.JOBS.send({{ n: 1 }}); return new Response('queued'); }}
    return new Response('{v}');
  }},
  scheduled() {{ console.log('tick'); }},
}};"
        )
    };
    for v in ["one", "two"] {
        let bundle = bundle_of(&function_folder(root.path(), "shop", "/*", more, &code(v)));
        let res = admin(&node, "PUT", "/v1/functions/shop", Some(&bundle)).await;
        assert_eq!(res.status, 201, "{}", res.text());
    }
    let secret = br#"{"value": "s3cret"}"#;
    assert_eq!(
        admin(&node, "PUT", "/v1/functions/shop/secrets/API_KEY", Some(secret)).await.status,
        200
    );
    let cron =
        admin(&node, "POST", "/v1/functions/shop/invoke", Some(br#"{"trigger": "cron"}"#)).await;
    assert_eq!(cron.status, 200, "{}", cron.text());
    assert_eq!(curl("GET", &node.url("/queue"), &[], None).await.text(), "queued");
    let res = curl("POST", &node.url("/orders/7"), &[], Some(b"{}")).await;
    let id = res.header("x-request-id").unwrap().to_string();

    let url = format!(
        "http://{}/#token={ADMIN_TOKEN}&function=shop&invocation={id}",
        node.admin.unwrap()
    );
    let dom = chromium(&url, None).await;
    assert!(dom.contains(r#"data-version="2" data-serving="true""#), "{dom}");
    assert!(dom.contains(r#"data-version="1" data-serving="false""#), "{dom}");
    assert!(dom.contains(r#"data-rollback="1""#), "an older version has its rollback button");
    assert!(!dom.contains(r#"data-rollback="2""#), "the serving one has none");
    assert!(dom.contains(r#"data-secrets="API_KEY""#), "the secret's name: {dom}");
    assert!(!dom.contains("s3cret"), "never its value");
    assert!(dom.contains(r#"data-cron-outcome="ok" data-manual="true""#), "the run by hand: {dom}");
    assert!(dom.contains(r#"data-queue="shop-jobs""#), "the queue: {dom}");
    let depth = dom.split(r#"data-queue="shop-jobs""#).nth(1).unwrap();
    assert!(
        depth.starts_with("><td>shop-jobs</td><td class=\"num\">1</td>"),
        "its depth: {depth:.200}"
    );
    assert!(
        dom.contains(r#"data-node=""#) && dom.contains("shop 2 ("),
        "the node and what it serves: {dom}"
    );
    let row = format!(r#"data-invocation="{id}" data-method="POST" data-path="/orders/7""#);
    assert!(dom.contains(&row), "method and path of each invocation: {dom}");
    assert!(dom.contains(&format!("Invocation {id}: 1 log line(s)")), "{dom}");
    assert!(dom.contains("two saw POST /orders/7"), "the invocation's own line: {dom}");
    chromium(&url, Some(&artifact("dashboard-function.png"))).await;
    node.shutdown().await;
}

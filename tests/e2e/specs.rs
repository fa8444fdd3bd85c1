//! Folder-driven cases: each `tests/specs/<case>/` holds a function and `exchange.toml`, the
//! requests to send (with curl) and what must come back. Adding a case means adding a folder.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tests::{curl, TestNode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchanges {
    exchange: Vec<Exchange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    status: u16,
    body_text: Option<String>,
    body_json: Option<toml::Value>,
    #[serde(default)]
    body_contains: Vec<String>,
    #[serde(default)]
    response_headers: BTreeMap<String, String>,
    /// The body must be `{"error": <this>, "request_id": <the x-request-id header>}`.
    error_body: Option<String>,
    /// The function's log records for this invocation must contain each string.
    #[serde(default)]
    logs_contain: Vec<String>,
}

fn get() -> String {
    "GET".into()
}

async fn run_case(dir: &Path) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(dir.join("exchange.toml")).unwrap();
    let spec: Exchanges =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{name}/exchange.toml: {e}"));
    let node = TestNode::start(&[dir.to_path_buf()]).await;
    let mut failures = Vec::new();
    for (i, ex) in spec.exchange.iter().enumerate() {
        let at = format!("{name} #{i} {} {}", ex.method, ex.path);
        let headers: Vec<_> = ex.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let res =
            curl(&ex.method, &node.url(&ex.path), &headers, ex.body.as_deref().map(str::as_bytes))
                .await;
        let mut fail = |what: String| failures.push(format!("{at}: {what}"));
        if res.status != ex.status {
            fail(format!("status {} (expected {}), body {}", res.status, ex.status, res.text()));
        }
        let request_id = res.header("x-request-id").unwrap_or_default().to_string();
        if request_id.is_empty() {
            fail("no x-request-id header".into());
        }
        if let Some(expected) = &ex.body_text {
            if &res.text() != expected {
                fail(format!("body {:?} (expected {expected:?})", res.text()));
            }
        }
        if let Some(expected) = &ex.body_json {
            let expected = serde_json::to_value(expected).unwrap();
            match serde_json::from_slice::<serde_json::Value>(&res.body) {
                Ok(actual) if actual == expected => {}
                Ok(actual) => fail(format!("json body {actual} (expected {expected})")),
                Err(e) => fail(format!("body is not JSON ({e}): {}", res.text())),
            }
        }
        for needle in &ex.body_contains {
            if !res.text().contains(needle) {
                fail(format!("body does not contain {needle:?}: {}", res.text()));
            }
        }
        for (k, v) in &ex.response_headers {
            if res.header(k) != Some(v.as_str()) {
                fail(format!("header {k}: {:?} (expected {v:?})", res.header(k)));
            }
        }
        if let Some(error) = &ex.error_body {
            let expected = serde_json::json!({ "error": error, "request_id": request_id });
            let actual: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
            if actual != expected {
                fail(format!("error body {actual} (expected {expected})"));
            }
        }
        for needle in &ex.logs_contain {
            let found = node.logs.wait_for(Duration::from_secs(5), |r| {
                r.invocation_id.as_deref() == Some(request_id.as_str())
                    && r.message.contains(needle.as_str())
            });
            if found.is_none() {
                let mine: Vec<_> = node
                    .logs
                    .records()
                    .into_iter()
                    .filter(|r| r.invocation_id.as_deref() == Some(request_id.as_str()))
                    .map(|r| r.message)
                    .collect();
                fail(format!(
                    "no log record of this invocation contains {needle:?}; it logged {mine:?}"
                ));
            }
        }
    }
    node.shutdown().await;
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("exchange.toml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "spec folders are missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(run_case(case).await);
    }
    assert!(failures.is_empty(), "{} spec failures:\n{}", failures.len(), failures.join("\n"));
}

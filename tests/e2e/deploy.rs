//! Deploys through the admin API: the real CLI against a real node process (versions,
//! rollback, kill -9, secrets), and the API's refusals (tokens, bad uploads) on in-process
//! nodes. Every refusal must leave the node exactly as it was.

use std::path::{Path, PathBuf};

use bundler::Bundle;
use config::NodeConfig;
use tests::{
    bundle_of, curl, edge_node_bin, versioned_app as app, write_file, CurlResponse, NodeProcess,
    TestNode, ADMIN_TOKEN,
};

const TOKEN: &str = "cli-test-token-5b1f";

fn node_toml(root: &Path) -> PathBuf {
    write_file(
        root,
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n",
    );
    root.join("node.toml")
}

/// Runs the CLI against `node`'s admin API; returns (success, stdout, stderr).
async fn cli(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let url = format!("http://{}", node.admin.expect("the admin API listens"));
    let mut child = tokio::process::Command::new(edge_node_bin())
        .args(args)
        .args(["--node", &url])
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

async fn get(node: &NodeProcess, path: &str) -> String {
    let res = curl("GET", &format!("http://{}{path}", node.http), &[], None).await;
    format!("{} {}", res.status, res.text())
}

#[tokio::test]
async fn deploy_redeploy_and_roll_back_through_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let config = node_toml(root.path());
    let node = NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await;
    assert!(get(&node, "/").await.starts_with("404 "), "nothing is deployed yet");

    let dir = app(root.path(), "1");
    let (ok, out, err) = cli(&node, &["deploy", dir.to_str().unwrap()], None).await;
    assert!(ok && out.contains("deployed app version 1"), "{out}{err}");
    assert_eq!(get(&node, "/").await, "200 version 1");

    app(root.path(), "2");
    let (ok, out, err) = cli(&node, &["deploy", dir.to_str().unwrap()], None).await;
    assert!(ok && out.contains("deployed app version 2"), "{out}{err}");
    assert_eq!(get(&node, "/").await, "200 version 2");

    let (ok, out, err) = cli(&node, &["functions", "rollback", "app"], None).await;
    assert!(ok && out.contains("app now serves version 1"), "{out}{err}");
    assert_eq!(get(&node, "/").await, "200 version 1");

    let (ok, out, err) =
        cli(&node, &["functions", "rollback", "app", "--version", "2"], None).await;
    assert!(ok && out.contains("app now serves version 2"), "{out}{err}");
    assert_eq!(get(&node, "/").await, "200 version 2");

    let (ok, out, _) = cli(&node, &["functions", "list"], None).await;
    assert!(ok && out.contains("app  version 2 (latest 2)"), "{out}");
    let (ok, _, err) = cli(&node, &["functions", "rollback", "app", "--version", "7"], None).await;
    assert!(
        !ok && err.contains("refused: function `app` has no version 7 (not_found, HTTP 404)"),
        "{err}"
    );

    let (ok, out, err) = cli(&node, &["functions", "rm", "app"], None).await;
    assert!(ok && out.contains("deleted app"), "{out}{err}");
    assert!(get(&node, "/").await.starts_with("404 "));
    let (ok, _, err) = cli(&node, &["functions", "show", "app"], None).await;
    assert!(!ok && err.contains("not_found"), "{err}");
}

#[tokio::test]
async fn what_a_deploy_acknowledged_survives_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let config = node_toml(root.path());
    let node = NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await;
    let dir = app(root.path(), "1");
    assert!(cli(&node, &["deploy", dir.to_str().unwrap()], None).await.0);
    assert!(cli(&node, &["secrets", "set", "app", "API_KEY", "--value", "k-1"], None).await.0);
    app(root.path(), "2");
    let (ok, out, err) = cli(&node, &["deploy", dir.to_str().unwrap()], None).await;
    assert!(ok, "{out}{err}");
    // Killed the moment the deploy was acknowledged.
    node.kill_9().await;

    let node = NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await;
    assert_eq!(get(&node, "/").await, "200 version 2");
    assert_eq!(get(&node, "/secret").await, "200 k-1");
    let (ok, out, _) = cli(&node, &["functions", "list"], None).await;
    assert!(ok && out.contains("app  version 2 (latest 2)"), "{out}");
}

#[tokio::test]
async fn a_secret_reaches_env_and_nothing_else() {
    const VALUE: &str = "s3cr3t-VALUE-7f2c";
    let root = tempfile::tempdir().unwrap();
    let config = node_toml(root.path());
    let node = NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await;
    let dir = app(root.path(), "1");
    assert!(cli(&node, &["deploy", dir.to_str().unwrap()], None).await.0);
    let mut seen = String::new();
    let (ok, out, err) =
        cli(&node, &["secrets", "set", "app", "API_KEY"], Some(&format!("{VALUE}\n"))).await;
    assert!(ok, "{out}{err}");
    seen += &(out + &err);
    assert_eq!(get(&node, "/secret").await, format!("200 {VALUE}"));

    for args in [
        &["secrets", "list", "app"][..],
        &["functions", "show", "app"],
        &["functions", "list"],
        &["secrets", "set", "app", "1-not-a-name", "--value", VALUE],
    ] {
        let (_, out, err) = cli(&node, args, None).await;
        seen += &(out + &err);
    }
    assert!(seen.contains("API_KEY"), "the secret's name is shown: {seen}");
    assert!(seen.contains("is not a valid secret name"), "{seen}");
    let log = node.kill_9().await.join("\n");
    assert!(log.contains("secret set"), "the change itself is logged: {log}");
    for (what, text) in [("API answers and CLI output", &seen), ("the node's log", &log)] {
        assert!(!text.contains(VALUE), "the secret's value appears in {what}: {text}");
    }
}

// ---- the API on in-process nodes ----------------------------------------------------------

async fn api(
    node: &TestNode,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
) -> CurlResponse {
    let url = format!("http://{}{path}", node.admin.unwrap());
    let headers: Vec<(String, String)> =
        auth.map(|a| vec![("authorization".to_string(), a.to_string())]).unwrap_or_default();
    curl(method, &url, &headers, body).await
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// What a node serves and holds, to compare before and after a refused call.
async fn state(node: &TestNode) -> (String, String, Vec<String>) {
    let served = curl("GET", &node.url("/"), &[], None).await;
    let shown = api(node, "GET", "/v1/functions/app", Some(&bearer()), None).await;
    let mut shown: serde_json::Value = serde_json::from_slice(&shown.body).unwrap();
    shown["updated_at"] = serde_json::Value::Null;
    let mut files: Vec<String> = std::fs::read_dir(node.data_dir.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (format!("{} {}", served.status, served.text()), shown.to_string(), files)
}

async fn node_with_app(root: &Path, config: NodeConfig) -> TestNode {
    let node = TestNode::start_with(config, &[]).await;
    let deployed =
        api(&node, "PUT", "/v1/functions/app", Some(&bearer()), Some(&bundle_of(&app(root, "1"))))
            .await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    node
}

#[tokio::test]
async fn every_admin_route_wants_the_token() {
    let root = tempfile::tempdir().unwrap();
    let node = node_with_app(root.path(), NodeConfig::default()).await;
    let before = state(&node).await;
    let v2 = bundle_of(&app(root.path(), "2"));
    let secret = br#"{"value": "x"}"#.as_slice();
    let routes: [(&str, &str, Option<&[u8]>); 8] = [
        ("GET", "/v1/functions", None),
        ("GET", "/v1/functions/app", None),
        ("PUT", "/v1/functions/app", Some(&v2)),
        ("DELETE", "/v1/functions/app", None),
        ("POST", "/v1/functions/app/rollback", Some(b"{}")),
        ("GET", "/v1/functions/app/secrets", None),
        ("PUT", "/v1/functions/app/secrets/KEY", Some(secret)),
        ("DELETE", "/v1/functions/app/secrets/KEY", None),
    ];
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_string()),
    ];
    for (method, path, body) in routes {
        for auth in &wrong {
            let res = api(&node, method, path, auth.as_deref(), body).await;
            assert_eq!(res.status, 401, "{method} {path} with {auth:?}: {}", res.text());
            assert_eq!(res.header("www-authenticate"), Some("Bearer"));
            let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
            assert_eq!(json["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(state(&node).await, before, "nothing changed");
    // A secret for a function that is not deployed is refused, not kept for a later one.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let res = api(&node, "PUT", "/v1/functions/ghost/secrets/KEY", Some(&auth), Some(secret)).await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert!(res.text().contains("no function `ghost` is deployed"), "{}", res.text());
    // The scheme's case does not matter (RFC 7235); the token's does.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let auth = format!("{scheme} {ADMIN_TOKEN}");
        let res = api(&node, "GET", "/v1/functions", Some(&auth), None).await;
        assert_eq!(res.status, 200, "{scheme}: {}", res.text());
    }
    let upper = format!("Bearer {}", ADMIN_TOKEN.to_uppercase());
    if upper != format!("Bearer {ADMIN_TOKEN}") {
        assert_eq!(api(&node, "GET", "/v1/functions", Some(&upper), None).await.status, 401);
    }
    // Health checks need no token.
    assert_eq!(api(&node, "GET", "/healthz", None, None).await.status, 200);
}

#[tokio::test]
async fn bad_uploads_are_refused_whole_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.admin.max_bundle_size = 64 * 1024;
    config.limits.max.memory = 256 * 1024 * 1024;
    let node = node_with_app(root.path(), config).await;
    let before = state(&node).await;
    assert_eq!(before.0, "200 version 1");
    assert_eq!(before.2.len(), 1, "one bundle file: {:?}", before.2);

    let good = bundle_of(&app(root.path(), "2"));
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    let variant = |name: &str, edge: &str, code: &str| {
        let dir = root.path().join(name);
        write_file(&dir, "edge.toml", edge);
        write_file(&dir, "index.js", code);
        dir
    };
    let ok_code = "export default { fetch() { return new Response('x') } }";
    let other = bundle_of(&variant("other", "name = \"other\"\nentry = \"index.js\"\n", ok_code));
    let bare = {
        let dir = variant("bare", "name = \"app\"\nentry = \"index.js\"\n", ok_code);
        Bundle::from_dir(&dir, "app", Path::new("index.js")).unwrap().encode()
    };
    let greedy = bundle_of(&variant(
        "greedy",
        "name = \"app\"\nentry = \"index.js\"\n[limits]\nmemory = \"1GiB\"\n",
        ok_code,
    ));
    let throws = bundle_of(&variant(
        "throws",
        "name = \"app\"\nentry = \"index.js\"\n",
        "throw new Error('no start');\nexport default {}",
    ));
    let big = {
        let noise: String = (0..20_000).map(|i| format!("{:x}", i * 2_654_435_761u64)).collect();
        bundle_of(&variant(
            "big",
            "name = \"app\"\nentry = \"index.js\"\n",
            &format!("export const noise = \"{noise}\";\n{ok_code}"),
        ))
    };
    assert!(big.len() > 64 * 1024);
    let cases: [(&str, Vec<u8>, u16, &str); 9] = [
        ("truncated", good[..good.len() / 2].to_vec(), 400, "invalid_bundle"),
        ("tampered", tampered, 400, "invalid_bundle"),
        ("not a bundle", b"hello".to_vec(), 400, "invalid_bundle"),
        ("empty", Vec::new(), 400, "invalid_bundle"),
        ("another function's", other, 400, "bad_request"),
        ("without edge.toml", bare, 400, "invalid_bundle"),
        ("over the limits", greedy, 400, "invalid_config"),
        ("throwing at start", throws, 400, "start_failed"),
        ("too large", big, 413, "too_large"),
    ];
    for (what, body, status, code) in cases {
        let res = api(&node, "PUT", "/v1/functions/app", Some(&bearer()), Some(&body)).await;
        assert_eq!(res.status, status, "{what}: {}", res.text());
        let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
        assert_eq!(state(&node).await, before, "{what}: nothing changed");
        if code == "start_failed" {
            // The answer and the function's log both say why: the user's error and line.
            let message = json["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("Error: no start") && message.contains("index.js:1"),
                "{json}"
            );
            assert!(message.contains("1 | throw new Error('no start');"), "a code frame: {json}");
            let logs = api(&node, "GET", "/v1/functions/app/logs", Some(&bearer()), None).await;
            let logged = logs.text();
            assert!(logged.contains("no start") && logged.contains("index.js:1"), "{logged}");
            assert!(!logged.contains("ext:isola"), "no runtime frames: {logged}");
        }
    }

    // An upload cut off midway: the connection closes after half the declared body.
    let mut stream = tokio::net::TcpStream::connect(node.admin.unwrap()).await.unwrap();
    let head = format!(
        "PUT /v1/functions/app HTTP/1.1\r\nhost: admin\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        bearer(),
        good.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &good[..good.len() / 2]).await.unwrap();
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(state(&node).await, before, "an interrupted upload changes nothing");

    // And the same bundle, whole, deploys.
    let res = api(&node, "PUT", "/v1/functions/app", Some(&bearer()), Some(&good)).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(curl("GET", &node.url("/"), &[], None).await.text(), "version 2");
}

/// A deploy that declares a route another function declares is refused (409
/// `route_conflict`, both named) and changes nothing; a route that only overlaps is fine, and
/// the most specific one answers.
#[tokio::test]
async fn a_deploy_taking_another_functions_route_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(NodeConfig::default(), &[]).await;
    let answering = |name: &str, route: &str| {
        let code = format!("export default {{ fetch() {{ return new Response('{name}') }} }}");
        bundle_of(&tests::function_folder(root.path(), name, route, "", &code))
    };
    let put = |name: &'static str, bundle: Vec<u8>| {
        let node = &node;
        async move {
            api(node, "PUT", &format!("/v1/functions/{name}"), Some(&bearer()), Some(&bundle)).await
        }
    };
    assert_eq!(put("first", answering("first", "/shared/*")).await.status, 201);

    let res = put("second", answering("second", "/shared/*")).await;
    assert_eq!(res.status, 409, "{}", res.text());
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(json["error"]["code"], "route_conflict");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("/shared/*") && message.contains("`first`"), "{message}");
    let listed = api(&node, "GET", "/v1/functions", Some(&bearer()), None).await;
    assert!(!listed.text().contains("second"), "nothing was deployed: {}", listed.text());

    // Overlapping is not clashing: the most specific route answers.
    assert_eq!(put("second", answering("second", "/shared/special")).await.status, 201);
    let get = |path: &str| {
        let url = node.url(path);
        async move { curl("GET", &url, &[], None).await }
    };
    assert_eq!(get("/shared/special").await.text(), "second");
    assert_eq!(get("/shared/other").await.text(), "first");
    // The active version's bundle again makes no new version (200, unchanged)...
    let again = put("first", answering("first", "/shared/*")).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let json: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
    assert_eq!((json["version"].as_u64(), json["unchanged"].as_bool()), (Some(1), Some(true)));
    // ...and a new version of a function keeps its own routes.
    let code = "export default { fetch() { return new Response('first, again') } }";
    let v2 = bundle_of(&tests::function_folder(root.path(), "first", "/shared/*", "", code));
    let res = put("first", v2).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(get("/shared/other").await.text(), "first, again");
    node.shutdown().await;
}

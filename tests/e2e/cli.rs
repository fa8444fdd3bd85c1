//! The real `edge-node` binary refuses bad function folders and node files: a clear error
//! that names the file and the problem, exit code 64, and nothing starts.

use std::path::Path;
use std::time::Duration;

use tests::NodeProcess;

use tests::{run_edge_node as run, write_file as write};

#[tokio::test]
async fn dev_refuses_a_malformed_edge_toml() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"Bad Name\"\nentry = 42\nroutes = [\"nowhere\"]\n");
    let out = run(&["dev", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let file = dir.path().join("edge.toml");
    assert!(stderr.contains(&file.display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(stderr.contains("name: `Bad Name` is not a valid name"), "{stderr}");
    assert!(stderr.contains("entry: expected a string, found an integer"), "{stderr}");
    assert!(stderr.contains("routes[0]: route `nowhere` needs a path"), "{stderr}");
    assert!(!stderr.contains("listening"), "nothing starts: {stderr}");
}

#[tokio::test]
async fn dev_refuses_a_missing_entry_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"hello\"\nentry = \"src/index.js\"\n");
    let out = run(&["dev", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let entry = dir.path().join("src/index.js");
    assert!(
        stderr.contains(&format!("entry: entry file {} does not exist", entry.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "nothing starts: {stderr}");
}

#[tokio::test]
async fn serve_and_check_refuse_a_bad_function_among_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "node.toml",
        "version = 1\n[http]\nlisten = [\"127.0.0.1:0\"]\n[functions]\ndir = \"fns\"\n",
    );
    write(dir.path(), "fns/good/edge.toml", "name = \"good\"\nentry = \"index.js\"\n");
    write(
        dir.path(),
        "fns/good/index.js",
        "export default { fetch() { return new Response('ok') } }",
    );
    write(
        dir.path(),
        "fns/bad/edge.toml",
        "name = \"bad\"\nentry = \"index.js\"\ncolour = \"red\"\n",
    );
    write(dir.path(), "fns/bad/index.js", "");
    let config = dir.path().join("node.toml");
    for command in ["serve", "check"] {
        let out = run(&[command, "--config", config.to_str().unwrap()]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {stderr}");
        let bad = dir.path().join("fns/bad/edge.toml");
        assert!(stderr.contains(&bad.display().to_string()), "{command} names the file: {stderr}");
        assert!(stderr.contains("colour: unknown key"), "{command}: {stderr}");
        assert!(!stderr.contains("listening"), "{command}: nothing starts: {stderr}");
    }
    // With the bad folder gone, check passes.
    std::fs::remove_dir_all(dir.path().join("fns/bad")).unwrap();
    let out = run(&["check", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_node_toml_with_three_mistakes_reports_all_three() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "node.toml",
        "version = 1\n[http]\nlisten = [\"127.0.0.1:0\"]\nmax_headers = 0\nidle_timeout = \"soon\"\n[limits]\nmemory = \"lots\"\n[functions]\ndir = \"fns\"\n",
    );
    std::fs::create_dir_all(dir.path().join("fns")).unwrap();
    let config = dir.path().join("node.toml");
    for command in ["check", "serve"] {
        let out = run(&[command, "--config", config.to_str().unwrap()]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {stderr}");
        assert!(stderr.contains("3 problems"), "{command}: {stderr}");
        for line in [
            "http.max_headers: must be at least 1",
            "http.idle_timeout: `soon` is not a duration",
            "limits.memory: `lots` is not a size",
        ] {
            assert!(stderr.contains(line), "{command} does not report {line:?}: {stderr}");
        }
        assert!(!stderr.contains("listening"), "{command}: nothing binds: {stderr}");
    }
}

/// `check` reports in one pass: node.toml's problems, then every function folder's (read with
/// what of node.toml could be read), a missing entry beside the same file's other problems,
/// and two functions claiming the same route, each naming its file and key in plain words.
#[tokio::test]
async fn check_lists_every_problem_of_node_toml_and_its_functions_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "node.toml",
        "version = 1\n[http]\nidle_timeout = \"10 furlongs\"\n[functions]\ndir = \"fns\"\n",
    );
    let ok = "export default { fetch() { return new Response('ok') } }";
    write(
        dir.path(),
        "fns/a/edge.toml",
        "name = \"a\"\nentry = \"index.js\"\nroutes = [\"/one/*\"]\n",
    );
    write(dir.path(), "fns/a/index.js", ok);
    write(
        dir.path(),
        "fns/b/edge.toml",
        "name = \"b\"\nentry = \"index.js\"\nroutes = [\"/one/*\"]\n",
    );
    write(dir.path(), "fns/b/index.js", ok);
    write(
        dir.path(),
        "fns/c/edge.toml",
        "name = \"c\"\nentry = \"missing.js\"\n[limits]\ncpu_time = \"fast\"\n",
    );
    let config = dir.path().join("node.toml");
    let out = run(&["check", "--config", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let c = dir.path().join("fns/c/edge.toml");
    let b = dir.path().join("fns/b/edge.toml");
    for expected in [
        format!("{} has 1 problem", config.display()),
        "http.idle_timeout: `10 furlongs` is not a duration: write a number and a unit".to_string(),
        format!("{} has 2 problems", c.display()),
        "limits.cpu_time: `fast` is not a duration".to_string(),
        format!(
            "entry: entry file {} does not exist",
            dir.path().join("fns/c/missing.js").display()
        ),
        format!(
            "{}: route `/one/*` of function `b` is already a route of function `a`",
            b.display()
        ),
    ] {
        assert!(stderr.contains(&expected), "check does not say {expected:?}:\n{stderr}");
    }
    assert!(!stderr.contains("expected number"), "no parser wording: {stderr}");
}

/// With `[admin] cert`/`key` the admin API speaks HTTPS only: the CLI reaches it with the
/// certificate trusted (`--ca` or EDGE_NODE_CA), refuses it without, and plain HTTP gets no
/// answer.
#[tokio::test]
async fn the_admin_api_speaks_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("admin.pem"), dir.path().join("admin.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=admin"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    write(
        dir.path(),
        "node.toml",
        &format!(
            "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let node =
        NodeProcess::start(&dir.path().join("node.toml"), &[("EDGE_ADMIN_TOKEN", "t")]).await;
    let admin = node.admin.unwrap();
    let list = |node_url: String, ca: Option<&Path>| {
        let mut command = tokio::process::Command::new(tests::edge_node_bin());
        command.args(["functions", "list", "--node", &node_url, "--token", "t"]);
        if let Some(ca) = ca {
            command.env("EDGE_NODE_CA", ca);
        }
        async move { command.output().await.unwrap() }
    };
    let ok = list(format!("https://{admin}"), Some(&cert)).await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("0 function(s)"));
    let untrusted = list(format!("https://{admin}"), None).await;
    assert_eq!(untrusted.status.code(), Some(1));
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("cannot reach") && said.to_lowercase().contains("certificate"), "{said}");
    let plain = list(format!("http://{admin}"), None).await;
    assert_eq!(plain.status.code(), Some(1), "plain HTTP gets no answer");
    node.kill_9().await;
}

/// `edge-node serve` of a node.toml (`[node]` settings given) serving the `proto` fixture.
async fn serve_proto(dir: &Path, node_section: &str) -> NodeProcess {
    let toml = format!(
        "version = 1\n[node]\n{node_section}\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[functions]\ndir = \"fns\"\n"
    );
    write(dir, "node.toml", &toml);
    let fixture = tests::function_dir("proto");
    for file in ["edge.toml", "src/index.js"] {
        write(
            dir,
            &format!("fns/proto/{file}"),
            &std::fs::read_to_string(fixture.join(file)).unwrap(),
        );
    }
    NodeProcess::start(&dir.join("node.toml"), &[]).await
}

#[tokio::test]
async fn sigterm_drains_the_request_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = serve_proto(dir.path(), "").await;
    let addr = node.http;

    let url = format!("http://{addr}/slow");
    let slow = tokio::spawn(async move { tests::curl("GET", &url, &[], None).await });
    // Wait until the function has the request, then ask the node to stop.
    node.wait_for_line("slow request started").await;
    let pid = node.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());

    // New connections are refused while the request in flight finishes.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the node still accepts connections after SIGTERM");
    let res = slow.await.unwrap();
    assert_eq!((res.status, res.text().as_str()), (200, "slow done"));
    let status =
        tokio::time::timeout(Duration::from_secs(20), node.child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    while let Ok(Some(line)) = node.lines.next_line().await {
        rest.push_str(&line);
    }
    assert!(rest.contains("drained; stopped"), "the drain is logged: {rest}");
}

#[tokio::test]
async fn a_function_asking_for_more_than_the_node_allows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "node.toml",
        "version = 1\n[limits.max]\nmemory = \"256MiB\"\ncpu_time = \"1s\"\n[functions]\ndir = \"fns\"\n",
    );
    write(
        dir.path(),
        "fns/greedy/edge.toml",
        "name = \"greedy\"\nentry = \"index.js\"\n[limits]\nmemory = \"1GiB\"\ncpu_time = \"2s\"\n",
    );
    write(
        dir.path(),
        "fns/greedy/index.js",
        "export default { fetch() { return new Response('x') } }",
    );
    let config = dir.path().join("node.toml");
    let out = run(&["check", "--config", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let file = dir.path().join("fns/greedy/edge.toml");
    assert!(
        stderr.contains(&format!(
            "{}: limits.memory: 1024MiB is more than this node allows (256MiB)",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("limits.cpu_time: 2s is more than this node allows (1s)"), "{stderr}");
}

#[tokio::test]
async fn a_second_sigterm_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = serve_proto(dir.path(), "shutdown_grace_period = \"60s\"").await;
    let addr = node.http;
    // A connection that stays open keeps the drain waiting for the whole grace period.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut held, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    node.wait_for_line("slow request started").await;
    let pid = node.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    node.wait_for_line("shutting down").await;
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(5), node.child.wait())
        .await
        .expect("the second signal stops the node at once, not after the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(1));
    drop(held);
}

/// `edge-node dev` on `dir`, logging JSON; its address once it serves, and its log lines.
pub(crate) async fn dev_process(dir: &Path) -> (tokio::process::Child, String, tests::StderrLines) {
    let (child, url, lines, _) = dev_process_seen(dir).await;
    (child, url, lines)
}

/// [`dev_process`], with the records `dev` printed before it said where it serves.
async fn dev_process_seen(
    dir: &Path,
) -> (tokio::process::Child, String, tests::StderrLines, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(tests::edge_node_bin())
        .args(["dev", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("EDGE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let message = record["fields"]["message"].as_str().unwrap_or_default();
            if let Some(at) = message.find("http://") {
                return message[at..].split_whitespace().next().unwrap().to_string();
            }
            seen.push(line);
        }
        panic!("dev exited before it served");
    })
    .await
    .expect("dev serves");
    (child, url, lines, seen)
}

/// Reads `lines` until one's message starts with `prefix`.
async fn wait_for_message(lines: &mut tests::StderrLines, prefix: &str) {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if record["fields"]["message"].as_str().unwrap_or_default().starts_with(prefix) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "dev did not log {prefix:?}");
}

#[tokio::test]
async fn dev_reloads_an_edited_function_and_keeps_serving_through_a_broken_edit() {
    let dir = tempfile::tempdir().unwrap();
    let code = |answer: &str| {
        format!("export default {{ fetch() {{ return new Response('{answer}') }} }}")
    };
    write(dir.path(), "edge.toml", "name = \"live\"\nentry = \"src/index.js\"\n");
    write(dir.path(), "src/index.js", &code("one"));
    let (_child, url, mut lines) = dev_process(dir.path()).await;
    let get = || async { body_of(&url).await };
    assert_eq!(get().await, "one");

    write(dir.path(), "src/index.js", &code("two"));
    wait_for_message(&mut lines, "reloaded live").await;
    assert_eq!(get().await, "two", "the edit is served");

    // An edit that does not build is refused; the last good version keeps serving.
    write(dir.path(), "src/index.js", "export default {");
    wait_for_message(&mut lines, "not reloaded").await;
    assert_eq!(get().await, "two");

    write(dir.path(), "src/index.js", &code("three"));
    wait_for_message(&mut lines, "reloaded live").await;
    assert_eq!(get().await, "three");
}

/// The body of a GET of `url`, through curl.
async fn body_of(url: &str) -> String {
    let res = tests::curl("GET", url, &[], None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.text()
}

/// A function folder under `root` answering `answer` on `/<name>`.
fn answering(root: &Path, name: &str, answer: &str) -> std::path::PathBuf {
    tests::function_folder(
        root,
        name,
        &format!("/{name}"),
        "",
        &format!("export default {{ fetch() {{ return new Response('{answer}') }} }}"),
    )
}

/// SIGHUP re-reads `[functions] dir`: new and changed functions serve, a removed one stops, a
/// deployed function of a folder function's name serves again once the folder lets it go, and
/// a folder that does not load changes nothing.
#[tokio::test]
async fn sighup_rereads_the_functions_folder() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[functions]\ndir = \"fns\"\n",
    );
    let fns = root.path().join("fns");
    answering(&fns, "a", "a one");
    let mut node = NodeProcess::start(
        &root.path().join("node.toml"),
        &[("EDGE_ADMIN_TOKEN", tests::ADMIN_TOKEN)],
    )
    .await;
    let http = node.http;
    let get = |path: &str| {
        let url = format!("http://{http}{path}");
        async move { tests::curl("GET", &url, &[], None).await }
    };
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let deployed = tempfile::tempdir().unwrap();
    let c = answering(deployed.path(), "c", "c deployed");
    let url = format!("http://{}/v1/functions/c", node.admin.unwrap());
    let res = tests::curl("PUT", &url, &auth, Some(&tests::bundle_of(&c))).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(get("/a").await.text(), "a one");
    assert_eq!(get("/c").await.text(), "c deployed");

    let hup = |pid: u32| {
        let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status();
        assert!(status.unwrap().success());
    };
    let pid = node.child.id().unwrap();
    answering(&fns, "a", "a two");
    answering(&fns, "b", "b one");
    answering(&fns, "c", "c from the folder");
    hup(pid);
    node.wait_for_line("reloaded the functions folder").await;
    assert_eq!(get("/a").await.text(), "a two", "a changed function serves its new code");
    assert_eq!(get("/b").await.text(), "b one", "a new function serves");
    assert_eq!(get("/c").await.text(), "c from the folder", "the folder's function wins");

    std::fs::remove_dir_all(fns.join("c")).unwrap();
    std::fs::remove_dir_all(fns.join("b")).unwrap();
    hup(pid);
    node.wait_for_line("reloaded the functions folder").await;
    assert_eq!(get("/b").await.status, 404, "a removed function stops");
    assert_eq!(get("/c").await.text(), "c deployed", "the deployed one serves again");

    // A folder that does not load changes nothing.
    write(&fns, "bad/edge.toml", "name = \"bad\"\nentry = \"index.js\"\ncolour = \"red\"\n");
    answering(&fns, "a", "a three");
    hup(pid);
    node.wait_for_line("the functions folder was not reloaded").await;
    assert_eq!(get("/a").await.text(), "a two");
    assert_eq!(get("/c").await.text(), "c deployed");
}

/// What a function logs is one line of the node's own log (plain format): line breaks and
/// terminal escapes in it are escaped, so it cannot forge another record.
#[tokio::test]
async fn a_function_cannot_forge_lines_of_the_node_log() {
    use tokio::io::AsyncBufReadExt;
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[functions]\ndir = \"fns\"\n",
    );
    tests::function_folder(
        &root.path().join("fns"),
        "forger",
        "/*",
        "",
        r#"export default { fetch() {
  console.log("done\nFORGED function=\"victim\" ok\r\u001b[31mRED");
  return new Response("logged");
} }"#,
    );
    let mut child = tokio::process::Command::new(tests::edge_node_bin())
        .args(["serve", "--config", root.path().join("node.toml").to_str().unwrap()])
        .env_remove("EDGE_LOG_FORMAT")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains("listening for HTTP (") {
                let at = line.find("addr=").expect("the address is logged") + "addr=".len();
                return line[at..].split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the node exited: {seen:#?}");
    })
    .await
    .expect("the node listens");
    let res = tests::curl("GET", &format!("http://{addr}/"), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "logged"));
    let record = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains("done") {
                return line;
            }
        }
        panic!("the node exited: {seen:#?}");
    })
    .await
    .expect("the function's line is logged");
    assert!(record.contains(r#"done\nFORGED function="victim" ok\r\u{1b}[31mRED"#), "{record}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    assert!(!seen.iter().any(|l| l.starts_with("FORGED")), "a forged line: {seen:#?}");
    assert!(!seen.iter().any(|l| l.contains('\u{1b}') || l.contains('\r')), "{seen:#?}");
}

/// Two functions of a folder declaring the same route are refused by `check` (and so by
/// `serve`), naming both and the route.
#[tokio::test]
async fn check_refuses_two_functions_with_the_same_route() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "node.toml", "version = 1\n[functions]\ndir = \"fns\"\n");
    let code = "export default { fetch() { return new Response('x') } }";
    tests::function_folder(&dir.path().join("fns"), "alpha", "/shared/*", "", code);
    tests::function_folder(&dir.path().join("fns"), "beta", "/shared/*", "", code);
    tests::function_folder(&dir.path().join("fns"), "gamma", "/shared/gamma", "", code);
    let config = dir.path().join("node.toml");
    let out = run(&["check", "--config", config.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(
            "route `/shared/*` of function `beta` is already a route of function `alpha`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("gamma"), "an overlapping route is fine: {stderr}");
}

/// With `HTTP_PROXY` (and the others) set in the node's environment, a function's fetch does
/// not go to the proxy: the outbound policy sees the real target, and refuses loopback.
#[tokio::test]
async fn proxy_variables_do_not_carry_functions_past_the_outbound_policy() {
    use tokio::io::AsyncReadExt;
    // A "proxy" that records every connection it gets.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = proxy.accept().await {
            let mut head = vec![0u8; 1024];
            let n = stream.read(&mut head).await.unwrap_or(0);
            let _ = seen_tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
        }
    });
    let (collector, mut collected) = tests::collector().await;
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "node.toml",
        &format!("version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[fetch]\nallow = [\"{collector}\"]\n[functions]\ndir = \"fns\"\n"),
    );
    tests::function_folder(
        &root.path().join("fns"),
        "out",
        "/*",
        &format!("[vars]\nALLOWED = \"http://{collector}/allowed\"\n"),
        r#"export default { async fetch(request, env) {
  const target = new URL(request.url).searchParams.get("to") ?? env.ALLOWED;
  try {
    const res = await fetch(target, { method: "POST", body: "hi" });
    return new Response(`reached ${res.status}`);
  } catch (e) {
    return new Response(`refused: ${e.message}`);
  }
} }"#,
    );
    let env: Vec<(&str, &str)> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"]
        .into_iter()
        .map(|v| (v, proxy_url.as_str()))
        .collect();
    let mut node = NodeProcess::start(&root.path().join("node.toml"), &env).await;
    node.wait_for_logged("the proxy variables are ignored").await;
    let get = |query: &str| {
        let url = format!("http://{}/{query}", node.http);
        async move { tests::curl("GET", &url, &[], None).await.text() }
    };
    // An allowed host is reached directly.
    assert_eq!(get("").await, "reached 200");
    let (path, body) = collected.recv().await.unwrap();
    assert_eq!((path.as_str(), body.as_ref()), ("/allowed", b"hi".as_slice()));
    // Loopback, a metadata name and an internal name are refused, not handed to the proxy.
    for target in
        ["http://localhost:9/", "http://metadata.google.internal/x", "http://127.0.0.2:5984/"]
    {
        let answer = get(&format!("?to={target}")).await;
        assert!(answer.starts_with("refused: "), "{target}: {answer}");
    }
    assert!(seen.try_recv().is_err(), "the proxy got a request");
    node.kill_9().await;
}

/// `dev` reads local secrets from `.dev.vars` (reloading when it changes), and a second
/// `dev` of the same function runs beside the first.
#[tokio::test]
async fn dev_reads_dev_vars_and_runs_twice_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"twice\"\nentry = \"index.js\"\n");
    write(
        dir.path(),
        "index.js",
        "export default { fetch(request, env) { return new Response(`${env.API_KEY}`) } }",
    );
    write(dir.path(), ".dev.vars", "# local only\nAPI_KEY=\"shh\"\n");
    let (_first, url, mut lines) = dev_process(dir.path()).await;
    assert_eq!(body_of(&url).await, "shh");

    write(dir.path(), ".dev.vars", "API_KEY=changed\n");
    wait_for_message(&mut lines, "reloaded twice").await;
    assert_eq!(body_of(&url).await, "changed");

    // The same folder again: its own store, served on its own port.
    let (_second, other, _) = dev_process(dir.path()).await;
    assert_ne!(url, other);
    assert_eq!(body_of(&other).await, "changed");
    assert_eq!(body_of(&url).await, "changed", "the first one serves on");
}

/// `dev` prints a line per request to its terminal (method, path, how it ended, how long it
/// took), and a limit that stops an invocation shows there too.
#[tokio::test]
async fn dev_prints_a_line_per_request_and_each_limit_kill() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"lines\"\nentry = \"index.js\"\n");
    write(
        dir.path(),
        "index.js",
        "export default { fetch(request) { if (new URL(request.url).pathname === '/spin') { for (;;) {} } return new Response('ok') } }",
    );
    let (_child, url, mut lines) = dev_process(dir.path()).await;
    assert_eq!(body_of(&url).await, "ok");
    let spun = tests::curl("GET", &format!("{url}spin"), &[], None).await;
    assert_eq!(spun.status, 503);
    let mut wanted = vec!["[lines]", "GET / 200 in", "GET /spin exceeded_cpu in"];
    let printed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            wanted.retain(|needle| !line.contains(needle));
            if wanted.is_empty() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(printed, Ok(true), "dev did not print {wanted:?}");
}

/// In `dev` an exception answers with its message and stack: an HTML page for a browser, the
/// JSON body otherwise. `serve` keeps them to the log.
#[tokio::test]
async fn dev_answers_an_exception_with_its_stack() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"thrower\"\nentry = \"index.js\"\n");
    write(
        dir.path(),
        "index.js",
        "function deep() { throw new Error('broken <here>'); }\nexport default { fetch() { return deep(); } }\n",
    );
    let (_child, url, _lines) = dev_process(dir.path()).await;
    let html = tests::curl("GET", &url, &[("accept".into(), "text/html,*/*".into())], None).await;
    assert_eq!(html.status, 500);
    assert_eq!(html.header("content-type"), Some("text/html; charset=utf-8"));
    let page = html.text();
    assert!(page.contains("broken &lt;here&gt;"), "{page}");
    assert!(page.contains("index.js:1"), "the stack names the line: {page}");
    let json = tests::curl("GET", &url, &[], None).await;
    let body: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(body["error"], "exception");
    assert!(body["message"].as_str().unwrap().contains("at deep"), "{body}");

    // A node's default: the error and the request id only.
    let node = tests::TestNode::start(&[dir.path().to_path_buf()]).await;
    let plain = tests::curl("GET", &node.url("/"), &[], None).await;
    let body: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(body.get("message"), None, "{body}");
    node.shutdown().await;
}

/// `invoke` fires a cron or a queue message at a function `dev` serves, through the local
/// admin API `dev` prints the command for.
#[tokio::test]
async fn invoke_fires_triggers_of_a_function_dev_serves() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", "name = \"timed\"\nentry = \"index.js\"\n");
    write(
        dir.path(),
        "index.js",
        "export default {\n  fetch() { return new Response('ok'); },\n  scheduled(event) { console.log(`tick ${event.cron}`); },\n  queue(batch) { for (const m of batch.messages) console.log(`message ${JSON.stringify(m.body)}`); },\n};\n",
    );
    let (_child, _url, mut lines) = dev_process(dir.path()).await;
    let command = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let message = record["fields"]["message"].as_str().unwrap_or_default().to_string();
            if let Some(at) = message.find("edge-node invoke") {
                return message[at..].to_string();
            }
        }
        panic!("dev did not say how to fire triggers");
    })
    .await
    .unwrap();
    let words: Vec<&str> = command.split_whitespace().collect();
    let flag = |name: &str| words[words.iter().position(|w| *w == name).unwrap() + 1];
    let (node, token) = (flag("--node"), flag("--token"));

    let cron = run(&["invoke", "timed", "--cron", "--node", node, "--token", token]).await;
    assert!(cron.status.success(), "{}", String::from_utf8_lossy(&cron.stderr));
    let ticked = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("tick manual") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ticked, Ok(true), "the scheduled handler did not run");
    let queue = run(&[
        "invoke",
        "timed",
        "--queue",
        "jobs",
        "--body",
        "{\"n\":1}",
        "--node",
        node,
        "--token",
        token,
    ])
    .await;
    assert!(queue.status.success(), "{}", String::from_utf8_lossy(&queue.stderr));
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("message {\\\"n\\\":1}") || line.contains(r#"message {"n":1}"#) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the queue handler did not log the message");
}

/// A function that throws while its module loads: `dev`'s answer says why, with the user's
/// message and line, not only "its log says why".
#[tokio::test]
async fn dev_answers_a_start_failure_with_the_functions_own_error() {
    let dir = tempfile::tempdir().unwrap();
    // TypeScript: the interface is gone from the code that runs, so a frame that is not
    // source-mapped would name line 3, not 4.
    write(dir.path(), "edge.toml", "name = \"top\"\nentry = \"index.ts\"\n");
    write(
        dir.path(),
        "index.ts",
        "interface Ready {\n  ready: boolean;\n}\nconst state: Ready = { ready: false }; throw new Error('top-level boom');\nexport default { fetch() { return new Response('x'); } };\n",
    );
    let (_child, url, _lines, seen) = dev_process_seen(dir.path()).await;
    let res = tests::curl("GET", &url, &[], None).await;
    assert_eq!(res.status, 500);
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("Error: top-level boom"), "{body}");
    assert!(message.contains("index.ts:4:"), "{body}");
    // The terminal shows it once, at error level, with its line as written and a caret under
    // where the error was made, and no frame of the runtime's.
    let said = seen.join("\n");
    let first =
        seen.iter().find(|l| l.contains("top-level boom")).unwrap_or_else(|| panic!("{said}"));
    assert!(first.contains(" error [top]") || first.contains("\"ERROR\""), "{first}");
    assert!(
        !first.contains("Uncaught"),
        "reported as the start failure, not also as a rejection: {said}"
    );
    let frame = "4 | const state: Ready = { ready: false }; throw new Error('top-level boom');";
    assert!(said.contains(frame), "{said}");
    let caret = said.lines().skip_while(|l| !l.contains(frame)).nth(1).unwrap_or_default();
    let column = caret.find('^').unwrap_or(0) - caret.find('|').unwrap_or(0);
    let made = frame.find("new Error").unwrap() - frame.find('|').unwrap();
    assert_eq!(column, made, "the caret is under the error's making:\n{said}");
    assert!(!said.contains("ext:isola"), "{said}");
}

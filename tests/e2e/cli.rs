//! The real `edge-node` binary refuses bad function folders and node files: a clear error
//! that names the file and the problem, exit code 64, and nothing starts.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tests::edge_node_bin;

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs the binary; a node that started instead of refusing would run until the timeout.
async fn run(args: &[&str]) -> Output {
    let child =
        tokio::process::Command::new(edge_node_bin()).args(args).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("edge-node exits instead of starting")
        .unwrap()
}

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

//! Standalone nodes deployed to together: a deploy that misses one says so, and
//! `functions list` over the nodes shows which serve different code.

use std::path::Path;

use tests::{write_file as write, NodeProcess};

const TOKEN: &str = "fleet-token";

async fn node(dir: &Path) -> NodeProcess {
    write(
        dir,
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n",
    );
    NodeProcess::start(&dir.join("node.toml"), &[("EDGE_ADMIN_TOKEN", TOKEN)]).await
}

async fn cli(args: &[&str], nodes: &[String]) -> (bool, String, String) {
    let out = tokio::process::Command::new(tests::edge_node_bin())
        .args(args)
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .env("EDGE_NODE", nodes.join(","))
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn nodes_that_drifted_apart_are_shown() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let (a, b) = (node(&a_dir).await, node(&b_dir).await);
    let url = |n: &NodeProcess| format!("http://{}", n.admin.unwrap());
    let app = tests::function_folder(
        root.path(),
        "app",
        "/*",
        "",
        "export default { fetch() { return new Response('one') } }",
    );
    let app_path = app.to_str().unwrap();
    let both = vec![url(&a), url(&b)];
    let (ok, _, err) = cli(&["deploy", app_path], &both).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["functions", "list"], &both).await;
    assert!(ok && !err.contains("warning"), "the same everywhere: {err}");

    // B goes down; the next deploy reaches only A, and says so.
    b.kill_9().await;
    std::fs::write(
        app.join("index.js"),
        "export default { fetch() { return new Response('two') } }",
    )
    .unwrap();
    let (ok, out, err) = cli(&["deploy", app_path], &both).await;
    assert!(!ok, "a node missed the deploy: {out}");
    assert!(
        err.contains("is now deployed on some nodes and not on") && err.contains(&both[1]),
        "{err}"
    );

    // B is back, serving the old code: the list says they differ, and how.
    let b = node(&b_dir).await;
    let both = vec![url(&a), url(&b)];
    let (ok, out, err) = cli(&["functions", "list"], &both).await;
    assert!(ok, "{err}");
    assert!(out.contains("app  version 2") && out.contains("app  version 1"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("warning: the nodes differ on app"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(warning.contains(&format!("{} version 2", both[0])), "{warning}");
    assert!(warning.contains(&format!("{} version 1", both[1])), "{warning}");

    // Deployed again to both, they agree (A's version is unchanged, B gets a new one).
    let (ok, out, err) = cli(&["deploy", app_path], &both).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("already serves this bundle; unchanged"), "{out}");
    let (_, _, err) = cli(&["functions", "list"], &both).await;
    assert!(!err.contains("warning"), "{err}");
    a.kill_9().await;
    b.kill_9().await;
}

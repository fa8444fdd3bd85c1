//! Secrets at rest: `edge-node secrets rotate-key` re-seals a stopped node's secrets under a
//! new key; the node then starts with the new key and serves them, and no longer with the old.

use std::time::Duration;

use tests::{curl, versioned_app as app, write_file, NodeProcess};

const TOKEN: &str = "secrets-token";

async fn serve(root: &std::path::Path) -> NodeProcess {
    NodeProcess::start(&root.join("node.toml"), &[("EDGE_ADMIN_TOKEN", TOKEN)]).await
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(tests::edge_node_bin())
        .args(args)
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn rotate_key_reseals_the_secrets_of_a_stopped_node() {
    let root = tempfile::tempdir().unwrap();
    write_file(
        root.path(),
        "node.toml",
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let node = serve(root.path()).await;
    let admin = format!("http://{}", node.admin.unwrap());
    let dir = app(root.path(), "1");
    let (ok, out) = run(&["deploy", dir.to_str().unwrap(), "--node", &admin], &[]).await;
    assert!(ok, "{out}");
    let (ok, out) =
        run(&["secrets", "set", "app", "API_KEY", "--value", "v4lue", "--node", &admin], &[]).await;
    assert!(ok, "{out}");
    let old_key = std::fs::read_to_string(root.path().join("data/secrets.key")).unwrap();

    // While the node runs its store is in use: nothing changes.
    let new_key = root.path().join("new.key");
    std::fs::write(&new_key, format!("{}\n", "ab".repeat(32))).unwrap();
    let config = root.path().join("node.toml");
    let rotate = [
        "secrets",
        "rotate-key",
        "--config",
        config.to_str().unwrap(),
        "--new-key-file",
        new_key.to_str().unwrap(),
    ];
    let (ok, out) = run(&rotate, &[]).await;
    assert!(!ok && out.contains("stop the node first"), "{out}");
    node.kill_9().await;

    let (ok, out) = run(&rotate, &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("re-sealed 1 secret(s) in this node's store"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("data/secrets.key")).unwrap().trim(),
        "ab".repeat(32)
    );

    // Started again (with the new key file), the function still reads its secret.
    let node = serve(root.path()).await;
    let url = format!("http://{}/secret", node.http);
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = curl("GET", &url, &[], None).await.text();
            if text == "v4lue" {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(served.as_deref(), Ok("v4lue"));
    node.kill_9().await;

    // The old key no longer opens the store.
    let (ok, out) = tokio::time::timeout(
        Duration::from_secs(30),
        run(
            &["serve", "--config", config.to_str().unwrap()],
            &[("EDGE_SECRETS_KEY", old_key.trim())],
        ),
    )
    .await
    .expect("the node exits instead of serving");
    assert!(!ok && out.contains("sealed under another key"), "{out}");
}

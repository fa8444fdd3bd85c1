//! The examples in `examples/` run as the README says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tests::{curl, TestNode};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

#[tokio::test]
async fn hello_answers() {
    let node = TestNode::start(&[example("hello")]).await;
    let res = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "Hello from Isola! You asked for /\n"));
    node.shutdown().await;
}

#[tokio::test]
async fn todos_goes_through_its_queue_into_its_table() {
    let node = TestNode::start(&[example("todos")]).await;
    let body = br#"{"title": "write docs"}"#;
    let res = curl("POST", &node.url("/todos"), &[], Some(body)).await;
    assert_eq!(res.status, 202, "{}", res.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = curl("GET", &node.url("/todos"), &[], None).await;
        let todos: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
        if todos.as_array().is_some_and(|t| !t.is_empty()) {
            assert_eq!(todos[0]["title"], "write docs");
            assert_eq!(todos[0]["done"], false);
            break;
        }
        assert!(Instant::now() < deadline, "the todo never reached the table");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
}

/// The README's path to a running node: `serve` with `examples/node.toml` (its ports moved to
/// free ones), `deploy examples/hello`, the function answers, `logs` shows the request.
#[tokio::test]
async fn the_sample_node_toml_serves_a_deployed_example() {
    let root = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(example("node.toml")).unwrap();
    let config =
        sample.replace("127.0.0.1:8080", "127.0.0.1:0").replace("127.0.0.1:9090", "127.0.0.1:0");
    assert_ne!(config, sample, "the sample listens where the README says");
    let path = root.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let token = "readme-token";
    let node = tests::NodeProcess::start(&path, &[("EDGE_ADMIN_TOKEN", token)]).await;
    let admin = format!("http://{}", node.admin.expect("the sample has an admin API"));
    let hello = example("hello");
    let deployed = tests::run_edge_node(&[
        "deploy",
        hello.to_str().unwrap(),
        "--node",
        &admin,
        "--token",
        token,
    ])
    .await;
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let res = curl("GET", &format!("http://{}/", node.http), &[], None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let logs = tests::run_edge_node(&["logs", "hello", "--node", &admin, "--token", token]).await;
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("200"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    assert!(root.path().join("data").is_dir(), "data_dir is beside node.toml");
}

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

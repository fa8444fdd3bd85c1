//! Two functions on one node share nothing: not globals, not module state, not vars.

use tests::{curl, function_dir, TestNode};

fn json(res: &tests::CurlResponse) -> serde_json::Value {
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_do_not_see_each_other() {
    let node = TestNode::start(&[function_dir("iso-a"), function_dir("iso-b")]).await;
    for expected in 1..=3 {
        let a = json(&curl("GET", &node.url("/a/"), &[], None).await);
        assert_eq!(a["count"], expected);
        assert_eq!(a["leak"], "a was here");
        assert_eq!(a["env"], serde_json::json!(["SECRET_OF_A"]));
    }
    let b = json(&curl("GET", &node.url("/b/"), &[], None).await);
    assert_eq!(
        b,
        serde_json::json!({ "count": 1, "leak": "undefined", "polluted": "undefined", "env": ["SECRET_OF_B"] })
    );
    node.shutdown().await;
}

//! Scale to zero: an isolate unused for `idle_timeout` is dropped, and the next request
//! starts a new one.

use std::time::{Duration, Instant};

use tests::{curl, function_dir, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_function_holds_no_isolate_and_the_next_request_is_a_cold_start() {
    let mut config = config::NodeConfig::default();
    config.pool.idle_timeout = Duration::from_millis(300);
    let node = TestNode::start_with(config, &[function_dir("neighbour")]).await;
    assert_eq!(curl("GET", &node.url("/n/1"), &[], None).await.status, 200);
    assert_eq!(node.node().isolates(), 1);
    let starts = node.node().cold_starts();

    let deadline = Instant::now() + Duration::from_secs(10);
    while node.node().isolates() > 0 {
        assert!(Instant::now() < deadline, "the idle isolate was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.node().cold_starts(), starts, "dropping is not starting");

    assert_eq!(curl("GET", &node.url("/n/2"), &[], None).await.status, 200);
    assert_eq!(node.node().isolates(), 1);
    assert_eq!(node.node().cold_starts(), starts + 1, "the next request started a new isolate");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_function_keeps_its_isolate() {
    let mut config = config::NodeConfig::default();
    config.pool.idle_timeout = Duration::from_millis(300);
    let node = TestNode::start_with(config, &[function_dir("proto")]).await;
    // A request that takes 1.5 s outlives the idle timeout without losing its isolate.
    let res = curl("GET", &node.url("/slow"), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "slow done"));
    assert_eq!(node.node().cold_starts(), 1);
    node.shutdown().await;
}

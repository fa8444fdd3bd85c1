//! Queues and cron: delivery at least once across `kill -9`, dead-lettering after exactly
//! `max_retries`, a chain from HTTP through a queue binding to a consumer, structured-clone
//! bodies, and a cron schedule that fires every second without overlapping itself.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tests::{collector, curl, write_file, NodeProcess};

const TOKEN: &str = "triggers-test-token";

/// A node folder serving one function (its edge.toml and index.js given), reaching
/// `collector` through `[fetch] allow`.
fn node_dir(root: &Path, collector: SocketAddr, edge_toml: &str, index_js: &str) -> PathBuf {
    node_dir_in(None, root, collector, edge_toml, index_js)
}

/// The same, and in the cluster of the nats-server at `nats` when given.
fn node_dir_in(
    nats: Option<&str>,
    root: &Path,
    collector: SocketAddr,
    edge_toml: &str,
    index_js: &str,
) -> PathBuf {
    let cluster = nats.map_or(String::new(), |url| format!("[cluster]\nnats_url = \"{url}\"\n"));
    let toml = format!(
        "version = 1\n[node]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[fetch]\nallow = [\"{collector}\"]\n[functions]\ndir = \"fns\"\n{cluster}"
    );
    write_file(root, "node.toml", &toml);
    let edge = format!("{edge_toml}\n[vars]\nCOLLECTOR = \"http://{collector}\"\n");
    write_file(root, "fns/f/edge.toml", &edge);
    write_file(root, "fns/f/index.js", index_js);
    root.join("node.toml")
}

async fn start(config: &Path) -> NodeProcess {
    NodeProcess::start(config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await
}

async fn admin(
    node: &NodeProcess,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> serde_json::Value {
    let url = format!("http://{}{path}", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let res = curl(method, &url, &auth, body.map(str::as_bytes)).await;
    assert!(res.status < 300, "{method} {path}: {} {}", res.status, res.text());
    serde_json::from_slice(&res.body).unwrap()
}

const CONSUMER: &str = r#"
export default {
  async fetch(request, env) {
    const n = Number(new URL(request.url).searchParams.get("n") ?? "1");
    const messages = Array.from({ length: n }, (_, i) => ({
      body: { n: `http-${i}`, when: new Date(Date.UTC(2026, 0, 2)), tags: new Map([["k", i]]) },
    }));
    await env.JOBS.sendBatch(messages);
    return new Response("queued");
  },
  async queue(batch, env) {
    const seen = batch.messages.map((m) => ({
      n: m.body.n,
      attempts: m.attempts,
      clone: m.body.when instanceof Date && m.body.tags instanceof Map
        ? `${m.body.when.toISOString()} ${m.body.tags.get("k")}`
        : null,
    }));
    await fetch(`${env.COLLECTOR}/seen`, { method: "POST", body: JSON.stringify(seen) });
    for (const m of batch.messages) {
      if (m.body.fail) m.retry();
    }
  },
};
"#;

fn consumer_toml(max_retries: u32) -> String {
    format!(
        "name = \"f\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n[[triggers.queue]]\nqueue = \"jobs\"\nmax_batch_size = 100\nmax_batch_timeout = \"50ms\"\nmax_retries = {max_retries}\nvisibility_timeout = \"2s\"\nretry_delay = \"20ms\"\ndead_letter_queue = \"jobs-dlq\"\n[bindings]\nJOBS = {{ queue = \"jobs\" }}\n"
    )
}

/// Reads what the consumer reported until `done` says so (or a deadline passes).
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
    seen: &mut Vec<serde_json::Value>,
    deadline: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let until = Instant::now() + deadline;
    while !done(seen) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, body))) => {
                let batch: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                seen.extend(batch);
            }
            _ => return,
        }
    }
}

/// Runs a test in both modes: on a standalone node (its own store) and on a node in a
/// cluster (a real nats-server with JetStream): the same test, the same expectations.
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn standalone() {
                super::$name(None).await
            }

            #[tokio::test]
            async fn cluster() {
                let nats = tests::nats().await;
                super::$name(Some(&nats.url)).await
            }
        }
    };
}

fn distinct(seen: &[serde_json::Value]) -> usize {
    seen.iter().map(|s| s["n"].to_string()).collect::<std::collections::HashSet<_>>().len()
}

#[tokio::test]
async fn ten_thousand_messages_survive_three_kill_9s() {
    const TOTAL: usize = 10_000;
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let config = node_dir(root.path(), collector, &consumer_toml(5), CONSUMER);
    let mut node = start(&config).await;
    for chunk in 0..TOTAL / 1000 {
        let messages: Vec<_> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|n| serde_json::json!({ "body": { "n": n } }))
            .collect();
        let body = serde_json::json!({ "messages": messages }).to_string();
        let sent = admin(&node, "POST", "/v1/queues/jobs/messages", Some(&body)).await;
        assert_eq!(sent["ids"].as_array().unwrap().len(), 1000);
    }
    let mut seen = Vec::new();
    for kill_at in [2_000, 5_000, 8_000] {
        collect(&mut rx, &mut seen, Duration::from_secs(60), |s| distinct(s) >= kill_at).await;
        assert!(distinct(&seen) >= kill_at, "consumption stalled at {}", distinct(&seen));
        node.kill_9().await;
        node = start(&config).await;
    }
    collect(&mut rx, &mut seen, Duration::from_secs(120), |s| distinct(s) >= TOTAL).await;
    assert_eq!(distinct(&seen), TOTAL, "every message was handled at least once");
    let duplicates = seen.len() - TOTAL;
    eprintln!("{TOTAL} messages, 3 kill -9s: {} deliveries, {duplicates} duplicates", seen.len());
    let stats = admin(&node, "GET", "/v1/queues/jobs", None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut depth = stats["depth"].as_u64().unwrap();
    while depth > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = admin(&node, "GET", "/v1/queues/jobs", None).await["depth"].as_u64().unwrap();
    }
    assert_eq!(depth, 0, "every message acked in the end");
    node.kill_9().await;
}

both_modes!(a_failing_message_is_dead_lettered_after_exactly_max_retries);
async fn a_failing_message_is_dead_lettered_after_exactly_max_retries(nats: Option<&str>) {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let config = node_dir_in(nats, root.path(), collector, &consumer_toml(3), CONSUMER);
    let node = start(&config).await;
    let body = r#"{"messages": [{"body": {"n": "bad", "fail": true}}, {"body": {"n": "good"}}]}"#;
    admin(&node, "POST", "/v1/queues/jobs/messages", Some(body)).await;
    let mut seen = Vec::new();
    let dead =
        || async { admin(&node, "GET", "/v1/queues/jobs-dlq", None).await["depth"].as_u64() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead().await != Some(1) && Instant::now() < deadline {
        collect(&mut rx, &mut seen, Duration::from_millis(200), |_| false).await;
    }
    collect(&mut rx, &mut seen, Duration::from_millis(300), |_| false).await;
    let attempts: Vec<u64> =
        seen.iter().filter(|s| s["n"] == "bad").map(|s| s["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3], "three attempts, then the dead-letter queue");
    assert_eq!(seen.iter().filter(|s| s["n"] == "good").count(), 1, "the good one once");
    let mut jobs = admin(&node, "GET", "/v1/queues/jobs", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while jobs["depth"].as_u64() != Some(0) && Instant::now() < deadline {
        // The last acknowledgement may still be on its way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        jobs = admin(&node, "GET", "/v1/queues/jobs", None).await;
    }
    assert_eq!(jobs["depth"].as_u64(), Some(0), "{jobs}");
    if nats.is_none() {
        // The node counts what it dead-lettered; the cluster's figures come from JetStream,
        // which does not.
        assert_eq!(jobs["dead_lettered"].as_u64(), Some(1));
    }
    assert_eq!(dead().await, Some(1));
    let listed = admin(&node, "GET", "/v1/queues", None).await;
    let names: Vec<&str> =
        listed["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
    assert!(names.contains(&"jobs") && names.contains(&"jobs-dlq"), "{names:?}");
    node.kill_9().await;
}

both_modes!(http_sends_through_a_binding_and_the_consumer_gets_structured_clones);
async fn http_sends_through_a_binding_and_the_consumer_gets_structured_clones(nats: Option<&str>) {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let config = node_dir_in(nats, root.path(), collector, &consumer_toml(3), CONSUMER);
    let node = start(&config).await;
    let res = curl("GET", &format!("http://{}/send?n=3", node.http), &[], None).await;
    assert_eq!((res.status, res.text().as_str()), (200, "queued"));
    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.len() >= 3).await;
    let mut got: Vec<(String, String)> = seen
        .iter()
        .map(|s| {
            (s["n"].as_str().unwrap().to_string(), s["clone"].as_str().unwrap_or("").to_string())
        })
        .collect();
    got.sort();
    let expected: Vec<(String, String)> =
        (0..3).map(|i| (format!("http-{i}"), format!("2026-01-02T00:00:00.000Z {i}"))).collect();
    assert_eq!(got, expected, "Date and Map arrive as Date and Map");
    node.kill_9().await;
}

const CRON: &str = r#"
export default {
  async scheduled(event, env) {
    const start = Date.now();
    await fetch(`${env.COLLECTOR}/run`, {
      method: "POST",
      body: JSON.stringify([{ phase: "start", at: start, scheduled: event.scheduledTime, cron: event.cron }]),
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await fetch(`${env.COLLECTOR}/run`, {
      method: "POST",
      body: JSON.stringify([{ phase: "end", at: Date.now(), scheduled: event.scheduledTime }]),
    });
  },
};
"#;

#[tokio::test]
async fn a_cron_every_second_never_overlaps_a_slow_handler() {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let toml =
        "name = \"f\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"* * * * * *\"\n";
    let config = node_dir(root.path(), collector, toml, CRON);
    let node = start(&config).await;
    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, Duration::from_secs(10), |_| false).await;
    let starts: Vec<&serde_json::Value> = seen.iter().filter(|s| s["phase"] == "start").collect();
    let ends: BTreeMap<u64, u64> = seen
        .iter()
        .filter(|s| s["phase"] == "end")
        .map(|s| (s["scheduled"].as_u64().unwrap(), s["at"].as_u64().unwrap()))
        .collect();
    assert!(starts.len() >= 4, "runs in 10 s: {}", starts.len());
    assert_eq!(starts[0]["cron"], "* * * * * *");
    let mut previous_end = 0;
    for s in &starts {
        let (at, due) = (s["at"].as_u64().unwrap(), s["scheduled"].as_u64().unwrap());
        assert_eq!(due % 1000, 0, "due on a whole second");
        assert!(
            at >= due && at - due < 1000,
            "started {} ms after its second",
            at as i64 - due as i64
        );
        assert!(at >= previous_end, "run due at {due} started before the previous one ended");
        previous_end = ends.get(&due).copied().unwrap_or(u64::MAX);
    }
    let runs = admin(&node, "GET", "/v1/functions/f/cron", None).await;
    let outcomes: HashMap<String, usize> =
        runs["runs"].as_array().unwrap().iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(r["outcome"].as_str().unwrap().to_string()).or_default() += 1;
            m
        });
    assert!(outcomes.get("ok").copied().unwrap_or(0) >= 3, "{outcomes:?}");
    assert!(
        outcomes.get("skipped").copied().unwrap_or(0) >= 3,
        "overlapping seconds are skipped: {outcomes:?}"
    );
    node.kill_9().await;
}

const FILES: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key");
    if (url.pathname === "/upload") {
      await env.FILES.put(key, `uploaded by the function: ${key}`, { contentType: "text/plain" });
      return new Response("stored");
    }
    const object = await env.FILES.get(key);
    if (object === null) return new Response("missing", { status: 404 });
    return new Response(`${object.contentType} ${object.size} ${object.text()}`);
  },
  async storage(event, env) {
    await fetch(`${env.COLLECTOR}/event`, { method: "POST", body: JSON.stringify([event]) });
  },
};
"#;

both_modes!(uploads_through_the_api_and_a_binding_fire_the_storage_trigger);
async fn uploads_through_the_api_and_a_binding_fire_the_storage_trigger(nats: Option<&str>) {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let toml = "name = \"f\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n[[triggers.storage]]\nbucket = \"uploads\"\nprefix = \"images/\"\n[bindings]\nFILES = { bucket = \"uploads\" }\n";
    let config = node_dir_in(nats, root.path(), collector, toml, FILES);
    let mut node = start(&config).await;
    let put = |node: &NodeProcess, key: &str, body: &str| {
        let url = format!("http://{}/v1/buckets/uploads/objects/{key}", node.admin.unwrap());
        let headers = vec![
            ("authorization".to_string(), format!("Bearer {TOKEN}")),
            ("content-type".to_string(), "image/png".to_string()),
        ];
        let body = body.as_bytes().to_vec();
        async move { curl("PUT", &url, &headers, Some(&body)).await }
    };
    assert_eq!(put(&node, "images/a.png", "not really a png").await.status, 201);
    assert_eq!(put(&node, "docs/readme.txt", "outside the prefix").await.status, 201);
    let up = curl("GET", &format!("http://{}/upload?key=images/b.png", node.http), &[], None).await;
    assert_eq!(up.text(), "stored");
    let got = curl("GET", &format!("http://{}/get?key=images/a.png", node.http), &[], None).await;
    assert_eq!(got.text(), "image/png 16 not really a png", "the binding reads what the API wrote");

    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.len() >= 2).await;
    // Anything else would arrive within a moment.
    collect(&mut rx, &mut seen, Duration::from_millis(500), |_| false).await;
    let mut keys: Vec<(&str, &str)> =
        seen.iter().map(|e| (e["key"].as_str().unwrap(), e["op"].as_str().unwrap())).collect();
    keys.sort();
    assert_eq!(
        keys,
        [("images/a.png", "put"), ("images/b.png", "put")],
        "once each, none for docs/"
    );
    let a = seen.iter().find(|e| e["key"] == "images/a.png").unwrap();
    assert_eq!((a["bucket"].as_str(), a["size"].as_u64()), (Some("uploads"), Some(16)));

    // A put acknowledged right before kill -9 still fires after the restart.
    assert_eq!(put(&node, "images/c.png", "just before the crash").await.status, 201);
    node.kill_9().await;
    node = start(&config).await;
    seen.clear();
    collect(&mut rx, &mut seen, Duration::from_secs(15), |s| {
        s.iter().any(|e| e["key"] == "images/c.png")
    })
    .await;
    assert!(seen.iter().any(|e| e["key"] == "images/c.png" && e["op"] == "put"), "{seen:?}");

    let url = format!("http://{}/v1/buckets/uploads/objects/images/a.png", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    assert_eq!(curl("DELETE", &url, &auth, None).await.status, 200);
    seen.clear();
    collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.iter().any(|e| e["op"] == "delete"))
        .await;
    assert!(seen.iter().any(|e| e["key"] == "images/a.png" && e["op"] == "delete"), "{seen:?}");
    node.kill_9().await;
}

const CHAIN: &str = r#"
export default {
  async fetch(request, env) {
    const id = new URL(request.url).searchParams.get("id");
    await env.WORK.send({ id, at: "http" });
    return new Response("accepted");
  },
  async queue(batch, env) {
    for (const m of batch.messages) {
      const previous = await env.USERS.get(m.body.id);
      await env.USERS.put(m.body.id, { name: `user ${m.body.id}`, visits: (previous?.visits ?? 0) + 1 });
    }
  },
  async record(event, env) {
    await fetch(`${env.COLLECTOR}/record`, { method: "POST", body: JSON.stringify([event]) });
  },
};
"#;

both_modes!(http_to_queue_to_table_to_record_trigger);
async fn http_to_queue_to_table_to_record_trigger(nats: Option<&str>) {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let toml = "name = \"f\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n[[triggers.queue]]\nqueue = \"work\"\nmax_batch_timeout = \"10ms\"\n[[triggers.record]]\ntable = \"users\"\n[bindings]\nWORK = { queue = \"work\" }\nUSERS = { table = \"users\" }\n";
    let config = node_dir_in(nats, root.path(), collector, toml, CHAIN);
    let node = start(&config).await;
    let mut seen = Vec::new();
    for visit in 1..=2 {
        let res = curl("GET", &format!("http://{}/?id=ada", node.http), &[], None).await;
        assert_eq!(res.text(), "accepted");
        collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.len() >= visit).await;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["table"], "users");
    assert_eq!(seen[0]["key"], "ada");
    assert_eq!(seen[0]["op"], "put");
    assert_eq!(seen[0]["value"], serde_json::json!({ "name": "user ada", "visits": 1 }));
    assert_eq!(seen[0]["previous"], serde_json::Value::Null);
    assert_eq!(seen[1]["value"]["visits"], 2);
    assert_eq!(seen[1]["previous"]["visits"], 1);
    let record = admin(&node, "GET", "/v1/tables/users/records/ada", None).await;
    assert_eq!(record["visits"], 2);
    let list = admin(&node, "GET", "/v1/tables/users/records?prefix=a", None).await;
    assert_eq!(list["records"][0]["key"], "ada");
    assert_eq!(list["records"].as_array().unwrap().len(), 1);
    let none = admin(&node, "GET", "/v1/tables/users/records?prefix=b", None).await;
    assert_eq!(none["records"], serde_json::json!([]));

    admin(&node, "DELETE", "/v1/tables/users/records/ada", None).await;
    collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.len() >= 3).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((seen[2]["op"].as_str(), seen[2]["key"].as_str()), (Some("delete"), Some("ada")));
    assert_eq!(seen[2]["value"], serde_json::Value::Null);
    assert_eq!(seen[2]["previous"]["visits"], 2);
    let url = format!("http://{}/v1/tables/users/records/ada", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    assert_eq!(curl("GET", &url, &auth, None).await.status, 404, "deleted");
    let list = admin(&node, "GET", "/v1/tables/users/records", None).await;
    assert_eq!(list["records"], serde_json::json!([]), "a deleted record is not listed");
    // Nothing else fires (a deletion marker is not an event).
    collect(&mut rx, &mut seen, Duration::from_millis(500), |_| false).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    node.kill_9().await;
}

#[tokio::test]
async fn invoke_fires_cron_and_queue_handlers_by_hand() {
    let (collector, mut rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let toml = "name = \"f\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"0 0 1 1 *\"\n";
    let js = r#"
export default {
  async scheduled(event, env) {
    await fetch(`${env.COLLECTOR}/x`, { method: "POST", body: JSON.stringify([{ cron: event.cron }]) });
  },
  async queue(batch, env) {
    const m = batch.messages[0];
    await fetch(`${env.COLLECTOR}/x`, { method: "POST", body: JSON.stringify([{ queue: batch.queue, body: m.body }]) });
  },
};
"#;
    let config = node_dir(root.path(), collector, toml, js);
    let node = start(&config).await;
    let url = format!("http://{}", node.admin.unwrap());
    // The node is named by --node, or by EDGE_NODE.
    let run = |args: Vec<String>, by_env: bool| {
        let url = url.clone();
        async move {
            let mut command = tokio::process::Command::new(tests::edge_node_bin());
            command.args(&args).env("EDGE_ADMIN_TOKEN", TOKEN);
            if by_env {
                command.env("EDGE_NODE", &url);
            } else {
                command.args(["--node", &url]);
            }
            let out = command.output().await.unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let (ok, out) = run(vec!["invoke".into(), "f".into(), "--cron".into()], false).await;
    assert!(ok && out.contains(" ended ok"), "{out}");
    let queue = ["invoke", "f", "--queue", "jobs", "--body", r#"{"x": [1, 2]}"#];
    let (ok, out) = run(queue.iter().map(|s| s.to_string()).collect(), true).await;
    assert!(ok && out.contains(" ended ok"), "{out}");
    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, Duration::from_secs(10), |s| s.len() >= 2).await;
    assert_eq!(seen[0]["cron"], "0 0 1 1 *");
    assert_eq!(seen[1], serde_json::json!({ "queue": "jobs", "body": { "x": [1, 2] } }));
    // The run by hand is in the schedule's history, marked manual.
    let history = admin(&node, "GET", "/v1/functions/f/cron", None).await;
    let runs = history["runs"].as_array().unwrap_or_else(|| panic!("{history}"));
    assert_eq!(runs.len(), 1, "{history}");
    assert_eq!(runs[0]["schedule"], "0 0 1 1 *");
    assert_eq!(runs[0]["outcome"], "ok");
    assert_eq!(runs[0]["manual"], true);
    node.kill_9().await;
}

#[tokio::test]
async fn runs_missed_while_down_are_recorded_and_caught_up_once() {
    let (collector, _rx) = collector().await;
    let root = tempfile::tempdir().unwrap();
    let toml = "name = \"f\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"* * * * * *\"\ncatch_up = true\n";
    let config = node_dir(root.path(), collector, toml, "export default { scheduled() {} }");
    let node = start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin(&node, "GET", "/v1/functions/f/cron", None).await["runs"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the schedule never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill_9().await;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = start(&config).await;
    let restarted = down.elapsed();
    // The catch-up run is made at start; wait for it to be recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = admin(&node, "GET", "/v1/functions/f/cron", None).await;
        let runs = runs["runs"].as_array().unwrap().clone();
        if runs.iter().any(|r| r["catch_up"] == true && r["outcome"] != "missed") {
            break runs;
        }
        assert!(Instant::now() < deadline, "no catch-up run: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let missed = runs.iter().filter(|r| r["outcome"] == "missed").count();
    let caught_up: Vec<&serde_json::Value> =
        runs.iter().filter(|r| r["catch_up"] == true).collect();
    // The latest missed second is run at start and recorded as such; the others stay missed.
    assert_eq!(caught_up.len(), 1, "one catch-up run: {runs:?}");
    assert_eq!(caught_up[0]["outcome"], "ok");
    assert!(missed + 1 >= 2, "{missed} missed over {restarted:?} down: {runs:?}");
    let due: Vec<u64> = runs.iter().map(|r| r["scheduled_ms"].as_u64().unwrap()).collect();
    let (first, last) = (due.iter().min().unwrap(), due.iter().max().unwrap());
    assert_eq!(
        due.len() as u64,
        (last - first) / 1000 + 1,
        "every second is accounted for: {runs:?}"
    );
    node.kill_9().await;
}

/// The service-worker form answers cron too: `addEventListener("scheduled")` gets the event
/// (cron, scheduledTime, waitUntil), and its bindings are globals.
#[tokio::test]
async fn a_service_worker_scheduled_listener_runs() {
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(
        root.path(),
        "sw",
        "/*",
        "[[triggers.cron]]\nschedule = \"0 0 1 1 *\"\n[bindings]\nRUNS = { table = \"runs\" }\n",
        r#"addEventListener("scheduled", (event) => {
  event.waitUntil(RUNS.put("last", { cron: event.cron, at: typeof event.scheduledTime }));
});
addEventListener("fetch", (event) => event.respondWith((async () => Response.json(await RUNS.get("last")))()));"#,
    );
    let node = tests::TestNode::start_with(config::NodeConfig::default(), &[dir]).await;
    let url = format!("http://{}/v1/functions/sw/invoke", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let res = tests::curl("POST", &url, &auth, Some(br#"{"trigger": "cron"}"#)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let last = tests::curl("GET", &node.url("/"), &[], None).await;
    assert_eq!(last.text(), r#"{"cron":"0 0 1 1 *","at":"number"}"#);
    node.shutdown().await;
}

//! The cluster on NATS JetStream: nodes list each other through a real nats-server, and a
//! node killed with -9 drops out after its TTL.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::{curl, nats, versioned_app as app, write_file, NodeProcess};

const TOKEN: &str = "cluster-test-token";

async fn node(root: &Path, id: &str, region: &str, nats: Option<&str>) -> NodeProcess {
    node_with_key(root, id, region, nats, SECRETS_KEY).await
}

async fn node_with_key(
    root: &Path,
    id: &str,
    region: &str,
    nats: Option<&str>,
    key: &str,
) -> NodeProcess {
    let cluster = nats.map_or(String::new(), |url| {
        format!("[cluster]\nnats_url = \"{url}\"\nnode_ttl = \"3s\"\n")
    });
    let toml = format!(
        "version = 1\n[node]\nid = \"{id}\"\nregion = \"{region}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n{cluster}"
    );
    write_file(root, &format!("{id}.toml"), &toml);
    // Every node of a cluster seals secrets under the same key.
    let env = [("EDGE_ADMIN_TOKEN", TOKEN), ("EDGE_SECRETS_KEY", key)];
    NodeProcess::start(&root.join(format!("{id}.toml")), &env).await
}

/// The secrets key of the tests' clusters.
const SECRETS_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

/// Nodes of the cluster at `nats`, each serving the functions folder `fns` under `root` and
/// allowed to reach `collector`.
async fn folder_nodes(
    root: &Path,
    ids: &[&str],
    collector: std::net::SocketAddr,
    nats: &str,
) -> Vec<NodeProcess> {
    let mut nodes = Vec::new();
    for id in ids {
        let toml = format!(
            "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[fetch]\nallow = [\"{collector}\"]\n[functions]\ndir = \"fns\"\n[cluster]\nnats_url = \"{nats}\"\n"
        );
        write_file(root, &format!("{id}.toml"), &toml);
        let config = root.join(format!("{id}.toml"));
        nodes.push(NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await);
    }
    nodes
}

async fn status(node: &NodeProcess) -> serde_json::Value {
    let url = format!("http://{}/v1/cluster", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let res = curl("GET", &url, &auth, None).await;
    serde_json::from_slice(&res.body).unwrap_or_default()
}

fn ids(status: &serde_json::Value) -> Vec<String> {
    status["nodes"]
        .as_array()
        .map(|n| n.iter().map(|n| n["id"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn three_nodes_see_each_other_and_a_dead_one_drops_out() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let a = node(root.path(), "fra-1", "eu-central", Some(&nats.url)).await;
    let b = node(root.path(), "fra-2", "eu-central", Some(&nats.url)).await;
    let c = node(root.path(), "iad-1", "us-east", Some(&nats.url)).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = status(&a).await;
    while ids(&seen).len() < 3 {
        assert!(Instant::now() < deadline, "the nodes never saw each other: {seen}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = status(&a).await;
    }
    assert_eq!(seen["mode"], "cluster");
    assert_eq!(ids(&seen), ["fra-1", "fra-2", "iad-1"], "sorted by region, then id");
    let iad = &seen["nodes"][2];
    assert_eq!(iad["region"], "us-east");
    assert_eq!(iad["http"][0], c.http.to_string());
    assert_eq!(ids(&status(&b).await), ["fra-1", "fra-2", "iad-1"], "every node sees the same");

    let out = tokio::process::Command::new(tests::edge_node_bin())
        .args(["cluster", "status", "--node", &format!("http://{}", b.admin.unwrap())])
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cluster: 3 node(s)") && text.contains("iad-1  region us-east"),
        "{text}"
    );

    c.kill_9().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ids(&status(&a).await).contains(&"iad-1".to_string()) {
        assert!(Instant::now() < deadline, "a dead node stays listed past its TTL");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ids(&status(&a).await), ["fra-1", "fra-2"]);
    a.kill_9().await;
    b.kill_9().await;
}

#[tokio::test]
async fn a_node_without_cluster_is_standalone_and_one_whose_nats_is_down_still_serves() {
    let root = tempfile::tempdir().unwrap();
    let alone = node(root.path(), "solo", "local", None).await;
    let s = status(&alone).await;
    assert_eq!((s["mode"].as_str(), ids(&s)), (Some("standalone"), vec!["solo".to_string()]));

    // No NATS on this port: the node starts and serves all the same.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let lonely =
        node(root.path(), "lonely", "local", Some(&format!("nats://127.0.0.1:{port}"))).await;
    let res = curl("GET", &format!("http://{}/", lonely.http), &[], None).await;
    assert_eq!(res.status, 404, "serves (no route) while NATS is unreachable");
    alone.kill_9().await;
    lonely.kill_9().await;
}

/// A nats-server that speaks only TLS, with a certificate from a private CA: nodes given the CA
/// (`[cluster] tls_ca`) join and see each other; a node without it cannot join.
#[tokio::test]
async fn nodes_join_a_tls_only_nats_with_their_private_ca() {
    let root = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    write_file(root.path(), "ca.pem", &ca.pem());
    write_file(root.path(), "server.pem", &cert.pem());
    write_file(root.path(), "server.key", &key.serialize_pem());
    let nats =
        tests::nats_tls(&root.path().join("server.pem"), &root.path().join("server.key")).await;
    let url = nats.url.clone();
    let tls_node = |id: &str, ca: bool| {
        let extra = if ca { "tls_ca = \"ca.pem\"\n" } else { "" };
        let toml = format!(
            "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[cluster]\nnats_url = \"{url}\"\nnode_ttl = \"3s\"\n{extra}"
        );
        write_file(root.path(), &format!("{id}.toml"), &toml);
        let config = root.path().join(format!("{id}.toml"));
        async move { NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await }
    };
    let a = tls_node("tls-a", true).await;
    let b = tls_node("tls-b", true).await;
    let stranger = tls_node("no-ca", false).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = ids(&status(&a).await);
        if seen.contains(&"tls-a".to_string()) && seen.contains(&"tls-b".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the TLS nodes never saw each other: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The one without the CA has had as long to register, and has not: it cannot connect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = ids(&status(&b).await);
    assert!(!seen.contains(&"no-ca".to_string()), "joined without the CA: {seen:?}");
    let res = curl("GET", &format!("http://{}/", stranger.http), &[], None).await;
    assert_eq!(res.status, 404, "it serves all the same");
    for n in [a, b, stranger] {
        n.kill_9().await;
    }
}

async fn cli(node: &NodeProcess, args: &[&str]) -> String {
    let out = cli_output(node, args).await;
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `edge-node ARGS --node` the node's admin API, however it ends.
async fn cli_output(node: &NodeProcess, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tests::edge_node_bin())
        .args(args)
        .args(["--node", &format!("http://{}", node.admin.unwrap())])
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap()
}

/// Nodes fra-1 and fra-2 of the cluster at `nats`, with the app's version 1 deployed through
/// the first and served by the second.
async fn two_nodes_serving_v1(root: &Path, nats: &str) -> (NodeProcess, NodeProcess) {
    let a = node(root, "fra-1", "eu-central", Some(nats)).await;
    let b = node(root, "fra-2", "eu-central", Some(nats)).await;
    let dir = app(root, "1");
    cli(&a, &["deploy", dir.to_str().unwrap()]).await;
    serves(&b, "200 version 1").await;
    (a, b)
}

/// Waits until `node` answers `expected` on `/`.
async fn serves(node: &NodeProcess, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = curl("GET", &format!("http://{}/", node.http), &[], None).await;
        let got = format!("{} {}", res.status, res.text());
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{} answers {got:?}, not {expected:?}", node.http);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deploy_through_one_node_reaches_every_node_and_a_late_one_catches_up() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let a = node(root.path(), "fra-1", "eu-central", Some(&nats.url)).await;
    let b = node(root.path(), "fra-2", "eu-central", Some(&nats.url)).await;
    let c = node(root.path(), "iad-1", "us-east", Some(&nats.url)).await;
    let dir = app(root.path(), "1");
    let out = cli(&a, &["deploy", dir.to_str().unwrap()]).await;
    assert!(out.contains("deployed app version 1"), "{out}");
    for n in [&a, &b, &c] {
        serves(n, "200 version 1").await;
    }

    // C is down while v2 is deployed through B; it catches up when it comes back.
    c.kill_9().await;
    let dir = app(root.path(), "2");
    let out = cli(&b, &["deploy", dir.to_str().unwrap()]).await;
    assert!(out.contains("deployed app version 2"), "numbers are the cluster's: {out}");
    serves(&a, "200 version 2").await;
    let c = node(root.path(), "iad-1", "us-east", Some(&nats.url)).await;
    serves(&c, "200 version 2").await;

    // A rollback through C, a delete through A: everywhere.
    cli(&c, &["functions", "rollback", "app"]).await;
    for n in [&a, &b, &c] {
        serves(n, "200 version 1").await;
    }
    cli(&a, &["functions", "rm", "app"]).await;
    for n in [&a, &b, &c] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while curl("GET", &format!("http://{}/", n.http), &[], None).await.status != 404 {
            assert!(Instant::now() < deadline, "{} still serves a deleted function", n.http);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for n in [a, b, c] {
        n.kill_9().await;
    }
}

#[tokio::test]
async fn a_cron_schedule_fires_once_per_second_across_three_nodes() {
    let nats = nats().await;
    let (collector, mut rx) = tests::collector().await;
    let root = tempfile::tempdir().unwrap();
    let cluster = format!("[cluster]\nnats_url = \"{}\"\nnode_ttl = \"3s\"\n", nats.url);
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let toml = format!(
            "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[fetch]\nallow = [\"{collector}\"]\n[functions]\ndir = \"fns\"\n{cluster}"
        );
        write_file(root.path(), &format!("{id}.toml"), &toml);
        write_file(
            root.path(),
            "fns/tick/edge.toml",
            &format!("name = \"tick\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"* * * * * *\"\n[vars]\nCOLLECTOR = \"http://{collector}\"\n"),
        );
        write_file(
            root.path(),
            "fns/tick/index.js",
            "export default { async scheduled(event, env) { await fetch(`${env.COLLECTOR}/tick`, { method: 'POST', body: String(event.scheduledTime) }) } }",
        );
        nodes.push(NodeProcess::start(&root.path().join(format!("{id}.toml")), &[]).await);
    }
    // Once every node claims its runs in the cluster, count the runs of a few seconds.
    for node in &mut nodes {
        node.wait_for_logged("the cluster's streams and buckets are open").await;
    }
    while rx.try_recv().is_ok() {}
    let until = Instant::now() + Duration::from_secs(5);
    let mut due: Vec<u64> = Vec::new();
    while let Ok(Some((_, body))) =
        tokio::time::timeout(until.saturating_duration_since(Instant::now()), rx.recv()).await
    {
        due.push(String::from_utf8_lossy(&body).parse().unwrap());
    }
    let mut distinct = due.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(due.len(), distinct.len(), "a second fired on more than one node: {due:?}");
    assert!((4..=6).contains(&due.len()), "one run per second over 5 s, not per node: {due:?}");
    for n in nodes {
        n.kill_9().await;
    }
}

#[tokio::test]
async fn a_region_pinned_function_is_served_only_in_its_region() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let eu = node(root.path(), "fra-1", "eu-central", Some(&nats.url)).await;
    let us = node(root.path(), "iad-1", "us-east", Some(&nats.url)).await;
    let dir = root.path().join("pinned");
    write_file(
        &dir,
        "edge.toml",
        "name = \"pinned\"\nentry = \"index.js\"\nroutes = [\"/*\"]\nregions = [\"eu-central\"]\n",
    );
    write_file(&dir, "index.js", "export default { fetch(request) { return new Response(`served in ${request.cf.region}`) } }");
    // Deployed through a node of another region: stored and shared, served only in eu-central.
    let out = cli(&us, &["deploy", dir.to_str().unwrap()]).await;
    assert!(out.contains("deployed pinned version 1"), "{out}");
    serves(&eu, "200 served in eu-central").await;
    let res = curl("GET", &format!("http://{}/", us.http), &[], None).await;
    assert_eq!(res.status, 421, "{}", res.text());
    assert_eq!(res.header("x-isola-regions"), Some("eu-central"));
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(body["error"], "wrong_region");
    eu.kill_9().await;
    us.kill_9().await;
}

#[tokio::test]
async fn nodes_serve_through_a_nats_outage_and_catch_up_after_it() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes_serving_v1(root.path(), &nats.url).await;

    // NATS goes away for 10 s: both nodes go on serving, a deploy is refused whole.
    let outage = nats.restart_after(Duration::from_secs(10)).await;
    let dir = app(root.path(), "2");
    let out = tokio::process::Command::new(tests::edge_node_bin())
        .args(["deploy", dir.to_str().unwrap(), "--node", &format!("http://{}", a.admin.unwrap())])
        .env("EDGE_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cluster_unavailable"), "{stderr}");
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for n in [&a, &b] {
            let res = curl("GET", &format!("http://{}/", n.http), &[], None).await;
            assert_eq!(
                (res.status, res.text().as_str()),
                (200, "version 1"),
                "serving during the outage"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let nats = outage.await.unwrap();

    // Back: a deploy goes through and reaches the other node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = tokio::process::Command::new(tests::edge_node_bin())
            .args([
                "deploy",
                dir.to_str().unwrap(),
                "--node",
                &format!("http://{}", a.admin.unwrap()),
            ])
            .env("EDGE_ADMIN_TOKEN", TOKEN)
            .output()
            .await
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deploys never resumed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    serves(&b, "200 version 2").await;
    serves(&a, "200 version 2").await;
    drop(nats);
    a.kill_9().await;
    b.kill_9().await;
}

#[tokio::test]
async fn three_nodes_share_a_queue_and_lose_nothing_when_one_is_killed() {
    const TOTAL: usize = 5_000;
    let nats = nats().await;
    let (collector, mut rx) = tests::collector().await;
    let root = tempfile::tempdir().unwrap();
    write_file(
        root.path(),
        "fns/work/edge.toml",
        &format!("name = \"work\"\nentry = \"index.js\"\n[[triggers.queue]]\nqueue = \"jobs\"\nmax_batch_size = 50\nmax_batch_timeout = \"50ms\"\nvisibility_timeout = \"2s\"\n[vars]\nCOLLECTOR = \"http://{collector}\"\n"),
    );
    write_file(
        root.path(),
        "fns/work/index.js",
        "export default { async queue(batch, env) { await fetch(`${env.COLLECTOR}/seen`, { method: 'POST', body: JSON.stringify(batch.messages.map((m) => m.body.n)) }) } }",
    );
    let mut nodes = folder_nodes(root.path(), &["q1", "q2", "q3"], collector, &nats.url).await;
    let url = format!("http://{}/v1/queues/jobs/messages", nodes[0].admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while sent < TOTAL {
        let messages: Vec<_> =
            (sent..sent + 500).map(|n| serde_json::json!({ "body": { "n": n } })).collect();
        let body = serde_json::json!({ "messages": messages }).to_string();
        let res = curl("POST", &url, &auth, Some(body.as_bytes())).await;
        if res.status == 201 {
            sent += 500;
        } else {
            assert!(Instant::now() < deadline, "sends refused: {} {}", res.status, res.text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while distinct.len() < TOTAL {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((_, body))) = tokio::time::timeout(left, rx.recv()).await else { break };
        let batch: Vec<u64> = serde_json::from_slice(&body).unwrap();
        distinct.extend(batch.iter().copied());
        seen.extend(batch);
        if !killed && distinct.len() >= TOTAL / 3 {
            nodes.pop().unwrap().kill_9().await;
            killed = true;
        }
    }
    assert!(killed);
    assert_eq!(distinct.len(), TOTAL, "every message handled at least once");
    eprintln!(
        "{TOTAL} messages over 3 nodes, one killed: {} deliveries, {} duplicates",
        seen.len(),
        seen.len() - TOTAL
    );
    for n in nodes {
        n.kill_9().await;
    }
}

#[tokio::test]
async fn a_secret_set_through_one_node_reaches_the_others() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes_serving_v1(root.path(), &nats.url).await;
    cli(&b, &["secrets", "set", "app", "API_KEY", "--value", "k-cluster"]).await;
    let secret = |n: &NodeProcess| format!("http://{}/secret", n.http);
    for n in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while curl("GET", &secret(n), &[], None).await.text() != "k-cluster" {
            assert!(Instant::now() < deadline, "{} never got the secret", n.http);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cli(&a, &["secrets", "unset", "app", "API_KEY"]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while curl("GET", &secret(&b), &[], None).await.text() != "none" {
        assert!(Instant::now() < deadline, "the secret stayed on the other node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill_9().await;
    b.kill_9().await;
}

/// `secrets rotate-key` on each stopped node of a cluster in turn: the first re-seals the
/// bucket, the second finds it done and re-seals its store; started with the new key, both
/// serve the secret, and so does a new node, which has it only from the bucket.
#[tokio::test]
async fn rotate_key_run_on_each_node_of_a_cluster() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes_serving_v1(root.path(), &nats.url).await;
    cli(&b, &["secrets", "set", "app", "API_KEY", "--value", "k-rotated"]).await;
    let secret = |n: &NodeProcess| format!("http://{}/secret", n.http);
    let has_secret = |n: &NodeProcess| {
        let url = secret(n);
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            while curl("GET", &url, &[], None).await.text() != "k-rotated" {
                assert!(Instant::now() < deadline, "{url} never served the secret");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    has_secret(&a).await;
    has_secret(&b).await;
    a.kill_9().await;
    b.kill_9().await;

    let new_key = "cd".repeat(32);
    let key_file = root.path().join("new.key");
    std::fs::write(&key_file, &new_key).unwrap();
    for (id, cluster_said) in [
        ("fra-1", "re-sealed 1 secret(s) in the cluster"),
        ("fra-2", "re-sealed 0 secret(s) in the cluster"),
    ] {
        let config = root.path().join(format!("{id}.toml"));
        let out = tokio::process::Command::new(tests::edge_node_bin())
            .args(["secrets", "rotate-key", "--config", config.to_str().unwrap()])
            .args(["--new-key-file", key_file.to_str().unwrap()])
            .env("EDGE_SECRETS_KEY", SECRETS_KEY)
            .current_dir(root.path())
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{id}: {text}");
        assert!(text.contains("re-sealed 1 secret(s) in this node's store"), "{id}: {text}");
        assert!(text.contains(cluster_said), "{id}: {text}");
    }
    let a = node_with_key(root.path(), "fra-1", "eu-central", Some(&nats.url), &new_key).await;
    let b = node_with_key(root.path(), "fra-2", "eu-central", Some(&nats.url), &new_key).await;
    let c = node_with_key(root.path(), "fra-3", "eu-central", Some(&nats.url), &new_key).await;
    for n in [&a, &b, &c] {
        has_secret(n).await;
    }
    for n in [a, b, c] {
        n.kill_9().await;
    }
}

const SHARED_DATA: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key");
    switch (url.pathname) {
      case "/put":
        await env.FILES.put(key, `content of ${key}`, { contentType: "text/plain" });
        return new Response("stored");
      case "/get": {
        const object = await env.FILES.get(key);
        return new Response(object === null ? "missing" : object.text());
      }
      case "/record":
        await env.USERS.put(key, { by: url.searchParams.get("by") });
        return new Response("written");
      default: {
        const record = await env.USERS.get(key);
        return new Response(record === null ? "missing" : record.by);
      }
    }
  },
  async storage(event, env) {
    await fetch(`${env.COLLECTOR}/storage`, { method: "POST", body: JSON.stringify([event]) });
  },
  async record(event, env) {
    await fetch(`${env.COLLECTOR}/record`, { method: "POST", body: JSON.stringify([event]) });
  },
};
"#;

#[tokio::test]
async fn three_nodes_share_buckets_and_tables_and_each_change_fires_once() {
    let nats = nats().await;
    let (collector, mut rx) = tests::collector().await;
    let root = tempfile::tempdir().unwrap();
    write_file(
        root.path(),
        "fns/data/edge.toml",
        &format!("name = \"data\"\nentry = \"index.js\"\nroutes = [\"/*\"]\n[[triggers.storage]]\nbucket = \"uploads\"\n[[triggers.record]]\ntable = \"users\"\n[bindings]\nFILES = {{ bucket = \"uploads\" }}\nUSERS = {{ table = \"users\" }}\n[vars]\nCOLLECTOR = \"http://{collector}\"\n"),
    );
    write_file(root.path(), "fns/data/index.js", SHARED_DATA);
    let nodes = folder_nodes(root.path(), &["d1", "d2", "d3"], collector, &nats.url).await;
    let get = |n: &NodeProcess, path: &str| {
        let url = format!("http://{}{path}", n.http);
        async move { curl("GET", &url, &[], None).await.text() }
    };
    // Objects written through each node, read through the others.
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(get(n, &format!("/put?key=file-{i}")).await, "stored");
    }
    for i in 0..nodes.len() {
        let other = &nodes[(i + 1) % 3];
        assert_eq!(get(other, &format!("/get?key=file-{i}")).await, format!("content of file-{i}"));
    }
    let url = format!("http://{}/v1/buckets/uploads/objects/from-api", nodes[2].admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    assert_eq!(curl("PUT", &url, &auth, Some(b"through the API")).await.status, 201);
    assert_eq!(get(&nodes[0], "/get?key=from-api").await, "through the API");
    let list = format!("http://{}/v1/buckets/uploads/objects", nodes[1].admin.unwrap());
    let listed: serde_json::Value =
        serde_json::from_slice(&curl("GET", &list, &auth, None).await.body).unwrap();
    let keys: Vec<&str> =
        listed["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["file-0", "file-1", "file-2", "from-api"]);

    // A record written on one node is read on another.
    assert_eq!(get(&nodes[1], "/record?key=ada&by=d2").await, "written");
    assert_eq!(get(&nodes[2], "/user?key=ada").await, "d2");

    // Every change fired its trigger once in the cluster, not once per node.
    let mut events: Vec<(String, serde_json::Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while events.len() < 5 && Instant::now() < deadline {
        if let Ok(Some((path, body))) =
            tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
        {
            let batch: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            events.extend(batch.into_iter().map(|e| (path.clone(), e)));
        }
    }
    // Anything fired twice would arrive within a moment.
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        if let Ok(Some((path, body))) =
            tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
        {
            let batch: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            events.extend(batch.into_iter().map(|e| (path.clone(), e)));
        }
    }
    let mut fired: Vec<String> = events
        .iter()
        .map(|(path, e)| format!("{path} {} {}", e["key"].as_str().unwrap(), e["op"]))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            "/record ada \"put\"",
            "/storage file-0 \"put\"",
            "/storage file-1 \"put\"",
            "/storage file-2 \"put\"",
            "/storage from-api \"put\"",
        ]
    );
    for n in nodes {
        n.kill_9().await;
    }
}

/// An every-second cron on two nodes while NATS is down for 3 s: with `skip` no node fires a
/// run due during the outage (each is recorded as missed), with `fire` both nodes do.
#[tokio::test]
async fn cron_while_nats_is_down_skips_or_fires_as_configured() {
    for policy in ["skip", "fire"] {
        let nats = nats().await;
        let (collector, mut rx) = tests::collector().await;
        let root = tempfile::tempdir().unwrap();
        let cluster = format!(
            "[cluster]\nnats_url = \"{}\"\nnode_ttl = \"3s\"\ncron_when_partitioned = \"{policy}\"\n",
            nats.url
        );
        let mut nodes = Vec::new();
        for id in ["n1", "n2"] {
            let toml = format!(
                "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[fetch]\nallow = [\"{collector}\"]\n[functions]\ndir = \"fns-{id}\"\n{cluster}"
            );
            write_file(root.path(), &format!("{id}.toml"), &toml);
            write_file(
                root.path(),
                &format!("fns-{id}/tick/edge.toml"),
                &format!("name = \"tick\"\nentry = \"index.js\"\n[[triggers.cron]]\nschedule = \"* * * * * *\"\n[vars]\nCOLLECTOR = \"http://{collector}/{id}\"\n"),
            );
            write_file(
                root.path(),
                &format!("fns-{id}/tick/index.js"),
                "export default { async scheduled(event, env) { await fetch(env.COLLECTOR, { method: 'POST', body: String(event.scheduledTime) }) } }",
            );
            nodes.push(NodeProcess::start(&root.path().join(format!("{id}.toml")), &[]).await);
        }
        for node in &mut nodes {
            node.wait_for_logged("the cluster's streams and buckets are open").await;
        }
        let now_ms = || {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as u64
        };
        let down_from = now_ms();
        let back = nats.restart_after(Duration::from_secs(3)).await;
        let nats = back.await.unwrap();
        let up_at = now_ms();
        // Collect what fired until a few seconds after NATS is back.
        let until = Instant::now() + Duration::from_secs(3);
        let mut fired: Vec<(String, u64)> = Vec::new();
        while let Ok(Some((path, body))) =
            tokio::time::timeout(until.saturating_duration_since(Instant::now()), rx.recv()).await
        {
            fired.push((path, String::from_utf8_lossy(&body).parse().unwrap()));
        }
        // Runs due while NATS was down (a second's slack at each end).
        let during: Vec<&(String, u64)> = fired
            .iter()
            .filter(|(_, due)| *due > down_from + 1000 && *due + 1000 < up_at)
            .collect();
        let said = format!(
            "cron run not claimed in the cluster; {}",
            if policy == "skip" { "skipped" } else { "firing here" }
        );
        let mut logs = Vec::new();
        for node in nodes {
            logs.extend(node.kill_9().await);
        }
        assert!(logs.iter().any(|l| l.contains(&said)), "{policy}: no node said {said:?}");
        if policy == "skip" {
            assert!(during.is_empty(), "skip: runs fired while NATS was down: {during:?}");
            assert!(
                fired.iter().any(|(_, due)| *due >= up_at),
                "skip: runs fire again once NATS is back: {fired:?}"
            );
        } else {
            for id in ["/n1", "/n2"] {
                assert!(
                    during.iter().any(|(path, _)| path == id),
                    "fire: {id} did not fire while NATS was down: {fired:?}"
                );
            }
        }
        drop(nats);
    }
}

/// Every file under a folder (recursively) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            out.push(path);
        }
    }
    out
}

/// A secret set through a node of a cluster is served to its function, and its value is in no
/// file of the node's data_dir nor of the NATS server's JetStream store (it is sealed under
/// the node's key); the node restarted with another key refuses to start, saying why.
#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_another_key_is_refused() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let n1 = node(root.path(), "n1", "eu", Some(&nats.url)).await;
    let deployed = cli(&n1, &["deploy", app(root.path(), "1").to_str().unwrap()]).await;
    assert!(deployed.contains("deployed app version 1"), "{deployed}");
    let value = "correct-horse-battery-staple-4711";
    let set = cli(&n1, &["secrets", "set", "app", "API_KEY", "--value", value]).await;
    assert!(set.contains("set API_KEY of app"), "{set}");
    let url = format!("http://{}/secret", n1.http);
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = curl("GET", &url, &[], None).await.text();
            if text == value {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(served.as_deref(), Ok(value), "the function reads the secret");
    n1.kill_9().await;
    // The secret's name is stored as it is (a key of the node's table and of the bucket):
    // once it is on disk in both places, so would be a value that was not sealed.
    let data = root.path().join("data-n1");
    let on_disk = tokio::time::timeout(Duration::from_secs(20), async {
        while files_holding(nats.store_dir(), b"API_KEY").is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(on_disk.is_ok(), "JetStream wrote the secret's entry to its files");
    assert!(!files_holding(&data, b"API_KEY").is_empty(), "the node's store holds the entry");
    assert!(!data.join("secrets.key").exists(), "the key came from EDGE_SECRETS_KEY: no file");
    assert_eq!(files_holding(&data, value.as_bytes()), Vec::<std::path::PathBuf>::new());
    assert_eq!(files_holding(nats.store_dir(), value.as_bytes()), Vec::<std::path::PathBuf>::new());

    // Another key: the node refuses to start.
    let other = "ff".repeat(32);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(tests::edge_node_bin())
            .args(["serve", "--config", root.path().join("n1.toml").to_str().unwrap()])
            .env("EDGE_SECRETS_KEY", &other)
            .output(),
    )
    .await
    .expect("the node exits instead of serving")
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("sealed under another key"), "{said}");
}

/// A three-server NATS cluster and three nodes: a node makes three replicas of everything by
/// itself (it says so); 2,000 messages are sent through the three nodes, one server killed by
/// SIGKILL half-way: every acknowledged message is consumed at least once, the deploy and the
/// bucket upload made just before the loss are served and readable on every node after it,
/// deploys go on, and a node that starts then catches up.
#[tokio::test]
async fn three_nats_servers_one_lost_nothing_acknowledged_is_lost() {
    const TOTAL: u64 = 2_000;
    let (mut servers, url) = tests::nats_cluster().await;
    let (collector, mut rx) = tests::collector().await;
    let root = tempfile::tempdir().unwrap();
    // Every node consumes the queue; each message's number goes to the collector.
    write_file(
        root.path(),
        "fns/work/edge.toml",
        &format!("name = \"work\"\nentry = \"index.js\"\n[[triggers.queue]]\nqueue = \"kept\"\nmax_batch_size = 50\nmax_batch_timeout = \"50ms\"\nvisibility_timeout = \"2s\"\n[vars]\nCOLLECTOR = \"http://{collector}\"\n"),
    );
    write_file(
        root.path(),
        "fns/work/index.js",
        "export default { async queue(batch, env) { await fetch(`${env.COLLECTOR}/seen`, { method: 'POST', body: JSON.stringify(batch.messages.map((m) => m.body)) }) } }",
    );
    let mut nodes = folder_nodes(root.path(), &["n1", "n2", "n3"], collector, &url).await;
    nodes[0].wait_for_logged("the cluster's streams and buckets are open").await;
    let opened = nodes[0]
        .log
        .iter()
        .find(|l| l.contains("the cluster's streams and buckets are open"))
        .unwrap()
        .clone();
    assert!(opened.contains("\"replicas\":3") && opened.contains("\"servers\":3"), "{opened}");
    let admin: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.admin.unwrap())).collect();
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    // Sends of 200 messages, each through the next node; one refused (while JetStream elects
    // new leaders) is sent again.
    let send = |from: u64| {
        let (url, auth) =
            (format!("{}/v1/queues/kept/messages", admin[(from / 200 % 3) as usize]), auth.clone());
        async move {
            let messages: Vec<serde_json::Value> =
                (from..from + 200).map(|i| serde_json::json!({ "body": i })).collect();
            let body = serde_json::to_vec(&serde_json::json!({ "messages": messages })).unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                let res = curl("POST", &url, &auth, Some(&body)).await;
                if res.status == 201 {
                    return;
                }
                assert!(Instant::now() < until, "sends refused: {} {}", res.status, res.text());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for from in (0..TOTAL / 2).step_by(200) {
        send(from).await;
    }
    let deployed = cli(&nodes[0], &["deploy", app(root.path(), "1").to_str().unwrap()]).await;
    assert!(deployed.contains("deployed app version 1"), "{deployed}");
    let object = |n: usize| format!("{}/v1/buckets/kept/objects/report.txt", admin[n]);
    let uploaded = curl("PUT", &object(1), &auth, Some(b"uploaded before the loss")).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());

    // One server gone: the nodes move to the others; the rest is sent.
    servers.remove(0).kill_9().await;
    for from in (TOTAL / 2..TOTAL).step_by(200) {
        send(from).await;
    }
    // Every acknowledged message is consumed at least once, somewhere.
    let mut distinct = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while (distinct.len() as u64) < TOTAL {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((_, body))) = tokio::time::timeout(left, rx.recv()).await else { break };
        distinct.extend(serde_json::from_slice::<Vec<u64>>(&body).unwrap());
    }
    assert_eq!(distinct.len() as u64, TOTAL, "every acknowledged message consumed");
    // The deploy and the upload made before the loss: served and readable everywhere. While
    // JetStream elects new leaders a read may be refused (503 cluster_unavailable).
    for (n, each) in nodes.iter().enumerate() {
        serves(each, "200 version 1").await;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let res = curl("GET", &object(n), &auth, None).await;
            if res.status == 200 {
                assert_eq!(res.text(), "uploaded before the loss");
                break;
            }
            assert!(Instant::now() < until, "{} never answered: {}", object(n), res.text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A deploy after the loss; it too may be refused while leaders are elected.
    let v2 = app(root.path(), "2");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cli_output(&nodes[2], &["deploy", v2.to_str().unwrap()]).await;
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            // A refused attempt may have committed the version before its answer failed.
            assert!(
                stdout.contains("deployed app version 2")
                    || stdout.contains("app version 2 already serves this bundle"),
                "{stdout}"
            );
            break;
        }
        assert!(
            stderr.contains("cluster_unavailable") && Instant::now() < until,
            "the deploy after the loss: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A node started now catches up from the two servers left.
    let late = node(root.path(), "n4", "eu", Some(&url)).await;
    serves(&late, "200 version 2").await;
    for n in nodes.into_iter().chain([late]) {
        n.kill_9().await;
    }
}

/// A node asking for more replicas than the cluster's buckets have does not use them: it says
/// so, naming the bucket and the fix, and serves what it has.
#[tokio::test]
async fn a_node_refuses_buckets_with_fewer_replicas_than_asked() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    let mut n1 = node(root.path(), "n1", "eu", Some(&nats.url)).await;
    n1.wait_for_logged("\"replicas\":1").await;
    let toml = format!(
        "version = 1\n[node]\nid = \"n2\"\ndata_dir = \"data-n2\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = []\n[cluster]\nnats_url = \"{}\"\nreplicas = 3\n",
        nats.url
    );
    write_file(root.path(), "n2.toml", &toml);
    let mut n2 =
        NodeProcess::start(&root.path().join("n2.toml"), &[("EDGE_SECRETS_KEY", SECRETS_KEY)])
            .await;
    n2.wait_for_logged("not using the cluster").await;
    let said = n2.log.iter().find(|l| l.contains("not using the cluster")).unwrap().clone();
    assert!(
        said.contains("replica(s) and [cluster] replicas asks for 3")
            && said.contains("nats stream edit"),
        "{said}"
    );
    assert_eq!(
        curl("GET", &format!("http://{}/", n2.http), &[], None).await.status,
        404,
        "it serves (nothing)"
    );
    n1.kill_9().await;
    n2.kill_9().await;
}

/// The node's count of code cache `event`s (`hit`, `miss`, `stored`, `shipped`) from its
/// Prometheus metrics.
async fn code_cache_count(node: &NodeProcess, event: &str) -> u64 {
    let url = format!("http://{}/metrics", node.admin.unwrap());
    let text = curl("GET", &url, &[], None).await.text();
    let label = format!("event=\"{event}\"");
    text.lines()
        .find(|l| l.starts_with("edge_code_cache_total{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no code cache count for {event} in:\n{text}"))
}

#[tokio::test]
async fn a_second_node_starts_a_version_with_the_code_cache_the_first_made() {
    let nats = nats().await;
    let root = tempfile::tempdir().unwrap();
    // Deployed through A (which compiles it), served by B.
    let (a, b) = two_nodes_serving_v1(root.path(), &nats.url).await;
    let made = code_cache_count(&a, "stored").await;
    assert!(made >= 1, "A compiled the version and kept its cache");
    assert_eq!(code_cache_count(&a, "shipped").await, 0);
    assert_eq!(code_cache_count(&b, "shipped").await, made, "B received every cache A made");
    assert_eq!(code_cache_count(&b, "miss").await, 0, "B compiled nothing from source");
    assert_eq!(code_cache_count(&b, "stored").await, 0, "V8 on B took every cache");
    assert!(code_cache_count(&b, "hit").await >= made);
    for n in [a, b] {
        n.kill_9().await;
    }
}

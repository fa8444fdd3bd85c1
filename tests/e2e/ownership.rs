//! Queues, buckets and tables belong to the function that named them first: another function
//! reaches them only through a grant in the owner's edge.toml, and a deploy that names what it
//! may not reach is refused with nothing changed.

use std::path::Path;
use std::time::{Duration, Instant};

use config::NodeConfig;
use tests::{bundle_of, curl, function_folder, CurlResponse, TestNode, ADMIN_TOKEN};

async fn put(node: &TestNode, name: &str, bundle: Vec<u8>) -> CurlResponse {
    admin(node, "PUT", &format!("/v1/functions/{name}"), Some(&bundle)).await
}

async fn admin(node: &TestNode, method: &str, path: &str, body: Option<&[u8]>) -> CurlResponse {
    let url = format!("http://{}{path}", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    curl(method, &url, &auth, body).await
}

fn error(res: &CurlResponse) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let e = &json["error"];
    (e["code"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string())
}

/// The victim: a bucket, a table and a queue of its own; `/v/seed` writes, `/v/read` reads
/// back, and its queue consumer writes each message into the table as `job-<body>`.
fn victim(root: &Path, grants: &str) -> Vec<u8> {
    let more = format!(
        "[bindings]\nFILES = {{ bucket = \"victim-files\" }}\nUSERS = {{ table = \"victim-users\" }}\n[[triggers.queue]]\nqueue = \"victim-jobs\"\nmax_batch_timeout = \"10ms\"\n{grants}"
    );
    let code = r#"export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/v/seed") {
      await env.FILES.put("secret.txt", "victim's secret");
      await env.USERS.put("ada", { pii: "ada's record" });
      return new Response("seeded");
    }
    const object = await env.FILES.get("secret.txt");
    const record = await env.USERS.get("ada");
    const jobs = (await env.USERS.list({ prefix: "job-" })).records.map((r) => r.key);
    return Response.json({ object: object && await new Response(object.body).text(), record, jobs });
  },
  async queue(batch, env) {
    for (const m of batch.messages) await env.USERS.put(`job-${m.body}`, true);
    batch.ackAll();
  },
};"#;
    bundle_of(&function_folder(root, "victim", "/v/*", &more, code))
}

/// A function with `more` in its edge.toml whose `/NAME/*` runs `code` (a function body of
/// `env`) and answers what it returns as JSON.
fn function(root: &Path, name: &str, more: &str, code: &str) -> Vec<u8> {
    let code = format!(
        "export default {{ async fetch(request, env) {{ return Response.json(await (async () => {{ {code} }})()); }}, async queue(batch) {{ batch.ackAll(); }} }};"
    );
    bundle_of(&function_folder(root, name, &format!("/{name}/*"), more, &code))
}

async fn read(node: &TestNode) -> serde_json::Value {
    let res = curl("GET", &node.url("/v/read"), &[], None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    serde_json::from_slice(&res.body).unwrap()
}

#[tokio::test]
async fn another_functions_data_is_out_of_reach_without_a_grant() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(NodeConfig::default(), &[]).await;
    let res = put(&node, "victim", victim(root.path(), "")).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(curl("POST", &node.url("/v/seed"), &[], None).await.text(), "seeded");
    let before = read(&node).await;
    assert_eq!(before["object"], "victim's secret");

    // The attacker names the victim's bucket, table and queue, and consumes the queue.
    let attacker = function(
        root.path(),
        "attacker",
        "[bindings]\nLOOT = { bucket = \"victim-files\" }\nPII = { table = \"victim-users\" }\nINJECT = { queue = \"victim-jobs\" }\n[[triggers.queue]]\nqueue = \"victim-jobs\"\n",
        "await env.LOOT.put('secret.txt', 'overwritten'); await env.INJECT.send('injected'); return (await env.PII.get('ada'));",
    );
    let res = put(&node, "attacker", attacker.clone()).await;
    assert_eq!(res.status, 403, "{}", res.text());
    let (code, message) = error(&res);
    assert_eq!(code, "not_granted");
    for part in [
        "bucket `victim-files` belongs to function `victim`",
        "table `victim-users` belongs to function `victim`",
        "consumes queue `victim-jobs`, which belongs to function `victim`",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    // Nothing changed: the attacker is not deployed and the victim's data is as it was.
    let listed = admin(&node, "GET", "/v1/functions", None).await.text();
    assert!(!listed.contains("attacker"), "{listed}");
    assert_eq!(curl("GET", &node.url("/attacker/"), &[], None).await.status, 404);
    assert_eq!(read(&node).await, before);

    // A read-only binding is not enough without a grant either.
    let reader = function(
        root.path(),
        "reader",
        "[bindings]\nFILES = { bucket = \"victim-files\", access = \"read\" }\n",
        "return (await env.FILES.list()).objects.length;",
    );
    let (code, message) = error(&put(&node, "reader", reader.clone()).await);
    assert_eq!(code, "not_granted", "{message}");
    assert!(message.contains("grants `reader` no read access"), "{message}");

    // Deleted, the victim keeps its data out of reach: its names stay its own.
    let deleted = admin(&node, "DELETE", "/v1/functions/victim", None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let (code, message) = error(&put(&node, "attacker", attacker).await);
    assert_eq!(code, "not_granted");
    assert!(message.contains("which is not deployed to grant it"), "{message}");
    node.shutdown().await;
}

#[tokio::test]
async fn two_functions_share_a_queue_and_a_bucket_through_grants() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(NodeConfig::default(), &[]).await;
    assert_eq!(put(&node, "victim", victim(root.path(), "")).await.status, 201);
    assert_eq!(curl("POST", &node.url("/v/seed"), &[], None).await.text(), "seeded");
    let web = function(
        root.path(),
        "web",
        "[bindings]\nJOBS = { queue = \"victim-jobs\" }\nFILES = { bucket = \"victim-files\", access = \"read\" }\n",
        "const url = new URL(request.url); if (url.pathname === '/web/write') { try { await env.FILES.put('secret.txt', 'x'); return 'written'; } catch (e) { return e.message; } } await env.JOBS.send('from-web'); return await (await env.FILES.get('secret.txt')).text();",
    );
    let res = put(&node, "web", web.clone()).await;
    assert_eq!(res.status, 403, "no grant yet: {}", res.text());

    // The owner grants: web may send to its queue and read its bucket.
    let grants = "[[grants]]\nqueue = \"victim-jobs\"\nto = \"web\"\naccess = \"write\"\n[[grants]]\nbucket = \"victim-files\"\nto = [\"web\"]\naccess = \"read\"\n";
    let res = put(&node, "victim", victim(root.path(), grants)).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let res = put(&node, "web", web).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let sent = curl("GET", &node.url("/web/send"), &[], None).await;
    assert_eq!(sent.text(), "\"victim's secret\"", "web reads the granted bucket");
    // The victim's consumer got web's message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while read(&node).await["jobs"] != serde_json::json!(["job-from-web"]) {
        assert!(Instant::now() < deadline, "the message never reached the owner's consumer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A read grant is read only.
    let write = curl("GET", &node.url("/web/write"), &[], None).await.text();
    assert!(write.contains("read-only"), "{write}");
    assert_eq!(read(&node).await["object"], "victim's secret");

    // Neither dropping the grant nor deleting the owner leaves web without it.
    let res = put(&node, "victim", victim(root.path(), "")).await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(error(&res).1.contains("function `web`"), "{}", res.text());
    let res = admin(&node, "DELETE", "/v1/functions/victim", None).await;
    assert_eq!(res.status, 409, "{}", res.text());
    assert_eq!(error(&res).0, "in_use");
    // Without web, both are fine.
    assert_eq!(admin(&node, "DELETE", "/v1/functions/web", None).await.status, 200);
    assert_eq!(put(&node, "victim", victim(root.path(), "")).await.status, 201);
    node.shutdown().await;
}

#[tokio::test]
async fn in_a_cluster_owners_and_grants_hold_on_every_node() {
    const TOKEN: &str = "ownership-cluster-token";
    let nats = tests::nats().await;
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in ["own-1", "own-2"] {
        let toml = format!(
            "version = 1\n[node]\nid = \"{id}\"\ndata_dir = \"data-{id}\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n[cluster]\nnats_url = \"{}\"\n",
            nats.url
        );
        tests::write_file(root.path(), &format!("{id}.toml"), &toml);
        let config = root.path().join(format!("{id}.toml"));
        nodes.push(tests::NodeProcess::start(&config, &[("EDGE_ADMIN_TOKEN", TOKEN)]).await);
    }
    let call = |node: &tests::NodeProcess, method: &str, path: &str, body: Option<Vec<u8>>| {
        let url = format!("http://{}{path}", node.admin.unwrap());
        let method = method.to_string();
        async move {
            let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
            curl(&method, &url, &auth, body.as_deref()).await
        }
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let grants = "[[grants]]\nqueue = \"victim-jobs\"\nto = \"web\"\naccess = \"write\"\n";
    let res = call(a, "PUT", "/v1/functions/victim", Some(victim(root.path(), grants))).await;
    assert_eq!(res.status, 201, "{}", res.text());

    // Through the other node: the attacker is refused, the granted function is not.
    let attacker = function(
        root.path(),
        "attacker",
        "[bindings]\nLOOT = { bucket = \"victim-files\" }\n",
        "return (await env.LOOT.list()).objects.length;",
    );
    let res = call(b, "PUT", "/v1/functions/attacker", Some(attacker)).await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(error(&res).1.contains("belongs to function `victim`"), "{}", res.text());
    let web = function(
        root.path(),
        "web",
        "[bindings]\nJOBS = { queue = \"victim-jobs\" }\n",
        "await env.JOBS.send('from-web'); return 'sent';",
    );
    // Node b deploys web once it has the victim's grant (the deployment reaches it).
    let deadline = Instant::now() + Duration::from_secs(20);
    let res = loop {
        let res = call(b, "PUT", "/v1/functions/web", Some(web.clone())).await;
        if res.status != 403 || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(res.status, 201, "{}", res.text());
    let web_url = format!("http://{}/web/send", b.http);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl("GET", &web_url, &[], None).await.text() != "\"sent\"" {
        assert!(Instant::now() < deadline, "web never served on node b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read_url = format!("http://{}/v/read", a.http);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = curl("GET", &read_url, &[], None).await;
        let jobs: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
        if jobs["jobs"] == serde_json::json!(["job-from-web"]) {
            break;
        }
        assert!(Instant::now() < deadline, "web's message never reached the owner: {}", res.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn check_refuses_a_folder_whose_functions_share_a_table_without_a_grant() {
    let root = tempfile::tempdir().unwrap();
    tests::write_file(
        root.path(),
        "node.toml",
        "version = 1\n[http]\nlisten = [\"127.0.0.1:0\"]\n[functions]\ndir = \"fns\"\n",
    );
    let fns = root.path().join("fns");
    let code = "export default { fetch() { return new Response('ok') } }";
    function_folder(
        &fns,
        "billing",
        "/billing/*",
        "[bindings]\nT = { table = \"invoices\" }\n",
        code,
    );
    function_folder(
        &fns,
        "report",
        "/report/*",
        "[bindings]\nT = { table = \"invoices\" }\n",
        code,
    );
    let config = root.path().join("node.toml");
    let args = ["check", "--config", config.to_str().unwrap()];
    let check = || tests::run_edge_node(&args);
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("table `invoices` is also named by `report`"), "{stderr}");
    // The owner says so with a grant: read access, and report binds it read-only.
    function_folder(
        &fns,
        "billing",
        "/billing/*",
        "[bindings]\nT = { table = \"invoices\" }\n[[grants]]\ntable = \"invoices\"\nto = \"report\"\naccess = \"read\"\n",
        code,
    );
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("grants it read access only"), "{stderr}");
    function_folder(
        &fns,
        "report",
        "/report/*",
        "[bindings]\nT = { table = \"invoices\", access = \"read\" }\n",
        code,
    );
    let out = check().await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

//! The binary's admin commands (`deploy`, `functions`, `secrets`): each talks to every
//! `--node` given and reports per node. Part of the binary, not of the library.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use edge_node::{AdminClient, ClientError, Progress};
use http::Method;

use super::args::{FunctionsCommand, Nodes, SecretsCommand};
use super::bundle::build_bundle;

fn clients(nodes: &Nodes) -> anyhow::Result<Vec<AdminClient>> {
    nodes
        .urls
        .iter()
        .map(|url| {
            AdminClient::with_ca(url, nodes.token.clone(), nodes.ca.as_deref())
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Prints each node's outcome; fails if any node failed.
fn report(results: Vec<(String, Result<String, ClientError>)>) -> anyhow::Result<()> {
    let mut failed = 0;
    for (node, result) in results {
        match result {
            Ok(line) => say(&format!("{node}: {line}")),
            Err(e) => {
                failed += 1;
                eprintln!("{node}: error: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's answer")]
fn say(line: &str) {
    println!("{line}");
}

/// Shows upload progress on the terminal in steps of a tenth.
fn progress(node: &str, total: usize) -> Option<Progress> {
    if total < 256 * 1024 || !std::io::stderr().is_terminal() {
        return None;
    }
    let node = node.to_string();
    let shown = Arc::new(AtomicU64::new(0));
    Some(Arc::new(move |sent, total| {
        let tenth = sent * 10 / total.max(1);
        if shown.fetch_max(tenth, Ordering::Relaxed) < tenth {
            eprintln!(
                "{node}: uploading {} of {} KiB ({}%)",
                sent / 1024,
                total / 1024,
                tenth * 10
            );
        }
    }))
}

pub async fn deploy(dir: &Path, nodes: &Nodes) -> anyhow::Result<()> {
    let bundle = build_bundle(dir)?;
    let name = bundle.manifest().name.clone();
    let bytes = bytes::Bytes::from(bundle.encode());
    say(&format!(
        "{name}: {} modules, {} KiB bundle, hash {}",
        bundle.manifest().modules.len(),
        bytes.len() / 1024,
        bundle.hash()
    ));
    let clients = clients(nodes)?;
    let uploads = clients.iter().map(|client| {
        let bytes = bytes.clone();
        let name = name.clone();
        async move {
            let path = format!("/v1/functions/{name}");
            let result = client
                .upload(&path, bytes.clone(), progress(client.node(), bytes.len()))
                .await
                .map(|v| {
                    if v["unchanged"] == true {
                        format!(
                            "{name} version {} already serves this bundle; unchanged",
                            v["version"]
                        )
                    } else {
                        format!("deployed {name} version {}", v["version"])
                    }
                });
            (client.node().to_string(), result)
        }
    });
    let results = futures::future::join_all(uploads).await;
    let failed: Vec<&str> =
        results.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n.as_str()).collect();
    if !failed.is_empty() && failed.len() < results.len() {
        eprintln!(
            "warning: {name} is now deployed on some nodes and not on {}: they serve different code until it is deployed there too (`functions list` with every --node shows it)",
            failed.join(", ")
        );
    }
    report(results)
}

/// `functions list`: each node's functions, then, with several nodes, every function whose
/// nodes serve different bundles (or that some of them lack): standalone nodes drift when a
/// deploy missed one of them, and their version numbers alone do not show it.
async fn list_functions(clients: &[AdminClient]) -> anyhow::Result<()> {
    let calls = clients.iter().map(|client| async move {
        (client.node().to_string(), client.call(Method::GET, "/v1/functions", None).await)
    });
    let answers = futures::future::join_all(calls).await;
    let mut serving: std::collections::BTreeMap<String, Vec<(String, String, String)>> =
        Default::default();
    let mut results = Vec::new();
    for (node, answer) in answers {
        let result = answer.map(|v| {
            let list = v["functions"].as_array().cloned().unwrap_or_default();
            let rows: Vec<String> = list
                .iter()
                .map(|f| {
                    let name = f["name"].as_str().unwrap_or("?").to_string();
                    let bundle = f["bundle"].as_str().unwrap_or("?").to_string();
                    let version = f["active"].to_string();
                    serving.entry(name.clone()).or_default().push((
                        node.clone(),
                        bundle.clone(),
                        version.clone(),
                    ));
                    format!(
                        "\n  {name}  version {version} (latest {}), bundle {}, updated {}",
                        f["latest"],
                        &bundle[..bundle.len().min(12)],
                        f["updated_at"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!("{} function(s){}", rows.len(), rows.concat())
        });
        results.push((node, result));
    }
    let reached = results.iter().filter(|(_, r)| r.is_ok()).count();
    let outcome = report(results);
    if reached > 1 {
        for line in drift(&serving, reached) {
            eprintln!("{line}");
        }
    }
    outcome
}

/// A warning per function that the `reached` nodes do not all serve with the same bundle.
fn drift(
    serving: &std::collections::BTreeMap<String, Vec<(String, String, String)>>,
    reached: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, nodes) in serving {
        let bundles: std::collections::BTreeSet<&str> =
            nodes.iter().map(|(_, bundle, _)| bundle.as_str()).collect();
        if bundles.len() > 1 || nodes.len() < reached {
            let each: Vec<String> = nodes
                .iter()
                .map(|(node, bundle, version)| {
                    format!("{node} version {version} (bundle {})", &bundle[..bundle.len().min(12)])
                })
                .collect();
            let missing = if nodes.len() < reached {
                format!("; {} node(s) do not have it", reached - nodes.len())
            } else {
                String::new()
            };
            out.push(format!(
                "warning: the nodes differ on {name}: {}{missing}; deploy it again to all of them",
                each.join(", ")
            ));
        }
    }
    out
}

pub async fn functions(command: FunctionsCommand, nodes: &Nodes) -> anyhow::Result<()> {
    let clients = clients(nodes)?;
    if let FunctionsCommand::List = command {
        return list_functions(&clients).await;
    }
    let calls = clients.iter().map(|client| {
        let command = &command;
        async move {
            let result = match command {
                FunctionsCommand::List => unreachable!("listed above"),
                FunctionsCommand::Show { name, json } => client
                    .call(Method::GET, &format!("/v1/functions/{name}"), None)
                    .await
                    .map(|v| {
                        if *json {
                            serde_json::to_string_pretty(&v).unwrap_or_default()
                        } else {
                            show_function(&v)
                        }
                    }),
                FunctionsCommand::Rm { name } => client
                    .call(Method::DELETE, &format!("/v1/functions/{name}"), None)
                    .await
                    .map(|_| format!("deleted {name}")),
                FunctionsCommand::Rollback { name, version } => client
                    .call(
                        Method::POST,
                        &format!("/v1/functions/{name}/rollback"),
                        Some(serde_json::json!({ "version": version })),
                    )
                    .await
                    .map(|v| format!("{name} now serves version {}", v["version"])),
            };
            (client.node().to_string(), result)
        }
    });
    report(futures::future::join_all(calls).await)
}

/// A function as `functions show` prints it: its versions, newest first, the serving one
/// marked, then the names of its secrets.
fn show_function(v: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "{}: serving version {} (latest {}), updated {}\n  versions:",
        text(&v["name"]),
        v["active"],
        v["latest"],
        text(&v["updated_at"])
    );
    for version in v["versions"].as_array().into_iter().flatten() {
        let serving = version["version"] == v["active"];
        let hash = text(&version["bundle"]);
        out.push_str(&format!(
            "\n  {} {:>4}  {}  by {}  bundle {}  {} modules, {:.1} KiB",
            if serving { "*" } else { " " },
            version["version"],
            text(&version["deployed_at"]),
            text(&version["deployed_by"]),
            &hash[..hash.len().min(12)],
            version["modules"],
            version["size"].as_f64().unwrap_or(0.0) / 1024.0
        ));
    }
    let secrets: Vec<String> = v["secrets"].as_array().into_iter().flatten().map(text).collect();
    let secrets = if secrets.is_empty() { "none".to_string() } else { secrets.join(", ") };
    out.push_str(&format!("\n  secrets: {secrets}"));
    out
}

/// `secrets rotate-key`.
async fn rotate_key(config: &Path, new_key_file: &Path) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config =
        config::NodeConfig::load(config, &env).map_err(|e| super::BadConfig(e.to_string()))?;
    let new_key = std::fs::read_to_string(new_key_file)
        .with_context(|| format!("reading {}", new_key_file.display()))?;
    let rotated =
        edge_node::rotate_secrets_key(&config, &new_key).await.map_err(anyhow::Error::msg)?;
    say(&format!("re-sealed {} secret(s) in this node's store", rotated.store));
    if let Some(count) = rotated.cluster {
        say(&format!("re-sealed {count} secret(s) in the cluster: run rotate-key with the same new key on every other node (stopped) before it starts again"));
    }
    match rotated.key_file {
        Some(file) => say(&format!("{} holds the new key", file.display())),
        None => say(&format!(
            "set {} to the new key before the node starts again",
            config.secrets.key_env
        )),
    }
    Ok(())
}

pub async fn secrets(command: SecretsCommand, nodes: &Nodes) -> anyhow::Result<()> {
    if let SecretsCommand::RotateKey { config, new_key_file } = &command {
        return rotate_key(config, new_key_file).await;
    }
    let command = match command {
        SecretsCommand::Set { name, key, value: None } => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).context("reading the secret from stdin")?;
            let value = value.strip_suffix('\n').unwrap_or(&value).to_string();
            SecretsCommand::Set { name, key, value: Some(value) }
        }
        other => other,
    };
    let clients = clients(nodes)?;
    let calls = clients.iter().map(|client| {
        let command = &command;
        async move {
            let result = match command {
                SecretsCommand::Set { name, key, value } => client
                    .call(
                        Method::PUT,
                        &format!("/v1/functions/{name}/secrets/{key}"),
                        Some(serde_json::json!({ "value": value })),
                    )
                    .await
                    .map(|_| format!("set {key} of {name}")),
                SecretsCommand::Unset { name, key } => client
                    .call(Method::DELETE, &format!("/v1/functions/{name}/secrets/{key}"), None)
                    .await
                    .map(|_| format!("unset {key} of {name}")),
                SecretsCommand::RotateKey { .. } => unreachable!("rotated above"),
                SecretsCommand::List { name } => client
                    .call(Method::GET, &format!("/v1/functions/{name}/secrets"), None)
                    .await
                    .map(|v| {
                        let names: Vec<&str> = v["secrets"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                            .unwrap_or_default();
                        names.join(" ")
                    }),
            };
            (client.node().to_string(), result)
        }
    });
    report(futures::future::join_all(calls).await)
}

/// What `logs` asks for.
pub struct LogQuery {
    pub follow: bool,
    pub since: Option<String>,
    pub invocation: Option<String>,
    pub limit: usize,
}

/// One log record as a line: time, level or outcome, invocation, message or figures.
fn log_line(node: Option<&str>, r: &serde_json::Value) -> String {
    let ts = r["ts"].as_u64().unwrap_or(0);
    let ts = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts),
    );
    let id = r["invocation_id"].as_str().unwrap_or("-");
    let prefix = node.map(|n| format!("{n} ")).unwrap_or_default();
    if r["kind"] == "invocation" {
        // Events (cron, queue, storage, record) have no HTTP status.
        let status = r["status"].as_u64().map(|s| format!(" status {s}")).unwrap_or_default();
        format!(
            "{prefix}{ts} {} {id} {}{status} {:.2} ms, CPU {:.2} ms, {}",
            r["trigger"].as_str().unwrap_or("?"),
            r["outcome"].as_str().unwrap_or("?"),
            r["duration_ms"].as_f64().unwrap_or(0.0),
            r["cpu_ms"].as_f64().unwrap_or(0.0),
            if r["cold"] == true { "cold" } else { "warm" }
        )
    } else {
        format!(
            "{prefix}{ts} {:<5} {id} {}",
            r["level"].as_str().unwrap_or("?"),
            r["message"].as_str().unwrap_or("")
        )
    }
}

pub async fn logs(name: &str, query: LogQuery, nodes: &Nodes) -> anyhow::Result<()> {
    let clients = clients(nodes)?;
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    params.append_pair("limit", &query.limit.to_string());
    if let Some(since) = &query.since {
        params.append_pair("since", since);
    }
    if let Some(id) = &query.invocation {
        params.append_pair("invocation", id);
    }
    if query.follow {
        params.append_pair("follow", "1");
    }
    let path = format!("/v1/functions/{name}/logs?{}", params.finish());
    let several = clients.len() > 1;
    let calls = clients.iter().map(|client| {
        let path = path.clone();
        async move {
            let node = several.then(|| client.node());
            let result = if query.follow {
                client
                    .follow(&path, |r| say(&log_line(node, &r)))
                    .await
                    .map(|()| "stream ended".to_string())
            } else {
                client.call(Method::GET, &path, None).await.map(|v| {
                    let records = v["records"].as_array().cloned().unwrap_or_default();
                    for r in &records {
                        say(&log_line(node, r));
                    }
                    format!("{} records", records.len())
                })
            };
            (client.node().to_string(), result)
        }
    });
    let results = futures::future::join_all(calls).await;
    // Record lines are the answer; only failures are reported per node.
    let failed: Vec<_> = results.into_iter().filter(|(_, r)| r.is_err()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        report(failed)
    }
}

pub async fn invoke(
    name: &str,
    cron: bool,
    queue: Option<String>,
    body: Option<String>,
    nodes: &Nodes,
) -> anyhow::Result<()> {
    let request = match (cron, queue) {
        (true, _) => serde_json::json!({ "trigger": "cron" }),
        (false, Some(queue)) => {
            let text = body.unwrap_or_else(|| "null".into());
            let body: serde_json::Value =
                serde_json::from_str(&text).context("--body is not JSON")?;
            serde_json::json!({ "trigger": "queue", "queue": queue, "body": body })
        }
        (false, None) => bail!("say what to fire: --cron, or --queue Q --body JSON"),
    };
    let clients = clients(nodes)?;
    let path = format!("/v1/functions/{name}/invoke");
    let calls = clients.iter().map(|client| {
        let (request, path) = (request.clone(), path.clone());
        async move {
            let result = client.call(Method::POST, &path, Some(request)).await.and_then(|v| {
                let error = v.get("error").and_then(|e| e.as_str());
                let line = format!(
                    "invocation {} ended {}{}",
                    v["invocation_id"].as_str().unwrap_or("-"),
                    v["outcome"].as_str().unwrap_or("?"),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                );
                if v["outcome"] == "ok" {
                    Ok(line)
                } else {
                    Err(ClientError::Invocation { node: client.node().to_string(), message: line })
                }
            });
            (client.node().to_string(), result)
        }
    });
    report(futures::future::join_all(calls).await)
}

pub async fn cluster_status(nodes: &Nodes) -> anyhow::Result<()> {
    let clients = clients(nodes)?;
    let calls = clients.iter().map(|client| async move {
        let result = client.call(Method::GET, "/v1/cluster", None).await.map(|v| {
            let rows: Vec<String> = v["nodes"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|n| {
                            format!(
                                "\n  {}  region {}  http {}  version {}  {} functions, {} isolates",
                                n["id"].as_str().unwrap_or("?"),
                                n["region"].as_str().unwrap_or("?"),
                                n["http"].as_array().map_or(String::new(), |a| a
                                    .iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")),
                                n["version"].as_str().unwrap_or("?"),
                                n["functions"],
                                n["isolates"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{}: {} node(s){}",
                v["mode"].as_str().unwrap_or("?"),
                rows.len(),
                rows.concat()
            )
        });
        (client.node().to_string(), result)
    });
    report(futures::future::join_all(calls).await)
}

#[cfg(test)]
mod tests {
    use super::log_line;

    #[test]
    fn invocation_lines_name_a_status_only_when_there_is_one() {
        let record = |trigger: &str, status: serde_json::Value| {
            serde_json::json!({
                "kind": "invocation", "ts": 0, "invocation_id": "abc", "trigger": trigger,
                "outcome": "ok", "status": status, "duration_ms": 1.5, "cpu_ms": 0.5, "cold": false,
            })
        };
        let http = log_line(None, &record("http", serde_json::json!(200)));
        assert!(http.ends_with("http abc ok status 200 1.50 ms, CPU 0.50 ms, warm"), "{http}");
        let cron = log_line(Some("fra-1"), &record("cron", serde_json::Value::Null));
        assert!(cron.ends_with("cron abc ok 1.50 ms, CPU 0.50 ms, warm"), "{cron}");
        assert!(cron.starts_with("fra-1 "), "{cron}");
    }
}

//! `dev`: one function folder served, and reloaded when its files change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use config::{NodeConfig, Route};
use edge_node::{CertSource, FunctionSpec, Node, NodeOptions, TerminalSink};

use super::signals::Signals;
use super::BadConfig;

/// Loads a function folder for `dev`: every path routes to it.
fn load_dev(dir: &Path) -> anyhow::Result<FunctionSpec> {
    let limits = config::LimitsConfig::default();
    let mut spec = FunctionSpec::load(dir, &limits).map_err(|e| BadConfig(e.to_string()))?;
    spec.config.routes = vec![Route { host: None, path: "/*".into() }];
    Ok(spec)
}

pub async fn dev(dir: &Path, listen: SocketAddr, tls: bool) -> anyhow::Result<()> {
    let spec = load_dev(dir)?;
    let mut config = NodeConfig::default();
    config.http.listen = vec![listen];
    // Bundles and code caches of development runs stay out of the function folder.
    config.node.data_dir = std::env::temp_dir().join("isola-dev").join(&spec.config.name);
    if tls {
        config.http.listen = Vec::new();
        config.https = Some(config::HttpsConfig {
            listen: vec![listen],
            cert: PathBuf::new(),
            key: PathBuf::new(),
            http3: true,
        });
    }
    let source = tls.then_some(CertSource::SelfSigned);
    let name = spec.config.name.clone();
    let node = Node::start(NodeOptions {
        config,
        functions: vec![spec],
        log_sink: Arc::new(TerminalSink),
        tls: source,
        deployments: false,
        admin_token: None,
    })
    .await
    .context("starting the dev server")?;
    for addr in node.http_addrs() {
        tracing::info!("{name} is running at http://{addr}/ (Ctrl-C to stop)");
    }
    for addr in node.https_addrs() {
        tracing::info!("{name} is running at https://{addr}/ with a self-signed certificate (curl -k; Ctrl-C to stop)");
    }
    let mut seen = fingerprint(dir);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            _ = signals.next_stop() => break,
            _ = tick.tick() => {
                let now = fingerprint(dir);
                if now != seen {
                    seen = now;
                    match load_dev(dir) {
                        Ok(spec) => {
                            node.replace_functions(vec![spec]).await;
                            tracing::info!("reloaded {name}");
                        }
                        Err(e) => tracing::error!("not reloaded: {e}"),
                    }
                }
            }
        }
    }
    node.shutdown().await;
    Ok(())
}

/// Names, sizes and modification times of the files under `dir`, to notice edits.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || name == "node_modules" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

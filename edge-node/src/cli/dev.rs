//! `dev`: one function folder served, and reloaded when its files change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    let mut edits = watch(dir)?;
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            _ = signals.next_stop() => break,
            Some(()) = edits.changed.recv() => {
                // An editor's save is often several events; reload once they settle.
                while let Ok(Some(())) = tokio::time::timeout(SETTLE, edits.changed.recv()).await {}
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
    node.shutdown().await;
    Ok(())
}

/// How long a burst of file events must be quiet before the folder is read again.
const SETTLE: Duration = Duration::from_millis(30);

/// A watch of a function folder: a message for each change of a file the function is made
/// of (dot-files and `node_modules` left out). Watching stops when it is dropped.
struct Edits {
    changed: tokio::sync::mpsc::UnboundedReceiver<()>,
    _watcher: notify::RecommendedWatcher,
}

fn watch(dir: &Path) -> anyhow::Result<Edits> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (tx, changed) = tokio::sync::mpsc::unbounded_channel();
    let root = dir.canonicalize().with_context(|| format!("reading {}", dir.display()))?;
    let base = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let counts = |path: &PathBuf| {
            let relative = path.strip_prefix(&base).unwrap_or(path);
            !relative.components().any(|c| {
                let c = c.as_os_str().to_string_lossy();
                c.starts_with('.') || c == "node_modules"
            })
        };
        if event.paths.iter().any(counts) {
            let _ = tx.send(());
        }
    })
    .context("watching the function folder")?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", root.display()))?;
    Ok(Edits { changed, _watcher: watcher })
}

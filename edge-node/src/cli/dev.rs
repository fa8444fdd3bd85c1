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

/// Local secrets for `dev`, as on Workers: `KEY=VALUE` lines in the function folder's
/// `.dev.vars` (blank lines and `#` comments skipped, a value may be quoted). Never bundled.
const DEV_VARS: &str = ".dev.vars";

/// Loads a function folder for `dev`: every path routes to it, with the secrets of its
/// `.dev.vars`.
fn load_dev(dir: &Path) -> anyhow::Result<FunctionSpec> {
    let limits = config::LimitsConfig::default();
    let mut spec = FunctionSpec::load(dir, &limits).map_err(|e| BadConfig(e.to_string()))?;
    spec.config.routes = vec![Route { host: None, path: "/*".into() }];
    let vars = dir.join(DEV_VARS);
    if vars.is_file() {
        let text = std::fs::read_to_string(&vars)
            .with_context(|| format!("reading {}", vars.display()))?;
        let secrets = dev_vars(&text).map_err(|problems| {
            BadConfig(format!("{}: {}", vars.display(), problems.join("; ")))
        })?;
        spec.secrets.extend(secrets);
    }
    Ok(spec)
}

/// The `KEY=VALUE` pairs of a `.dev.vars` text, or every line that is not one.
fn dev_vars(text: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let (mut vars, mut problems) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push(format!("line {}: expected KEY=VALUE", i + 1));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if !config::valid_var_name(key) {
            problems.push(format!("line {}: `{key}` is not a valid name", i + 1));
            continue;
        }
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    if problems.is_empty() {
        Ok(vars)
    } else {
        Err(problems)
    }
}

pub async fn dev(dir: &Path, listen: SocketAddr, tls: bool) -> anyhow::Result<()> {
    let spec = load_dev(dir)?;
    let mut config = NodeConfig::default();
    config.http.listen = vec![listen];
    // A failure answers with its error and stack (an HTML page for a browser).
    config.http.error_detail = true;
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
    let name = spec.config.name.clone();
    // A local admin API, so `invoke` (and `logs`) reach the function: on a free loopback
    // port, with the token of EDGE_ADMIN_TOKEN or one made for this run.
    config.admin.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    let token = std::env::var(&config.admin.token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let options = |config: NodeConfig, spec: FunctionSpec| NodeOptions {
        config,
        functions: vec![spec],
        log_sink: Arc::new(TerminalSink),
        tls: tls.then_some(CertSource::SelfSigned),
        deployments: true,
        admin_token: Some(token.clone()),
    };
    // A second `dev` of the same function finds the first one's store locked: it keeps its
    // data in a folder of its own, removed when it stops.
    let (node, scratch) = match Node::start(options(config.clone(), spec.clone())).await {
        Ok(node) => (node, None),
        Err(e) if format!("{e:#}").contains("already open") => {
            let own = config.node.data_dir.with_file_name(format!("{name}-{}", std::process::id()));
            config.node.data_dir = own.clone();
            let node =
                Node::start(options(config, spec)).await.context("starting the dev server")?;
            (node, Some(own))
        }
        Err(e) => return Err(e).context("starting the dev server"),
    };
    // Watching starts before `dev` says it runs: an edit made as soon as it does is seen.
    let mut edits = watch(dir)?;
    for addr in node.http_addrs() {
        tracing::info!("{name} is running at http://{addr}/ (Ctrl-C to stop)");
    }
    for addr in node.https_addrs() {
        tracing::info!("{name} is running at https://{addr}/ with a self-signed certificate (curl -k; Ctrl-C to stop)");
    }
    if let Some(admin) = node.admin_addrs().first() {
        tracing::info!(
            "fire its triggers: edge-node invoke {name} --cron (or --queue Q --body JSON) --node http://{admin} --token {token}"
        );
    }
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
    if let Some(scratch) = scratch {
        let _ = std::fs::remove_dir_all(scratch);
    }
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
            relative == Path::new(DEV_VARS)
                || !relative.components().any(|c| {
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

#[cfg(test)]
mod tests {
    use super::dev_vars;

    #[test]
    fn dev_vars_are_key_value_lines() {
        let vars = dev_vars("# a comment\n\nA=1\n B = 'two words' \nC=\"=x=\"\n").unwrap();
        let expected = [("A", "1"), ("B", "two words"), ("C", "=x=")];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(vars, expected);
        assert_eq!(
            dev_vars("A=1\njust text\n2BAD=x\n").unwrap_err(),
            ["line 2: expected KEY=VALUE", "line 3: `2BAD` is not a valid name"]
        );
    }
}

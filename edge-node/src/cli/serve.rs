//! `serve` and `check`: a node from its node.toml.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use config::NodeConfig;
use edge_node::{FunctionSpec, Node, NodeOptions, TracingSink};

use super::signals::{Signal, Signals};
use super::BadConfig;

/// Reads node.toml and the functions it names; every problem becomes a [`BadConfig`].
fn load(path: &Path) -> anyhow::Result<(NodeConfig, Vec<FunctionSpec>)> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = NodeConfig::load(path, &env).map_err(|e| BadConfig(e.to_string()))?;
    // Without a functions folder the node serves what was deployed through the admin API.
    let functions = match &config.functions {
        Some(f) => {
            FunctionSpec::load_all(&f.dir, &config.limits).map_err(|e| BadConfig(e.to_string()))?
        }
        None => Vec::new(),
    };
    Ok((config, functions))
}

/// Checks node.toml and every function folder it names in one pass: the folders are read
/// even when node.toml has problems (with what of it could be read), and every problem of
/// both is listed.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (config, problems) =
        NodeConfig::load_lenient(path, &env).map_err(|e| BadConfig(e.to_string()))?;
    let mut report = Vec::new();
    if !problems.is_empty() {
        report
            .push(config::ConfigError::Invalid { file: path.to_path_buf(), problems }.to_string());
    }
    if let Some(folder) = config.as_ref().and_then(|c| c.functions.as_ref()) {
        let limits = &config.as_ref().expect("read").limits;
        if let Err(e) = FunctionSpec::load_all(&folder.dir, limits) {
            report.push(e.to_string());
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(BadConfig(report.join("\n")).into())
    }
}

pub async fn serve(path: &Path, listen: Vec<SocketAddr>) -> anyhow::Result<()> {
    let (mut config, functions) = load(path)?;
    if !listen.is_empty() {
        config.http.listen = listen;
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        node = %config.node.id,
        region = %config.node.region,
        functions = functions.len(),
        "starting"
    );
    let grace = config.node.shutdown_grace_period;
    let (folder, limits) = (config.functions.clone(), config.limits.clone());
    let admin_token = std::env::var(&config.admin.token_env).ok().filter(|token| !token.is_empty());
    let node = Node::start(NodeOptions {
        config,
        functions,
        log_sink: Arc::new(TracingSink),
        tls: None,
        deployments: true,
        admin_token,
    })
    .await
    .context("starting the node")?;
    tracing::info!("ready");
    let mut signals = Signals::new()?;
    while let Signal::Reload = signals.next().await {
        match node.reload_tls() {
            Ok(()) => tracing::info!("reloaded the TLS certificate"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; keeping the old one")
            }
        }
        if let Some(folder) = &folder {
            match FunctionSpec::load_all(&folder.dir, &limits) {
                Ok(functions) => node.reload_folder(functions).await,
                Err(e) => {
                    tracing::error!(error = %e, "the functions folder was not reloaded; serving what was there")
                }
            }
        }
    }
    tracing::info!(grace_period = %config::format_duration(grace), "shutting down: no new connections, draining requests in flight");
    let drained = tokio::select! {
        drained = node.shutdown() => drained,
        _ = signals.next_stop() => {
            tracing::warn!("second signal: stopping at once");
            std::process::exit(1);
        }
    };
    if drained {
        tracing::info!("drained; stopped");
    } else {
        tracing::warn!("grace period over; closed the connections still open; stopped");
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's answer")]
pub fn println_ok(config: &Path) {
    println!("{} is valid", config.display());
}

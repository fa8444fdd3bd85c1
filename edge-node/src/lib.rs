//! The Isola node: HTTP listeners in front of one V8 isolate per function.
//!
//! `main.rs` parses flags and calls into here; tests start a node in-process with
//! [`Node::start`] on port 0.

mod body;
pub mod functions;
mod http;
pub mod logs;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use config::NodeConfig;
use js_runtime::LogSink;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::functions::Shared;
pub use crate::functions::{Function, FunctionSpec, FunctionsError};
use crate::http::{App, Site};

/// How long open connections may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What a node serves and where its function logs go.
pub struct NodeOptions {
    pub config: NodeConfig,
    pub functions: Vec<FunctionSpec>,
    pub log_sink: Arc<dyn LogSink>,
}

/// A running node.
pub struct Node {
    http_addrs: Vec<SocketAddr>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    app: Arc<App>,
    shared: Arc<Shared>,
}

impl Node {
    /// Starts every function, then binds every listener. Returns once the node serves.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let NodeOptions { config, functions, log_sink } = options;
        let shared = Arc::new(Shared {
            allow_eval: config.runtime.allow_eval,
            fetch_allow: config.fetch.allow.clone(),
            log_sink,
        });
        let site = start_functions(functions, &shared).await;
        let app = Arc::new(App { site: ArcSwap::from_pointee(site) });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut http_addrs = Vec::new();
        for addr in &config.http.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind { addr: *addr, source })?;
            let local =
                listener.local_addr().map_err(|source| NodeError::Bind { addr: *addr, source })?;
            tracing::info!(addr = %local, "listening for HTTP");
            http_addrs.push(local);
            tasks.spawn(http::serve(listener, app.clone(), stop.clone(), SHUTDOWN_GRACE));
        }
        Ok(Node { http_addrs, stop, tasks, app, shared })
    }

    /// The bound HTTP addresses (useful with port 0).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// Replaces the served functions: new requests go to the new set at once.
    pub async fn replace_functions(&self, functions: Vec<FunctionSpec>) {
        let site = start_functions(functions, &self.shared).await;
        self.app.site.store(Arc::new(site));
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn start_functions(specs: Vec<FunctionSpec>, shared: &Arc<Shared>) -> Site {
    let started = futures::future::join_all(
        specs.into_iter().map(|spec| Function::start(spec, shared.clone())),
    )
    .await;
    for f in &started {
        let state = if f.is_ready() { "ready" } else { "failed to start" };
        let routes: Vec<String> = f.spec.config.routes.iter().map(|r| r.to_string()).collect();
        tracing::info!(function = %f.spec.config.name, bundle = %f.spec.bundle.hash(), routes = ?routes, "{state}");
    }
    Site::new(started)
}

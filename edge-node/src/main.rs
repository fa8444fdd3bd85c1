//! `edge-node`: run a node, or one function for local development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{NodeConfig, Route};
use edge_node::logs::{TerminalSink, TracingSink};
use edge_node::{CertSource, FunctionSpec, Node, NodeOptions};

mod commands;

/// Exit code for a configuration the node cannot use (EX_USAGE-style, as sysexits' 64).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "edge-node",
    version,
    about = "Run JavaScript functions in V8 isolates behind HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its node.toml, serving the functions it names. SIGHUP re-reads the TLS
    /// certificate; SIGTERM or Ctrl-C drains and stops (a second one stops at once).
    Serve {
        /// Path to node.toml. Keys can be overridden by EDGE__<SECTION>__<KEY> variables.
        #[arg(long, short, default_value = "node.toml")]
        config: PathBuf,
        /// Plaintext listen address(es), replacing [http] listen.
        #[arg(long)]
        listen: Vec<SocketAddr>,
    },
    /// Run one function on localhost for development: every path goes to it, it reloads when
    /// its files change, and its logs print to the terminal.
    Dev {
        /// The function folder (holding edge.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Serve HTTPS (HTTP/1.1 and HTTP/2) with a self-signed certificate for localhost
        /// instead of plaintext HTTP.
        #[arg(long)]
        tls: bool,
    },
    /// Build a function folder into one bundle file: TypeScript and JSX transpiled, imports
    /// (relative and npm packages from node_modules) followed, modules lz4-compressed under a
    /// manifest, named by a content hash.
    Bundle {
        /// The function folder (holding edge.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the bundle.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Bundle a function folder and upload it to one or more nodes as a new version, active at
    /// once. Reports per node; exits 1 if any node refused.
    Deploy {
        /// The function folder (holding edge.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Manage deployed functions.
    Functions {
        #[command(subcommand)]
        command: FunctionsCommand,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Fire a function's trigger by hand: its `scheduled` handler (--cron), or its `queue`
    /// handler with one message (--queue Q --body JSON; the message is not stored).
    Invoke {
        name: String,
        #[arg(long, conflicts_with = "queue")]
        cron: bool,
        #[arg(long, requires = "body")]
        queue: Option<String>,
        /// The message body, JSON.
        #[arg(long)]
        body: Option<String>,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// The cluster: `status` lists its nodes (a standalone node lists itself).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Read a function's log (console lines and invocation summaries), or tail it.
    Logs {
        name: String,
        /// Keep printing new records as they come.
        #[arg(long, short)]
        follow: bool,
        /// Records since this time (RFC 3339, or milliseconds since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Only the records of this invocation (request id).
        #[arg(long)]
        invocation: Option<String>,
        /// How many of the newest records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Manage a function's secrets (write-only: values are never shown).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Check a node.toml (and the function folders it names) and exit: 0 when valid, 64 with
    /// every problem listed otherwise.
    Check {
        /// Path to node.toml.
        #[arg(long, short, default_value = "node.toml")]
        config: PathBuf,
    },
}

/// The nodes an admin command talks to.
#[derive(clap::Args)]
struct Nodes {
    /// A node's admin API URL; repeat for several nodes.
    #[arg(long = "node", global = true, default_value = "http://127.0.0.1:9090")]
    urls: Vec<String>,
    /// The admin bearer token.
    #[arg(long, global = true, env = "EDGE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// List deployed functions.
    List,
    /// Show a function: its versions and the names of its secrets.
    Show { name: String },
    /// Delete a function with its versions and secrets.
    Rm { name: String },
    /// Make an earlier version active (default: the one before the active one).
    Rollback {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// List the nodes of the cluster with their regions, addresses and load.
    Status,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set a secret; the value comes from --value or, without it, from standard input.
    Set {
        name: String,
        key: String,
        #[arg(long)]
        value: Option<String>,
    },
    /// Remove a secret.
    Unset { name: String, key: String },
    /// List the names of a function's secrets.
    List { name: String },
}

/// An error that means the user's configuration is unusable (exit 64), not a runtime failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadConfig(String);

#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _otlp = init_tracing();
    // Diagnostics only: V8 flags such as `--perf-basic-prof` for profiling JavaScript.
    if let Ok(flags) = std::env::var("EDGE_V8_FLAGS") {
        js_runtime::set_v8_flags(&flags.split_whitespace().collect::<Vec<_>>());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, listen } => serve(&config, listen).await,
            Command::Dev { dir, listen, tls } => dev(&dir, listen, tls).await,
            Command::Check { config } => check(&config).map(|()| println_ok(&config)),
            Command::Bundle { dir, output } => bundle(&dir, &output),
            Command::Deploy { dir, nodes } => commands::deploy(&dir, &nodes).await,
            Command::Functions { command, nodes } => commands::functions(command, &nodes).await,
            Command::Secrets { command, nodes } => commands::secrets(command, &nodes).await,
            Command::Cluster { command: ClusterCommand::Status, nodes } => {
                commands::cluster_status(&nodes).await
            }
            Command::Invoke { name, cron, queue, body, nodes } => {
                commands::invoke(&name, cron, queue, body, &nodes).await
            }
            Command::Logs { name, follow, since, invocation, limit, nodes } => {
                let query = commands::LogQuery { follow, since, invocation, limit };
                commands::logs(&name, query, &nodes).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<BadConfig>() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the command's answer")]
fn println_ok(config: &Path) {
    println!("{} is valid", config.display());
}

/// The node's own log: `EDGE_LOG` filter (default `info`), `EDGE_LOG_FORMAT=json|plain` on
/// standard error; with `OTEL_EXPORTER_OTLP_ENDPOINT` set (and the `otlp` feature, on by
/// default), request spans are also exported over OTLP/HTTP. The returned guard flushes them.
fn init_tracing() -> Option<otlp::Guard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::env::var("EDGE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let (otlp_layer, guard) = otlp::layer();
    let layers: Vec<otlp::Boxed> = std::iter::once(fmt).chain(otlp_layer).collect();
    tracing_subscriber::registry().with(layers).init();
    guard
}

/// OTLP export of the node's spans, when built with the `otlp` feature and asked for with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard variables of the OTLP exporter apply).
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;

    pub struct Guard(opentelemetry_sdk::trace::SdkTracerProvider);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    pub type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

    pub fn layer() -> (Option<Boxed>, Option<Guard>) {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("warning: OTLP export off: {e}");
                return (None, None);
            }
        };
        let resource =
            opentelemetry_sdk::Resource::builder().with_service_name("edge-node").build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("edge-node");
        // Spans of requests and admin calls (debug level), whatever EDGE_LOG prints.
        let filter = tracing_subscriber::EnvFilter::new("edge_node=debug");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed();
        (Some(layer), Some(Guard(provider)))
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    pub struct Guard;
    pub type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

    pub fn layer() -> (Option<Boxed>, Option<Guard>) {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            eprintln!("warning: this edge-node was built without the `otlp` feature; no traces are exported");
        }
        (None, None)
    }
}

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

#[allow(clippy::print_stdout, reason = "the command's answer")]
fn bundle(dir: &Path, output: &Path) -> anyhow::Result<()> {
    let bundle = build_bundle(dir)?;
    let bytes = bundle.encode();
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} modules, {} bytes of code, {} bytes written\nhash {}",
        output.display(),
        bundle.manifest().modules.len(),
        bundle.size(),
        bytes.len(),
        bundle.hash()
    );
    Ok(())
}

/// Builds the deployable bundle of a function folder: its modules and its edge.toml.
fn build_bundle(dir: &Path) -> anyhow::Result<bundler::Bundle> {
    let config = config::EdgeConfig::load(dir).map_err(|e| BadConfig(e.to_string()))?;
    let bundle = bundler::Bundle::from_dir(dir, &config.name, &config.entry)
        .map_err(|e| BadConfig(format!("{}: {e}", dir.display())))?;
    let file = dir.join(config::EDGE_FILE);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(bundle.with_config(text))
}

fn check(path: &Path) -> anyhow::Result<()> {
    load(path).map(|_| ())
}

async fn serve(path: &Path, listen: Vec<SocketAddr>) -> anyhow::Result<()> {
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

/// Loads a function folder for `dev`: every path routes to it.
fn load_dev(dir: &Path) -> anyhow::Result<FunctionSpec> {
    let limits = config::LimitsConfig::default();
    let mut spec = FunctionSpec::load(dir, &limits).map_err(|e| BadConfig(e.to_string()))?;
    spec.config.routes = vec![Route { host: None, path: "/*".into() }];
    Ok(spec)
}

async fn dev(dir: &Path, listen: SocketAddr, tls: bool) -> anyhow::Result<()> {
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

/// The signals a node acts on.
enum Signal {
    /// SIGHUP: re-read the TLS certificate.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            hup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    async fn next_stop(&mut self) {
        loop {
            if let Signal::Stop = self.next().await {
                return;
            }
        }
    }
}

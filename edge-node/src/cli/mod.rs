//! The `edge-node` command: its flags, and what each subcommand does.

pub mod args;
mod bundle;
mod commands;
mod dev;
pub mod init;
mod logging;
mod serve;
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a configuration the node cannot use (EX_USAGE-style, as sysexits' 64).
const EXIT_BAD_CONFIG: u8 = 64;

/// An error that means the user's configuration is unusable (exit 64), not a runtime failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadConfig(String);

/// Runs the subcommand the command line names; the process's exit code.
pub fn run() -> ExitCode {
    let cli = args::Cli::parse();
    let _otlp = logging::init_tracing();
    drop_proxy_variables();
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
            args::Command::Serve { config, listen } => serve::serve(&config, listen).await,
            args::Command::Dev { dir, listen, tls } => dev::dev(&dir, listen, tls).await,
            args::Command::Check { config } => {
                serve::check(&config).map(|()| serve::println_ok(&config))
            }
            args::Command::Bundle { dir, output, code_cache } => {
                bundle::bundle(&dir, &output, code_cache)
            }
            args::Command::Init { dir, template, name } => init::init(&dir, template, name),
            args::Command::Deploy { dir, nodes } => commands::deploy(&dir, &nodes).await,
            args::Command::Functions { command, nodes } => {
                commands::functions(command, &nodes).await
            }
            args::Command::Secrets { command, nodes } => commands::secrets(command, &nodes).await,
            args::Command::Cluster { command: args::ClusterCommand::Status, nodes } => {
                commands::cluster_status(&nodes).await
            }
            args::Command::Invoke { name, cron, queue, body, nodes } => {
                commands::invoke(&name, cron, queue, body, &nodes).await
            }
            args::Command::Logs { name, follow, since, invocation, limit, nodes } => {
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

/// The proxy variables functions' outbound requests must not follow.
const PROXY_VARIABLES: [&str; 6] =
    ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// Removes the proxy variables from the environment before anything else starts. deno_fetch
/// reads them whenever it makes an isolate's HTTP client, with no way to say no, and a request
/// sent to a proxy reaches whatever host the proxy reaches: past the outbound policy, which
/// checks the addresses it connects to itself (loopback, private, metadata). So functions'
/// requests go out directly. The node's own OTLP exporter, made just before, keeps the proxy.
fn drop_proxy_variables() {
    let set: Vec<&str> =
        PROXY_VARIABLES.into_iter().filter(|v| std::env::var_os(v).is_some()).collect();
    for var in &set {
        std::env::remove_var(var);
    }
    if !set.is_empty() {
        tracing::warn!(variables = ?set, "functions' outbound requests do not go through a proxy; the proxy variables are ignored");
    }
}

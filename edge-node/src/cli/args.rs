//! The command line: every subcommand and its flags (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edge-node",
    version,
    about = "Run JavaScript functions in V8 isolates behind HTTP",
    after_help = "Exit codes: 0 done; 1 failed (a node refused or could not be reached); 2 the \
                  command line is wrong; 64 a config file or function folder has problems \
                  (every one is listed).\n\nAdmin commands talk to the nodes of --node or \
                  EDGE_NODE (comma-separated) with the token of --token or EDGE_ADMIN_TOKEN."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a node from its node.toml, serving the functions it names. SIGHUP re-reads the TLS
    /// certificate and the functions folder; SIGTERM or Ctrl-C drains and stops (a second one
    /// stops at once).
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
    /// Make a new function folder from a template: edge.toml, its code, a tsconfig.json and
    /// the runtime's types (isola.d.ts) so an editor completes `env`, bindings and handlers.
    /// Nothing that exists is overwritten.
    Init {
        /// The folder to make (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// What the function starts as.
        #[arg(long, short, value_enum, default_value = "hello")]
        template: super::init::Template,
        /// The function's name (default: made of the folder's name).
        #[arg(long)]
        name: Option<String>,
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
        /// Compile the modules (running none) and put V8's code cache in the bundle, so the
        /// first start on any node of the same edge-node build is warm.
        #[arg(long)]
        code_cache: bool,
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
        /// The function's name.
        name: String,
        /// Run its `scheduled` handler now (recorded in its cron history as a manual run).
        #[arg(long, conflicts_with = "queue")]
        cron: bool,
        /// Run its `queue` handler with one message, as if from this queue.
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
        /// The function's name.
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
pub struct Nodes {
    /// A node's admin API URL (http:// or https://); repeat for several nodes.
    #[arg(
        long = "node",
        global = true,
        env = "EDGE_NODE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9090"
    )]
    pub urls: Vec<String>,
    /// The admin bearer token.
    #[arg(long, global = true, env = "EDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificates to trust for https:// nodes besides the system's (a private CA, or
    /// the node's own self-signed certificate).
    #[arg(long, global = true, env = "EDGE_NODE_CA")]
    pub ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum FunctionsCommand {
    /// List deployed functions.
    List,
    /// Show a function: its versions and the names of its secrets.
    Show {
        /// The function's name.
        name: String,
        /// Print the admin API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Delete a function with its versions and secrets.
    Rm {
        /// The function's name.
        name: String,
    },
    /// Make an earlier version active (default: the one before the active one).
    Rollback {
        /// The function's name.
        name: String,
        /// The version to serve (one `functions show` lists).
        #[arg(long)]
        version: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// List the nodes of the cluster with their regions, addresses and load.
    Status,
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Set a secret; the value comes from --value or, without it, from standard input.
    Set {
        /// The function's name.
        name: String,
        /// The secret's name: the function reads it as `env.KEY`.
        key: String,
        /// The value (visible in the shell's history and process list; prefer standard input).
        #[arg(long)]
        value: Option<String>,
    },
    /// Remove a secret.
    Unset {
        /// The function's name.
        name: String,
        /// The secret's name.
        key: String,
    },
    /// List the names of a function's secrets.
    List {
        /// The function's name.
        name: String,
    },
    /// Seal every secret under a new key: this node's store (stop the node first) and, for a
    /// node of a cluster, the cluster's bucket; then the key file holds the new key. Give
    /// every other node of the cluster the new key before it starts again.
    RotateKey {
        /// Path to the node's node.toml.
        #[arg(long, short, default_value = "node.toml")]
        config: PathBuf,
        /// A file holding the new key (64 hex digits, e.g. `openssl rand -hex 32`).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

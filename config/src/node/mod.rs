//! `node.toml`: one per node. Defaults live in the `Default` impls below and nowhere else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::de;
use crate::limits::Limits;

mod read;
#[cfg(test)]
mod tests;

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub http: HttpConfig,
    /// `[https]`, when the node serves TLS.
    pub https: Option<HttpsConfig>,
    pub runtime: RuntimeConfig,
    pub cache: CacheConfig,
    /// Read apart from the rest (see [`read_limits`]): `[limits]` holds keys and a table.
    #[serde(skip)]
    pub limits: LimitsConfig,
    pub fetch: FetchConfig,
    pub pool: PoolConfig,
    /// `[functions]`: function folders served as they are on disk.
    pub functions: Option<FunctionsConfig>,
    pub admin: AdminConfig,
    pub logs: LogsConfig,
    /// `[cluster]`: join other nodes through NATS JetStream; `None` keeps the node standalone.
    pub cluster: Option<ClusterConfig>,
    pub secrets: SecretsConfig,
}

/// `[secrets]`: the key function secrets are encrypted under, in the node's store and in the
/// cluster (ChaCha20-Poly1305). Every node of a cluster needs the same key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// A file holding the 32-byte key (64 hex digits). Default: `data_dir/secrets.key`, made
    /// (mode 0600) with a random key on first start.
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key (64 hex digits), used instead of the file when
    /// set. Default: `"EDGE_SECRETS_KEY"`.
    pub key_env: String,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig { key_file: None, key_env: "EDGE_SECRETS_KEY".into() }
    }
}

/// `[cluster]`: the NATS server (JetStream enabled) the nodes of a cluster share.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://host:4222` (or `tls://`); several servers separated by commas.
    pub nats_url: String,
    /// A NATS credentials file (`.creds`), relative to node.toml's folder.
    pub credentials: Option<PathBuf>,
    /// How long a node stays listed after its last heartbeat. Default: 15 s.
    #[serde(with = "de::duration")]
    pub node_ttl: Duration,
    /// PEM root certificates the NATS servers' certificates are checked against (instead
    /// of the system's); setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for servers that verify clients; both or
    /// neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// What a cron schedule does while the cluster's claim store (NATS) cannot be reached:
    /// `skip` (default) fires nowhere and records the run as missed (a `catch_up` schedule
    /// runs it once when claims work again); `fire` fires on every node that is cut off (each
    /// run may then happen more than once).
    pub cron_when_partitioned: CronWhenPartitioned,
    /// Replicas of every stream, KV bucket and Object Store the node creates. Default: 3 when
    /// the NATS cluster has at least three servers, else 1. A node does not use a cluster
    /// whose existing buckets have fewer replicas than this (it says so, and serves what it
    /// has).
    pub replicas: Option<usize>,
}

/// `[cluster] cron_when_partitioned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CronWhenPartitioned {
    #[default]
    Skip,
    Fire,
}

/// `[logs]`: how much of each function's log the node keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Bytes kept per function; the oldest records go first. Default: 64 MiB.
    #[serde(with = "de::size")]
    pub max_size: u64,
    /// Records older than this are deleted. Default: 7 days.
    #[serde(with = "de::duration")]
    pub max_age: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { max_size: 64 * 1024 * 1024, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// `[admin]`: the admin API (deploys, versions, secrets).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin API listens. Default: `["127.0.0.1:9090"]` (loopback only); `[]` turns
    /// it off.
    #[serde(deserialize_with = "de::addresses")]
    pub listen: Vec<SocketAddr>,
    /// The environment variable holding the bearer token. Default: `"EDGE_ADMIN_TOKEN"`.
    /// Without a token every admin request is refused.
    pub token_env: String,
    /// Versions kept per function, the active one included; older ones are deleted on deploy.
    /// Default: 10.
    pub keep_versions: usize,
    /// The largest bundle an upload may be. Default: 64 MiB.
    #[serde(with = "de::size")]
    pub max_bundle_size: u64,
    /// PEM certificate chain and private key: with both set, the admin API (and the
    /// dashboard) speak HTTPS only. SIGHUP re-reads them. Default: plain HTTP.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9090))],
            token_env: "EDGE_ADMIN_TOKEN".into(),
            keep_versions: 10,
            max_bundle_size: 64 * 1024 * 1024,
            cert: None,
            key: None,
        }
    }
}

/// `[node]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// This node's id in logs and metrics. Default: `"local"`.
    pub id: String,
    /// The region it serves. Default: `"local"`.
    pub region: String,
    /// Where the node keeps its state. Default: `./data` beside node.toml.
    pub data_dir: PathBuf,
    /// How long requests in flight may take to finish once shutdown begins. Default: `"30s"`.
    #[serde(with = "de::duration")]
    pub shutdown_grace_period: Duration,
}

/// `[http]`: plaintext listeners (HTTP/1.1 and HTTP/2 with prior knowledge), and the request
/// limits of every listener, TLS ones included.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses to listen on. Default: `["0.0.0.0:8080"]`.
    #[serde(deserialize_with = "de::addresses")]
    pub listen: Vec<SocketAddr>,
    /// The largest request body; more answers 413. Default: `"100MiB"`.
    #[serde(with = "de::size")]
    pub max_body_size: u64,
    /// The longest request target (path and query); longer answers 414. Default: `"16KiB"`.
    #[serde(with = "de::size")]
    pub max_url_length: u64,
    /// The most bytes of request headers; more answers 431. Default: `"32KiB"`.
    #[serde(with = "de::size")]
    pub max_header_size: u64,
    /// The most request header fields; more answers 431. Default: `100`.
    pub max_headers: usize,
    /// How long a client may take to send a request's headers (slowloris). Default: `"10s"`.
    #[serde(with = "de::duration")]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Default: `"60s"`.
    #[serde(with = "de::duration")]
    pub idle_timeout: Duration,
    /// The most connections open at once, over all listeners. Default: `10000`.
    pub max_connections: usize,
    /// HTTP/2: the most concurrent streams per connection. Default: `250`.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: the most streams a client may reset before being served (Rapid Reset).
    /// Default: `20`.
    pub h2_max_pending_reset_streams: usize,
    /// How long a response may make no write progress (a client that stopped reading)
    /// before its connection is closed. Default: `"30s"`.
    #[serde(with = "de::duration")]
    pub write_timeout: Duration,
    /// The most connections open at once from one client address (TCP and QUIC).
    /// Default: `256`.
    pub max_connections_per_ip: usize,
    /// Proxies (addresses or networks, `"10.0.0.0/8"`) whose `X-Forwarded-For` names the
    /// client; from any other address the client is the peer, and its `X-Forwarded-For` and
    /// `CF-Connecting-IP` are dropped. Default: none.
    #[serde(deserialize_with = "de::networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A WebSocket with no message either way for this long is closed (1001).
    /// Default: `"5m"`.
    #[serde(with = "de::duration")]
    pub websocket_idle_timeout: Duration,
    /// The largest WebSocket message a client may send; larger closes the socket (1009).
    /// Default: `"1MiB"`.
    #[serde(with = "de::size")]
    pub websocket_max_message: u64,
    /// The most WebSockets open on the node; an upgrade past it is answered 503.
    /// Default: `10000`.
    pub websocket_max_open: usize,
    /// The most WebSockets one isolate keeps open; an upgrade past it is answered 503.
    /// Default: `5000`.
    pub websocket_max_per_isolate: usize,
    /// Answer a failed invocation with its error and stack (in the JSON, or as an HTML page
    /// for a browser), for development; `dev` turns it on. Default: `false`.
    pub error_detail: bool,
}

/// `[https]`: TLS listeners: HTTP/1.1 and HTTP/2 (ALPN), and HTTP/3 on the same port (UDP).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    #[serde(deserialize_with = "de::addresses")]
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain; re-read on SIGHUP.
    pub cert: PathBuf,
    /// PEM private key; re-read on SIGHUP.
    pub key: PathBuf,
    /// Also serve HTTP/3 over QUIC on the same port. Default: `true`.
    pub http3: bool,
}

/// `[runtime]`: what functions may do, and the caches that make them start fast.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Allow `eval` and `new Function`. Default: `false`, as on Workers.
    pub allow_eval: bool,
    /// Bytes of decoded bundles kept in memory (least recently used go first; they are read
    /// back from `data_dir` when needed). Default: 256 MiB.
    #[serde(with = "de::size")]
    pub bundle_cache: u64,
    /// Bytes of V8 code cache kept in memory besides the copies under `data_dir`.
    /// Default: 128 MiB.
    #[serde(with = "de::size")]
    pub code_cache: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            allow_eval: false,
            bundle_cache: 256 * 1024 * 1024,
            code_cache: 128 * 1024 * 1024,
        }
    }
}

/// `[cache]`: the Cache API (`caches.default`, `caches.open(name)`): each function's entries,
/// kept in this node's memory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of cached responses (bodies and headers) over all functions; past it the least
    /// recently used entries are evicted. One entry may take at most an eighth of it.
    /// `0` turns the Cache API's storage off (every `match` misses). Default: 128 MiB.
    #[serde(with = "de::size")]
    pub memory: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { memory: 128 * 1024 * 1024 }
    }
}

/// `[limits]`: the limits of a function that sets none, and `[limits.max]`, the most a
/// function's edge.toml may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub defaults: Limits,
    pub max: Limits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { defaults: Limits::default(), max: Limits::default_max() }
    }
}

/// `[pool]`: how the node keeps isolates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Isolates made ahead of time, per memory limit in use, so that a cold start only binds
    /// a function and loads its modules. Default: `1`.
    pub spare_isolates: usize,
    /// A function's isolate unused for this long is dropped (scale to zero); the next
    /// request starts one. Default: `"5m"`.
    #[serde(with = "de::duration")]
    pub idle_timeout: Duration,
    /// The most isolates on the node. Default: `1000`.
    pub max_isolates: usize,
    /// The most isolates of one function. Default: `16`.
    pub max_isolates_per_function: usize,
    /// The most invocations one isolate runs at once. Default: `64`.
    pub concurrency: usize,
    /// The most requests of one function waiting for room. Default: `256`.
    pub max_queue: usize,
    /// How long a request waits for room before it gets `load_shed` (503). Default: `"5s"`.
    #[serde(with = "de::duration")]
    pub queue_timeout: Duration,
    /// The memory all isolates together may reserve (each counts its function's memory
    /// limit); above it the least recently used idle isolates are dropped. Default: `"16GiB"`.
    #[serde(with = "de::size")]
    pub memory_budget: u64,
    /// The front threads, which serve connections (every isolate has a thread of its own);
    /// `0` means one per core. Default: `0`.
    pub threads: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            spare_isolates: 1,
            idle_timeout: Duration::from_secs(300),
            max_isolates: 1000,
            max_isolates_per_function: 16,
            concurrency: 64,
            max_queue: 256,
            queue_timeout: Duration::from_secs(5),
            memory_budget: 16 * 1024 * 1024 * 1024,
            threads: 0,
        }
    }
}

/// `[fetch]`: what outbound `fetch` from functions may reach.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Hosts reachable although they are loopback, private, link-local or metadata
    /// addresses: `"127.0.0.1:9000"` (that port only) or `"db.internal"` (any port).
    #[serde(deserialize_with = "de::one_or_many")]
    pub allow: Vec<String>,
}

/// `[functions]`: serve every function folder found under `dir`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionsConfig {
    /// A folder whose sub-folders each hold an `edge.toml`.
    pub dir: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: "local".into(),
            region: "local".into(),
            data_dir: PathBuf::from("data"),
            shutdown_grace_period: Duration::from_secs(30),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            max_body_size: 100 * 1024 * 1024,
            max_url_length: 16 * 1024,
            max_header_size: 32 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            h2_max_concurrent_streams: 250,
            h2_max_pending_reset_streams: 20,
            write_timeout: Duration::from_secs(30),
            max_connections_per_ip: 256,
            trusted_proxies: Vec::new(),
            websocket_idle_timeout: Duration::from_secs(300),
            websocket_max_message: 1024 * 1024,
            websocket_max_open: 10_000,
            websocket_max_per_isolate: 5_000,
            error_detail: false,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            credentials: None,
            node_ttl: Duration::from_secs(15),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            cron_when_partitioned: CronWhenPartitioned::Skip,
            replicas: None,
        }
    }
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig { listen: Vec::new(), cert: PathBuf::new(), key: PathBuf::new(), http3: true }
    }
}

//! `node.toml`: one per node. Defaults live in the `Default` impls below and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Table;

use crate::limits::{over_max, read_request, Limits};
use crate::reader::{parse_toml, Reader};
use crate::{ConfigError, Problem};

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub http: HttpConfig,
    /// `[https]`, when the node serves TLS.
    pub https: Option<HttpsConfig>,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub fetch: FetchConfig,
    pub pool: PoolConfig,
    /// `[functions]`: function folders served as they are on disk.
    pub functions: Option<FunctionsConfig>,
    pub admin: AdminConfig,
    pub logs: LogsConfig,
    /// `[cluster]`: join other nodes through NATS JetStream; `None` keeps the node standalone.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: the NATS server (JetStream enabled) the nodes of a cluster share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `nats://host:4222` (or `tls://`); several servers separated by commas.
    pub nats_url: String,
    /// A NATS credentials file (`.creds`), relative to node.toml's folder.
    pub credentials: Option<PathBuf>,
    /// How long a node stays listed after its last heartbeat. Default: 15 s.
    pub node_ttl: Duration,
    /// PEM root certificates the NATS servers' certificates are checked against (instead
    /// of the system's); setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for servers that verify clients; both or
    /// neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// `[logs]`: how much of each function's log the node keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Bytes kept per function; the oldest records go first. Default: 64 MiB.
    pub max_size: u64,
    /// Records older than this are deleted. Default: 7 days.
    pub max_age: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { max_size: 64 * 1024 * 1024, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// `[admin]`: the admin API (deploys, versions, secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin API listens. Default: `["127.0.0.1:9090"]` (loopback only); `[]` turns
    /// it off.
    pub listen: Vec<SocketAddr>,
    /// The environment variable holding the bearer token. Default: `"EDGE_ADMIN_TOKEN"`.
    /// Without a token every admin request is refused.
    pub token_env: String,
    /// Versions kept per function, the active one included; older ones are deleted on deploy.
    /// Default: 10.
    pub keep_versions: usize,
    /// The largest bundle an upload may be. Default: 64 MiB.
    pub max_bundle_size: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9090))],
            token_env: "EDGE_ADMIN_TOKEN".into(),
            keep_versions: 10,
            max_bundle_size: 64 * 1024 * 1024,
        }
    }
}

/// `[node]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// This node's id in logs and metrics. Default: `"local"`.
    pub id: String,
    /// The region it serves. Default: `"local"`.
    pub region: String,
    /// Where the node keeps its state. Default: `./data` beside node.toml.
    pub data_dir: PathBuf,
    /// How long requests in flight may take to finish once shutdown begins. Default: `"30s"`.
    pub shutdown_grace_period: Duration,
}

/// `[http]`: plaintext listeners (HTTP/1.1 and HTTP/2 with prior knowledge), and the request
/// limits of every listener, TLS ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Addresses to listen on. Default: `["0.0.0.0:8080"]`.
    pub listen: Vec<SocketAddr>,
    /// The largest request body; more answers 413. Default: `"100MiB"`.
    pub max_body_size: u64,
    /// The longest request target (path and query); longer answers 414. Default: `"16KiB"`.
    pub max_url_length: u64,
    /// The most bytes of request headers; more answers 431. Default: `"32KiB"`.
    pub max_header_size: u64,
    /// The most request header fields; more answers 431. Default: `100`.
    pub max_headers: usize,
    /// How long a client may take to send a request's headers (slowloris). Default: `"10s"`.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Default: `"60s"`.
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
    pub write_timeout: Duration,
    /// The most connections open at once from one client address (TCP and QUIC).
    /// Default: `256`.
    pub max_connections_per_ip: usize,
}

/// `[https]`: TLS listeners: HTTP/1.1 and HTTP/2 (ALPN), and HTTP/3 on the same port (UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain; re-read on SIGHUP.
    pub cert: PathBuf,
    /// PEM private key; re-read on SIGHUP.
    pub key: PathBuf,
    /// Also serve HTTP/3 over QUIC on the same port. Default: `true`.
    pub http3: bool,
}

/// `[runtime]`: what functions may do, and the caches that make them start fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Allow `eval` and `new Function`. Default: `false`, as on Workers.
    pub allow_eval: bool,
    /// Bytes of decoded bundles kept in memory (least recently used go first; they are read
    /// back from `data_dir` when needed). Default: 256 MiB.
    pub bundle_cache: u64,
    /// Bytes of V8 code cache kept in memory besides the copies under `data_dir`.
    /// Default: 128 MiB.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Isolates made ahead of time, per memory limit in use, so that a cold start only binds
    /// a function and loads its modules. Default: `1`.
    pub spare_isolates: usize,
    /// A function's isolate unused for this long is dropped (scale to zero); the next
    /// request starts one. Default: `"5m"`.
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
    pub queue_timeout: Duration,
    /// The memory all isolates together may reserve (each counts its function's memory
    /// limit); above it the least recently used idle isolates are dropped. Default: `"16GiB"`.
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchConfig {
    /// Hosts reachable although they are loopback, private, link-local or metadata
    /// addresses: `"127.0.0.1:9000"` (that port only) or `"db.internal"` (any port).
    pub allow: Vec<String>,
}

/// `[functions]`: serve every function folder found under `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
    }
}

impl NodeConfig {
    /// Reads and checks a node.toml; relative paths are resolved from the file's folder.
    /// `env` holds the process environment: `EDGE__<SECTION>__<KEY>` variables override keys
    /// of the file (`EDGE__HTTP__LISTEN='["0.0.0.0:80"]'`, `EDGE__LIMITS__MAX__MEMORY=1GiB`).
    pub fn load(path: &Path, env: &[(String, String)]) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse_with_env(&text, base, env)
            .map_err(|problems| ConfigError::Invalid { file: path.to_path_buf(), problems })
    }

    /// Parses node.toml text; relative paths are resolved from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, Vec<Problem>> {
        NodeConfig::parse_with_env(text, base, &[])
    }

    /// Parses node.toml text with `EDGE__` environment overrides applied over it.
    pub fn parse_with_env(
        text: &str,
        base: &Path,
        env: &[(String, String)],
    ) -> Result<NodeConfig, Vec<Problem>> {
        let mut table = parse_toml(text).map_err(|p| vec![p])?;
        let mut r = Reader::default();
        let overridden = apply_env(&mut r, &mut table, env);
        let config = read(&mut r, &table, base);
        for problem in &mut r.problems {
            let by = overridden.iter().find(|(path, _)| {
                problem.path == *path
                    || problem.path.starts_with(&format!("{path}."))
                    || problem.path.starts_with(&format!("{path}["))
            });
            if let Some((_, var)) = by {
                problem.message.push_str(&format!(" (set by {var})"));
            }
        }
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(r.problems)
        }
    }
}

fn read(r: &mut Reader, t: &Table, base: &Path) -> NodeConfig {
    let mut c = NodeConfig::default();
    r.deny_unknown(
        t,
        "",
        &[
            "version",
            "node",
            "http",
            "https",
            "runtime",
            "limits",
            "fetch",
            "pool",
            "functions",
            "admin",
            "logs",
            "cluster",
        ],
    );
    match r.integer(t, "", "version") {
        Some(1) => {}
        Some(v) => {
            r.problem("version", format!("unsupported version {v}; this node reads version 1"))
        }
        None if !t.contains_key("version") => r.problem("version", "missing; write `version = 1`"),
        None => {}
    }
    let resolve = |p: String| base.join(p);

    if let Some(s) = r.table(t, "", "node") {
        r.deny_unknown(s, "node", &["id", "region", "data_dir", "shutdown_grace_period"]);
        if let Some(v) = r.duration(s, "node", "shutdown_grace_period") {
            c.node.shutdown_grace_period = v;
        }
        if let Some(v) = r.string(s, "node", "id") {
            c.node.id = v;
        }
        if let Some(v) = r.string(s, "node", "region") {
            c.node.region = v;
        }
        if let Some(v) = r.string(s, "node", "data_dir") {
            c.node.data_dir = resolve(v);
        }
    }
    if c.node.data_dir.is_relative() {
        c.node.data_dir = base.join(&c.node.data_dir);
    }
    if let Some(s) = r.table(t, "", "http") {
        read_http(r, s, &mut c.http);
    }
    if let Some(s) = r.table(t, "", "https") {
        r.deny_unknown(s, "https", &["listen", "cert", "key", "http3"]);
        let listen = listen_list(r, s, "https").unwrap_or_default();
        if listen.is_empty() && !s.contains_key("listen") {
            r.problem("https.listen", "missing (e.g. [\"0.0.0.0:8443\"])");
        }
        let mut file = |key: &str| match r.string(s, "https", key) {
            Some(p) => Some(resolve(p)),
            None if !s.contains_key(key) => {
                r.problem(format!("https.{key}"), "missing (a PEM file)");
                None
            }
            None => None,
        };
        let (cert, key) = (file("cert"), file("key"));
        let http3 = r.bool(s, "https", "http3").unwrap_or(true);
        if let (Some(cert), Some(key)) = (cert, key) {
            c.https = Some(HttpsConfig { listen, cert, key, http3 });
        }
    }
    if let Some(s) = r.table(t, "", "cluster") {
        r.deny_unknown(
            s,
            "cluster",
            &["nats_url", "credentials", "node_ttl", "tls_ca", "tls_cert", "tls_key"],
        );
        let url = r.string(s, "cluster", "nats_url");
        match &url {
            None if !s.contains_key("nats_url") => {
                r.problem("cluster.nats_url", "missing (e.g. \"nats://127.0.0.1:4222\")")
            }
            Some(u)
                if !u.split(',').all(|one| {
                    ["nats://", "tls://"].iter().any(|scheme| one.trim().starts_with(scheme))
                }) =>
            {
                r.problem("cluster.nats_url", format!("`{u}` is not a nats:// or tls:// URL"))
            }
            _ => {}
        }
        let credentials = r.string(s, "cluster", "credentials").map(resolve);
        let node_ttl = r.duration(s, "cluster", "node_ttl").unwrap_or(Duration::from_secs(15));
        if node_ttl < Duration::from_secs(2) {
            r.problem("cluster.node_ttl", "must be at least 2s");
        }
        let tls_ca = r.string(s, "cluster", "tls_ca").map(resolve);
        let tls_cert = r.string(s, "cluster", "tls_cert").map(resolve);
        let tls_key = r.string(s, "cluster", "tls_key").map(resolve);
        if tls_cert.is_some() != tls_key.is_some() {
            let missing = if tls_cert.is_some() { "tls_key" } else { "tls_cert" };
            r.problem(format!("cluster.{missing}"), "missing (tls_cert and tls_key go together)");
        }
        if let Some(nats_url) = url {
            c.cluster =
                Some(ClusterConfig { nats_url, credentials, node_ttl, tls_ca, tls_cert, tls_key });
        }
    }
    if let Some(s) = r.table(t, "", "logs") {
        r.deny_unknown(s, "logs", &["max_size", "max_age"]);
        if let Some(v) = r.size(s, "logs", "max_size") {
            c.logs.max_size = v;
        }
        if let Some(v) = r.duration(s, "logs", "max_age") {
            c.logs.max_age = v;
        }
    }
    if let Some(s) = r.table(t, "", "admin") {
        r.deny_unknown(s, "admin", &["listen", "token_env", "keep_versions", "max_bundle_size"]);
        if let Some(listen) = listen_list(r, s, "admin") {
            c.admin.listen = listen;
        }
        if let Some(v) = r.string(s, "admin", "token_env") {
            c.admin.token_env = v;
        }
        match r.integer(s, "admin", "keep_versions") {
            Some(n) if n < 1 => r.problem("admin.keep_versions", "must be at least 1"),
            Some(n) => c.admin.keep_versions = n as usize,
            None => {}
        }
        if let Some(v) = r.size(s, "admin", "max_bundle_size") {
            c.admin.max_bundle_size = v;
        }
    }
    if let Some(s) = r.table(t, "", "runtime") {
        r.deny_unknown(s, "runtime", &["allow_eval", "bundle_cache", "code_cache"]);
        if let Some(v) = r.bool(s, "runtime", "allow_eval") {
            c.runtime.allow_eval = v;
        }
        if let Some(v) = r.size(s, "runtime", "bundle_cache") {
            c.runtime.bundle_cache = v;
        }
        if let Some(v) = r.size(s, "runtime", "code_cache") {
            c.runtime.code_cache = v;
        }
    }
    if let Some(s) = r.table(t, "", "limits") {
        let defaults = read_request(r, s, "limits", &["max"]);
        let max = s.get("max");
        c.limits.defaults = defaults.over(&c.limits.defaults);
        if let Some(max) = max {
            match max.as_table() {
                Some(m) => c.limits.max = read_request(r, m, "limits.max", &[]).over(&c.limits.max),
                None => r.problem("limits.max", "expected a table"),
            }
        }
        for p in over_max(&c.limits.defaults, &c.limits.max) {
            r.problem(
                p.path,
                format!("the default {}", p.message.replace("this node allows", "limits.max")),
            );
        }
    }
    if let Some(s) = r.table(t, "", "pool") {
        r.deny_unknown(
            s,
            "pool",
            &[
                "spare_isolates",
                "idle_timeout",
                "max_isolates",
                "max_isolates_per_function",
                "concurrency",
                "max_queue",
                "queue_timeout",
                "memory_budget",
                "threads",
            ],
        );
        if let Some(v) = r.size(s, "pool", "memory_budget") {
            c.pool.memory_budget = v;
        }
        if let Some(v) = r.duration(s, "pool", "idle_timeout") {
            c.pool.idle_timeout = v;
        }
        if let Some(v) = r.duration(s, "pool", "queue_timeout") {
            c.pool.queue_timeout = v;
        }
        for (key, field, min) in [
            ("max_isolates", &mut c.pool.max_isolates, 1),
            ("max_isolates_per_function", &mut c.pool.max_isolates_per_function, 1),
            ("concurrency", &mut c.pool.concurrency, 1),
            ("max_queue", &mut c.pool.max_queue, 0),
        ] {
            match r.integer(s, "pool", key) {
                Some(n) if n >= min => *field = n as usize,
                Some(n) => r.problem(format!("pool.{key}"), format!("{n} is less than {min}")),
                None => {}
            }
        }
        match r.integer(s, "pool", "spare_isolates") {
            Some(n) if (0..=64).contains(&n) => c.pool.spare_isolates = n as usize,
            Some(n) => r.problem("pool.spare_isolates", format!("{n} is not between 0 and 64")),
            None => {}
        }
        match r.integer(s, "pool", "threads") {
            Some(n) if (0..=1024).contains(&n) => c.pool.threads = n as usize,
            Some(n) => r.problem("pool.threads", format!("{n} is not between 0 and 1024")),
            None => {}
        }
    }
    if let Some(s) = r.table(t, "", "fetch") {
        r.deny_unknown(s, "fetch", &["allow"]);
        if let Some(list) = r.string_list(s, "fetch", "allow") {
            for (i, host) in list {
                if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                    r.problem(
                        format!("fetch.allow[{i}]"),
                        format!("`{host}` is not a host or host:port"),
                    );
                } else {
                    c.fetch.allow.push(host.to_ascii_lowercase());
                }
            }
        }
    }
    if let Some(s) = r.table(t, "", "functions") {
        r.deny_unknown(s, "functions", &["dir"]);
        match r.string(s, "functions", "dir") {
            Some(dir) => c.functions = Some(FunctionsConfig { dir: resolve(dir) }),
            None if !s.contains_key("dir") => r.problem("functions.dir", "missing"),
            None => {}
        }
    }
    c
}

/// Writes `EDGE__A__B=value` over key `a.b` of the table; a value is read as TOML when it
/// parses as such (`true`, `30`, `["a", "b"]`) and as a string otherwise. Returns the key paths
/// set, each with its variable.
fn apply_env(r: &mut Reader, table: &mut Table, env: &[(String, String)]) -> Vec<(String, String)> {
    let mut set = Vec::new();
    'vars: for (name, value) in env {
        let Some(rest) = name.strip_prefix("EDGE__") else { continue };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            r.problem(
                name.clone(),
                "an override names a section and a key, like EDGE__HTTP__LISTEN",
            );
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let (last, sections) = parts.split_last().expect("at least two parts");
        let mut t = &mut *table;
        for (depth, section) in sections.iter().enumerate() {
            let entry =
                t.entry(section.clone()).or_insert_with(|| toml::Value::Table(Table::new()));
            match entry {
                toml::Value::Table(inner) => t = inner,
                _ => {
                    r.problem(
                        parts[..=depth].join("."),
                        format!("is not a table, so {name} cannot set a key in it"),
                    );
                    continue 'vars;
                }
            }
        }
        t.insert(last.clone(), parsed);
        set.push((parts.join("."), name.clone()));
    }
    set
}

fn listen_list(r: &mut Reader, s: &Table, section: &str) -> Option<Vec<SocketAddr>> {
    let list = r.string_list(s, section, "listen")?;
    let mut out = Vec::new();
    for (i, addr) in list {
        match addr.parse::<SocketAddr>() {
            Ok(a) => out.push(a),
            Err(_) => r.problem(
                format!("{section}.listen[{i}]"),
                format!("`{addr}` is not an address like \"0.0.0.0:8080\""),
            ),
        }
    }
    Some(out)
}

fn read_http(r: &mut Reader, s: &Table, http: &mut HttpConfig) {
    r.deny_unknown(
        s,
        "http",
        &[
            "listen",
            "max_body_size",
            "max_url_length",
            "max_header_size",
            "max_headers",
            "header_read_timeout",
            "idle_timeout",
            "max_connections",
            "h2_max_concurrent_streams",
            "h2_max_pending_reset_streams",
            "write_timeout",
            "max_connections_per_ip",
        ],
    );
    if let Some(listen) = listen_list(r, s, "http") {
        http.listen = listen;
    }
    let count = |r: &mut Reader, key: &str, min: i64| -> Option<i64> {
        let n = r.integer(s, "http", key)?;
        if n < min {
            r.problem(format!("http.{key}"), format!("must be at least {min}"));
            return None;
        }
        Some(n)
    };
    if let Some(n) = count(r, "max_headers", 1) {
        http.max_headers = n as usize;
    }
    if let Some(n) = count(r, "max_connections", 1) {
        http.max_connections = n as usize;
    }
    if let Some(n) = count(r, "h2_max_concurrent_streams", 1) {
        http.h2_max_concurrent_streams = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = count(r, "h2_max_pending_reset_streams", 0) {
        http.h2_max_pending_reset_streams = n as usize;
    }
    if let Some(n) = count(r, "max_connections_per_ip", 1) {
        http.max_connections_per_ip = n as usize;
    }
    for (key, field) in [
        ("max_body_size", &mut http.max_body_size),
        ("max_url_length", &mut http.max_url_length),
        ("max_header_size", &mut http.max_header_size),
    ] {
        if let Some(v) = r.size(s, "http", key) {
            *field = v;
        }
    }
    for (key, field) in [
        ("header_read_timeout", &mut http.header_read_timeout),
        ("idle_timeout", &mut http.idle_timeout),
        ("write_timeout", &mut http.write_timeout),
    ] {
        if let Some(v) = r.duration(s, "http", key) {
            *field = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c =
            NodeConfig::parse("version = 1\n[functions]\ndir = \"fns\"", Path::new("/etc/edge"))
                .unwrap();
        assert_eq!(c.http.listen, HttpConfig::default().listen);
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/edge/data"));
        assert_eq!(c.functions.unwrap().dir, PathBuf::from("/etc/edge/fns"));
    }

    #[test]
    fn cluster_tls_paths_resolve_and_cert_needs_its_key() {
        let c = NodeConfig::parse(
            "version = 1\n[cluster]\nnats_url = \"tls://nats:4222\"\ntls_ca = \"ca.pem\"\ntls_cert = \"/pki/me.pem\"\ntls_key = \"me.key\"",
            Path::new("/etc/edge"),
        )
        .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.tls_ca, Some(PathBuf::from("/etc/edge/ca.pem")));
        assert_eq!(cluster.tls_cert, Some(PathBuf::from("/pki/me.pem")));
        assert_eq!(cluster.tls_key, Some(PathBuf::from("/etc/edge/me.key")));
        let problems = NodeConfig::parse(
            "version = 1\n[cluster]\nnats_url = \"http://nats\"\ntls_cert = \"me.pem\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["cluster.nats_url", "cluster.tls_key"], "{problems:?}");
    }

    #[test]
    fn limits_defaults_and_maximums() {
        let c = NodeConfig::parse(
            "version = 1\n[limits]\ncpu_time = \"100ms\"\n[limits.max]\nmemory = \"1GiB\"",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.limits.defaults.cpu_time, std::time::Duration::from_millis(100));
        assert_eq!(c.limits.defaults.memory, Limits::default().memory);
        assert_eq!(c.limits.max.memory, 1024 * 1024 * 1024);
        let problems = NodeConfig::parse(
            "version = 1\n[limits]\nmemory = \"2GiB\"\nwall_time = \"0s\"\ncolour = 1\n[limits.max]\nmemory = \"1GiB\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["limits.colour", "limits.wall_time", "limits.memory"], "{problems:?}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            ("EDGE__HTTP__LISTEN".to_string(), "127.0.0.1:9999".to_string()),
            ("EDGE__LIMITS__MAX__MEMORY".to_string(), "1GiB".to_string()),
            ("EDGE__RUNTIME__ALLOW_EVAL".to_string(), "true".to_string()),
            ("EDGE_LOG".to_string(), "debug".to_string()),
        ];
        let c = NodeConfig::parse_with_env(
            "version = 1\n[http]\nlisten = [\"0.0.0.0:1\"]",
            Path::new("/"),
            &env,
        )
        .unwrap();
        assert_eq!(c.http.listen, vec!["127.0.0.1:9999".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.limits.max.memory, 1024 * 1024 * 1024);
        assert!(c.runtime.allow_eval);

        let bad = vec![
            ("EDGE__HTTP__LISEN".to_string(), "x".to_string()),
            ("EDGE__HTTP".to_string(), "x".to_string()),
        ];
        let problems = NodeConfig::parse_with_env("version = 1", Path::new("/"), &bad).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, "EDGE__HTTP");
        assert!(problems[1].message.ends_with("(set by EDGE__HTTP__LISEN)"), "{problems:?}");
    }

    #[test]
    fn three_mistakes_three_problems() {
        let problems = NodeConfig::parse(
            "version = 1\n[http]\nmax_headers = 0\nidle_timeout = \"forever\"\n[https]\nlisten = [\"0.0.0.0:8443\"]\ncert = \"c.pem\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["http.max_headers", "http.idle_timeout", "https.key"], "{problems:?}");
    }

    #[test]
    fn every_problem_with_its_path() {
        let problems = NodeConfig::parse(
            "version = 2\n[http]\nlisten = [\"nope\", \"127.0.0.1:1\"]\nport = 3\n[runtime]\nallow_eval = \"yes\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["version", "http.port", "http.listen[0]", "runtime.allow_eval"]);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// TOML-ish text: the keys and values node.toml uses, in any order and shape.
        fn tomlish() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("version = 1\n".to_string()),
                Just("[http]\n".to_string()),
                Just("[limits]\n".to_string()),
                Just("[limits.max]\n".to_string()),
                Just("[pool]\n".to_string()),
                Just("[cluster]\n".to_string()),
                "[a-z_.]{1,12} = \"[0-9a-zA-Z:./ ]{0,12}\"\n",
                "[a-z_]{1,10} = -?[0-9]{1,20}\n",
                "[a-z_]{1,10} = \\[\"[0-9.:]{0,20}\"\\]\n",
                any::<String>(),
            ];
            proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any text: a config or a list of problems, never a panic.
            #[test]
            fn any_text_parses_or_is_refused(text in tomlish()) {
                let _ = NodeConfig::parse(&text, Path::new("/base"));
                let _ = NodeConfig::parse_with_env(&text, Path::new("/base"), &[("EDGE__HTTP__LISTEN".into(), text.clone())]);
                let _ = crate::EdgeConfig::parse(&text, Path::new("/base"));
            }

            /// Durations, sizes and routes as a user may write them.
            #[test]
            fn units_and_routes_parse_or_are_refused(text in any::<String>()) {
                let _ = crate::units::parse_duration(&text);
                let _ = crate::units::parse_size(&text);
                let _ = crate::Route::parse(&text);
            }
        }
    }
}

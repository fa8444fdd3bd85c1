//! A node: its stores, functions, listeners and background tasks, started in one place.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use config::NodeConfig;
use js_runtime::LogSink;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::sealed::SecretKey;
use crate::backend::{
    local, nats, now_ms, AbortOnDrop, Backend, Encoding, NodeInfo, Owners, Report, Served, Store,
    StoreError,
};
use crate::control::admin::{self, Admin};
use crate::control::Control;
use crate::front::h3;
use crate::front::http::{App, Protocol, Site};
use crate::front::server::{self, Listeners, PerClient};
use crate::front::tls::{self, CertSource, CertStore, TlsError};
use crate::functions::cache_api::ResponseCaches;
use crate::functions::caches::{Bundles, CodeCacheStats, CodeCacheStore};
use crate::functions::{access, pool, shared_route, Function, FunctionSpec, Shared};
use crate::observe::logstore::{self, LogStore};
use crate::observe::telemetry::Telemetry;
use crate::triggers::{self, Triggers};

/// The memory allocator the node runs with (mimalloc v3): the request path allocates and frees
/// many small objects per request on the isolate threads, where glibc's malloc took about a
/// tenth of the node's CPU under load. v3 rather than v2: every isolate has a thread of its
/// own, and v2 kept each thread's partly used pages to that thread, 0.15 MiB more per idle
/// isolate (docs/benchmarks.md). The node's binary and the benchmarks that measure the
/// runtime install it: `#[global_allocator] static A: Allocator = ALLOCATOR;`.
pub type Allocator = mimalloc::MiMalloc;
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc's `mimalloc.h` (v3; the same in v2; the crate
/// names only some of the options).
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// mimalloc's arenas commit on demand, so memory freed back to them is returned to the system.
/// By default on Linux mimalloc commits an arena whole when it reserves it, and never decommits
/// memory committed that way: what an isolate's start allocates and frees again stays resident
/// for good (`isolates 200`: 7.35 MiB per idle isolate with mimalloc v3 committing eagerly,
/// 3.19 MiB on demand; with v2, 4.10 and 3.34).
/// The option is read when the first arena is reserved, at the first allocation, before `main`
/// (Rust's runtime allocates as it starts), so it is set by a constructor that runs before
/// that: the dynamic loader runs `.init_array.NNNNN` entries before the unnumbered ones, and
/// nothing of ours allocates before either.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00100"]
static ARENAS_COMMIT_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_on_demand() {
        // SAFETY: sets one entry of mimalloc's table of options; callable at any time.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    }
    commit_on_demand
};

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
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store under `data_dir` could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secrets key could not be read or made.
    #[error(transparent)]
    SecretsKey(#[from] crate::backend::sealed::KeyError),
    /// A folder under `data_dir` could not be created.
    #[error("cannot use the data folder {}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a node serves and where its function logs go.
pub struct NodeOptions {
    pub config: NodeConfig,
    pub functions: Vec<FunctionSpec>,
    pub log_sink: Arc<dyn LogSink>,
    /// Where the `[https]` listeners' certificate comes from; `None` reads the files
    /// node.toml names.
    pub tls: Option<CertSource>,
    /// Keep deployments in `data_dir/store.redb`, serve them, and answer the admin API on
    /// `[admin] listen`. Off for `dev`.
    pub deployments: bool,
    /// The admin API's bearer token (read by the caller from `[admin] token_env`); `None`
    /// refuses every admin request.
    pub admin_token: Option<String>,
}

/// A running node.
pub struct Node {
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    h3_addrs: Vec<SocketAddr>,
    admin_addrs: Vec<SocketAddr>,
    /// Applies the deployments and secrets changed through other nodes (stops when the node
    /// is dropped).
    _following: Option<AbortOnDrop>,
    backend: Backend,
    /// The control plane, when the node keeps deployments.
    control: Option<Arc<Control>>,
    accepting: JoinSet<()>,
    triggers: Arc<Triggers>,
    listeners: Arc<Listeners>,
    certs: Option<Arc<CertStore>>,
    /// The admin API's certificate (`[admin] cert`/`key`).
    admin_certs: Option<Arc<CertStore>>,
    shared: Arc<Shared>,
    config: NodeConfig,
}

impl Node {
    /// Starts every function, then binds every listener. Returns once the node serves.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let NodeOptions { config, mut functions, log_sink, tls, deployments, admin_token } =
            options;
        let certs = match (&config.https, tls) {
            (_, Some(source)) => Some(CertStore::load(source)?),
            (Some(https), None) => Some(CertStore::load(CertSource::Files {
                cert: https.cert.clone(),
                key: https.key.clone(),
            })?),
            (None, None) => None,
        };
        let admin_certs = match (&config.admin.cert, &config.admin.key) {
            (Some(cert), Some(key)) => {
                Some(CertStore::load(CertSource::Files { cert: cert.clone(), key: key.clone() })?)
            }
            _ => None,
        };
        let threads = js_runtime::Runtime::new(js_runtime::RuntimeOptions {
            front_threads: config.pool.threads,
            spare_isolates: config.pool.spare_isolates,
        });
        js_runtime::raise_open_files_limit();
        let data = &config.node.data_dir;
        let data_error =
            |path: std::path::PathBuf| move |source| NodeError::DataDir { path, source };
        let bundles = Bundles::open(data.join("bundles"), config.runtime.bundle_cache)
            .map_err(data_error(data.join("bundles")))?;
        let code_cache = CodeCacheStore::open(&data.join("code-cache"), config.runtime.code_cache)
            .map_err(data_error(data.join("code-cache")))?;
        let logs = LogStore::open(
            data.join("logs"),
            logstore::Bounds { max_size: config.logs.max_size, max_age: config.logs.max_age },
        )
        .map_err(data_error(data.join("logs")))?;
        let telemetry = Arc::new(Telemetry::new(&config.node.id, &config.node.region));
        let key_file = config.secrets.key_file.clone().unwrap_or_else(|| data.join("secrets.key"));
        let key_value = std::env::var(&config.secrets.key_env).ok();
        let key = SecretKey::load(key_value.as_deref(), &config.secrets.key_env, &key_file)?;
        let store = Store::open(&data.join("store.redb"), key)?;
        // Standalone or in a cluster: decided here, once.
        let mut backend = match &config.cluster {
            None => local::backend(&store, data.join("blobs"))?,
            Some(cluster) => nats::backend(cluster, &store, &config.node.id),
        };
        let changes = std::mem::replace(&mut backend.changes, mpsc::channel(1).1);
        let triggers = Arc::new(Triggers::new(
            backend.queues.clone(),
            backend.claims.clone(),
            store.database(),
            telemetry.clone(),
            config.cluster.as_ref().map(|c| c.cron_when_partitioned).unwrap_or_default(),
        )?);
        let response_caches = ResponseCaches::new(
            config.cache.memory,
            telemetry.clone(),
            Arc::new(std::time::SystemTime::now),
        );
        let shared = Arc::new(Shared {
            storage: backend.storage.clone(),
            queues: backend.queues.clone(),
            runtime: tokio::runtime::Handle::current(),
            threads: threads.clone(),
            region: Arc::from(config.node.region.as_str()),
            websockets_per_isolate: config.http.websocket_max_per_isolate,
            telemetry,
            logs: Arc::new(logs),
            bundles: Arc::new(bundles),
            code_cache: Arc::new(code_cache),
            response_caches,
            allow_eval: config.runtime.allow_eval,
            fetch_allow: config.fetch.allow.clone(),
            log_sink,
            pool: pool::PoolSettings {
                max_per_function: config.pool.max_isolates_per_function,
                concurrency: config.pool.concurrency,
                max_queue: config.pool.max_queue,
                queue_timeout: config.pool.queue_timeout,
            },
            node_isolates: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max_isolates: config.pool.max_isolates,
        });
        let store = deployments.then_some(store);
        let folder: HashSet<String> = functions.iter().map(|f| f.config.name.clone()).collect();
        if let Some(store) = &store {
            for spec in Control::deployed_specs(store, &shared, &config.limits) {
                let clash = shared_route(&spec.config, functions.iter().map(|f| &f.config));
                if folder.contains(&spec.config.name) {
                    tracing::warn!(function = %spec.config.name, "deployed function not served: the functions folder has one of the same name");
                } else if let Some((route, other)) = clash {
                    tracing::warn!(function = %spec.config.name, %route, other = %other.name, "deployed function not served: another function has the same route");
                } else {
                    functions.push(spec);
                }
            }
        }
        let functions = own(functions, &*backend.owners).await;
        let site = start_functions(functions, &shared).await;
        let app = Arc::new(App {
            site: ArcSwap::from_pointee(site),
            limits: config.http.clone(),
            telemetry: shared.telemetry.clone(),
            sockets: Arc::new(crate::front::websocket::Sockets {
                open: std::sync::atomic::AtomicUsize::new(0),
                max_open: config.http.websocket_max_open,
                max_message: usize::try_from(config.http.websocket_max_message)
                    .unwrap_or(usize::MAX),
                idle_timeout: config.http.websocket_idle_timeout,
            }),
        });
        let control = store.map(|store| {
            Arc::new(Control::new(
                store,
                backend.deployments.clone(),
                backend.owners.clone(),
                app.clone(),
                shared.clone(),
                triggers.clone(),
                config.limits.clone(),
                config.admin.keep_versions,
                folder,
            ))
        });
        let following = control.as_ref().map(|control| control.follow(changes));
        triggers.sync(&app.site.load().functions);
        let listeners = Arc::new(Listeners {
            app,
            http: config.http.clone(),
            connections: Arc::new(Semaphore::new(config.http.max_connections)),
            per_client: Arc::new(PerClient::new(config.http.max_connections_per_ip)),
            handshakes: Arc::new(Semaphore::new(h3::MAX_HANDSHAKES)),
            stop: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            threads,
        });
        let mut accepting = JoinSet::new();
        let http_addrs = bind_all(&config.http.listen, &listeners, None, &mut accepting).await?;
        let mut https_addrs = Vec::new();
        let mut h3_addrs = Vec::new();
        if let (Some(https), Some(certs)) = (&config.https, &certs) {
            let tls = Some((certs.server_config(), https.http3));
            https_addrs = bind_all(&https.listen, &listeners, tls, &mut accepting).await?;
            if https.http3 {
                for addr in &https_addrs {
                    let endpoint = h3::endpoint(*addr, certs, &config.http)
                        .map_err(|source| NodeError::Bind { addr: *addr, source })?;
                    tracing::info!(%addr, "listening for HTTP/3 (QUIC, UDP)");
                    h3_addrs.push(*addr);
                    accepting.spawn(listeners.clone().serve_h3(endpoint));
                }
            }
        }
        let mut admin_addrs = Vec::new();
        if let Some(control) = &control {
            let admin = Arc::new(Admin {
                control: control.clone(),
                token: admin_token,
                max_bundle_size: config.admin.max_bundle_size,
                membership: backend.membership.clone(),
            });
            if admin.token.is_none() && !config.admin.listen.is_empty() {
                tracing::warn!(token_env = %config.admin.token_env, "no admin token set: the admin API refuses every request");
            }
            let router = admin::router(admin);
            let bound = admin::bind(&config.admin.listen)
                .await
                .map_err(|(addr, source)| NodeError::Bind { addr, source })?;
            let tls =
                admin_certs.as_ref().map(|c| tokio_rustls::TlsAcceptor::from(c.admin_config()));
            for (addr, listener) in bound {
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!(%addr, scheme, "listening for the admin API");
                admin_addrs.push(addr);
                let stop = listeners.stop.clone();
                accepting.spawn(admin::serve(router.clone(), listener, tls.clone(), stop));
            }
        }
        let report = node_report(&config, &http_addrs, &https_addrs, &admin_addrs, &listeners.app);
        backend.membership.join(report);
        accepting.spawn(sweep_idle(
            listeners.clone(),
            config.pool.idle_timeout,
            config.pool.memory_budget,
        ));
        Ok(Node {
            http_addrs,
            https_addrs,
            h3_addrs,
            admin_addrs,
            _following: following,
            backend,
            control,
            accepting,
            triggers,
            listeners,
            certs,
            admin_certs,
            shared,
            config,
        })
    }

    /// The bound plaintext addresses (useful with port 0).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// Sends messages to a queue of the node (the cluster's, in a cluster); their ids.
    pub async fn send(
        &self,
        queue: &str,
        encoding: Encoding,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError> {
        self.backend.queues.send(queue, encoding, messages).await
    }

    /// The messages in `queue`, in flight included.
    pub async fn queue_depth(&self, queue: &str) -> Result<u64, StoreError> {
        let stats = self.backend.queues.stats().await?;
        Ok(stats.get(queue).map_or(0, |s| s.depth))
    }

    /// The recorded runs of a function's cron schedules, newest first.
    pub fn cron_runs(&self, function: &str) -> Vec<triggers::CronRun> {
        self.triggers.cron_runs(function).unwrap_or_default()
    }

    /// The bound admin API addresses.
    pub fn admin_addrs(&self) -> &[SocketAddr] {
        &self.admin_addrs
    }

    /// The bound TLS addresses.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// The bound HTTP/3 (UDP) addresses: the TLS ports, when `[https] http3` is on.
    pub fn h3_addrs(&self) -> &[SocketAddr] {
        &self.h3_addrs
    }

    /// The certificate the TLS listeners present, PEM-encoded.
    pub fn cert_pem(&self) -> Option<String> {
        self.certs.as_ref().map(|c| c.cert_pem())
    }

    /// Re-reads the TLS certificate and key (SIGHUP). Open connections keep going; new
    /// handshakes get the new certificate. On failure the old one stays.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        for certs in self.certs.iter().chain(&self.admin_certs) {
            certs.reload()?;
        }
        Ok(())
    }

    /// How many isolates the served functions hold now.
    pub fn isolates(&self) -> usize {
        self.listeners.app.site.load().functions.iter().map(|f| f.isolates()).sum()
    }

    /// How many isolates the function named `name` holds now.
    pub fn isolates_of(&self, name: &str) -> usize {
        let site = self.listeners.app.site.load();
        site.functions.iter().filter(|f| f.config.name == name).map(|f| f.isolates()).sum()
    }

    /// How many isolates the served functions have started (cold starts), first ones included.
    pub fn cold_starts(&self) -> u64 {
        self.listeners.app.site.load().functions.iter().map(|f| f.cold_starts()).sum()
    }

    /// How the V8 code cache has been used since the node started.
    pub fn code_cache_stats(&self) -> CodeCacheStats {
        self.shared.code_cache.stats()
    }

    /// The file under `data_dir` holding the code cache of the module with this SHA-256.
    pub fn code_cache_file(&self, module_hash: &str) -> std::path::PathBuf {
        self.shared.code_cache.path(module_hash)
    }

    /// Serves `functions` as the functions folder from now on (SIGHUP): unchanged functions
    /// keep their isolates, deployed functions stay. Without deployments (`dev`), the same as
    /// [`Node::replace_functions`].
    pub async fn reload_folder(&self, functions: Vec<FunctionSpec>) {
        match &self.control {
            Some(control) => {
                if let Err(e) = control.reload_folder(functions).await {
                    tracing::error!(error = %e, "the functions folder was not reloaded");
                }
            }
            None => self.replace_functions(functions).await,
        }
    }

    /// Replaces the served functions: new requests go to the new set at once.
    pub async fn replace_functions(&self, functions: Vec<FunctionSpec>) {
        let site = start_functions(functions, &self.shared).await;
        self.triggers.sync(&site.functions);
        self.listeners.app.site.store(Arc::new(site));
    }

    /// Stops accepting (new connections are refused), lets requests in flight finish within
    /// `[node] shutdown_grace_period`, then closes what is left. Returns whether everything
    /// finished in time.
    pub async fn shutdown(mut self) -> bool {
        self.triggers.stop();
        self.listeners.stop.cancel();
        while self.accepting.join_next().await.is_some() {}
        server::drain(&self.listeners, self.config.node.shutdown_grace_period).await
    }
}

/// Binds TCP listeners; with `tls`, TLS ones that advertise HTTP/3 on the same port when the
/// flag is set.
async fn bind_all(
    addrs: &[SocketAddr],
    listeners: &Arc<Listeners>,
    tls: Option<(tls::TlsConfig, bool)>,
    accepting: &mut JoinSet<()>,
) -> Result<Vec<SocketAddr>, NodeError> {
    let mut bound = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr: *addr, source })?;
        let local =
            listener.local_addr().map_err(|source| NodeError::Bind { addr: *addr, source })?;
        let kind = if tls.is_some() { "HTTPS (HTTP/1.1, HTTP/2)" } else { "HTTP (HTTP/1.1, h2c)" };
        tracing::info!(addr = %local, "listening for {kind}");
        bound.push(local);
        let (acceptor, protocol) = match &tls {
            None => (None, Protocol::plain()),
            Some((acceptor, http3)) => {
                let alt_svc = http3
                    .then(|| {
                        ::http::HeaderValue::from_str(&format!(
                            "h3=\":{}\"; ma=86400",
                            local.port()
                        ))
                        .ok()
                    })
                    .flatten();
                (Some(acceptor.clone()), Protocol::tls(alt_svc))
            }
        };
        accepting.spawn(listeners.clone().serve(listener, acceptor, protocol));
    }
    Ok(bound)
}

/// Drops the isolates of functions idle for `idle_timeout`, and the least recently used idle
/// isolates while the isolates reserve more memory than `memory_budget`, until the node stops.
async fn sweep_idle(
    listeners: Arc<Listeners>,
    idle_timeout: std::time::Duration,
    memory_budget: u64,
) {
    let period = (idle_timeout / 4)
        .clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = listeners.stop.cancelled() => return,
            _ = tick.tick() => {
                let site = listeners.app.site.load();
                for function in &site.functions {
                    function.evict_if_idle(idle_timeout);
                }
                loop {
                    let reserved: u64 = site.functions.iter().map(|f| f.memory_reserved()).sum();
                    if reserved <= memory_budget {
                        break;
                    }
                    let oldest = site
                        .functions
                        .iter()
                        .filter_map(|f| f.oldest_idle().map(|at| (at, f)))
                        .min_by_key(|(at, _)| *at);
                    let Some((_, function)) = oldest else { break }; // nothing idle to drop
                    if !function.evict_oldest_idle() {
                        break;
                    }
                    tracing::debug!(function = %function.config.name, "idle isolate dropped under memory pressure");
                }
            }
        }
    }
}

/// Records the owners of the queues, buckets and tables the served functions are the first to
/// name, and leaves out a function that uses what another owns without a grant (the reason is
/// logged). A cluster out of reach at start leaves ownership to the next deploy.
async fn own(specs: Vec<FunctionSpec>, owners: &dyn Owners) -> Vec<FunctionSpec> {
    let claimed = match owners.all().await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "owners of queues, buckets and tables not checked at start");
            return specs;
        }
    };
    let configs: Vec<&config::EdgeConfig> = specs.iter().map(|s| &s.config).collect();
    let (found, refusals) = access::resolve(&configs, &claimed);
    let mut refused = HashSet::new();
    for r in refusals {
        tracing::error!(function = %r.function, problem = %r.message, "function not served");
        refused.insert(r.function);
    }
    for (resource, owner) in found {
        if claimed.contains_key(&resource) || refused.contains(&owner) {
            continue;
        }
        match owners.claim(&resource, &owner).await {
            Ok(recorded) if recorded != owner => {
                tracing::error!(function = %owner, %resource, owner = %recorded, "function not served: another function owns what it names");
                refused.insert(owner);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%resource, error = %e, "owner not recorded"),
        }
    }
    specs.into_iter().filter(|s| !refused.contains(&s.config.name)).collect()
}

/// What this node says about itself to the cluster.
fn node_report(
    config: &NodeConfig,
    http: &[SocketAddr],
    https: &[SocketAddr],
    admin: &[SocketAddr],
    app: &Arc<App>,
) -> Report {
    let strings = |addrs: &[SocketAddr]| addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (http, https, admin) = (strings(http), strings(https), strings(admin));
    let (id, region) = (config.node.id.clone(), config.node.region.clone());
    let started_ms = now_ms();
    let app = app.clone();
    Arc::new(move || {
        let site = app.site.load();
        NodeInfo {
            id: id.clone(),
            region: region.clone(),
            http: http.clone(),
            https: https.clone(),
            admin: admin.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms,
            seen_ms: now_ms(),
            functions: site.functions.len(),
            isolates: site.functions.iter().map(|f| f.isolates()).sum(),
            served: site
                .functions
                .iter()
                .map(|f| {
                    let served = Served { version: f.version, bundle: f.bundle.clone() };
                    (f.config.name.clone(), served)
                })
                .collect(),
        }
    })
}

async fn start_functions(specs: Vec<FunctionSpec>, shared: &Arc<Shared>) -> Site {
    let started = futures::future::join_all(
        specs.into_iter().map(|spec| Function::start(spec, shared.clone())),
    )
    .await;
    for f in &started {
        let routes: Vec<String> = f.config.routes.iter().map(|r| r.to_string()).collect();
        if f.is_ready() {
            tracing::info!(function = %f.config.name, bundle = %f.bundle, routes = ?routes, "ready");
        } else {
            tracing::error!(function = %f.config.name, bundle = %f.bundle, routes = ?routes, "failed to start (its log says why)");
        }
    }
    Site::new(started.into_iter().map(Arc::new).collect())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The constructor ran before the first allocation and the linker kept it: mimalloc's
    /// arenas commit on demand.
    #[test]
    fn mimalloc_arenas_commit_on_demand() {
        // SAFETY: reads one entry of mimalloc's table of options.
        let eager = unsafe { libmimalloc_sys::mi_option_get(super::ARENA_EAGER_COMMIT) };
        assert_eq!(eager, 0);
    }
}

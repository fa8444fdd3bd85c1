//! Function folders on disk: read, checked and bundled, then started as workers.

pub mod access;
pub mod bindings;
pub mod cache_api;
pub mod caches;
pub mod pool;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bundler::Bundle;
use config::{over_max, Limits, LimitsConfig};

use crate::backend::{Queueing, Storage, Subscriber};
use crate::functions::bindings::NodeBindings;
use crate::functions::cache_api::ResponseCaches;
use crate::functions::caches::{Bundles, CodeCacheStore};
use crate::functions::pool::{Isolates, PoolSettings, Refusal};
use crate::observe::logs::{FunctionSink, NodeLogBudget};
use crate::observe::logstore::{LogStore, Record};
use crate::observe::telemetry::{FunctionMeters, InvocationStats, Telemetry};
use config::{EdgeConfig, EDGE_FILE};
use js_runtime::{
    Bindings, CodeCache, Event, EventError, Failure, Finished, HttpResponse, InvocationEnd,
    InvokeError, LogRecord, LogSink, Outcome, RequestBody, ResponseCache, WorkerHandle,
    WorkerOptions, WorkerServices,
};

/// A function ready to start: its settings and its bundle.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub config: EdgeConfig,
    pub bundle: Arc<Bundle>,
    /// The function's limits: its own asks over the node defaults, within the node maximums.
    pub limits: Limits,
    /// Secrets set through the admin API; the function reads them as `env.NAME` beside its
    /// vars (a secret wins over a var of the same name).
    pub secrets: BTreeMap<String, String>,
    /// The deployed version this is, if it came from the admin API.
    pub version: Option<u64>,
}

/// Function folders that cannot be served; every problem of every folder is listed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct FunctionsError(pub Vec<String>);

impl FunctionSpec {
    /// Reads `DIR/edge.toml`, settles its limits against the node's and bundles its modules.
    pub fn load(dir: &Path, node_limits: &LimitsConfig) -> Result<FunctionSpec, FunctionsError> {
        let config = EdgeConfig::load(dir).map_err(|e| FunctionsError(vec![e.to_string()]))?;
        let limits = config.limits.over(&node_limits.defaults);
        let too_much = over_max(&limits, &node_limits.max);
        if !too_much.is_empty() {
            let file = dir.join(EDGE_FILE);
            return Err(FunctionsError(
                too_much.iter().map(|p| format!("{}: {p}", file.display())).collect(),
            ));
        }
        let options = bundler::BuildOptions { node_globals: config.nodejs_compat() };
        let bundle = Bundle::from_dir_with(dir, &config.name, &config.entry, &options)
            .map_err(|e| FunctionsError(vec![format!("{}: {e}", dir.join(EDGE_FILE).display())]))?;
        Ok(FunctionSpec {
            config,
            bundle: Arc::new(bundle),
            limits,
            secrets: BTreeMap::new(),
            version: None,
        })
    }

    /// Loads every sub-folder of `dir` that holds an edge.toml. Names must be unique.
    pub fn load_all(
        dir: &Path,
        node_limits: &LimitsConfig,
    ) -> Result<Vec<FunctionSpec>, FunctionsError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            FunctionsError(vec![format!("cannot read functions dir {}: {e}", dir.display())])
        })?;
        let mut folders: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(EDGE_FILE).is_file())
            .collect();
        folders.sort();
        let mut specs: Vec<FunctionSpec> = Vec::new();
        let mut problems = Vec::new();
        for folder in folders {
            match FunctionSpec::load(&folder, node_limits) {
                Ok(spec) => {
                    let file = folder.join(EDGE_FILE);
                    if let Some(other) = specs.iter().find(|s| s.config.name == spec.config.name) {
                        problems.push(format!(
                            "{}: name `{}` is already used by {}",
                            file.display(),
                            spec.config.name,
                            other.config.dir.join(EDGE_FILE).display()
                        ));
                    } else if let Some((route, other)) =
                        shared_route(&spec.config, specs.iter().map(|s| &s.config))
                    {
                        problems.push(format!(
                            "{}: route `{route}` of function `{}` is already a route of function `{}` ({})",
                            file.display(),
                            spec.config.name,
                            other.name,
                            other.dir.join(EDGE_FILE).display()
                        ));
                    } else {
                        specs.push(spec);
                    }
                }
                Err(e) => problems.extend(e.0),
            }
        }
        // Among the folder's functions, each uses only what it owns or is granted.
        let configs: Vec<&EdgeConfig> = specs.iter().map(|s| &s.config).collect();
        let (_, refusals) = access::resolve(&configs, &BTreeMap::new());
        for refusal in refusals {
            let dir =
                specs.iter().find(|s| s.config.name == refusal.function).map(|s| &s.config.dir);
            let file = dir.map(|d| d.join(EDGE_FILE).display().to_string()).unwrap_or_default();
            problems.push(format!("{file}: {}", refusal.message));
        }
        if problems.is_empty() {
            Ok(specs)
        } else {
            Err(FunctionsError(problems))
        }
    }
}

/// The first route `config` declares that another function of `others` declares too (the
/// same host and path pattern), with that function. Routes that only overlap are fine: the
/// most specific one answers; the same route twice would leave the answer to chance.
pub fn shared_route<'a>(
    config: &EdgeConfig,
    others: impl IntoIterator<Item = &'a EdgeConfig>,
) -> Option<(config::Route, &'a EdgeConfig)> {
    let others: Vec<&EdgeConfig> = others.into_iter().filter(|o| o.name != config.name).collect();
    config.routes.iter().find_map(|route| {
        let other = others.iter().find(|o| o.routes.contains(route))?;
        Some((route.clone(), *other))
    })
}

/// A started function: its settings, the hash of its bundle (the bundle itself is in the
/// node's bundle cache) and its isolates.
pub struct Function {
    pub config: EdgeConfig,
    pub limits: Limits,
    pub bundle: String,
    /// The deployed version, for functions deployed through the admin API.
    pub version: Option<u64>,
    secrets: BTreeMap<String, String>,
    isolates: Isolates,
    pub meters: Arc<FunctionMeters>,
    /// Its Cache API entries (`caches.default`, `caches.open`).
    cache: Arc<dyn ResponseCache>,
    /// Why its last isolate start failed, for the answers of the requests refused meanwhile.
    start_error: std::sync::Mutex<Option<String>>,
    /// Its share of the node's own log, over all its isolates.
    log_budget: Arc<NodeLogBudget>,
    shared: Arc<Shared>,
    /// When this node began serving it: in a cluster its storage and record triggers see
    /// changes from then on.
    pub started: std::time::SystemTime,
}

/// What every function of a node runs with.
pub struct Shared {
    pub allow_eval: bool,
    /// `[fetch] allow`: non-public hosts outbound fetch may reach.
    pub fetch_allow: Vec<String>,
    pub log_sink: Arc<dyn LogSink>,
    pub pool: PoolSettings,
    /// Isolates alive on the node, and the most it may have (`[pool] max_isolates`).
    pub node_isolates: Arc<AtomicUsize>,
    pub max_isolates: usize,
    pub bundles: Arc<Bundles>,
    pub code_cache: Arc<CodeCacheStore>,
    /// Every function's Cache API entries.
    pub response_caches: Arc<ResponseCaches>,
    pub telemetry: Arc<Telemetry>,
    pub logs: Arc<LogStore>,
    /// The node's buckets and tables, and its queues (the backend's).
    pub storage: Arc<dyn Storage>,
    pub queues: Arc<dyn Queueing>,
    /// The node's async runtime, where bindings do their work (not the isolate's thread).
    pub runtime: tokio::runtime::Handle,
    /// The threads and spare isolates the function's isolates start on.
    pub threads: js_runtime::Runtime,
    /// The node's region (`[node] region`).
    pub region: Arc<str>,
    /// The most WebSockets one isolate keeps open (`[http] websocket_max_per_isolate`).
    pub websockets_per_isolate: usize,
}

impl Function {
    /// Starts the function's first isolate. A function that cannot start answers every
    /// request with why (its error is in its log), and the node goes on serving the others.
    pub async fn start(spec: FunctionSpec, shared: Arc<Shared>) -> Function {
        let isolates =
            Isolates::new(shared.pool, shared.node_isolates.clone(), shared.max_isolates);
        let FunctionSpec { config, bundle, limits, secrets, version } = spec;
        let hash = bundle.hash().to_string();
        let kept = shared.bundles.keep(bundle);
        let started = std::time::SystemTime::now();
        let meters = Arc::new(shared.telemetry.meters(&config.name));
        let cache = shared.response_caches.of(&config.name);
        let function = Function {
            config,
            limits,
            bundle: hash,
            version,
            secrets,
            isolates,
            log_budget: Arc::new(NodeLogBudget::new(meters.log_dropped.clone())),
            meters,
            cache,
            start_error: std::sync::Mutex::new(None),
            shared,
            started,
        };
        match kept {
            Err(e) => function.log_error(format!("the function's bundle cannot be kept: {e}")),
            // Start one isolate now, so a function that cannot start says so at once (where
            // it is served).
            Ok(()) if function.serves_here() => {
                let _ = function.isolates.acquire(|| function.start_worker()).await;
            }
            Ok(()) => {}
        }
        function
    }

    /// The same function, recorded as deployed version `version`.
    pub fn with_version(mut self, version: u64) -> Function {
        self.version = Some(version);
        self
    }

    /// Why its last isolate start failed (the user's error, with its file and line), if it did.
    pub fn start_error(&self) -> Option<String> {
        self.start_error.lock().expect("start error").clone()
    }

    /// Starts an isolate if the function has none (pre-warm).
    pub async fn prewarm(&self) {
        if !self.has_isolate() {
            let _ = self.isolates.acquire(|| self.start_worker()).await;
        }
    }

    /// Whether this node's region may serve the function (`regions` in edge.toml).
    pub fn serves_here(&self) -> bool {
        let regions = &self.config.regions;
        regions.is_empty() || regions.iter().any(|r| **r == *self.shared.region)
    }

    /// Whether this function is what `spec` describes: the same bundle, edge.toml, limits
    /// and secrets.
    pub fn is(&self, spec: &FunctionSpec) -> bool {
        self.bundle == spec.bundle.hash()
            && self.config == spec.config
            && self.limits == spec.limits
            && self.secrets == spec.secrets
            && self.version == spec.version
    }

    /// The function as its trigger consumers see it.
    pub fn subscriber(&self) -> Subscriber<'_> {
        Subscriber { name: &self.config.name, triggers: &self.config.triggers, since: self.started }
    }

    /// Whether the function could start.
    pub fn is_ready(&self) -> bool {
        !self.isolates.is_broken()
    }

    /// Whether the function holds a running isolate now.
    pub fn has_isolate(&self) -> bool {
        self.isolates.alive() > 0
    }

    /// How many isolates the function holds now.
    pub fn isolates(&self) -> usize {
        self.isolates.alive()
    }

    /// Bytes its isolates hold (V8 heap and ArrayBuffers).
    pub fn memory_used(&self) -> u64 {
        self.isolates.memory_used()
    }

    /// Requests waiting for one of its isolates.
    pub fn queued(&self) -> usize {
        self.isolates.waiting()
    }

    /// How many isolates this function has started, the first included.
    pub fn cold_starts(&self) -> u64 {
        self.isolates.cold_starts()
    }

    /// Drops the function's isolates unused for `idle` (scale to zero). A response still
    /// streaming keeps its isolate going until it ends.
    pub fn evict_if_idle(&self, idle: Duration) -> bool {
        self.isolates.evict_idle(idle) > 0
    }

    /// The memory the function's isolates may use together (isolates × memory limit).
    pub fn memory_reserved(&self) -> u64 {
        self.isolates.alive() as u64 * self.limits.memory
    }

    /// When its least recently used idle isolate was last used, if it has an idle one.
    pub fn oldest_idle(&self) -> Option<std::time::Instant> {
        self.isolates.oldest_idle()
    }

    /// Drops its least recently used idle isolate.
    pub fn evict_oldest_idle(&self) -> bool {
        self.isolates.evict_oldest_idle()
    }

    /// Runs one HTTP invocation on an isolate with room.
    pub async fn invoke(
        &self,
        invocation_id: Arc<str>,
        request: http::Request<RequestBody>,
    ) -> Result<HttpResponse, Failure> {
        let path = request.uri().path();
        let path = &path[..path.floor_char_boundary(MAX_PATH_KEPT)];
        let asked = Asked {
            request: Some((request.method().clone(), Arc::from(path))),
            line: self.shared.log_sink.wants_invocations(),
        };
        self.run(
            "http",
            asked,
            invocation_id,
            request,
            |handle, id, request, finished| async move {
                match handle.invoke_observed(id, request, Some(finished)).await {
                    Ok(response) => Sent::Answer(response),
                    Err(InvokeError::Failed(failure)) => Sent::Failed(failure),
                    Err(InvokeError::Gone(request)) => Sent::Gone(request),
                }
            },
        )
        .await
    }

    /// Runs an event handler (`trigger`: `cron`, `queue`, `storage`, `record`) on an isolate
    /// with room; answers the handler's result (JSON).
    pub async fn invoke_event(
        &self,
        trigger: &'static str,
        invocation_id: Arc<str>,
        event: Event,
    ) -> Result<String, Failure> {
        let asked = Asked { request: None, line: self.shared.log_sink.wants_invocations() };
        self.run(trigger, asked, invocation_id, event, |handle, id, event, finished| async move {
            match handle.invoke_event(id, event, Some(finished)).await {
                Ok(result) => Sent::Answer(result),
                Err(EventError::Failed(failure)) => Sent::Failed(failure),
                Err(EventError::Gone(event)) => Sent::Gone(event),
            }
        })
        .await
    }

    /// Runs one invocation of either kind: `send` hands `work` to the isolate a lease grants.
    /// Work handed back by an isolate that stopped before taking it runs once more on
    /// another. Every invocation, refused ones included, is observed once.
    async fn run<W, T, F, Fut>(
        &self,
        trigger: &'static str,
        asked: Asked,
        invocation_id: Arc<str>,
        work: W,
        send: F,
    ) -> Result<T, Failure>
    where
        F: Fn(Arc<WorkerHandle>, Arc<str>, W, Finished) -> Fut,
        Fut: std::future::Future<Output = Sent<T, W>>,
    {
        let received = Instant::now();
        let mut work = work;
        let refused = 'attempts: {
            for _attempt in 0..2 {
                let lease = match self.isolates.acquire(|| self.start_worker()).await {
                    Ok(lease) => lease,
                    Err(Refusal::Shed) => {
                        break 'attempts Failure {
                            outcome: Outcome::LoadShed,
                            message:
                                "every isolate is busy and the wait queue is full or timed out"
                                    .into(),
                        }
                    }
                    Err(Refusal::Broken(outcome)) => {
                        let why = self.start_error.lock().expect("start error").clone();
                        let message = format!(
                            "the function failed to start (it is started again after a backoff): {}",
                            why.as_deref().unwrap_or("its log says why")
                        );
                        break 'attempts Failure { outcome, message };
                    }
                };
                let finished = self.observer(
                    trigger,
                    asked.clone(),
                    invocation_id.clone(),
                    received,
                    lease.cold,
                );
                match send(lease.handle.clone(), invocation_id.clone(), work, finished).await {
                    Sent::Answer(answer) => return Ok(answer),
                    Sent::Failed(failure) => return Err(failure),
                    Sent::Gone(returned) => {
                        drop(lease);
                        self.isolates.prune_dead();
                        work = returned;
                    }
                }
            }
            // Both isolates stopped before taking it (another invocation of the function used
            // up its CPU or memory, or it was replaced): there was no room for it, as when the
            // pool is full.
            Failure {
                outcome: Outcome::LoadShed,
                message: "the isolates it was handed to stopped before taking it".into(),
            }
        };
        // No isolate took it, so none observed it: observed here.
        let end = InvocationEnd {
            outcome: refused.outcome,
            status: None,
            cpu_time: Duration::ZERO,
            messages: (0, 0),
        };
        self.observer(trigger, asked, invocation_id, received, None)(end);
        Err(refused)
    }
}

/// `duration` in milliseconds to the microsecond (`0.129`, not `0.12887099999999999`): the
/// summary's figures, shorter to write and to read.
fn whole_micros_in_ms(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// `dev`'s line for an invocation: `GET /hello 200 in 1.2 ms (cpu 0.4 ms)`, or how a limit or
/// an exception ended it (then at error level).
fn invocation_line(
    asked: &str,
    end: &InvocationEnd,
    duration: Duration,
    summary: &Record,
) -> LogRecord {
    let failed = end.outcome != Outcome::Ok || end.status.is_some_and(|s| s >= 500);
    let how = match (end.outcome, end.status) {
        (Outcome::Ok, Some(status)) => status.to_string(),
        (Outcome::Ok, None) => "ok".to_string(),
        (outcome, _) => outcome.as_str().to_string(),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    LogRecord {
        ts: SystemTime::now(),
        level: if failed { js_runtime::Level::Error } else { js_runtime::Level::Log },
        function: summary.function.clone(),
        invocation_id: summary.invocation_id.clone(),
        message: format!(
            "{asked} {how} in {:.1} ms (cpu {:.1} ms)",
            ms(duration),
            ms(end.cpu_time)
        ),
    }
}

/// What an invocation was asked: an HTTP request's method and path (kept in its summary),
/// and whether the log sink wants a line for it (`dev`'s terminal).
#[derive(Clone)]
struct Asked {
    request: Option<(http::Method, Arc<str>)>,
    line: bool,
}

/// The longest request path an invocation summary keeps.
const MAX_PATH_KEPT: usize = 1024;

/// A method's name without an allocation for the standard ones.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method as M;
    let known =
        [M::GET, M::POST, M::PUT, M::DELETE, M::HEAD, M::OPTIONS, M::PATCH, M::CONNECT, M::TRACE];
    const NAMES: [&str; 9] =
        ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
    match known.iter().position(|m| m == method) {
        Some(i) => Cow::Borrowed(NAMES[i]),
        None => Cow::Owned(method.as_str().to_string()),
    }
}

/// How an invocation handed to an isolate went.
enum Sent<T, W> {
    Answer(T),
    Failed(Failure),
    /// The isolate stopped before taking it: the work comes back.
    Gone(W),
}

impl Function {
    /// What happens when an invocation is over: metrics, the dashboard's series and an
    /// invocation summary in the function's log; with `asked` (what was asked, when the log
    /// sink wants it: `dev`), a line there too.
    fn observer(
        &self,
        trigger: &'static str,
        asked: Asked,
        invocation_id: Arc<str>,
        received: Instant,
        cold_start: Option<Duration>,
    ) -> Finished {
        let meters = self.meters.clone();
        let logs = self.shared.logs.clone();
        let sink = asked.line.then(|| self.shared.log_sink.clone());
        let version = self.version;
        Box::new(move |end: InvocationEnd| {
            let duration = received.elapsed();
            let ended = SystemTime::now();
            meters.invocation(&InvocationStats {
                trigger,
                outcome: end.outcome,
                status: end.status,
                duration,
                cpu_time: end.cpu_time,
                cold_start,
                ended,
            });
            let mut summary =
                Record::invocation(meters.function().clone(), ended, end.outcome.as_str());
            summary.version = version;
            summary.invocation_id = Some(invocation_id);
            summary.trigger = Some(Cow::Borrowed(trigger));
            summary.status = end.status;
            summary.duration_ms = Some(whole_micros_in_ms(duration));
            summary.cpu_ms = Some(whole_micros_in_ms(end.cpu_time));
            summary.cold = Some(cold_start.is_some());
            if end.status == Some(101) {
                summary.messages_in = Some(end.messages.0);
                summary.messages_out = Some(end.messages.1);
            }
            if let Some((method, path)) = &asked.request {
                summary.method = Some(method_name(method));
                summary.path = Some(path.clone());
            }
            if let Some(sink) = sink {
                let what = match &asked.request {
                    Some((method, path)) => format!("{method} {path}"),
                    None => trigger.to_string(),
                };
                sink.log(invocation_line(&what, &end, duration, &summary));
            }
            logs.append(summary);
        })
    }

    /// Starts one isolate of the function; a failure is logged to the function's log.
    async fn start_worker(&self) -> Result<WorkerHandle, Outcome> {
        let shared = &self.shared;
        let bundle = match shared.bundles.get(&self.bundle) {
            Ok(bundle) => bundle,
            Err(e) => {
                self.log_error(format!("the function failed to start: {e}"));
                return Err(Outcome::Internal);
            }
        };
        let limits = self.limits;
        let options = WorkerOptions {
            name: Arc::from(self.config.name.as_str()),
            bundle,
            vars: {
                let mut env = self.config.vars.clone();
                env.extend(self.secrets.clone());
                env
            },
            region: shared.region.clone(),
            bindings: self
                .config
                .bindings
                .iter()
                .map(|(name, binding)| (name.clone(), binding.resource.kind.as_str().to_string()))
                .collect(),
            allow_eval: shared.allow_eval,
            limits,
            fetch_allow: shared.fetch_allow.clone(),
            enforce_limits: true,
            max_in_flight: shared.pool.concurrency,
            max_sockets: shared.websockets_per_isolate,
        };
        let code_cache: Arc<dyn CodeCache> = shared.code_cache.clone();
        let bindings: Option<Arc<dyn Bindings>> = (!self.config.bindings.is_empty()).then(|| {
            Arc::new(NodeBindings {
                bindings: self.config.bindings.clone(),
                queues: shared.queues.clone(),
                storage: shared.storage.clone(),
                runtime: shared.runtime.clone(),
            }) as Arc<dyn Bindings>
        });
        let services = WorkerServices {
            log_sink: self.sink(),
            code_cache: Some(code_cache),
            bindings,
            cache: Some(self.cache.clone()),
        };
        let started = shared.threads.start(options, services).await;
        *self.start_error.lock().expect("start error") =
            started.as_ref().err().map(|e| e.to_string());
        started.map_err(|e| {
            self.log_error(format!("the function failed to start: {e}"));
            e.outcome()
        })
    }

    /// Where the function's records go: its log in the store, then the node's sink.
    fn sink(&self) -> Arc<dyn LogSink> {
        Arc::new(FunctionSink {
            store: self.shared.logs.clone(),
            next: self.shared.log_sink.clone(),
            version: self.version,
            budget: self.log_budget.clone(),
        })
    }

    /// Writes an error of the node's about this function to the function's log.
    pub fn log_error(&self, message: String) {
        self.sink().log(LogRecord {
            ts: std::time::SystemTime::now(),
            level: js_runtime::Level::Error,
            function: Arc::from(self.config.name.as_str()),
            invocation_id: None,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::whole_micros_in_ms;
    use crate::observe::logstore::Record;

    #[test]
    fn summaries_give_times_to_the_microsecond() {
        let mut summary = Record::invocation("f".into(), SystemTime::now(), "ok");
        summary.duration_ms = Some(whole_micros_in_ms(Duration::from_nanos(128_871)));
        summary.cpu_ms = Some(whole_micros_in_ms(Duration::from_nanos(13_877_000)));
        let mut line = Vec::new();
        summary.write_json(&mut line);
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(r#""duration_ms":0.128,"cpu_ms":13.877"#), "{line}");
    }
}

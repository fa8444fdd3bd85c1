//! Function folders on disk: read, checked and bundled, then started as workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bundler::Bundle;
use config::{over_max, Limits, LimitsConfig};
use config::{EdgeConfig, EDGE_FILE};
use js_runtime::{
    Failure, HttpResponse, InvokeError, LogRecord, LogSink, Outcome, RequestBody, Worker,
    WorkerHandle, WorkerOptions, WorkerServices,
};

/// A function ready to start: its settings and its bundle.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub config: EdgeConfig,
    pub bundle: Arc<Bundle>,
    /// The function's limits: its own asks over the node defaults, within the node maximums.
    pub limits: Limits,
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
        let bundle = Bundle::from_dir(dir, &config.name, &config.entry)
            .map_err(|e| FunctionsError(vec![format!("{}: {e}", dir.join(EDGE_FILE).display())]))?;
        Ok(FunctionSpec { config, bundle: Arc::new(bundle), limits })
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
                    if let Some(other) = specs.iter().find(|s| s.config.name == spec.config.name) {
                        problems.push(format!(
                            "{}: name `{}` is already used by {}",
                            folder.join(EDGE_FILE).display(),
                            spec.config.name,
                            other.config.dir.join(EDGE_FILE).display()
                        ));
                    } else {
                        specs.push(spec);
                    }
                }
                Err(e) => problems.extend(e.0),
            }
        }
        if problems.is_empty() {
            Ok(specs)
        } else {
            Err(FunctionsError(problems))
        }
    }
}

/// A started function: its spec and its current worker, replaced with a fresh one (a cold
/// start) when a limit has killed it.
pub struct Function {
    pub spec: FunctionSpec,
    instance: ArcSwap<Instance>,
    restart: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
    clock: Instant,
    /// Milliseconds since `clock` at the last start or end of an invocation.
    last_used: AtomicU64,
    in_flight: AtomicUsize,
    cold_starts: AtomicU64,
}

/// Counts an invocation as in flight while it lives.
struct InFlight<'a>(&'a Function);

impl<'a> InFlight<'a> {
    fn enter(function: &'a Function) -> InFlight<'a> {
        function.in_flight.fetch_add(1, Ordering::Relaxed);
        function.touch();
        InFlight(function)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every function of a node runs with.
pub struct Shared {
    pub allow_eval: bool,
    /// `[fetch] allow`: non-public hosts outbound fetch may reach.
    pub fetch_allow: Vec<String>,
    pub log_sink: Arc<dyn LogSink>,
}

/// A function's isolate, or why it could not start.
pub enum Instance {
    Ready(WorkerHandle),
    /// No isolate (scaled to zero after `idle_timeout`); the next request starts one.
    Idle,
    /// The module failed to load, threw, or ran out of its startup budget at top level;
    /// every request answers with this outcome until the function is replaced.
    Broken(Outcome),
}

impl Function {
    fn touch(&self) {
        self.last_used.store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Starts the function's worker. A function that cannot start is kept as
    /// [`Instance::Broken`] with its error in its log, so the node goes on serving the others.
    pub async fn start(spec: FunctionSpec, shared: Arc<Shared>) -> Function {
        let instance = start_instance(&spec, &shared).await;
        Function {
            spec,
            instance: ArcSwap::from_pointee(instance),
            restart: tokio::sync::Mutex::new(()),
            shared,
            clock: Instant::now(),
            last_used: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            cold_starts: AtomicU64::new(1),
        }
    }

    /// Whether the function could start.
    pub fn is_ready(&self) -> bool {
        !matches!(**self.instance.load(), Instance::Broken(_))
    }

    /// Whether the function holds a running isolate now.
    pub fn has_isolate(&self) -> bool {
        matches!(&**self.instance.load(), Instance::Ready(handle) if handle.is_alive())
    }

    /// How many isolates this function has started, the first included.
    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    /// Drops the function's isolate when nothing has used it for `idle` (scale to zero).
    /// Requests still streaming a body keep the isolate going until they finish.
    pub fn evict_if_idle(&self, idle: Duration) -> bool {
        let quiet_for = self
            .clock
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_used.load(Ordering::Relaxed)));
        if self.in_flight.load(Ordering::Relaxed) > 0 || quiet_for < idle || !self.has_isolate() {
            return false;
        }
        let Ok(_restarting) = self.restart.try_lock() else { return false };
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        self.instance.store(Arc::new(Instance::Idle));
        tracing::debug!(function = %self.spec.config.name, "isolate dropped after being idle");
        true
    }

    /// A running worker: the current one, or a new one when a limit killed the last.
    async fn worker(&self) -> Result<WorkerHandle, Outcome> {
        if let Instance::Ready(handle) = &**self.instance.load() {
            if handle.is_alive() {
                return Ok(handle.clone());
            }
        }
        let _restarting = self.restart.lock().await;
        match &**self.instance.load() {
            Instance::Ready(handle) if handle.is_alive() => return Ok(handle.clone()),
            Instance::Broken(outcome) => return Err(*outcome),
            Instance::Ready(_) | Instance::Idle => {}
        }
        tracing::debug!(function = %self.spec.config.name, "starting a new isolate (cold start)");
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        let instance = start_instance(&self.spec, &self.shared).await;
        self.instance.store(Arc::new(instance));
        match &**self.instance.load() {
            Instance::Ready(handle) => Ok(handle.clone()),
            Instance::Broken(outcome) => Err(*outcome),
            Instance::Idle => Err(Outcome::Internal),
        }
    }

    /// Runs one HTTP invocation. A request handed back by a worker that stopped before taking
    /// it runs once more on a fresh worker.
    pub async fn invoke(
        &self,
        invocation_id: Arc<str>,
        request: http::Request<RequestBody>,
    ) -> Result<HttpResponse, Failure> {
        let _in_flight = InFlight::enter(self);
        let mut request = request;
        for _attempt in 0..2 {
            let worker = self.worker().await.map_err(|outcome| Failure {
                outcome,
                message: "the function cannot start".into(),
            })?;
            match worker.invoke(invocation_id.clone(), request).await {
                Ok(response) => return Ok(response),
                Err(InvokeError::Failed(failure)) => return Err(failure),
                Err(InvokeError::Gone(returned)) => request = returned,
            }
        }
        Err(Failure { outcome: Outcome::Internal, message: "no isolate took the request".into() })
    }
}

async fn start_instance(spec: &FunctionSpec, shared: &Shared) -> Instance {
    let log_sink = &shared.log_sink;
    let name: Arc<str> = Arc::from(spec.config.name.as_str());
    let limits = spec.limits;
    let options = WorkerOptions {
        name: name.clone(),
        bundle: spec.bundle.clone(),
        vars: spec.config.vars.clone(),
        allow_eval: shared.allow_eval,
        limits: js_runtime::Limits {
            memory: limits.memory,
            cpu_time: limits.cpu_time,
            wall_time: limits.wall_time,
            startup_time: limits.startup_time,
            subrequests: limits.subrequests,
        },
        fetch_allow: shared.fetch_allow.clone(),
        enforce_limits: true,
    };
    let services = WorkerServices { log_sink: log_sink.clone() };
    match Worker::start(options, services).await {
        Ok(handle) => Instance::Ready(handle),
        Err(e) => {
            log_sink.log(LogRecord {
                ts: std::time::SystemTime::now(),
                level: js_runtime::Level::Error,
                function: name,
                invocation_id: None,
                message: format!("the function failed to start: {e}"),
            });
            Instance::Broken(e.outcome())
        }
    }
}

//! Deploys, rollbacks, deletes and secrets: the store changed, then the served site.
//!
//! One operation at a time (a mutex): check the input, start the new version's first isolate
//! (a function that cannot start is refused and nothing changes), write the bundle (synced),
//! commit the store, and only then swap the function in the served site. In-flight requests
//! finish on the isolates of the version they started on; new requests go to the new one.

mod access;
pub mod admin;
mod changes;
pub mod client;
pub mod rotate;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bundler::Bundle;
use config::{over_max, EdgeConfig, LimitsConfig};
use serde::Serialize;

use crate::backend::{
    Deployments, FunctionRecord, NewVersion, Owners, QueueStats, Queueing, Storage, Store,
    StoreError, VersionRecord,
};
use crate::front::http::{App, Site};
use crate::functions::{shared_route, Function, FunctionSpec, Shared};
use crate::observe::logstore::LogStore;
use crate::observe::telemetry::{QueueLabels, Telemetry, BUCKET_SECONDS};
use crate::triggers::Triggers;

/// Why an admin operation was refused; `code` and the HTTP status come from the variant.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The uploaded bytes are not a valid bundle.
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    /// The bundle's edge.toml is missing or invalid, or asks for more than the node allows.
    #[error("invalid edge.toml in the bundle: {0}")]
    InvalidConfig(String),
    /// The function's first isolate could not start (it threw or looped at top level).
    #[error("the function failed to start: {0}")]
    StartFailed(String),
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such function, version or secret.
    #[error("{0}")]
    NotFound(String),
    /// The function is served from the functions folder and cannot be changed through the API.
    #[error("function `{0}` is served from the functions folder, not deployed")]
    Conflict(String),
    /// The function declares a route another served function declares.
    #[error("route `{route}` is already a route of function `{function}`")]
    RouteTaken { route: String, function: String },
    /// The upload is larger than `[admin] max_bundle_size`.
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    /// The bearer token is missing or wrong.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// Our fault: the store or the disk failed.
    #[error("{0}")]
    Internal(String),
    /// The function would use a queue, bucket or table it neither owns nor is granted (or
    /// drop a grant another function uses); every such use is listed.
    #[error("{}", .0.join("; "))]
    NotGranted(Vec<String>),
    /// Deleting the function would leave other functions using its resources without a grant.
    #[error("{}", .0.join("; "))]
    InUse(Vec<String>),
    /// The node is in a cluster whose NATS cannot be reached now; nothing was changed.
    #[error("the cluster cannot be reached: {0}")]
    Unavailable(String),
}

impl AdminError {
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidBundle(_) => "invalid_bundle",
            AdminError::InvalidConfig(_) => "invalid_config",
            AdminError::StartFailed(_) => "start_failed",
            AdminError::BadRequest(_) => "bad_request",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::RouteTaken { .. } => "route_conflict",
            AdminError::TooLarge(_) => "too_large",
            AdminError::Unauthorized => "unauthorized",
            AdminError::Internal(_) => "internal",
            AdminError::Unavailable(_) => "cluster_unavailable",
            AdminError::NotGranted(_) => "not_granted",
            AdminError::InUse(_) => "in_use",
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            AdminError::InvalidBundle(_)
            | AdminError::InvalidConfig(_)
            | AdminError::StartFailed(_)
            | AdminError::BadRequest(_) => S::BAD_REQUEST,
            AdminError::NotFound(_) => S::NOT_FOUND,
            AdminError::Conflict(_) | AdminError::RouteTaken { .. } | AdminError::InUse(_) => {
                S::CONFLICT
            }
            AdminError::NotGranted(_) => S::FORBIDDEN,
            AdminError::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            AdminError::Unauthorized => S::UNAUTHORIZED,
            AdminError::Internal(_) => S::INTERNAL_SERVER_ERROR,
            AdminError::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<tokio::task::JoinError> for AdminError {
    fn from(e: tokio::task::JoinError) -> Self {
        AdminError::Internal(e.to_string())
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoFunction(_) | StoreError::NoVersion { .. } => {
                AdminError::NotFound(e.to_string())
            }
            StoreError::Cluster(e) => AdminError::Unavailable(e),
            StoreError::TooLarge(e) => AdminError::BadRequest(e),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

/// A function as the list of functions shows it.
#[derive(Debug, Serialize)]
pub struct ListedFunction {
    #[serde(flatten)]
    pub record: FunctionRecord,
    /// The content hash of the active version's bundle.
    pub bundle: String,
}

/// A function as the API shows it.
#[derive(Debug, Serialize)]
pub struct FunctionView {
    #[serde(flatten)]
    pub record: FunctionRecord,
    pub versions: Vec<VersionRecord>,
    /// Names of its secrets; values are never shown.
    pub secrets: Vec<String>,
}

/// The deployed functions of a node and the operations on them.
pub struct Control {
    pub store: Store,
    app: Arc<App>,
    shared: Arc<Shared>,
    limits: LimitsConfig,
    keep_versions: usize,
    /// Functions served from the functions folder: not deployable by name.
    folder: std::sync::Mutex<HashSet<String>>,
    lock: tokio::sync::Mutex<()>,
    pub triggers: Arc<Triggers>,
    /// Where deployments and secrets are written (and, in a cluster, shared first).
    deployments: Arc<dyn Deployments>,
    /// Who owns each queue, bucket and table.
    owners: Arc<dyn Owners>,
}

impl Control {
    #[allow(clippy::too_many_arguments, reason = "each is one part the control plane joins")]
    pub fn new(
        store: Store,
        deployments: Arc<dyn Deployments>,
        owners: Arc<dyn Owners>,
        app: Arc<App>,
        shared: Arc<Shared>,
        triggers: Arc<Triggers>,
        limits: LimitsConfig,
        keep_versions: usize,
        folder: HashSet<String>,
    ) -> Control {
        Control {
            deployments,
            owners,
            triggers,
            store,
            app,
            shared,
            limits,
            keep_versions,
            folder: std::sync::Mutex::new(folder),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The specs of every deployed function's active version, to serve at start. A version
    /// that cannot be served any more (its bundle is gone or damaged) is logged and skipped.
    pub fn deployed_specs(
        store: &Store,
        shared: &Shared,
        limits: &LimitsConfig,
    ) -> Vec<FunctionSpec> {
        let active = match store.active() {
            Ok(active) => active,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the deployed functions");
                return Vec::new();
            }
        };
        let mut specs = Vec::new();
        for (record, version) in active {
            let spec = store
                .secrets(&record.name)
                .map_err(|e| e.to_string())
                .and_then(|secrets| spec_of(&record.name, &version, secrets, shared, limits));
            match spec {
                Ok(spec) => specs.push(spec),
                Err(e) => {
                    tracing::error!(function = %record.name, version = version.version, error = %e, "cannot serve a deployed function")
                }
            }
        }
        specs
    }

    /// Uploads a bundle as a new version of `name` and makes it the active one. The same
    /// bundle and edge.toml as the active version make no new version: the active one is
    /// returned with `true` (unchanged).
    pub async fn deploy(
        &self,
        name: &str,
        bytes: &[u8],
        deployed_by: &str,
    ) -> Result<(VersionRecord, bool), AdminError> {
        let (bundle, code_cache) = Bundle::decode_with_code_cache(bytes)
            .map_err(|e| AdminError::InvalidBundle(e.to_string()))?;
        if bundle.manifest().name != name {
            return Err(AdminError::BadRequest(format!(
                "the bundle is of function `{}`, not `{name}`",
                bundle.manifest().name
            )));
        }
        let text = bundle.manifest().config.clone().ok_or_else(|| {
            AdminError::InvalidBundle(
                "it carries no edge.toml (build it with `edge-node bundle` or `edge-node deploy`)"
                    .into(),
            )
        })?;
        let config = parse_config(name, &text, &self.limits)?;
        let _guard = self.lock.lock().await;
        if self.in_folder(name) {
            return Err(AdminError::Conflict(name.to_string()));
        }
        let site = self.app.site.load();
        if let Some((route, other)) =
            shared_route(&config, site.functions.iter().map(|f| &f.config))
        {
            let function = other.name.clone();
            return Err(AdminError::RouteTaken { route: route.to_string(), function });
        }
        if let Some(active) = self.store.active_version(name)? {
            let serving = site.functions.iter().any(|f| f.config.name == name);
            if serving && active.bundle == bundle.hash() && active.config == text {
                tracing::info!(
                    function = name,
                    version = active.version,
                    "deploy of the active version's bundle: unchanged"
                );
                return Ok((active, true));
            }
        }
        let unowned = self.check_access(name, Some(&config)).await?;
        let secrets = self.store.secrets(name)?;
        let bundle = Arc::new(bundle);
        let new = NewVersion {
            bundle: bundle.hash().to_string(),
            entry: bundle.manifest().entry.clone(),
            modules: bundle.manifest().modules.len(),
            size: bundle.size(),
            config: text,
            deployed_by: deployed_by.to_string(),
        };
        let spec = FunctionSpec {
            limits: config.limits.over(&self.limits.defaults),
            config,
            bundle: bundle.clone(),
            secrets,
            version: None,
        };
        // A code cache made by `edge-node bundle`: the first start is warm.
        if let Some(pack) = code_cache {
            self.take_code_cache(&bundle, pack);
        }
        // Start it before anything is written: a function that cannot start changes nothing.
        let function = Function::start(spec, self.shared.clone()).await;
        if !function.is_ready() {
            let why = function.start_error().unwrap_or_else(|| "see the function's log".into());
            drop(function);
            self.collect_bundles();
            return Err(AdminError::StartFailed(why));
        }
        self.claim(unowned).await?;
        // The start compiled the modules: their code cache goes beside the bundle, ahead of
        // the version, so every node's first start of it is warm.
        let pack = || self.shared.code_cache.pack(&bundle);
        if let Err(e) = self.deployments.share_code_cache(&new.bundle, &pack).await {
            tracing::warn!(function = name, error = %e, "cannot share the code cache; other nodes compile on their first start");
        }
        let deployed = self.deployments.deploy(name, new, bytes, self.keep_versions).await?;
        let function = function.with_version(deployed.version.version);
        self.swap(name, Some(Arc::new(function)));
        self.collect_bundles();
        tracing::info!(function = name, version = deployed.version.version, bundle = %deployed.version.bundle, by = deployed_by, pruned = ?deployed.pruned, "deployed");
        Ok((deployed.version, false))
    }

    /// Keeps the caches of a code cache pack that came with `bundle`; a pack that does not
    /// fit (another V8, damage) is logged and left: the modules compile from source.
    fn take_code_cache(&self, bundle: &Bundle, pack: &[u8]) {
        match self.shared.code_cache.unpack(bundle, pack) {
            Ok(taken) => tracing::debug!(bundle = bundle.hash(), taken, "code cache received"),
            Err(e) => tracing::info!(bundle = bundle.hash(), error = %e, "code cache not used"),
        }
    }

    /// Makes another kept version the active one (`None`: the one before the active one).
    pub async fn rollback(&self, name: &str, to: Option<u64>) -> Result<VersionRecord, AdminError> {
        let _guard = self.lock.lock().await;
        let target = self.store.rollback_target(name, to)?;
        let config = parse_config(name, &target.config, &self.limits)?;
        let unowned = self.check_access(name, Some(&config)).await?;
        self.claim(unowned).await?;
        let version = self.deployments.rollback(name, to).await?;
        self.restart(name, &version).await?;
        tracing::info!(function = name, version = version.version, "rolled back");
        Ok(version)
    }

    /// Deletes a function: it stops serving, its versions and secrets are gone.
    pub async fn delete(&self, name: &str) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        if self.store.active_version(name)?.is_some() {
            self.check_access(name, None).await?;
        }
        if !self.deployments.delete(name).await? {
            return Err(AdminError::NotFound(format!("no function `{name}` is deployed")));
        }
        self.swap(name, None);
        self.collect_bundles();
        tracing::info!(function = name, "deleted");
        Ok(())
    }

    /// Sets a secret; a deployed function restarts with it.
    pub async fn set_secret(&self, name: &str, key: &str, value: &str) -> Result<(), AdminError> {
        if !config::valid_var_name(key) {
            return Err(AdminError::BadRequest(format!(
                "`{key}` is not a valid secret name (letters, digits and _, not starting with a digit)"
            )));
        }
        let _guard = self.lock.lock().await;
        if self.store.function(name)?.is_none() && !self.in_folder(name) {
            return Err(AdminError::NotFound(format!(
                "no function `{name}` is deployed: deploy it first, then set its secrets"
            )));
        }
        self.deployments.set_secret(name, key, value).await?;
        self.restart_active(name).await?;
        tracing::info!(function = name, secret = key, "secret set");
        Ok(())
    }

    /// Removes a secret; a deployed function restarts without it.
    pub async fn unset_secret(&self, name: &str, key: &str) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        if !self.store.secrets(name)?.contains_key(key) {
            return Err(AdminError::NotFound(format!("function `{name}` has no secret `{key}`")));
        }
        self.deployments.unset_secret(name, key).await?;
        self.restart_active(name).await?;
        tracing::info!(function = name, secret = key, "secret unset");
        Ok(())
    }

    /// Every deployed function with the bundle hash of its active version (which tells
    /// whether two nodes serve the same code, whatever their version numbers).
    pub fn list(&self) -> Result<Vec<ListedFunction>, AdminError> {
        let active = self.store.active()?;
        Ok(active
            .into_iter()
            .map(|(record, version)| ListedFunction { record, bundle: version.bundle })
            .collect())
    }

    pub fn show(&self, name: &str) -> Result<FunctionView, AdminError> {
        let (record, versions) = self
            .store
            .function(name)?
            .ok_or_else(|| AdminError::NotFound(format!("no function `{name}` is deployed")))?;
        let secrets = self.store.secrets(name)?.into_keys().collect();
        Ok(FunctionView { record, versions, secrets })
    }

    /// The figures of every queue.
    pub async fn queue_stats(&self) -> Result<BTreeMap<String, QueueStats>, AdminError> {
        Ok(self.shared.queues.stats().await?)
    }

    /// The metrics, with the gauges read from the functions and queues as they are now.
    pub async fn metrics(&self) -> String {
        let telemetry = &self.shared.telemetry;
        let queues = self.queue_stats().await.unwrap_or_default();
        telemetry.isolates.clear();
        telemetry.memory.clear();
        telemetry.queued.clear();
        telemetry.queue_depth.clear();
        telemetry.queue_age.clear();
        for (queue, stats) in queues {
            let labels = QueueLabels { queue };
            telemetry.queue_depth.get_or_create(&labels).set(stats.depth as i64);
            telemetry.queue_age.get_or_create(&labels).set(stats.oldest_age_ms as f64 / 1000.0);
        }
        telemetry.code_cache(&self.shared.code_cache.stats());
        for f in &self.app.site.load().functions {
            let labels = Telemetry::function(&f.config.name);
            telemetry.isolates.get_or_create(&labels).set(f.isolates() as i64);
            telemetry.memory.get_or_create(&labels).set(f.memory_used() as i64);
            telemetry.queued.get_or_create(&labels).set(f.queued() as i64);
        }
        telemetry.encode()
    }

    /// The last hour of every served function, for the dashboard.
    pub fn stats(&self) -> serde_json::Value {
        let site = self.app.site.load();
        let names: Vec<String> = site.functions.iter().map(|f| f.config.name.clone()).collect();
        let functions: Vec<serde_json::Value> = self
            .shared
            .telemetry
            .series(&names)
            .into_iter()
            .zip(site.functions.iter())
            .map(|(series, f)| {
                serde_json::json!({
                    "name": series.name,
                    "version": f.version,
                    "routes": f.config.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "isolates": f.isolates(),
                    "points": series.points,
                })
            })
            .collect();
        serde_json::json!({ "bucket_seconds": BUCKET_SECONDS, "functions": functions })
    }

    /// Fires a function's handler by hand: `scheduled` (as its first cron schedule would) or
    /// `queue` with a batch of one message that is not stored. Answers how it went.
    pub async fn invoke(
        &self,
        name: &str,
        manual: ManualInvoke,
    ) -> Result<serde_json::Value, AdminError> {
        let function = self
            .app
            .site
            .load()
            .functions
            .iter()
            .find(|f| f.config.name == name)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no function `{name}` is served")))?;
        let cron_schedule = function
            .config
            .triggers
            .cron
            .first()
            .map_or("manual".to_string(), |c| c.schedule.clone());
        let (trigger, event) = match manual {
            ManualInvoke::Cron => {
                let cron = cron_schedule.clone();
                let payload = serde_json::json!({ "cron": cron, "scheduledTime": crate::backend::local::queues::now_ms() });
                (
                    "cron",
                    js_runtime::Event {
                        handler: "scheduled",
                        payload: payload.to_string(),
                        blobs: Vec::new(),
                    },
                )
            }
            ManualInvoke::Queue { queue, body } => {
                let payload = serde_json::json!({
                    "queue": queue,
                    "messages": [{ "id": "manual", "timestamp": crate::backend::local::queues::now_ms(), "attempts": 1, "encoding": "json", "blob": 0 }],
                });
                let blobs = vec![bytes::Bytes::from(body.to_string())];
                (
                    "queue",
                    js_runtime::Event { handler: "queue", payload: payload.to_string(), blobs },
                )
            }
        };
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().simple().to_string());
        let started_ms = crate::backend::local::queues::now_ms();
        let result = function.invoke_event(trigger, id.clone(), event).await;
        if trigger == "cron" {
            // A run by hand is part of the schedule's history, marked as such.
            let run = crate::triggers::CronRun {
                schedule: cron_schedule.clone(),
                scheduled_ms: started_ms,
                started_ms,
                duration_ms: crate::backend::local::queues::now_ms().saturating_sub(started_ms),
                outcome: match &result {
                    Ok(_) => "ok".to_string(),
                    Err(f) => f.outcome.as_str().to_string(),
                },
                attempts: 1,
                catch_up: false,
                manual: false,
            };
            let (triggers, name) = (self.triggers.clone(), name.to_string());
            let _ = tokio::task::spawn_blocking(move || triggers.record_manual(&name, run)).await;
        }
        Ok(match result {
            Ok(result) => serde_json::json!({
                "invocation_id": id.as_ref(),
                "outcome": "ok",
                "result": serde_json::from_str::<serde_json::Value>(&result).unwrap_or_default(),
            }),
            Err(failure) => serde_json::json!({
                "invocation_id": id.as_ref(),
                "outcome": failure.outcome.as_str(),
                "error": failure.message,
            }),
        })
    }

    /// The buckets and tables of the node.
    pub fn storage(&self) -> &dyn Storage {
        &*self.shared.storage
    }

    /// The queues of the node.
    pub fn queues(&self) -> &dyn Queueing {
        &*self.shared.queues
    }

    /// The function log store.
    pub fn logs(&self) -> &LogStore {
        &self.shared.logs
    }

    pub fn secret_names(&self, name: &str) -> Result<Vec<String>, AdminError> {
        Ok(self.store.secrets(name)?.into_keys().collect())
    }

    async fn restart_active(&self, name: &str) -> Result<(), AdminError> {
        let Some((record, versions)) = self.store.function(name)? else { return Ok(()) };
        match versions.into_iter().find(|v| v.version == record.active) {
            Some(version) => self.restart(name, &version).await,
            None => Ok(()),
        }
    }

    /// Whether the function called `name` is served from the functions folder.
    fn in_folder(&self, name: &str) -> bool {
        self.folder.lock().expect("folder lock").contains(name)
    }

    /// Starts `version` of `name` with its current secrets and serves it.
    async fn restart(&self, name: &str, version: &VersionRecord) -> Result<(), AdminError> {
        let secrets = self.store.secrets(name)?;
        let spec = spec_of(name, version, secrets, &self.shared, &self.limits)
            .map_err(AdminError::Internal)?;
        let function = Function::start(spec, self.shared.clone()).await;
        self.swap(name, Some(Arc::new(function)));
        Ok(())
    }

    /// Serves `function` in place of the function called `name` (or drops it).
    fn swap(&self, name: &str, function: Option<Arc<Function>>) {
        let site = self.app.site.load();
        let mut functions: Vec<Arc<Function>> =
            site.functions.iter().filter(|f| f.config.name != name).cloned().collect();
        functions.extend(function);
        self.triggers.sync(&functions);
        self.app.site.store(Arc::new(Site::new(functions)));
    }

    /// Deletes bundle files no kept version and no served function names.
    fn collect_bundles(&self) {
        let mut keep = match self.store.bundles_in_use() {
            Ok(keep) => keep,
            Err(e) => return tracing::warn!(error = %e, "bundles not collected"),
        };
        keep.extend(self.app.site.load().functions.iter().map(|f| f.bundle.clone()));
        self.shared.bundles.retain(&keep);
    }
}

/// Reads a bundle's edge.toml for function `name` and checks its limits against the node's.
fn parse_config(name: &str, text: &str, limits: &LimitsConfig) -> Result<EdgeConfig, AdminError> {
    let config = EdgeConfig::parse(text, Path::new("")).map_err(|problems| {
        AdminError::InvalidConfig(
            problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "),
        )
    })?;
    if config.name != name {
        return Err(AdminError::InvalidConfig(format!(
            "it names the function `{}`, not `{name}`",
            config.name
        )));
    }
    let asked = config.limits.over(&limits.defaults);
    let too_much = over_max(&asked, &limits.max);
    if !too_much.is_empty() {
        return Err(AdminError::InvalidConfig(
            too_much.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "),
        ));
    }
    Ok(config)
}

/// The spec of a stored version: its bundle from the node's bundles, its edge.toml, secrets.
fn spec_of(
    name: &str,
    version: &VersionRecord,
    secrets: BTreeMap<String, String>,
    shared: &Shared,
    limits: &LimitsConfig,
) -> Result<FunctionSpec, String> {
    let bundle = shared.bundles.get(&version.bundle).map_err(|e| e.to_string())?;
    let config = parse_config(name, &version.config, limits).map_err(|e| e.to_string())?;
    Ok(FunctionSpec {
        limits: config.limits.over(&limits.defaults),
        config,
        bundle,
        secrets,
        version: Some(version.version),
    })
}

/// What `POST /v1/functions/{name}/invoke` fires.
pub enum ManualInvoke {
    Cron,
    Queue { queue: String, body: serde_json::Value },
}

//! Function folders on disk: read, checked and bundled, then started as workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bundler::Bundle;
use config::{EdgeConfig, EDGE_FILE};
use js_runtime::{LogRecord, LogSink, Worker, WorkerHandle, WorkerOptions, WorkerServices};

/// A function ready to start: its settings and its bundle.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub config: EdgeConfig,
    pub bundle: Arc<Bundle>,
}

/// Function folders that cannot be served; every problem of every folder is listed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct FunctionsError(pub Vec<String>);

impl FunctionSpec {
    /// Reads `DIR/edge.toml` and bundles the function's modules.
    pub fn load(dir: &Path) -> Result<FunctionSpec, FunctionsError> {
        let config = EdgeConfig::load(dir).map_err(|e| FunctionsError(vec![e.to_string()]))?;
        let bundle = Bundle::from_dir(dir, &config.name, &config.entry)
            .map_err(|e| FunctionsError(vec![format!("{}: {e}", dir.join(EDGE_FILE).display())]))?;
        Ok(FunctionSpec {
            config,
            bundle: Arc::new(bundle),
        })
    }

    /// Loads every sub-folder of `dir` that holds an edge.toml. Names must be unique.
    pub fn load_all(dir: &Path) -> Result<Vec<FunctionSpec>, FunctionsError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            FunctionsError(vec![format!(
                "cannot read functions dir {}: {e}",
                dir.display()
            )])
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
            match FunctionSpec::load(&folder) {
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

/// A started function.
pub struct Function {
    pub spec: FunctionSpec,
    pub instance: Instance,
}

/// A function's isolate, or why it could not start.
pub enum Instance {
    Ready(WorkerHandle),
    /// The module failed to load or threw at top level; every request answers `exception`.
    Broken(Arc<str>),
}

impl Function {
    /// Starts the function's worker. A function that cannot start is kept as [`Instance::Broken`]
    /// with its error in its log, so the node goes on serving the others.
    pub async fn start(
        spec: FunctionSpec,
        allow_eval: bool,
        log_sink: Arc<dyn LogSink>,
    ) -> Function {
        let name: Arc<str> = Arc::from(spec.config.name.as_str());
        let options = WorkerOptions {
            name: name.clone(),
            bundle: spec.bundle.clone(),
            vars: spec.config.vars.clone(),
            allow_eval,
        };
        let services = WorkerServices {
            log_sink: log_sink.clone(),
        };
        let instance = match Worker::start(options, services).await {
            Ok(handle) => Instance::Ready(handle),
            Err(e) => {
                let message = format!("the function failed to start: {e}");
                log_sink.log(LogRecord {
                    ts: std::time::SystemTime::now(),
                    level: js_runtime::Level::Error,
                    function: name,
                    invocation_id: None,
                    message: message.clone(),
                });
                Instance::Broken(message.into())
            }
        };
        Function { spec, instance }
    }
}

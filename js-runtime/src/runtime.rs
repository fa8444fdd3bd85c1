//! The threads and spare isolates functions run on, made once per node with its settings
//! (`[pool] threads`, `[pool] spare_isolates`) and handed to whatever starts workers or serves
//! connections: two nodes in one process each have their own.
//!
//! What stays per process: the CPU watchdog (one thread that watches every isolate entered
//! in the process; it has no settings) and V8's flags.

use std::future::Future;
use std::sync::Arc;

use crate::spare::Spares;
use crate::threads::FrontThreads;
use crate::worker::{StartError, WorkerHandle, WorkerOptions, WorkerServices};

/// How a [`Runtime`] is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeOptions {
    /// Front threads serving connections (0: one per core).
    pub front_threads: usize,
    /// Spare isolates kept ready per memory limit in use (0: none).
    pub spare_isolates: usize,
}

/// A cloneable handle on a runtime's front threads and spare isolates. They stop when the
/// last handle is dropped (isolates already given a function run on).
#[derive(Clone)]
pub struct Runtime {
    front: Arc<FrontThreads>,
    spares: Arc<Spares>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Runtime {
        Runtime {
            front: Arc::new(FrontThreads::new(options.front_threads)),
            spares: Arc::new(Spares::new(options.spare_isolates)),
        }
    }

    /// Starts a worker: a thread, an isolate (a spare if one is ready) with the function's
    /// modules loaded and evaluated. Resolves once the function is ready for invocations.
    pub async fn start(
        &self,
        options: WorkerOptions,
        services: WorkerServices,
    ) -> Result<WorkerHandle, StartError> {
        crate::worker::start(&self.spares, options, services).await
    }

    /// Runs `connection` on the front thread serving the fewest connections.
    pub fn spawn_connection<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.front.spawn(connection);
    }

    /// How many front threads there are (starting them if they are not running yet).
    pub fn front_threads(&self) -> usize {
        self.front.count()
    }

    /// How many spares with this memory limit are ready now.
    pub fn spares_ready(&self, memory: u64) -> usize {
        self.spares.ready(memory)
    }
}

impl Default for Runtime {
    /// One front thread per core, no spares.
    fn default() -> Runtime {
        Runtime::new(RuntimeOptions::default())
    }
}

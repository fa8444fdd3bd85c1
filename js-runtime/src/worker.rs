//! A worker: one isolate running one function version under its limits, as a task on one
//! of the isolate threads (`threads`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bundler::Bundle;
use deno_core::{v8, JsRuntime, PollEventLoopOptions, RuntimeOptions};
use tokio::sync::{mpsc, oneshot};

use crate::code_cache::CodeCache;
use crate::ext::{
    self, Bindings, BindingsService, CacheService, Event, Failure, Finished, Host, HttpResponse,
    Invocation, Level, LogSink, Outcome, Reply, ResponseCache, Work,
};
use crate::fetch_policy::{self, FetchPolicy, PolicyResolver};
use crate::limits::{
    drive, drive_without_time_limits, ArrayBufferBudget, Guard, Limits, Tripped, BACKGROUND_STOPPED,
};
use crate::loader::{module_url, BundleLoader};
use crate::spare::Spares;
use crate::threads::{Entered, OwnedRuntime};

/// What a worker runs and how: plain data.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The function's name, as in logs.
    pub name: Arc<str>,
    pub bundle: Arc<Bundle>,
    /// `env` of the function: its vars (and later its secrets).
    pub vars: BTreeMap<String, String>,
    /// The region of the node running the function (`request.cf.region`).
    pub region: Arc<str>,
    /// `env` bindings: name -> kind (`queue`, `bucket`, `table`), served by
    /// [`WorkerServices::bindings`].
    pub bindings: BTreeMap<String, String>,
    /// Allow `eval` and `new Function`.
    pub allow_eval: bool,
    pub limits: Limits,
    /// Hosts outbound `fetch` may reach although they are not public addresses
    /// (`"127.0.0.1:9000"`, `"db.internal"`).
    pub fetch_allow: Vec<String>,
    /// Measure and enforce CPU and wall time per invocation. Only benchmarks turn this off,
    /// to measure what enforcing costs; memory limits always hold.
    pub enforce_limits: bool,
    /// The most invocations handed to the worker and not yet taken by its isolate; more are
    /// handed back (the node's pool grants no more than its `concurrency` per isolate).
    pub max_in_flight: usize,
    /// The most WebSockets the isolate keeps open; an upgrade past it is answered 503.
    pub max_sockets: usize,
}

/// The services a worker uses, injected so tests and the node choose them.
#[derive(Clone)]
pub struct WorkerServices {
    pub log_sink: Arc<dyn LogSink>,
    /// Where V8 code caches of the bundle's modules are kept; `None` compiles every time.
    pub code_cache: Option<Arc<dyn CodeCache>>,
    /// What the function's bindings do; `None` when it has none.
    pub bindings: Option<Arc<dyn Bindings>>,
    /// Where the function's Cache API entries are kept; `None` keeps none (every `match`
    /// misses).
    pub cache: Option<Arc<dyn ResponseCache>>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The function's module failed to load or threw while evaluating; the message holds the
    /// error and its stack.
    #[error("{0}")]
    Module(String),
    /// The module's top-level code used more than `startup_time` of CPU.
    #[error("the module's top-level code used more than its startup CPU time")]
    ExceededCpu,
    /// The module's top-level code reached the memory limit.
    #[error("the module's top-level code reached the memory limit")]
    ExceededMemory,
}

impl StartError {
    /// The outcome every request to a function that cannot start answers with.
    pub fn outcome(&self) -> Outcome {
        match self {
            StartError::Module(_) => Outcome::Exception,
            StartError::ExceededCpu => Outcome::ExceededCpu,
            StartError::ExceededMemory => Outcome::ExceededMemory,
        }
    }
}

/// Why an invocation produced no response.
#[derive(Debug)]
pub enum InvokeError {
    /// The invocation ran and failed.
    Failed(Failure),
    /// The worker had stopped before taking the request; here it is back, untouched.
    Gone(http::Request<crate::RequestBody>),
}

/// Why an event invocation produced no result.
#[derive(Debug)]
pub enum EventError {
    /// The handler ran and failed.
    Failed(Failure),
    /// The worker had stopped before taking the event; here it is back.
    Gone(Event),
}

fn gone(work: Work) -> InvokeError {
    match work {
        Work::Http(request) => InvokeError::Gone(request),
        Work::Event(_) => InvokeError::Failed(Failure {
            outcome: Outcome::Internal,
            message: "an HTTP invocation came back as an event".into(),
        }),
    }
}

fn event_gone(work: Work) -> EventError {
    match work {
        Work::Event(event) => EventError::Gone(event),
        Work::Http(_) => EventError::Failed(Failure {
            outcome: Outcome::Internal,
            message: "an event came back as an HTTP invocation".into(),
        }),
    }
}

/// A cloneable handle that sends invocations to a running worker. The worker stops when
/// every handle is dropped and its in-flight invocations are done, or when a limit kills it.
#[derive(Clone)]
pub struct WorkerHandle {
    /// Boxed: the channel allocates room for 32 messages up front, per isolate.
    inbox: mpsc::Sender<Box<Invocation>>,
    memory: Arc<AtomicU64>,
    sockets_open: Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts a worker for `options` (see [`Runtime::start`](crate::Runtime::start)), taking a
/// spare from `spares` when one is ready.
pub(crate) async fn start(
    spares: &Arc<Spares>,
    options: WorkerOptions,
    services: WorkerServices,
) -> Result<WorkerHandle, StartError> {
    let (inbox, rx) = mpsc::channel(options.max_in_flight.max(1));
    let (ready_tx, ready_rx) = oneshot::channel();
    let memory = options.limits.memory;
    let in_use = Arc::new(AtomicU64::new(0));
    let sockets_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let job = Job {
        options,
        services,
        inbox: rx,
        senders: inbox.downgrade(),
        ready: ready_tx,
        memory_in_use: in_use.clone(),
        sockets_open: sockets_open.clone(),
    };
    match spares.take(memory) {
        Some(spare) => {
            if let Err(job) = spare.send(job) {
                start_on_demand(job);
            }
        }
        None => start_on_demand(job),
    }
    let ready = ready_rx.await;
    // The next spare is made once this start is done, so making it does not hold up this
    // one.
    spares.replenish(memory);
    match ready {
        Ok(Ok(())) => Ok(WorkerHandle { inbox, memory: in_use, sockets_open }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StartError::Module("the isolate stopped while starting".into())),
    }
}

/// Makes an isolate for `job` on a thread of its own.
fn start_on_demand(job: Job) {
    crate::threads::spawn(move || async move {
        let isolate = Isolate::create(job.options.limits.memory);
        isolate.run(job).await;
    })
}

impl WorkerHandle {
    /// Runs one HTTP invocation; resolves with the response head as soon as the function
    /// answers (a streamed body follows through [`crate::ResponseBody::Stream`]).
    pub async fn invoke(
        &self,
        invocation_id: Arc<str>,
        request: http::Request<crate::RequestBody>,
    ) -> Result<HttpResponse, InvokeError> {
        self.invoke_observed(invocation_id, request, None).await
    }

    /// [`WorkerHandle::invoke`], with `finished` called when the invocation is over.
    pub async fn invoke_observed(
        &self,
        invocation_id: Arc<str>,
        request: http::Request<crate::RequestBody>,
        finished: Option<Finished>,
    ) -> Result<HttpResponse, InvokeError> {
        match self.run(invocation_id, Work::Http(request), finished).await {
            Ok(Reply::Response(response)) => Ok(response),
            Ok(Reply::Failed(failure)) => Err(InvokeError::Failed(failure)),
            Ok(Reply::Event(_)) => Err(InvokeError::Failed(mismatch())),
            Ok(Reply::Returned(work)) | Err(work) => Err(gone(work)),
        }
    }

    /// Runs an event handler (`scheduled`, `queue`, `storage`, `record`); resolves with its
    /// result (JSON) when the handler and its `waitUntil` work are done.
    pub async fn invoke_event(
        &self,
        invocation_id: Arc<str>,
        event: Event,
        finished: Option<Finished>,
    ) -> Result<String, EventError> {
        match self.run(invocation_id, Work::Event(event), finished).await {
            Ok(Reply::Event(result)) => Ok(result),
            Ok(Reply::Failed(failure)) => Err(EventError::Failed(failure)),
            Ok(Reply::Response(_)) => Err(EventError::Failed(mismatch())),
            Ok(Reply::Returned(work)) | Err(work) => Err(event_gone(work)),
        }
    }

    /// Hands `work` to the isolate and waits for its reply; the work comes back (`Err`) when
    /// the isolate had stopped. A reply that never comes (the isolate stopped while it ran the
    /// work) is an `internal` failure.
    async fn run(
        &self,
        invocation_id: Arc<str>,
        work: Work,
        finished: Option<Finished>,
    ) -> Result<Reply, Work> {
        let (reply, response) = oneshot::channel();
        let invocation = Box::new(Invocation { invocation_id, work, reply, finished });
        if let Err(refused) = self.inbox.try_send(invocation) {
            let (mpsc::error::TrySendError::Full(invocation)
            | mpsc::error::TrySendError::Closed(invocation)) = refused;
            return Err(invocation.work);
        }
        // The isolate's answer wakes this task through the front thread's mailbox.
        let mut response = response;
        let answered = std::future::poll_fn(|cx| {
            let waker = crate::wakes::through_mailbox(cx.waker());
            std::future::Future::poll(
                std::pin::Pin::new(&mut response),
                &mut std::task::Context::from_waker(&waker),
            )
        });
        Ok(answered.await.unwrap_or_else(|_| {
            Reply::Failed(Failure {
                outcome: Outcome::Internal,
                message: "the isolate stopped".into(),
            })
        }))
    }

    /// Bytes the isolate holds now: its V8 heap and its ArrayBuffers, as last measured (after
    /// each entry into the isolate).
    pub fn memory_used(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// WebSockets the isolate has open, as last published (after each entry into it): an
    /// isolate with one open is not idle.
    pub fn sockets_open(&self) -> usize {
        self.sockets_open.load(Ordering::Relaxed)
    }

    /// Whether the worker is still running: a worker stopped by a limit is gone for good and
    /// the caller starts a new one.
    pub fn is_alive(&self) -> bool {
        !self.inbox.is_closed()
    }
}

/// The failure of an invocation answered as the other kind (a bug of ours, never the
/// function's).
fn mismatch() -> Failure {
    Failure {
        outcome: Outcome::Internal,
        message: "the invocation got the other kind's answer".into(),
    }
}

/// What an isolate thread is asked to run.
pub(crate) struct Job {
    pub options: WorkerOptions,
    pub services: WorkerServices,
    pub inbox: mpsc::Receiver<Box<Invocation>>,
    /// The inbox's senders, without keeping it open (see [`Host::abandoned`]).
    pub senders: mpsc::WeakSender<Box<Invocation>>,
    pub ready: oneshot::Sender<Result<(), StartError>>,
    /// Where the isolate publishes the memory it holds, for [`WorkerHandle::memory_used`].
    pub memory_in_use: Arc<AtomicU64>,
    /// Where it publishes how many WebSockets it has open, for [`WorkerHandle::sockets_open`].
    pub sockets_open: Arc<std::sync::atomic::AtomicUsize>,
}

/// An isolate before it has a function: made from the snapshot with everything that does not
/// depend on the function, so it can be made ahead of time.
pub(crate) struct Isolate {
    js: OwnedRuntime,
    guard: Arc<Guard>,
    budget: Arc<ArrayBufferBudget>,
    loader: Rc<BundleLoader>,
    resolver: Arc<PolicyResolver>,
    memory: u64,
}

impl Isolate {
    /// Creates an isolate on the current thread, inside a tokio runtime, with a heap of at
    /// most `memory` bytes (ArrayBuffers included).
    pub fn create(memory: u64) -> Isolate {
        let guard = Guard::new();
        let budget = ArrayBufferBudget::new(memory, guard.clone());
        let create_params = budget.create_params();
        let resolver = Arc::new(PolicyResolver::default());
        let fetch = deno_fetch::Options {
            user_agent: ext::USER_AGENT.to_string(),
            request_builder_hook: Some(fetch_policy::request_hook),
            resolver: deno_fetch::dns::Resolver::custom(resolver.clone()),
            ..Default::default()
        };
        let loader = Rc::new(BundleLoader::default());
        // V8 takes its flags before its first isolate.
        crate::set_v8_flags(&[]);
        let mut js = JsRuntime::new(RuntimeOptions {
            startup_snapshot: Some(crate::SNAPSHOT),
            // The empty module whose loading has deno_core attach the ops' fast calls
            // (`prepare` in runtime.js). A runtime made from a snapshot finds lazy
            // modules only here.
            residual_lazy_esm_sources: &[(
                "ext:isola/fast_calls.js",
                include_str!("ext/js/fast_calls.js"),
            )],
            extensions: ext::extensions(fetch),
            module_loader: Some(loader.clone()),
            create_params: Some(create_params),
            // ArrayBuffers transferred through a MessagePort, held between the two ends; one
            // store per isolate, so no transfer crosses isolates.
            shared_array_buffer_store: Some(Default::default()),
            ..Default::default()
        });
        budget.watch(&mut js);
        crate::limits::gc_time::watch(js.v8_isolate());
        js.op_state().borrow_mut().put(outbound_permissions());
        // Blobs' bytes count against the memory limit (the store the extension made is empty).
        let blobs: Arc<dyn deno_web::BlobStoreTrait> =
            Arc::new(crate::limits::CountedBlobStore::new(budget.clone()));
        js.op_state().borrow_mut().put(blobs);
        // What the snapshot cannot hold: the ops' fast calls, the WebAssembly streaming
        // handler, globalThis's prototype.
        js.execute_script("isola:prepare", "globalThis.__isolaPrepare()")
            .expect("the runtime prepares a new isolate");
        let js = OwnedRuntime::new(js);
        Isolate { js, guard, budget, loader, resolver, memory }
    }

    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Gives the isolate its function, then serves invocations until the worker ends. The
    /// isolate is entered whenever this is polled.
    pub async fn run(self, job: Job) {
        let cell = self.js.cell();
        Entered::new(cell, self.serve(job)).await
    }

    async fn serve(self, job: Job) {
        let Isolate { mut js, guard, budget, loader, resolver, .. } = self;
        let cell = js.cell();
        let js = &mut *js;
        let Job { options, services, inbox, senders, ready, memory_in_use, sockets_open } = job;
        let policy = Arc::new(FetchPolicy::new(&options.fetch_allow));
        *cell.policy.borrow_mut() = Some(policy.clone());
        fetch_policy::install(Some(policy.clone()));
        resolver.set(policy);
        loader.set(options.bundle.clone(), services.code_cache.clone());
        let mut host = Host::new(
            options.name.clone(),
            services.log_sink.clone(),
            inbox,
            senders,
            options.limits.cpu_time,
            options.limits.wall_time,
        );
        host.extend_entries_with(guard.extension());
        host.max_sockets = options.max_sockets;
        host.sockets_open = Some(sockets_open);
        let memory = budget.clone();
        host.set_memory_check(Box::new(move |isolate| memory.over_after_collecting(isolate)));
        js.op_state().borrow_mut().put(host);
        if let Some(bindings) = &services.bindings {
            js.op_state().borrow_mut().put(BindingsService(bindings.clone()));
        }
        if let Some(cache) = &services.cache {
            js.op_state().borrow_mut().put(CacheService(cache.clone()));
        }
        let clock = guard.clock();
        guard.arm(clock.now(), options.limits.startup_time);
        let loaded = load_function(js, &loader, &options).await;
        guard.disarm();
        // The start function takes the invocations already waiting and runs their handlers:
        // an entry into the isolate like the ones `drive` makes, metered the same way.
        let started = match loaded {
            Ok(start) if guard.tripped().is_none() => {
                let state = js.op_state();
                let before = crate::limits::enter(state.borrow_mut().borrow_mut::<Host>(), &guard);
                let called = js
                    .call_with_args(&start.function, &start.args)
                    .await
                    .map(|_| ())
                    .map_err(|e| StartError::Module(e.to_string()));
                let (used, collecting) = crate::limits::leave(&guard, before);
                if guard.tripped().is_none() {
                    state.borrow_mut().borrow_mut::<Host>().charge(used, collecting);
                }
                called
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let started = match (started, guard.tripped()) {
            (Ok(()), None) => Ok(()),
            (_, Some(Tripped::Cpu)) => Err(StartError::ExceededCpu),
            (_, Some(Tripped::Memory)) => Err(StartError::ExceededMemory),
            (Err(e), None) => Err(e),
        };
        if let Err(e) = started {
            let _ = ready.send(Err(e));
            return;
        }
        let _ = ready.send(Ok(()));
        let result = if options.enforce_limits {
            drive(js, &guard, &budget, &memory_in_use).await
        } else {
            drive_without_time_limits(js).await
        };
        memory_in_use.store(0, Ordering::Relaxed);
        let state = js.op_state();
        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        host.return_unstarted();
        if !host.busy() {
            match guard.tripped() {
                Some(Tripped::Cpu) => host.log_note(Level::Error, BACKGROUND_STOPPED.into()),
                Some(Tripped::Memory) => host.log_note(
                    Level::Error,
                    "the isolate was stopped: it reached its memory limit outside any invocation"
                        .into(),
                ),
                None => {}
            }
        }
        let failure = match (result, guard.tripped()) {
            (_, Some(Tripped::Cpu)) => {
                Some((Outcome::ExceededCpu, "the isolate used up its CPU time".to_string()))
            }
            (_, Some(Tripped::Memory)) => {
                Some((Outcome::ExceededMemory, "the isolate reached its memory limit".to_string()))
            }
            (Err(e), None) => Some((Outcome::Internal, e.to_string())),
            (Ok(()), None) => None,
        };
        if let Some((outcome, message)) = failure {
            host.fail_all(outcome, &message);
        }
    }
}

/// The globals that belong to the host rather than to the function, taken out of the global
/// scope before any of its code runs.
const HOST_GLOBALS: &[&str] = &[
    "__isolaBeginEvaluation",
    "__isolaStart",
    "__isolaPrepare",
    "__bootstrap",
    "Deno",
    "SharedArrayBuffer",
];

/// Takes the runtime's start function out of the global scope, marks the entry module's
/// evaluation as begun (unhandled rejections are held until it ends), and removes every
/// global in [`HOST_GLOBALS`]. Through V8's API: a script for it would be compiled again in
/// every new isolate (0.04–0.1 ms of each start).
fn take_host_globals(scope: &mut v8::PinScope) -> Option<v8::Global<v8::Function>> {
    let global = scope.get_current_context().global(scope);
    let start = global_function(scope, global, "__isolaStart")?;
    let begin = global_function(scope, global, "__isolaBeginEvaluation")?;
    let undefined = v8::undefined(scope);
    begin.call(scope, undefined.into(), &[])?;
    for name in HOST_GLOBALS {
        let key = v8::String::new(scope, name)?;
        global.delete(scope, key.into())?;
    }
    Some(v8::Global::new(scope, start))
}

fn global_function<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    global: v8::Local<'s, v8::Object>,
    name: &str,
) -> Option<v8::Local<'s, v8::Function>> {
    let key = v8::String::new(scope, name)?;
    v8::Local::<v8::Function>::try_from(global.get(scope, key.into())?).ok()
}

/// A start failure as the user should see it: the error and its stack, with a code frame
/// (the line as written, a caret under the column) of the first frame in the function's code.
fn start_failure(e: deno_core::error::CoreError) -> StartError {
    let deno_core::error::CoreErrorKind::Js(js) = &*e.0 else {
        return StartError::Module(e.to_string());
    };
    let mut text = js.to_string();
    let frame = js.source_line_frame_index.and_then(|i| js.frames.get(i));
    if let (Some(line), Some(frame)) = (&js.source_line, frame) {
        let (number, column) = (frame.line_number.unwrap_or(0), frame.column_number.unwrap_or(1));
        let gutter = number.to_string();
        let pad = " ".repeat(gutter.len());
        // The caret sits under the column, counting a tab as the editor shows it (one char).
        let before: String = line
            .chars()
            .take(usize::try_from(column.saturating_sub(1)).unwrap_or(0))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        text.push_str(&format!("\n\n {gutter} | {line}\n {pad} | {before}^"));
    }
    StartError::Module(text)
}

/// The runtime's start function and what it is called with, once the function's module has
/// evaluated.
struct Start {
    function: v8::Global<v8::Function>,
    args: [v8::Global<v8::Value>; 5],
}

async fn load_function(
    js: &mut JsRuntime,
    loader: &BundleLoader,
    options: &WorkerOptions,
) -> Result<Start, StartError> {
    let start = {
        deno_core::scope!(scope, js);
        let start = take_host_globals(scope)
            .ok_or_else(|| StartError::Module("the runtime's start function is missing".into()))?;
        if !options.allow_eval {
            scope.get_current_context().set_allow_generation_from_strings(false);
        }
        start
    };
    let main = module_url(&options.bundle.manifest().entry).map_err(StartError::Module)?;
    loader.hold_caches();
    let id = js.load_main_es_module(&main).await.map_err(start_failure)?;
    let evaluated = js.mod_evaluate(id);
    js.run_event_loop(PollEventLoopOptions::default()).await.map_err(start_failure)?;
    evaluated.await.map_err(start_failure)?;
    {
        deno_core::scope!(scope, js);
        loader.store_held_caches(scope);
    }
    let namespace = js.get_module_namespace(id).map_err(start_failure)?;
    let (namespace, vars, subrequests, bindings, region) = {
        deno_core::scope!(scope, js);
        let object = v8::Object::new(scope);
        for (key, value) in &options.vars {
            let (Some(k), Some(v)) = (v8::String::new(scope, key), v8::String::new(scope, value))
            else {
                return Err(StartError::Module(format!("var `{key}` is too long")));
            };
            object.set(scope, k.into(), v.into());
        }
        let bindings = v8::Object::new(scope);
        for (key, kind) in &options.bindings {
            let (Some(k), Some(v)) = (v8::String::new(scope, key), v8::String::new(scope, kind))
            else {
                return Err(StartError::Module(format!("binding `{key}` is too long")));
            };
            bindings.set(scope, k.into(), v.into());
        }
        let namespace = v8::Local::new(scope, namespace);
        let subrequests = v8::Number::new(scope, f64::from(options.limits.subrequests));
        (
            v8::Global::new(scope, v8::Local::<v8::Value>::from(namespace)),
            v8::Global::new(scope, v8::Local::<v8::Value>::from(object)),
            v8::Global::new(scope, v8::Local::<v8::Value>::from(subrequests)),
            v8::Global::new(scope, v8::Local::<v8::Value>::from(bindings)),
            {
                let region = v8::String::new(scope, &options.region)
                    .ok_or_else(|| StartError::Module("the region name is too long".into()))?;
                v8::Global::new(scope, v8::Local::<v8::Value>::from(region))
            },
        )
    };
    Ok(Start { function: start, args: [namespace, vars, subrequests, bindings, region] })
}

/// The permissions deno_fetch checks before an outbound request: all granted, because the
/// outbound policy is enforced by [`fetch_policy`] (deno_permissions' deny list cannot make
/// the exceptions `[fetch] allow` asks for).
fn outbound_permissions() -> deno_permissions::PermissionsContainer {
    let parser =
        deno_permissions::RuntimePermissionDescriptorParser::new(sys_traits::impls::RealSys);
    deno_permissions::PermissionsContainer::allow_all(Arc::new(parser))
}

/// Compiles the modules of `bundle` that its entry imports statically, running none of them,
/// and hands V8's code cache of each to `cache`: what `edge-node bundle` ships so a function's
/// first start anywhere is warm. On a thread and isolate of its own.
pub fn compile_modules(bundle: Arc<Bundle>, cache: Arc<dyn CodeCache>) -> Result<(), StartError> {
    let compile = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Module(format!("cannot start a runtime to compile: {e}")))?;
        runtime.block_on(async move {
            let isolate = Isolate::create(512 << 20);
            let cell = isolate.js.cell();
            Entered::new(cell, async move {
                let Isolate { mut js, loader, .. } = isolate;
                let main = module_url(&bundle.manifest().entry).map_err(StartError::Module)?;
                loader.set(bundle, Some(cache));
                // Loading compiles and links every static import; the caches are handed over
                // as the event loop turns.
                js.load_main_es_module(&main).await.map_err(start_failure)?;
                js.run_event_loop(PollEventLoopOptions::default()).await.map_err(start_failure)
            })
            .await
        })
    };
    std::thread::spawn(compile)
        .join()
        .unwrap_or_else(|_| Err(StartError::Module("the compiler thread panicked".into())))
}

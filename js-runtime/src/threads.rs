//! The isolate threads: a fixed set (one per core unless [`set_isolate_threads`] says
//! otherwise), each running a current-thread tokio runtime on which any number of isolates
//! live as tasks. A new isolate goes to the thread holding the fewest.
//!
//! V8 keeps one "entered" isolate per thread, and rusty_v8 enters an isolate when it is made
//! and insists it is the entered one when it is dropped. With many isolates on a thread that
//! order cannot hold, so an isolate here is entered only while its task is polled
//! ([`Entered`]) and when it is dropped ([`OwnedRuntime`]); between polls none is.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use deno_core::{v8, JsRuntime};
use tokio::sync::mpsc;

use crate::fetch_policy::{self, FetchPolicy};

type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

struct Thread {
    tasks: mpsc::UnboundedSender<Task>,
    /// The thread's runtime, for the `Send` tasks it also runs (connections).
    runtime: tokio::runtime::Handle,
    /// Isolates living on the thread (and isolates being made there).
    isolates: Arc<AtomicUsize>,
    /// Connections served on the thread.
    connections: Arc<AtomicUsize>,
}

thread_local! {
    /// The index of the isolate thread this is, on isolate threads.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Threads asked for; 0 means one per core.
static WANTED: AtomicUsize = AtomicUsize::new(0);
static THREADS: OnceLock<Vec<Thread>> = OnceLock::new();

/// Sets how many isolate threads the process runs (0: one per core). Only the first isolate
/// made fixes the set, so call this before starting any.
pub fn set_isolate_threads(count: usize) {
    WANTED.store(count, Ordering::Relaxed);
}

/// How many isolate threads there are (starting them if they are not running yet).
pub fn isolate_threads() -> usize {
    threads().len()
}

fn threads() -> &'static [Thread] {
    THREADS.get_or_init(|| {
        let wanted = match WANTED.load(Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        (0..wanted)
            .map(|i| {
                let (tasks, rx) = mpsc::unbounded_channel();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("an isolate thread's runtime starts");
                let runtime = rt.handle().clone();
                std::thread::Builder::new()
                    .name(format!("isolates-{i}"))
                    .spawn(move || run_thread(i, rt, rx))
                    .expect("an isolate thread starts");
                Thread {
                    tasks,
                    runtime,
                    isolates: Arc::new(AtomicUsize::new(0)),
                    connections: Arc::new(AtomicUsize::new(0)),
                }
            })
            .collect()
    })
}

fn run_thread(index: usize, rt: tokio::runtime::Runtime, mut tasks: mpsc::UnboundedReceiver<Task>) {
    CURRENT.with(|c| c.set(Some(index)));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        while let Some(task) = tasks.recv().await {
            tokio::task::spawn_local(task());
        }
    });
}

/// One of a thread's counted tasks; its count goes down when it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index of the isolate thread the caller runs on; `None` off the isolate threads.
pub fn current_isolate_thread() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Runs `connection` on the isolate thread serving the fewest connections, so its requests
/// reach the isolates there without a thread switch.
pub fn spawn_connection<F>(connection: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let thread = threads()
        .iter()
        .min_by_key(|t| t.connections.load(Ordering::Relaxed))
        .expect("at least one isolate thread");
    let count = thread.connections.clone();
    count.fetch_add(1, Ordering::Relaxed);
    thread.runtime.spawn(async move {
        let _counted = Counted(count);
        connection.await;
    });
}

/// Runs the future `make` returns (given the thread's index) on the isolate thread holding
/// the fewest isolates (other than `avoid`, when there is another), counted there until it
/// ends. Answers the thread's index.
pub(crate) fn spawn<F, Fut>(avoid: Option<usize>, make: F) -> usize
where
    F: FnOnce(usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let threads = threads();
    let (index, thread) = threads
        .iter()
        .enumerate()
        .filter(|(i, _)| threads.len() == 1 || Some(*i) != avoid)
        .min_by_key(|(_, t)| t.isolates.load(Ordering::Relaxed))
        .expect("at least one isolate thread");
    let count = thread.isolates.clone();
    count.fetch_add(1, Ordering::Relaxed);
    let task: Task = Box::new(move || {
        Box::pin(async move {
            let _counted = Counted(count);
            make(index).await;
        })
    });
    if let Err(mpsc::error::SendError(_)) = thread.tasks.send(task) {
        // The thread is gone (it only ends if its runtime panicked).
        thread.isolates.fetch_sub(1, Ordering::Relaxed);
    }
    index
}

/// What the entering and the dropping of one isolate share.
pub(crate) struct IsolateCell {
    isolate: v8::UnsafeRawIsolatePtr,
    /// Entered by [`Entered`] right now.
    entered: Cell<bool>,
    /// Not yet disposed.
    alive: Cell<bool>,
    /// The outbound policy of the function the isolate runs, made the thread's on every entry.
    pub policy: RefCell<Option<Arc<FetchPolicy>>>,
}

impl IsolateCell {
    /// The isolate; only to enter or exit it, while it is alive.
    unsafe fn isolate(&self) -> &v8::Isolate {
        // SAFETY: the caller checks the isolate is alive.
        unsafe { v8::Isolate::ref_from_raw_isolate_ptr(&self.isolate) }
    }
}

/// A `JsRuntime` whose isolate is not left entered: made with [`OwnedRuntime::new`], which
/// exits it, and entered again to be dropped.
pub(crate) struct OwnedRuntime {
    js: ManuallyDrop<JsRuntime>,
    cell: Rc<IsolateCell>,
}

impl OwnedRuntime {
    /// Takes a runtime just made (its isolate entered, as rusty_v8 leaves it) and exits it.
    pub fn new(mut js: JsRuntime) -> OwnedRuntime {
        // SAFETY: the pointer names the runtime's isolate, which lives until the runtime is
        // dropped; it was entered when it was made and nothing entered another since.
        let isolate = unsafe { js.v8_isolate().as_raw_isolate_ptr() };
        unsafe { js.v8_isolate().exit() };
        let cell = Rc::new(IsolateCell {
            isolate,
            entered: Cell::new(false),
            alive: Cell::new(true),
            policy: RefCell::new(None),
        });
        OwnedRuntime { js: ManuallyDrop::new(js), cell }
    }

    pub fn cell(&self) -> Rc<IsolateCell> {
        self.cell.clone()
    }
}

impl Deref for OwnedRuntime {
    type Target = JsRuntime;
    fn deref(&self) -> &JsRuntime {
        &self.js
    }
}

impl DerefMut for OwnedRuntime {
    fn deref_mut(&mut self) -> &mut JsRuntime {
        &mut self.js
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        // rusty_v8 exits the isolate as it drops it and wants it to be the entered one: enter
        // it, unless its task is being polled (then it is entered already, and the poll must
        // not exit it again).
        if !self.cell.entered.get() {
            // SAFETY: the isolate is alive; entering nests over whatever is entered.
            unsafe { self.cell.isolate().enter() };
        }
        self.cell.entered.set(false);
        self.cell.alive.set(false);
        // SAFETY: dropped once, here.
        unsafe { ManuallyDrop::drop(&mut self.js) };
    }
}

/// Polls `inner` with the isolate entered and its outbound policy the thread's.
pub(crate) struct Entered<F> {
    cell: Rc<IsolateCell>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Entered<F> {
    pub fn new(cell: Rc<IsolateCell>, inner: F) -> Entered<F> {
        Entered { cell, inner: Box::pin(inner) }
    }
}

impl<F: Future> Future for Entered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let cell = self.cell.clone();
        if cell.alive.get() {
            // SAFETY: alive, and exited below unless it was dropped meanwhile.
            unsafe { cell.isolate().enter() };
            cell.entered.set(true);
        }
        fetch_policy::install(cell.policy.borrow().clone());
        let polled = self.inner.as_mut().poll(cx);
        if cell.entered.get() {
            cell.entered.set(false);
            // SAFETY: entered above and still alive (a drop would have cleared `entered`).
            unsafe { cell.isolate().exit() };
        }
        fetch_policy::install(None);
        polled
    }
}

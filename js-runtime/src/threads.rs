//! Threads: the front threads serve connections, and every isolate has a thread of its own.
//!
//! The front threads are a fixed set per [`Runtime`](crate::Runtime) (one per core unless its
//! options say otherwise), each running a current-thread tokio runtime; a connection goes to
//! the one serving the fewest. An isolate runs on a thread made for it (a current-thread runtime too),
//! which ends with it. So an isolate busy for as long as its CPU limit allows (a loop, a long
//! collection near its heap limit, a large `JSON.parse`) holds up nothing but its own
//! function's invocations on it: the kernel shares the cores between its thread, the front
//! threads and every other isolate's. The price is a thread switch per request between the
//! connection's thread and the isolate's (amortised under load: an isolate takes every
//! invocation waiting in one go).
//!
//! V8 keeps one "entered" isolate per thread, and rusty_v8 enters an isolate when it is made
//! and insists it is the entered one when it is dropped. An isolate here is entered only
//! while its task is polled ([`Entered`]) and when it is dropped ([`OwnedRuntime`]).

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

use crate::fetch_policy::{self, FetchPolicy};

/// A front thread.
struct Thread {
    /// The thread's runtime, for the connections it serves.
    runtime: tokio::runtime::Handle,
    /// Connections served on the thread.
    connections: Arc<AtomicUsize>,
    /// Dropped with the runtime's front threads: the thread then ends, and with it the
    /// connections it still serves.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The number in the next isolate thread's name (names only; process-wide so that two
/// runtimes' threads are told apart).
static NEXT_ISOLATE_THREAD: AtomicUsize = AtomicUsize::new(0);

/// The front threads of one runtime: `wanted` of them (0: one per core), started on first use.
pub(crate) struct FrontThreads {
    wanted: usize,
    threads: OnceLock<Vec<Thread>>,
}

impl FrontThreads {
    pub fn new(wanted: usize) -> FrontThreads {
        FrontThreads { wanted, threads: OnceLock::new() }
    }

    fn threads(&self) -> &[Thread] {
        self.threads.get_or_init(|| {
            let wanted = match self.wanted {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            };
            (0..wanted)
                .map(|i| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a front thread's runtime starts");
                    let runtime = rt.handle().clone();
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    std::thread::Builder::new()
                        .name(format!("front-{i}"))
                        .spawn(move || {
                            rt.spawn(crate::wakes::run_deferred_wakes());
                            rt.spawn(crate::wakes::run_mailbox());
                            let _ = rt.block_on(stopped);
                        })
                        .expect("a front thread starts");
                    Thread { runtime, connections: Arc::new(AtomicUsize::new(0)), _stop: stop }
                })
                .collect()
        })
    }

    /// How many front threads there are (starting them if they are not running yet).
    pub fn count(&self) -> usize {
        self.threads().len()
    }

    /// Runs `connection` on the front thread serving the fewest connections.
    pub fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let thread = self
            .threads()
            .iter()
            .min_by_key(|t| t.connections.load(Ordering::Relaxed))
            .expect("at least one front thread");
        let count = thread.connections.clone();
        count.fetch_add(1, Ordering::Relaxed);
        thread.runtime.spawn(async move {
            let _counted = Counted(count);
            connection.await;
        });
    }
}

/// Raises the process's soft limit of open files to its hard limit, and answers it: every
/// isolate holds about four file descriptors (its thread's reactor among them), so a few
/// hundred isolates pass the usual soft limit (1,024) long before the hard one.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-pointer; the calls only read and set this process's limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// One of a thread's counted tasks; its count goes down when it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the future `make` returns on a new isolate thread, which ends when the future does.
pub(crate) fn spawn<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let number = NEXT_ISOLATE_THREAD.fetch_add(1, Ordering::Relaxed);
    // Without a thread (a process limit), or a reactor for it (it takes file descriptors: see
    // `raise_open_files_limit`), the isolate is not made: dropping `make` tells whoever waits
    // for it.
    let _ = std::thread::Builder::new().name(format!("isolate-{number}")).spawn(move || {
        let Ok(rt) =
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()
        else {
            return;
        };
        tokio::task::LocalSet::new().block_on(&rt, make());
    });
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

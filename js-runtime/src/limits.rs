//! Enforcing a worker's limits: the thread CPU clock, the watchdog that stops an isolate whose
//! budget is spent, and the ArrayBuffer allocator that counts memory outside the V8 heap.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use deno_core::v8;

/// The limits a worker runs under (plain data; the node maps its config onto this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// V8 heap plus ArrayBuffer bytes of the isolate.
    pub memory: u64,
    /// CPU time per invocation.
    pub cpu_time: Duration,
    /// Wall-clock time per invocation, `waitUntil` included.
    pub wall_time: Duration,
    /// CPU time for the module's top-level code.
    pub startup_time: Duration,
    /// Outbound `fetch` calls per invocation.
    pub subrequests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 * 1024 * 1024,
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            startup_time: Duration::from_secs(1),
            subrequests: 50,
        }
    }
}

/// A CPU clock of one thread, readable from any thread.
#[derive(Clone, Copy)]
pub(crate) struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The clock of the calling thread.
    pub fn current_thread() -> CpuClock {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is always valid for the calling thread and `id` is a valid
        // out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        if rc != 0 {
            id = libc::CLOCK_THREAD_CPUTIME_ID;
        }
        CpuClock(id)
    }

    pub fn now(self) -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer; an invalid clock id only makes the call fail.
        unsafe { libc::clock_gettime(self.0, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// Why a guard stopped its isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tripped {
    Cpu = 1,
    Memory = 2,
}

/// What the watchdog and the allocator share with one isolate.
pub(crate) struct Guard {
    isolate: OnceLock<v8::IsolateHandle>,
    clock: CpuClock,
    /// CPU-clock reading (ns) at which the current entry into the isolate is over budget;
    /// 0 while the isolate is not running.
    deadline_ns: AtomicU64,
    /// How long the current entry may run (ns): it cannot spend its CPU budget in less wall
    /// time, so the watchdog does not read the clock before that.
    budget_ns: AtomicU64,
    /// Wall time (ns since the watchdog's epoch) at which the current entry began.
    armed_at_ns: AtomicU64,
    tripped: AtomicU8,
}

impl Guard {
    /// A guard for the calling thread's isolate.
    pub fn new() -> Arc<Guard> {
        let guard = Arc::new(Guard {
            isolate: OnceLock::new(),
            clock: CpuClock::current_thread(),
            deadline_ns: AtomicU64::new(0),
            budget_ns: AtomicU64::new(0),
            armed_at_ns: AtomicU64::new(0),
            tripped: AtomicU8::new(0),
        });
        watchdog().register(&guard);
        guard
    }

    pub fn set_isolate(&self, handle: v8::IsolateHandle) {
        let _ = self.isolate.set(handle);
    }

    pub fn clock(&self) -> CpuClock {
        self.clock
    }

    /// Starts an entry into the isolate that may use `budget` of CPU time.
    pub fn arm(&self, cpu_now: Duration, budget: Duration) {
        let budget = budget.as_nanos().min(u64::MAX as u128 / 2) as u64;
        self.budget_ns.store(budget, Ordering::Relaxed);
        let dog = watchdog();
        self.armed_at_ns.store(dog.now_ns(), Ordering::Relaxed);
        self.deadline_ns.store(cpu_now.as_nanos() as u64 + budget, Ordering::Release);
        dog.wake();
    }

    /// Ends the current entry.
    pub fn disarm(&self) {
        self.deadline_ns.store(0, Ordering::Release);
    }

    /// Stops the isolate: `terminate_execution` from any thread. Calling it again is harmless;
    /// the first reason is kept. It cannot interrupt native code that never returns to V8.
    pub fn trip(&self, why: Tripped) {
        let _ = self.tripped.compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        if let Some(isolate) = self.isolate.get() {
            isolate.terminate_execution();
        }
    }

    pub fn tripped(&self) -> Option<Tripped> {
        match self.tripped.load(Ordering::Acquire) {
            1 => Some(Tripped::Cpu),
            2 => Some(Tripped::Memory),
            _ => None,
        }
    }

    /// Called by the watchdog: trips the guard if the current entry is over its budget.
    /// Returns whether the guard is armed.
    fn check(&self, now_ns: u64) -> bool {
        let deadline = self.deadline_ns.load(Ordering::Acquire);
        if deadline == 0 {
            return false;
        }
        let armed_at = self.armed_at_ns.load(Ordering::Relaxed);
        if now_ns.saturating_sub(armed_at) < self.budget_ns.load(Ordering::Relaxed) {
            return true; // not enough wall time has passed to spend the budget
        }
        let cpu = self.clock.now().as_nanos() as u64;
        // The entry may have ended and another begun meanwhile: only trip on the deadline read.
        if cpu >= deadline && self.deadline_ns.load(Ordering::Acquire) == deadline {
            self.trip(Tripped::Cpu);
        }
        true
    }
}

/// How often the watchdog looks at the isolates that are running.
const WATCHDOG_TICK: Duration = Duration::from_millis(1);

/// One thread for the whole process that stops isolates running past their CPU budget. It
/// looks every millisecond while any isolate is running, and sleeps while none is.
struct Watchdog {
    epoch: Instant,
    guards: Mutex<Vec<Weak<Guard>>>,
    /// Set by the watchdog before it parks; the next `arm` unparks it.
    parked: std::sync::atomic::AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            epoch: Instant::now(),
            guards: Mutex::new(Vec::new()),
            parked: std::sync::atomic::AtomicBool::new(false),
            thread: OnceLock::new(),
        }));
        let handle = std::thread::Builder::new()
            .name("cpu-watchdog".into())
            .spawn(move || dog.run())
            .expect("the watchdog thread starts");
        let _ = dog.thread.set(handle.thread().clone());
        dog
    })
}

impl Watchdog {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn register(&self, guard: &Arc<Guard>) {
        self.guards.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(guard));
    }

    /// Unparks the watchdog if it sleeps (cheap when it does not).
    fn wake(&self) {
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    fn run(&self) {
        loop {
            std::thread::sleep(WATCHDOG_TICK);
            let now = self.now_ns();
            let mut any_armed = false;
            let mut guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
            guards.retain(|weak| match weak.upgrade() {
                Some(guard) => {
                    any_armed |= guard.check(now);
                    true
                }
                None => false,
            });
            drop(guards);
            if !any_armed {
                // Nothing runs: sleep until an isolate is entered. `arm` stores its deadline
                // before it wakes us, so a guard armed after this look is seen next time.
                self.parked.store(true, Ordering::Release);
                let armed_meanwhile = self
                    .guards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter_map(Weak::upgrade)
                    .any(|g| g.deadline_ns.load(Ordering::Acquire) != 0);
                if !armed_meanwhile {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::Release);
            }
        }
    }
}

/// Counts the bytes of every ArrayBuffer of one isolate. An allocation that would take the
/// isolate past its memory limit (heap included) stops the isolate with `exceeded_memory`.
///
/// Memory V8 holds outside its heap without this allocator (buffers an op made in Rust and
/// handed over, WebAssembly memories) is V8's "external memory". It counts buffers that are
/// garbage until a collection frees them, so the exact check is made where the worker can
/// collect first ([`ArrayBufferBudget::over_after_collecting`]: after every entry and before a
/// response leaves); inside a long entry a coarser guard stops an isolate whose heap and
/// external memory pass twice its limit after a collection (V8 collects as external memory
/// grows).
pub(crate) struct ArrayBufferBudget {
    used: AtomicUsize,
    /// The V8 heap's size at the last look, kept by the worker after each entry.
    heap_used: AtomicUsize,
    /// V8's external memory at the last look.
    external: AtomicUsize,
    limit: usize,
    guard: Arc<Guard>,
}

impl ArrayBufferBudget {
    pub fn new(limit: u64, guard: Arc<Guard>) -> Arc<ArrayBufferBudget> {
        Arc::new(ArrayBufferBudget {
            used: AtomicUsize::new(0),
            heap_used: AtomicUsize::new(0),
            external: AtomicUsize::new(0),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            guard,
        })
    }

    /// Notes the size of the V8 heap now.
    pub fn set_heap_used(&self, bytes: usize) {
        self.heap_used.store(bytes, Ordering::Relaxed);
    }

    /// Whether the isolate is over its limit once its garbage is collected: a collection is
    /// made only when the heap at the last look and the external memory now (garbage
    /// included) are over it. Stops the isolate if it is. Cheap when under: one read of a
    /// counter.
    pub fn over_after_collecting(&self, isolate: &mut v8::Isolate) -> bool {
        if !self.external_over(isolate) {
            return false;
        }
        isolate.low_memory_notification();
        self.heap_used.store(isolate.get_heap_statistics().used_heap_size(), Ordering::Relaxed);
        let over = self.external_over(isolate);
        if over {
            self.guard.trip(Tripped::Memory);
        }
        over
    }

    /// Reads V8's external memory now (its own counter: the heap statistics' figure leaves out
    /// WebAssembly memories); whether with the heap at the last look it is over the limit.
    fn external_over(&self, isolate: &mut v8::Isolate) -> bool {
        let external = isolate.adjust_amount_of_external_allocated_memory(0);
        self.external.store(usize::try_from(external).unwrap_or(0), Ordering::Relaxed);
        self.in_use() > self.limit
    }

    /// Bytes outside the heap: this allocator's, or V8's external memory at the last look if
    /// it is more (it counts the allocator's buffers too, and those made elsewhere).
    fn outside_heap(&self, allocated: usize) -> usize {
        allocated.max(self.external.load(Ordering::Relaxed))
    }

    /// The V8 heap and the external memory at the last look, or the ArrayBuffer bytes now.
    pub fn in_use(&self) -> usize {
        self.outside_heap(self.used.load(Ordering::Relaxed))
            .saturating_add(self.heap_used.load(Ordering::Relaxed))
    }

    fn reserve(&self, len: usize) -> bool {
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        let total =
            before.saturating_add(len).saturating_add(self.heap_used.load(Ordering::Relaxed));
        if total > self.limit {
            self.used.fetch_sub(len, Ordering::Relaxed);
            self.guard.trip(Tripped::Memory);
            return false;
        }
        true
    }

    /// A V8 ArrayBuffer allocator backed by this budget.
    pub fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
        static VTABLE: v8::RustAllocatorVtable<ArrayBufferBudget> =
            v8::RustAllocatorVtable { allocate, allocate_uninitialized, free, drop: drop_budget };
        let handle = Arc::into_raw(self.clone());
        // SAFETY: `handle` is a live Arc that the allocator owns until `drop_budget`, and the
        // vtable's functions expect exactly this type.
        unsafe { v8::new_rust_allocator(handle, &VTABLE) }
    }
}

/// A GC epilogue callback (`data` is the isolate's [`ArrayBufferBudget`]): V8 collects as its
/// external memory grows, so a function piling up buffers that no allocator of ours made is
/// stopped here within one long entry, once its heap and external memory pass twice its limit
/// (external memory may still count buffers this collection found dead).
pub(crate) unsafe extern "C" fn check_after_gc(
    isolate: v8::UnsafeRawIsolatePtr,
    _type: v8::GCType,
    _flags: v8::GCCallbackFlags,
    data: *mut c_void,
) {
    // SAFETY: V8 calls this on the isolate's own thread, with the isolate alive; `data` is the
    // budget the isolate's allocator keeps alive for as long as the isolate.
    let (mut isolate, budget) = unsafe {
        (v8::Isolate::from_raw_isolate_ptr_unchecked(isolate), &*(data as *const ArrayBufferBudget))
    };
    budget.set_heap_used(isolate.get_heap_statistics().used_heap_size());
    budget.external_over(&mut isolate);
    if budget.in_use() / 2 > budget.limit {
        budget.guard.trip(Tripped::Memory);
    }
}

unsafe extern "C" fn allocate(budget: &ArrayBufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc with a non-zero size; a null result is reported to V8 as a failure.
    let ptr = unsafe { libc::calloc(len.max(1), 1) };
    if ptr.is_null() {
        budget.used.fetch_sub(len, Ordering::Relaxed);
    }
    ptr
}

unsafe extern "C" fn allocate_uninitialized(budget: &ArrayBufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: as in `allocate`.
    let ptr = unsafe { libc::malloc(len.max(1)) };
    if ptr.is_null() {
        budget.used.fetch_sub(len, Ordering::Relaxed);
    }
    ptr
}

unsafe extern "C" fn free(budget: &ArrayBufferBudget, data: *mut c_void, len: usize) {
    // SAFETY: V8 frees only what this allocator returned, with the length it asked for.
    unsafe { libc::free(data) };
    budget.used.fetch_sub(len, Ordering::Relaxed);
}

unsafe extern "C" fn drop_budget(budget: *const ArrayBufferBudget) {
    // SAFETY: the pointer came from `Arc::into_raw` in `allocator` and is dropped once.
    drop(unsafe { Arc::from_raw(budget) });
}

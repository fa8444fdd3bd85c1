//! The thread CPU clock and the watchdog: one thread for the process that stops an isolate
//! whose current entry has spent its CPU budget.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use deno_core::v8;

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

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
    /// How much later than `deadline_ns` the current entry is over budget (ns), as the meter
    /// sets it when an invocation begins in the entry (see [`Guard::extension`]).
    extra_ns: Arc<AtomicU64>,
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
            extra_ns: Arc::new(AtomicU64::new(0)),
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

    /// What moves the current entry's deadline later: the meter stores there, as an
    /// invocation begins in the entry, how much later than the armed deadline the entry is
    /// now over budget. An entry runs many invocations one after another (all those waiting
    /// are taken in one go), and the budget bounds what runs from the last one begun, not
    /// their sum: the meter counts what ran so far as its wall time (an upper bound of its
    /// CPU time) plus what the most spent live invocation has left, each one's part of the
    /// entry counted against it. Only the runtime begins invocations (a request taken from
    /// the inbox), so code cannot move the deadline itself.
    pub fn extension(&self) -> Arc<AtomicU64> {
        self.extra_ns.clone()
    }

    /// Starts an entry into the isolate that may use `budget` of CPU time.
    pub fn arm(&self, cpu_now: Duration, budget: Duration) {
        let budget = budget.as_nanos().min(u64::MAX as u128 / 2) as u64;
        self.extra_ns.store(0, Ordering::Relaxed);
        self.budget_ns.store(budget, Ordering::Relaxed);
        let dog = watchdog();
        let now = dog.now_ns();
        self.armed_at_ns.store(now, Ordering::Relaxed);
        self.deadline_ns.store(cpu_now.as_nanos() as u64 + budget, Ordering::SeqCst);
        // The entry cannot have spent its budget before `now + budget`.
        dog.wake_by(now.saturating_add(budget));
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
    /// Answers when the entry could have spent its budget at the earliest (watchdog time, ns),
    /// or `None` when the isolate is not running (or was just stopped).
    fn check(&self, now_ns: u64) -> Option<u64> {
        let deadline = self.deadline_ns.load(Ordering::Acquire);
        if deadline == 0 {
            return None;
        }
        let armed_at = self.armed_at_ns.load(Ordering::Relaxed);
        let budget = self.budget_ns.load(Ordering::Relaxed);
        let extra = self.extra_ns.load(Ordering::Acquire);
        if now_ns.saturating_sub(armed_at) < budget.saturating_add(extra) {
            // Not enough wall time has passed to spend the budget.
            return Some(armed_at.saturating_add(budget).saturating_add(extra));
        }
        let cpu = self.clock.now().as_nanos() as u64;
        // The entry may have ended and another begun meanwhile, or an invocation begun in it
        // moved the deadline: only trip on the deadline read after the clock.
        let extra = self.extra_ns.load(Ordering::Acquire);
        let deadline = deadline.saturating_add(extra);
        if cpu >= deadline
            && self.deadline_ns.load(Ordering::Acquire).saturating_add(extra) == deadline
        {
            self.trip(Tripped::Cpu);
            return None;
        }
        // A thread's CPU clock runs no faster than the wall clock.
        Some(now_ns.saturating_add(deadline.saturating_sub(cpu).max(MIN_RECHECK_NS)))
    }
}

/// The soonest the watchdog looks again at an entry that has run for its budget in wall time
/// but not yet spent it (it was not running all along).
const MIN_RECHECK_NS: u64 = 100_000;

/// How long the watchdog sleeps when no isolate is running before it looks again (an entry
/// armed with a nearer deadline wakes it sooner); after `IDLE_LOOKS` such looks in a row it
/// sleeps until an entry is armed.
const IDLE_NS: u64 = 10_000_000;
const IDLE_LOOKS: u32 = 10;

/// One thread for the whole process that stops isolates running past their CPU budget. It
/// sleeps until the earliest moment an armed entry can have spent its budget (an entry cannot
/// spend CPU time faster than wall time), not on a fixed tick: under load it wakes a few dozen
/// times a second, not a thousand. An entry armed with a nearer deadline wakes it; with no
/// isolate running for a while, it sleeps until one is.
struct Watchdog {
    epoch: Instant,
    guards: Mutex<Vec<Weak<Guard>>>,
    /// When the watchdog looks next (ns since `epoch`); `u64::MAX` while it is looking, and
    /// while it sleeps until an entry is armed.
    next_look_ns: AtomicU64,
    thread: OnceLock<std::thread::Thread>,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            epoch: Instant::now(),
            guards: Mutex::new(Vec::new()),
            next_look_ns: AtomicU64::new(u64::MAX),
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

    /// Wakes the watchdog if it would look later than `by` (ns since `epoch`).
    fn wake_by(&self, by: u64) {
        if by < self.next_look_ns.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    fn run(&self) {
        let mut idle_looks = 0u32;
        loop {
            // Published before looking: an entry armed while the guards are read, or later,
            // finds the watchdog due at once and unparks it, so the park below returns at once
            // and it looks again.
            self.next_look_ns.store(u64::MAX, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            let now = self.now_ns();
            let mut next: Option<u64> = None;
            let mut guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
            guards.retain(|weak| match weak.upgrade() {
                Some(guard) => {
                    if let Some(at) = guard.check(now) {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                    true
                }
                None => false,
            });
            drop(guards);
            let next = match next {
                Some(at) => {
                    idle_looks = 0;
                    Some(at)
                }
                None if idle_looks < IDLE_LOOKS => {
                    idle_looks += 1;
                    Some(now.saturating_add(IDLE_NS))
                }
                None => None,
            };
            match next {
                Some(at) => {
                    self.next_look_ns.store(at, Ordering::SeqCst);
                    let now = self.now_ns();
                    if at > now {
                        std::thread::park_timeout(Duration::from_nanos(at - now));
                    }
                }
                // No isolate has run for a while: sleep until one is entered.
                None => std::thread::park(),
            }
        }
    }
}

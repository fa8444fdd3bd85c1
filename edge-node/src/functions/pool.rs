//! The isolates of one function: reuse a warm one with room (warm start), start another up to
//! the function's and the node's maximum (cold start), otherwise wait in a bounded queue for a
//! bounded time, otherwise shed the request. [`decide`] is the policy, plain code; [`Isolates`]
//! applies it under one lock, so a warm start costs a lock and no task switch, and the policy
//! still runs in one place and in arrival order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use js_runtime::{Outcome, WorkerHandle};
use tokio::sync::{oneshot, Notify};

/// How a function's isolates are kept (from `[pool]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// The most isolates one function may have.
    pub max_per_function: usize,
    /// The most invocations one isolate runs at once.
    pub concurrency: usize,
    /// The most requests waiting for room.
    pub max_queue: usize,
    /// How long a request waits before it is shed.
    pub queue_timeout: Duration,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it on isolate `i`, the least loaded one with room.
    Use(usize),
    /// Start a new isolate for it.
    Start,
    /// Wait for room.
    Wait,
    /// Refuse it (`load_shed`).
    Shed,
}

/// The pool's policy. `loads[i]` is how many invocations isolate `i` runs; `starting` how
/// many isolates of this function are being started; `waiting` how many requests wait;
/// `node_isolates` how many isolates the node has, of `node_max`.
pub fn decide(
    settings: &PoolSettings,
    loads: &[usize],
    starting: usize,
    waiting: usize,
    node_isolates: usize,
    node_max: usize,
) -> Decision {
    let roomiest = loads
        .iter()
        .enumerate()
        .filter(|(_, load)| **load < settings.concurrency)
        .min_by_key(|(_, load)| **load);
    if let Some((i, _)) = roomiest {
        return Decision::Use(i);
    }
    if loads.len() + starting < settings.max_per_function && node_isolates + starting < node_max {
        return Decision::Start;
    }
    if waiting < settings.max_queue {
        return Decision::Wait;
    }
    Decision::Shed
}

struct Slot {
    id: u64,
    /// Shared with the leases: one count to take and give back per request.
    handle: Arc<WorkerHandle>,
    load: usize,
    /// When the isolate last became idle (its load fell to 0).
    last_used: Instant,
}

impl Slot {
    /// Whether the isolate is in use: requests in flight, or WebSockets open (an isolate
    /// with a socket is never scaled away under it).
    fn busy(&self) -> bool {
        self.load > 0 || self.handle.sockets_open() > 0
    }
}

/// Why no isolate could take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The pool is full and the wait queue is full or timed out.
    Shed,
    /// The function cannot start.
    Broken(Outcome),
}

/// What a request is granted.
enum Grant {
    /// Run on this isolate (its load already counts the request).
    Use {
        id: u64,
        handle: Arc<WorkerHandle>,
    },
    /// Start an isolate (the caller does, then reports it with [`State::started`]).
    Start {
        ticket: u64,
    },
    Refused(Refusal),
}

/// The running isolates of one function.
pub struct Isolates {
    shared: Arc<Shared>,
    cold_starts: AtomicU64,
}

/// What the pool's handles, its leases and its timer share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the timer that sheds waiters whose time is up (a new waiter, or the pool gone).
    timer: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to the pool, then gives the room it made to waiting requests.
    fn settle(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        change(&mut state);
        state.serve_waiters();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.timer.notify_one();
    }
}

/// One invocation's hold on an isolate; dropping it gives the room back.
pub struct Lease {
    shared: Arc<Shared>,
    id: u64,
    pub handle: Arc<WorkerHandle>,
    /// How long starting the isolate took, when this lease started it (a cold start).
    pub cold: Option<Duration>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.settle(|state| state.release(self.id));
    }
}

/// A request waiting for room. Dropped (its caller gave up) after room was granted but
/// before the grant was taken, it gives the room back.
struct Waiting {
    shared: Arc<Shared>,
    answer: oneshot::Receiver<Grant>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.answer.close();
        let Ok(grant) = self.answer.try_recv() else { return };
        self.shared.settle(|state| match grant {
            Grant::Use { id, .. } => state.release(id),
            Grant::Start { ticket } => state.started(ticket, Err(Outcome::Canceled)),
            Grant::Refused(_) => {}
        });
    }
}

/// A granted start; dropped before it is reported, it counts as given up.
struct StartTicket {
    shared: Arc<Shared>,
    ticket: Option<u64>,
}

impl StartTicket {
    fn report(mut self, result: Result<Arc<WorkerHandle>, Outcome>) {
        let ticket = self.ticket.take().expect("reported once");
        self.shared.settle(|state| state.started(ticket, result));
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.settle(|state| state.started(ticket, Err(Outcome::Canceled)));
        }
    }
}

impl Isolates {
    /// Makes the pool, and its timer on the current tokio runtime.
    pub fn new(
        settings: PoolSettings,
        node_isolates: Arc<AtomicUsize>,
        node_max: usize,
    ) -> Isolates {
        let timer = Arc::new(Notify::new());
        let state = State {
            settings,
            node_isolates,
            node_max,
            slots: Vec::new(),
            starting: 0,
            waiters: VecDeque::new(),
            broken: None,
            next_id: 0,
            loads: Vec::new(),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), timer: timer.clone() });
        tokio::spawn(shed_expired(Arc::downgrade(&shared), timer));
        Isolates { shared, cold_starts: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Finds room for one invocation: a warm isolate, a new one (started here with `start`),
    /// or a place in the wait queue until one frees up; refused when none comes in time.
    pub async fn acquire<F, Fut>(&self, start: F) -> Result<Lease, Refusal>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<WorkerHandle, Outcome>>,
    {
        let granted = self.lock().grant();
        let grant = match granted {
            Ok(grant) => grant,
            Err(answer) => {
                self.shared.timer.notify_one();
                let mut waiting = Waiting { shared: self.shared.clone(), answer };
                (&mut waiting.answer)
                    .await
                    .unwrap_or(Grant::Refused(Refusal::Broken(Outcome::Internal)))
            }
        };
        match grant {
            Grant::Use { id, handle } => {
                Ok(Lease { shared: self.shared.clone(), id, handle, cold: None })
            }
            Grant::Start { ticket } => {
                let guard = StartTicket { shared: self.shared.clone(), ticket: Some(ticket) };
                self.cold_starts.fetch_add(1, Ordering::Relaxed);
                let starting = Instant::now();
                // Boxed: inline, the start's future would make every request's future (moved
                // whole as it is awaited) larger by its size.
                let started = Box::pin(start()).await.map(Arc::new);
                let took = starting.elapsed();
                guard.report(started.clone());
                match started {
                    Ok(handle) => Ok(Lease {
                        shared: self.shared.clone(),
                        id: ticket,
                        handle,
                        cold: Some(took),
                    }),
                    Err(outcome) => Err(Refusal::Broken(outcome)),
                }
            }
            Grant::Refused(refusal) => Err(refusal),
        }
    }

    /// Bytes the function's isolates hold (V8 heap and ArrayBuffers), as last measured.
    pub fn memory_used(&self) -> u64 {
        self.lock().slots.iter().map(|s| s.handle.memory_used()).sum()
    }

    /// Requests waiting for an isolate now.
    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Forgets isolates that a limit stopped.
    pub fn prune_dead(&self) {
        self.lock().prune();
    }

    /// Drops isolates with nothing in flight for `idle` (scale to zero); answers how many.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let mut state = self.lock();
        let before = state.slots.len();
        state.slots.retain(|s| s.busy() || s.last_used.elapsed() < idle);
        let evicted = before - state.slots.len();
        state.node_isolates.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    /// When the least recently used idle isolate of this function was last used.
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.lock().slots.iter().filter(|s| !s.busy()).map(|s| s.last_used).min()
    }

    /// Drops the least recently used idle isolate; whether there was one.
    pub fn evict_oldest_idle(&self) -> bool {
        let mut state = self.lock();
        let oldest = state
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.busy())
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            state.slots.remove(i);
            state.node_isolates.fetch_sub(1, Ordering::Relaxed);
        }
        oldest.is_some()
    }

    /// Isolates alive now.
    pub fn alive(&self) -> usize {
        self.lock().slots.iter().filter(|s| s.handle.is_alive()).count()
    }

    /// Isolates started so far.
    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    /// Whether the function's last start failed.
    pub fn is_broken(&self) -> bool {
        self.lock().broken.is_some()
    }
}

/// Sheds waiters whose time is up, until the pool is gone.
async fn shed_expired(shared: Weak<Shared>, timer: Arc<Notify>) {
    loop {
        let deadline = match shared.upgrade() {
            Some(shared) => {
                let mut state = shared.lock();
                state.expire();
                state.waiters.front().map(|(_, d)| *d)
            }
            None => return,
        };
        tokio::select! {
            _ = sleep_until(deadline) => {}
            _ = timer.notified() => {}
        }
    }
}

/// A function whose last start failed.
#[derive(Debug, Clone, Copy)]
struct Broken {
    outcome: Outcome,
    /// Failed starts in a row.
    failures: u32,
    /// Until then requests are refused with `outcome`; the first one after starts again.
    retry_at: Instant,
}

/// How long after the `failures`-th failed start in a row the next start is tried: 1 s, then
/// doubling up to a minute. A start that failed on something passing (a dependency down at
/// start-up) recovers by itself; one that always fails costs one start a minute.
pub fn start_backoff(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const MOST: Duration = Duration::from_secs(60);
    FIRST.saturating_mul(1 << failures.saturating_sub(1).min(6)).min(MOST)
}

/// A function's isolates and the requests waiting for them.
struct State {
    settings: PoolSettings,
    /// Isolates alive on the whole node, and the most it may have.
    node_isolates: Arc<AtomicUsize>,
    node_max: usize,
    slots: Vec<Slot>,
    starting: usize,
    /// Requests waiting for room, oldest first, with the time they give up.
    waiters: VecDeque<(oneshot::Sender<Grant>, tokio::time::Instant)>,
    /// Set while the function's last start failed: requests answer its outcome until the
    /// next start may be tried.
    broken: Option<Broken>,
    next_id: u64,
    /// Scratch room for `decide`'s view of the slots, kept so a request allocates nothing.
    loads: Vec<usize>,
}

impl Drop for State {
    fn drop(&mut self) {
        self.node_isolates.fetch_sub(self.slots.len(), Ordering::Relaxed);
    }
}

impl State {
    /// A grant for a request, or its place in the wait queue.
    fn grant(&mut self) -> Result<Grant, oneshot::Receiver<Grant>> {
        self.prune();
        // After a failed start, requests are refused until the next start may be tried; then
        // one start is tried at a time, and the requests meanwhile wait for it.
        let retrying = match self.broken {
            Some(broken) if Instant::now() < broken.retry_at => {
                return Ok(Grant::Refused(Refusal::Broken(broken.outcome)));
            }
            Some(_) => self.starting > 0,
            None => false,
        };
        // Those already waiting go first.
        if self.waiters.is_empty() && !retrying {
            if let Some(grant) = self.decide() {
                return Ok(grant);
            }
        }
        if self.waiters.len() >= self.settings.max_queue {
            return Ok(Grant::Refused(Refusal::Shed));
        }
        let (reply, answer) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.settings.queue_timeout;
        self.waiters.push_back((reply, deadline));
        Err(answer)
    }

    /// A start granted earlier has ended.
    fn started(&mut self, ticket: u64, result: Result<Arc<WorkerHandle>, Outcome>) {
        self.starting -= 1;
        match result {
            Ok(handle) => {
                self.broken = None;
                self.node_isolates.fetch_add(1, Ordering::Relaxed);
                self.slots.push(Slot { id: ticket, handle, load: 1, last_used: Instant::now() });
            }
            Err(Outcome::Canceled) => {}
            Err(outcome) => {
                let failures = self.broken.map_or(0, |b| b.failures) + 1;
                let retry_at = Instant::now() + start_backoff(failures);
                self.broken = Some(Broken { outcome, failures, retry_at });
                for (waiter, _) in self.waiters.drain(..) {
                    let _ = waiter.send(Grant::Refused(Refusal::Broken(outcome)));
                }
            }
        }
    }

    /// An invocation left isolate `id`.
    fn release(&mut self, id: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
            slot.load = slot.load.saturating_sub(1);
            if slot.load == 0 {
                slot.last_used = Instant::now();
            }
        }
    }

    /// Applies the policy for one request; `None` means it waits.
    fn decide(&mut self) -> Option<Grant> {
        self.loads.clear();
        self.loads.extend(self.slots.iter().map(|s| s.load));
        let node = self.node_isolates.load(Ordering::Relaxed);
        match decide(&self.settings, &self.loads, self.starting, 0, node, self.node_max) {
            Decision::Use(i) => {
                let slot = &mut self.slots[i];
                slot.load += 1;
                // `last_used` is when the isolate last became idle: it only matters then.
                Some(Grant::Use { id: slot.id, handle: slot.handle.clone() })
            }
            Decision::Start => {
                self.starting += 1;
                let ticket = self.next_id;
                self.next_id += 1;
                Some(Grant::Start { ticket })
            }
            Decision::Wait => None,
            Decision::Shed => Some(Grant::Refused(Refusal::Shed)),
        }
    }

    /// Gives room to waiting requests, oldest first, while there is some.
    fn serve_waiters(&mut self) {
        self.prune();
        while let Some((waiter, _)) = self.waiters.front() {
            if waiter.is_closed() {
                self.waiters.pop_front();
                continue;
            }
            match self.decide() {
                Some(Grant::Refused(_)) | None => break,
                Some(grant) => {
                    let (waiter, _) = self.waiters.pop_front().expect("a waiter");
                    // A waiter that gave up just now: what it was granted goes back.
                    match waiter.send(grant) {
                        Err(Grant::Use { id, .. }) => {
                            if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
                                slot.load -= 1;
                            }
                        }
                        Err(Grant::Start { .. }) => self.starting -= 1,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sheds the waiters whose time is up.
    fn expire(&mut self) {
        let now = tokio::time::Instant::now();
        while self.waiters.front().is_some_and(|(_, d)| *d <= now) {
            let (waiter, _) = self.waiters.pop_front().expect("a waiter");
            let _ = waiter.send(Grant::Refused(Refusal::Shed));
        }
    }

    /// Forgets isolates a limit stopped.
    fn prune(&mut self) {
        let before = self.slots.len();
        self.slots.retain(|s| s.handle.is_alive());
        self.node_isolates.fetch_sub(before - self.slots.len(), Ordering::Relaxed);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: PoolSettings = PoolSettings {
        max_per_function: 2,
        concurrency: 2,
        max_queue: 1,
        queue_timeout: Duration::from_secs(1),
    };

    #[test]
    fn reuse_start_wait_shed() {
        assert_eq!(decide(&S, &[], 0, 0, 0, 10), Decision::Start, "cold start");
        assert_eq!(decide(&S, &[1], 0, 0, 1, 10), Decision::Use(0), "warm start");
        let least = decide(&S, &[2, 1], 0, 0, 2, 10);
        assert_eq!(least, Decision::Use(1), "least loaded with room");
        let busy = decide(&S, &[2], 0, 0, 1, 10);
        assert_eq!(busy, Decision::Start, "all busy: another isolate");
        let starting = decide(&S, &[2], 1, 0, 1, 10);
        assert_eq!(starting, Decision::Wait, "the second is starting");
        let full = decide(&S, &[2, 2], 0, 0, 2, 10);
        assert_eq!(full, Decision::Wait, "at the function's maximum");
        let shed = decide(&S, &[2, 2], 0, 1, 2, 10);
        assert_eq!(shed, Decision::Shed, "and the queue is full");
        let node = decide(&S, &[2], 0, 0, 10, 10);
        assert_eq!(node, Decision::Wait, "at the node's maximum");
    }

    #[test]
    fn failed_starts_are_tried_again_later_and_later_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| start_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(start_backoff(u32::MAX), Duration::from_secs(60));
    }
}

//! The isolates of one function: reuse a warm one with room (warm start), start another up to
//! the function's and the node's maximum (cold start), otherwise wait in a bounded queue for a
//! bounded time, otherwise shed the request. [`decide`] is the policy, plain code; [`Isolates`]
//! applies it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use js_runtime::{Outcome, WorkerHandle};
use tokio::sync::Notify;

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
    /// Run it on isolate `i` (the least loaded one with room).
    Use(usize),
    /// Start a new isolate for it.
    Start,
    /// Wait for room.
    Wait,
    /// Refuse it (`load_shed`).
    Shed,
}

/// The pool's policy. `loads[i]` is how many invocations isolate `i` runs; `starting` how many
/// isolates of this function are being started; `waiting` how many requests wait;
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
    handle: WorkerHandle,
    load: usize,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    starting: usize,
    waiting: usize,
    next_id: u64,
    /// Set when the function cannot start; every request answers this outcome.
    broken: Option<Outcome>,
}

/// The running isolates of one function.
pub struct Isolates {
    settings: PoolSettings,
    state: Mutex<State>,
    room: Notify,
    /// Isolates alive on the whole node, and the most it may have.
    node_isolates: Arc<AtomicUsize>,
    node_max: usize,
    cold_starts: AtomicU64,
}

/// One invocation's hold on an isolate; dropping it gives the room back.
pub struct Lease<'a> {
    pool: &'a Isolates,
    id: u64,
    pub handle: WorkerHandle,
    /// How long starting the isolate took, when this lease started it (a cold start).
    pub cold: Option<Duration>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        if let Some(slot) = state.slots.iter_mut().find(|s| s.id == self.id) {
            slot.load = slot.load.saturating_sub(1);
            slot.last_used = Instant::now();
        }
        drop(state);
        self.pool.room.notify_one();
    }
}

/// Why no isolate could take a request.
pub enum Refusal {
    /// The pool is full and the wait queue is full or timed out.
    Shed,
    /// The function cannot start.
    Broken(Outcome),
}

impl Isolates {
    pub fn new(
        settings: PoolSettings,
        node_isolates: Arc<AtomicUsize>,
        node_max: usize,
    ) -> Isolates {
        Isolates {
            settings,
            state: Mutex::new(State::default()),
            room: Notify::new(),
            node_isolates,
            node_max,
            cold_starts: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops isolates a limit has stopped.
    fn prune(&self, state: &mut State) {
        let before = state.slots.len();
        state.slots.retain(|s| s.handle.is_alive());
        self.node_isolates.fetch_sub(before - state.slots.len(), Ordering::Relaxed);
    }

    /// Gets room on an isolate, starting one with `start` when the policy says so.
    pub async fn acquire<F, Fut>(&self, start: F) -> Result<Lease<'_>, Refusal>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<WorkerHandle, Outcome>>,
    {
        let deadline = tokio::time::Instant::now() + self.settings.queue_timeout;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            let decision = {
                let mut state = self.lock();
                if let Some(outcome) = state.broken {
                    return Err(Refusal::Broken(outcome));
                }
                self.prune(&mut state);
                let loads: Vec<usize> = state.slots.iter().map(|s| s.load).collect();
                let node = self.node_isolates.load(Ordering::Relaxed);
                let decision = decide(
                    &self.settings,
                    &loads,
                    state.starting,
                    state.waiting,
                    node,
                    self.node_max,
                );
                match decision {
                    Decision::Use(i) => {
                        let slot = &mut state.slots[i];
                        slot.load += 1;
                        slot.last_used = Instant::now();
                        return Ok(Lease {
                            pool: self,
                            id: slot.id,
                            handle: slot.handle.clone(),
                            cold: None,
                        });
                    }
                    Decision::Start => state.starting += 1,
                    Decision::Wait => {
                        state.waiting += 1;
                        room.as_mut().enable();
                    }
                    Decision::Shed => return Err(Refusal::Shed),
                }
                decision
            };
            if decision == Decision::Start {
                self.cold_starts.fetch_add(1, Ordering::Relaxed);
                let starting = Instant::now();
                let started = start().await;
                let took = starting.elapsed();
                let mut state = self.lock();
                state.starting -= 1;
                match started {
                    Ok(handle) => {
                        self.node_isolates.fetch_add(1, Ordering::Relaxed);
                        let id = state.next_id;
                        state.next_id += 1;
                        state.slots.push(Slot {
                            id,
                            handle: handle.clone(),
                            load: 1,
                            last_used: Instant::now(),
                        });
                        return Ok(Lease { pool: self, id, handle, cold: Some(took) });
                    }
                    Err(outcome) => {
                        state.broken = Some(outcome);
                        drop(state);
                        self.room.notify_waiters();
                        return Err(Refusal::Broken(outcome));
                    }
                }
            }
            let timed_out = tokio::time::timeout_at(deadline, room).await.is_err();
            self.lock().waiting -= 1;
            if timed_out {
                return Err(Refusal::Shed);
            }
        }
    }

    /// Bytes the function's isolates hold (V8 heap and ArrayBuffers), as last measured.
    pub fn memory_used(&self) -> u64 {
        self.lock().slots.iter().map(|s| s.handle.memory_used()).sum()
    }

    /// Requests waiting for an isolate now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Forgets isolates that a limit stopped.
    pub fn prune_dead(&self) {
        let mut state = self.lock();
        self.prune(&mut state);
    }

    /// Drops isolates with nothing in flight for `idle` (scale to zero).
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let mut state = self.lock();
        let before = state.slots.len();
        state.slots.retain(|s| s.load > 0 || s.last_used.elapsed() < idle);
        let evicted = before - state.slots.len();
        self.node_isolates.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    /// When the least recently used idle isolate of this function was last used.
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.lock().slots.iter().filter(|s| s.load == 0).map(|s| s.last_used).min()
    }

    /// Drops the least recently used idle isolate; whether there was one.
    pub fn evict_oldest_idle(&self) -> bool {
        let mut state = self.lock();
        let oldest = state
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.load == 0)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                state.slots.remove(i);
                self.node_isolates.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Isolates alive now.
    pub fn alive(&self) -> usize {
        self.lock().slots.iter().filter(|s| s.handle.is_alive()).count()
    }

    /// Isolates started so far.
    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    /// Whether the function could start.
    pub fn is_broken(&self) -> bool {
        self.lock().broken.is_some()
    }
}

impl Drop for Isolates {
    fn drop(&mut self) {
        let alive = self.lock().slots.len();
        self.node_isolates.fetch_sub(alive, Ordering::Relaxed);
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
        assert_eq!(decide(&S, &[2, 1], 0, 0, 2, 10), Decision::Use(1), "least loaded with room");
        assert_eq!(decide(&S, &[2], 0, 0, 1, 10), Decision::Start, "all busy: another isolate");
        assert_eq!(decide(&S, &[2], 1, 0, 1, 10), Decision::Wait, "the second is starting");
        assert_eq!(decide(&S, &[2, 2], 0, 0, 2, 10), Decision::Wait, "at the function's maximum");
        assert_eq!(decide(&S, &[2, 2], 0, 1, 2, 10), Decision::Shed, "and the queue is full");
        assert_eq!(decide(&S, &[2], 0, 0, 10, 10), Decision::Wait, "at the node's maximum");
    }
}

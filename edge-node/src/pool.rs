//! The isolates of one function: reuse a warm one with room (warm start), start another up to
//! the function's and the node's maximum (cold start), otherwise wait in a bounded queue for a
//! bounded time, otherwise shed the request. [`decide`] is the policy, plain code; an actor (one
//! task per function, reached over a bounded channel) applies it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use js_runtime::{Outcome, WorkerHandle};
use tokio::sync::{mpsc, oneshot};

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

/// Why no isolate could take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The pool is full and the wait queue is full or timed out.
    Shed,
    /// The function cannot start.
    Broken(Outcome),
}

/// What the actor answers an acquire with.
enum Grant {
    /// Run on this isolate (its load already counts the request).
    Use {
        id: u64,
        handle: WorkerHandle,
    },
    /// Start an isolate (the caller does, then reports [`Msg::Started`] with this ticket).
    Start {
        ticket: u64,
    },
    Refused(Refusal),
}

/// What the pool's actor is asked.
enum Msg {
    Acquire(oneshot::Sender<Grant>),
    /// A start the actor granted has ended; `Err(Outcome::Canceled)` when the caller gave up.
    /// `seen` is answered once the pool's view shows it.
    Started {
        ticket: u64,
        result: Result<WorkerHandle, Outcome>,
        seen: Option<oneshot::Sender<()>>,
    },
    /// An invocation left its isolate.
    Release(u64),
    /// Forget isolates a limit stopped.
    Prune,
    EvictIdle(Duration, oneshot::Sender<usize>),
    EvictOldestIdle(oneshot::Sender<bool>),
}

/// What the actor last saw, for the synchronous queries (metrics, the sweeper's choice).
#[derive(Default)]
struct View {
    handles: Vec<WorkerHandle>,
    waiting: usize,
    broken: Option<Outcome>,
    oldest_idle: Option<Instant>,
}

/// The running isolates of one function: a handle to the actor that owns them. One task
/// holds the pool's state; callers talk to it over a bounded channel, so the policy runs in
/// one place and in arrival order.
pub struct Isolates {
    tx: mpsc::Sender<Msg>,
    view: Arc<Mutex<View>>,
    cold_starts: Arc<AtomicU64>,
}

/// Messages the actor can hold before senders wait.
const MAILBOX: usize = 1024;

/// One invocation's hold on an isolate; dropping it gives the room back.
pub struct Lease {
    tx: mpsc::Sender<Msg>,
    id: u64,
    pub handle: WorkerHandle,
    /// How long starting the isolate took, when this lease started it (a cold start).
    pub cold: Option<Duration>,
}

/// Sends a message from a destructor: at once if the mailbox has room, else from a task.
fn post(tx: &mpsc::Sender<Msg>, msg: Msg) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tx = tx.clone();
            runtime.spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        post(&self.tx, Msg::Release(self.id));
    }
}

/// Reports a granted start that its caller dropped before it ended.
struct StartTicket {
    tx: mpsc::Sender<Msg>,
    ticket: Option<u64>,
}

impl StartTicket {
    fn report(
        mut self,
        result: Result<WorkerHandle, Outcome>,
    ) -> impl std::future::Future<Output = ()> {
        let ticket = self.ticket.take().expect("reported once");
        let tx = self.tx.clone();
        async move {
            let (seen, shown) = oneshot::channel();
            if tx.send(Msg::Started { ticket, result, seen: Some(seen) }).await.is_ok() {
                let _ = shown.await;
            }
        }
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            post(&self.tx, Msg::Started { ticket, result: Err(Outcome::Canceled), seen: None });
        }
    }
}

impl Isolates {
    /// Starts the pool's actor (on the current tokio runtime).
    pub fn new(
        settings: PoolSettings,
        node_isolates: Arc<AtomicUsize>,
        node_max: usize,
    ) -> Isolates {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let view = Arc::new(Mutex::new(View::default()));
        let actor = Actor {
            settings,
            node_isolates,
            node_max,
            slots: Vec::new(),
            starting: 0,
            waiters: VecDeque::new(),
            broken: None,
            next_id: 0,
            view: view.clone(),
        };
        tokio::spawn(actor.run(rx));
        Isolates { tx, view, cold_starts: Arc::new(AtomicU64::new(0)) }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finds room for one invocation: a warm isolate, a new one (started here with `start`),
    /// or a place in the wait queue until one frees up; refused when none comes in time.
    pub async fn acquire<F, Fut>(&self, start: F) -> Result<Lease, Refusal>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<WorkerHandle, Outcome>>,
    {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Acquire(reply)).await.is_err() {
            return Err(Refusal::Broken(Outcome::Internal));
        }
        match answer.await {
            Ok(Grant::Use { id, handle }) => {
                Ok(Lease { tx: self.tx.clone(), id, handle, cold: None })
            }
            Ok(Grant::Start { ticket }) => {
                let guard = StartTicket { tx: self.tx.clone(), ticket: Some(ticket) };
                self.cold_starts.fetch_add(1, Ordering::Relaxed);
                let starting = Instant::now();
                let started = start().await;
                let took = starting.elapsed();
                guard.report(started.clone()).await;
                match started {
                    Ok(handle) => {
                        Ok(Lease { tx: self.tx.clone(), id: ticket, handle, cold: Some(took) })
                    }
                    Err(outcome) => {
                        // Seen at once by `is_broken`, not only once the actor has the report.
                        if outcome != Outcome::Canceled {
                            self.view().broken = Some(outcome);
                        }
                        Err(Refusal::Broken(outcome))
                    }
                }
            }
            Ok(Grant::Refused(refusal)) => Err(refusal),
            Err(_) => Err(Refusal::Broken(Outcome::Internal)),
        }
    }

    /// Bytes the function's isolates hold (V8 heap and ArrayBuffers), as last measured.
    pub fn memory_used(&self) -> u64 {
        self.view().handles.iter().map(|h| h.memory_used()).sum()
    }

    /// Requests waiting for an isolate now.
    pub fn waiting(&self) -> usize {
        self.view().waiting
    }

    /// Forgets isolates that a limit stopped.
    pub fn prune_dead(&self) {
        post(&self.tx, Msg::Prune);
    }

    /// Drops isolates with nothing in flight for `idle` (scale to zero).
    pub async fn evict_idle(&self, idle: Duration) -> usize {
        let (reply, answer) = oneshot::channel();
        let _ = self.tx.send(Msg::EvictIdle(idle, reply)).await;
        answer.await.unwrap_or(0)
    }

    /// When the least recently used idle isolate of this function was last used.
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.view().oldest_idle
    }

    /// Drops the least recently used idle isolate; whether there was one.
    pub async fn evict_oldest_idle(&self) -> bool {
        let (reply, answer) = oneshot::channel();
        let _ = self.tx.send(Msg::EvictOldestIdle(reply)).await;
        answer.await.unwrap_or(false)
    }

    /// Isolates alive now.
    pub fn alive(&self) -> usize {
        self.view().handles.iter().filter(|h| h.is_alive()).count()
    }

    /// Isolates started so far.
    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    /// Whether the function could start.
    pub fn is_broken(&self) -> bool {
        self.view().broken.is_some()
    }
}

/// The task that owns a function's isolates.
struct Actor {
    settings: PoolSettings,
    /// Isolates alive on the whole node, and the most it may have.
    node_isolates: Arc<AtomicUsize>,
    node_max: usize,
    slots: Vec<Slot>,
    starting: usize,
    /// Requests waiting for room, oldest first, with the time they give up.
    waiters: VecDeque<(oneshot::Sender<Grant>, tokio::time::Instant)>,
    /// Set when the function cannot start; every request answers this outcome.
    broken: Option<Outcome>,
    next_id: u64,
    view: Arc<Mutex<View>>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let deadline = self.waiters.front().map(|(_, d)| *d);
            let msg = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => Some(msg),
                    None => break,
                },
                _ = sleep_until(deadline) => None,
            };
            match msg {
                Some(msg) => self.handle(msg),
                None => self.expire(),
            }
            self.serve_waiters();
            self.publish();
        }
        self.node_isolates.fetch_sub(self.slots.len(), Ordering::Relaxed);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Acquire(reply) => {
                self.prune();
                if let Some(outcome) = self.broken {
                    let _ = reply.send(Grant::Refused(Refusal::Broken(outcome)));
                } else if !self.waiters.is_empty() {
                    // Those already waiting go first.
                    self.enqueue(reply);
                } else {
                    match self.decide(0) {
                        Some(grant) => {
                            let _ = reply.send(grant);
                        }
                        None => self.enqueue(reply),
                    }
                }
            }
            Msg::Started { ticket, result, seen } => {
                self.starting -= 1;
                match result {
                    Ok(handle) => {
                        self.node_isolates.fetch_add(1, Ordering::Relaxed);
                        self.slots.push(Slot {
                            id: ticket,
                            handle,
                            load: 1,
                            last_used: Instant::now(),
                        });
                    }
                    Err(Outcome::Canceled) => {}
                    Err(outcome) => {
                        self.broken = Some(outcome);
                        for (waiter, _) in self.waiters.drain(..) {
                            let _ = waiter.send(Grant::Refused(Refusal::Broken(outcome)));
                        }
                    }
                }
                self.publish();
                if let Some(seen) = seen {
                    let _ = seen.send(());
                }
            }
            Msg::Release(id) => {
                if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
                    slot.load = slot.load.saturating_sub(1);
                    slot.last_used = Instant::now();
                }
            }
            Msg::Prune => self.prune(),
            Msg::EvictIdle(idle, reply) => {
                let before = self.slots.len();
                self.slots.retain(|s| s.load > 0 || s.last_used.elapsed() < idle);
                let evicted = before - self.slots.len();
                self.node_isolates.fetch_sub(evicted, Ordering::Relaxed);
                self.publish();
                let _ = reply.send(evicted);
            }
            Msg::EvictOldestIdle(reply) => {
                let oldest = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.load == 0)
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(i, _)| i);
                if let Some(i) = oldest {
                    self.slots.remove(i);
                    self.node_isolates.fetch_sub(1, Ordering::Relaxed);
                }
                self.publish();
                let _ = reply.send(oldest.is_some());
            }
        }
    }

    /// Applies the policy for one request; `None` means it waits. `ahead` requests wait
    /// before it.
    fn decide(&mut self, ahead: usize) -> Option<Grant> {
        let loads: Vec<usize> = self.slots.iter().map(|s| s.load).collect();
        let node = self.node_isolates.load(Ordering::Relaxed);
        match decide(&self.settings, &loads, self.starting, ahead, node, self.node_max) {
            Decision::Use(i) => {
                let slot = &mut self.slots[i];
                slot.load += 1;
                slot.last_used = Instant::now();
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

    fn enqueue(&mut self, reply: oneshot::Sender<Grant>) {
        if self.waiters.len() >= self.settings.max_queue {
            let _ = reply.send(Grant::Refused(Refusal::Shed));
            return;
        }
        let deadline = tokio::time::Instant::now() + self.settings.queue_timeout;
        self.waiters.push_back((reply, deadline));
    }

    /// Gives room to waiting requests, oldest first, while there is some.
    fn serve_waiters(&mut self) {
        self.prune();
        while let Some((waiter, _)) = self.waiters.front() {
            if waiter.is_closed() {
                self.waiters.pop_front();
                continue;
            }
            match self.decide(0) {
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

    fn publish(&self) {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.handles = self.slots.iter().map(|s| s.handle.clone()).collect();
        view.waiting = self.waiters.len();
        view.broken = self.broken;
        view.oldest_idle = self.slots.iter().filter(|s| s.load == 0).map(|s| s.last_used).min();
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
        assert_eq!(decide(&S, &[2, 1], 0, 0, 2, 10), Decision::Use(1), "least loaded with room");
        assert_eq!(decide(&S, &[2], 0, 0, 1, 10), Decision::Start, "all busy: another isolate");
        assert_eq!(decide(&S, &[2], 1, 0, 1, 10), Decision::Wait, "the second is starting");
        assert_eq!(decide(&S, &[2, 2], 0, 0, 2, 10), Decision::Wait, "at the function's maximum");
        assert_eq!(decide(&S, &[2, 2], 0, 1, 2, 10), Decision::Shed, "and the queue is full");
        assert_eq!(decide(&S, &[2], 0, 0, 10, 10), Decision::Wait, "at the node's maximum");
    }
}

//! What the ops need from the worker: the invocations the isolate has taken, their time
//! accounts and their replies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use deno_core::v8;
use tokio::sync::{mpsc, oneshot};

use super::types::*;
use crate::limits::{Charged, Meter};

/// Whether the isolate is over its memory limit (stopping it if so).
pub type MemoryCheck = Box<dyn Fn(&mut v8::Isolate) -> bool>;

/// What the ops need from the worker, put into the `OpState` when a worker starts.
pub struct Host {
    pub function: std::sync::Arc<str>,
    pub log_sink: std::sync::Arc<dyn LogSink>,
    pub inbox: Rc<RefCell<mpsc::Receiver<Box<Invocation>>>>,
    /// Set once the inbox is closed and drained: no invocation will come any more.
    pub inbox_closed: bool,
    /// The inbox's senders, not keeping it open: when none is left (every handle on the
    /// worker dropped: scale to zero, redeploy, delete), no invocation can come any more.
    pub(super) senders: mpsc::WeakSender<Box<Invocation>>,
    pub(super) live: HashMap<u32, Live>,
    pub(super) next_id: u32,
    /// The CPU and wall time of the live invocations (see [`Meter`]).
    pub(super) meter: Meter,
    /// Whether the isolate is over its memory limit, counting what V8 holds outside its heap
    /// (it stops the isolate if so); checked before a response leaves.
    pub(super) memory_check: Option<MemoryCheck>,
    /// Invocations finished during the current entry into the isolate, reported when it
    /// ends, with their part of its CPU time.
    pub(super) finishing: Vec<(u32, Live)>,
    /// The WebSockets the function accepted and that are still open, by socket id.
    pub(super) sockets: HashMap<u32, Socket>,
    pub(super) next_socket: u32,
    /// The most sockets open at once (`WorkerOptions::max_sockets`).
    pub max_sockets: usize,
    /// Since when sockets are open on a worker no handle is left on (redeployed, deleted,
    /// scaled away): they may finish for [`SOCKET_DRAIN`], then close with 1012.
    drain_from: Option<Instant>,
    /// Where the number of open sockets is published for the node (its pool keeps an isolate
    /// with sockets open).
    pub sockets_open: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

/// How long the sockets of a worker that is being replaced may stay open.
pub const SOCKET_DRAIN: Duration = Duration::from_secs(30);

/// An accepted WebSocket, open until its client or the function closes it.
pub(super) struct Socket {
    pub(super) outgoing: mpsc::Sender<SocketOut>,
    pub(super) incoming: Rc<tokio::sync::Mutex<mpsc::Receiver<SocketIn>>>,
    /// The invocation that accepted it, reported (its summary, with the socket's lifetime and
    /// message counts) when the socket ends.
    pub(super) accepted: Live,
}

impl Host {
    pub fn new(
        function: std::sync::Arc<str>,
        log_sink: std::sync::Arc<dyn LogSink>,
        inbox: mpsc::Receiver<Box<Invocation>>,
        senders: mpsc::WeakSender<Box<Invocation>>,
        cpu_time: Duration,
        wall_time: Duration,
    ) -> Host {
        Host {
            function,
            log_sink,
            inbox: Rc::new(RefCell::new(inbox)),
            inbox_closed: false,
            senders,
            live: HashMap::new(),
            next_id: 0,
            meter: Meter::new(cpu_time, wall_time),
            memory_check: None,
            finishing: Vec::new(),
            sockets: HashMap::new(),
            next_socket: 0,
            max_sockets: usize::MAX,
            drain_from: None,
            sockets_open: None,
        }
    }

    /// Sets the check `respond` makes of the memory held outside the V8 heap.
    pub fn set_memory_check(&mut self, check: MemoryCheck) {
        self.memory_check = Some(check);
    }

    /// Whether any invocation is in flight.
    pub fn busy(&self) -> bool {
        !self.live.is_empty()
    }

    /// Whether the worker should end now: no invocation in flight, no WebSocket open and none
    /// can come (every handle dropped), whatever timers or promises the function left pending.
    pub fn abandoned(&self) -> bool {
        self.live.is_empty()
            && self.sockets.is_empty()
            && (self.inbox_closed || self.senders.strong_count() == 0)
    }

    /// Ends socket `id` for the function: the client is sent `code` (unless it closed first),
    /// and the invocation that accepted it is reported.
    pub(super) fn close_socket(&mut self, id: u32, code: u16, reason: &str) {
        if let Some(socket) = self.sockets.remove(&id) {
            let _ = socket.outgoing.try_send(SocketOut::Close(code, reason.to_string()));
        }
    }

    /// Whether work done outside any invocation has used up its CPU budget while no invocation
    /// is in flight.
    pub fn background_spent(&self) -> bool {
        self.meter.background_spent()
    }

    /// Logs a line of the node's about the function (no invocation), to the function's log.
    pub fn log_note(&self, level: Level, message: String) {
        self.log_sink.log(LogRecord {
            ts: SystemTime::now(),
            level,
            function: self.function.clone(),
            invocation_id: None,
            message,
        });
    }

    /// Closes the inbox and hands every invocation not yet taken back to its caller.
    pub fn return_unstarted(&mut self) {
        let mut rx = self.inbox.borrow_mut();
        rx.close();
        while let Ok(invocation) = rx.try_recv() {
            let _ = invocation.reply.send(Reply::Returned(invocation.work));
        }
        drop(rx);
        self.inbox_closed = true;
    }

    /// Ends every live invocation with `outcome` (the isolate is going away, or can make no
    /// more progress).
    pub fn fail_all(&mut self, outcome: Outcome, message: &str) {
        for (id, mut live) in self.live.drain() {
            live.cpu_used = self.meter.remove(id);
            live.fail(outcome, message);
        }
        // The isolate is going away: its sockets close as after an error of the server's.
        for (_, socket) in self.sockets.drain() {
            let _ = socket.outgoing.try_send(SocketOut::Close(1011, outcome.as_str().into()));
        }
    }

    /// An entry into the isolate begins; the CPU time it may use (see
    /// [`Meter::cpu_budget`]).
    pub fn enter(&mut self) -> Duration {
        self.meter.enter()
    }

    /// Invocations begun inside an entry move its CPU deadline through `extension` (the
    /// watchdog guard's).
    pub fn extend_entries_with(&mut self, extension: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.meter.extend_entries_with(extension);
    }

    /// Ends the current entry, which used `used` of CPU time, `collecting` of its wall time
    /// in V8's garbage collections: charges it to the invocations that took part in it (see
    /// [`Meter`]), and ends those whose budget is spent with `exceeded_cpu`.
    pub fn charge(&mut self, used: Duration, collecting: Duration) {
        let Charged { over, finished } = self.meter.charge(used, collecting);
        self.report(finished);
        self.end(over, Outcome::ExceededCpu, "the invocation used up its CPU time");
    }

    /// Ends the current entry like [`Host::charge`] while the isolate is being stopped: the
    /// invocations live end with the reason it stops, not for their CPU time.
    pub fn charge_stopping(&mut self, used: Duration, collecting: Duration) {
        let finished = self.meter.charge_stopping(used, collecting);
        self.report(finished);
    }

    /// Charges CPU time used for invocation `id` (or for work outside any invocation) on
    /// another thread; an invocation whose budget it spends ends with `exceeded_cpu`.
    pub fn charge_off_thread(&mut self, id: Option<u32>, used: Duration) {
        if let (Some(id), Some(total)) = (id, self.meter.charge_off_thread(id, used)) {
            self.end(
                vec![(id, total)],
                Outcome::ExceededCpu,
                "the invocation used up its CPU time",
            );
        }
    }

    /// Ends the invocations past their wall-clock deadline with `exceeded_wall_time`; returns
    /// the earliest deadline still ahead.
    pub fn expire(&mut self) -> Option<Instant> {
        if let Some(open) = &self.sockets_open {
            open.store(self.sockets.len(), std::sync::atomic::Ordering::Relaxed);
        }
        let (over, next) = self.meter.expire();
        self.end(over, Outcome::ExceededWallTime, "the invocation ran out of wall-clock time");
        match (next, self.drain_sockets()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes, with 1012 (service restart), the sockets still open [`SOCKET_DRAIN`] after the
    /// last handle on the worker went; the time they may stay till then.
    fn drain_sockets(&mut self) -> Option<Instant> {
        let replaced = self.inbox_closed || self.senders.strong_count() == 0;
        if self.sockets.is_empty() || !replaced {
            self.drain_from = None;
            return None;
        }
        let now = Instant::now();
        let until = *self.drain_from.get_or_insert(now) + SOCKET_DRAIN;
        if now < until {
            return Some(until);
        }
        for (_, socket) in self.sockets.drain() {
            let _ = socket
                .outgoing
                .try_send(SocketOut::Close(1012, "the function was replaced".into()));
        }
        None
    }

    /// Ends invocation `id` (its response is sent, its `waitUntil` work settled). Within an
    /// entry it is reported when the entry ends, with its part of the entry's CPU time.
    pub(super) fn finish(&mut self, id: u32) {
        let Some(mut live) = self.live.remove(&id) else { return };
        // The JS side answers or fails every invocation before it is done; this is a guard.
        if live.reply.is_some() {
            live.fail(Outcome::Internal, "the invocation ended without a response");
        }
        // Dropping the stream sender ends a streamed body cleanly, now.
        live.stream = None;
        match self.meter.finish(id) {
            Some(cpu_used) => live.cpu_used = cpu_used,
            None => self.finishing.push((id, live)),
        }
    }

    /// Reports the invocations finished during the entry now ending, with their CPU time.
    fn report(&mut self, finished: Vec<(u32, Duration)>) {
        for (id, cpu_used) in finished {
            if let Some(at) = self.finishing.iter().position(|(f, _)| *f == id) {
                let (_, mut live) = self.finishing.swap_remove(at);
                live.cpu_used = cpu_used;
            }
        }
    }

    /// Ends the invocations `over` a limit with `outcome`, each with the CPU time it used.
    fn end(&mut self, over: Vec<(u32, Duration)>, outcome: Outcome, message: &str) {
        for (id, cpu_used) in over {
            if let Some(mut live) = self.live.remove(&id) {
                live.cpu_used = cpu_used;
                live.fail(outcome, message);
                // A socket's event that ran out closes the socket, as on Workers.
                if let Some(socket) = live.socket {
                    self.close_socket(socket, 1011, outcome.as_str());
                }
            }
        }
    }
}

/// An invocation the isolate has taken and not finished. Dropping it reports its end.
pub(super) struct Live {
    pub(super) body: Option<Rc<tokio::sync::Mutex<mpsc::Receiver<BodyChunk>>>>,
    pub(super) reply: Option<tokio::sync::oneshot::Sender<Reply>>,
    pub(super) stream: Option<mpsc::Sender<BodyChunk>>,
    /// Woken when the reply goes or the invocation ends: `op_isola_client_gone` waits on the
    /// reply's receiver only until then.
    pub(super) gone: Option<std::task::Waker>,
    /// The CPU time it used, reported when it is dropped (kept by the [`Meter`] till then).
    pub(super) cpu_used: Duration,
    pub(super) status: Option<u16>,
    /// The first failure, if it failed.
    pub(super) failed: Option<Outcome>,
    pub(super) finished: Option<Finished>,
    /// The blobs of an event invocation, read by `op_isola_event_blob`.
    pub(super) blobs: Vec<Bytes>,
    /// The response's headers, as `op_isola_header` adds them before it is answered.
    pub(super) headers: http::HeaderMap,
    /// A header `op_isola_header` could not take; answering then fails with it.
    pub(super) bad_header: Option<&'static str>,
    /// A HEAD request: a body the node drops unread is no client leaving.
    pub(super) head: bool,
    /// For an event of an accepted WebSocket: the socket, closed with 1011 if the event's
    /// handler runs out of a limit.
    pub(super) socket: Option<u32>,
    /// For the invocation that accepted a WebSocket: messages received and sent.
    pub(super) messages: (u64, u64),
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(gone) = self.gone.take() {
            gone.wake();
        }
        if let Some(finished) = self.finished.take() {
            finished(InvocationEnd {
                outcome: self.failed.unwrap_or(Outcome::Ok),
                status: self.status,
                cpu_time: self.cpu_used,
                messages: self.messages,
            });
        }
    }
}

impl Live {
    /// The reply, to answer with; a wait for the client to go away ends with it.
    pub(super) fn take_reply(&mut self) -> Option<oneshot::Sender<Reply>> {
        if let Some(gone) = self.gone.take() {
            gone.wake();
        }
        self.reply.take()
    }

    /// A live entry for something that needs no answer (an event of a WebSocket).
    pub(super) fn unanswered(finished: Option<Finished>) -> Live {
        Live {
            body: None,
            reply: None,
            stream: None,
            gone: None,
            cpu_used: Duration::ZERO,
            status: None,
            failed: None,
            finished,
            blobs: Vec::new(),
            headers: http::HeaderMap::new(),
            bad_header: None,
            head: false,
            socket: None,
            messages: (0, 0),
        }
    }

    pub(super) fn fail(&mut self, outcome: Outcome, message: &str) {
        self.failed.get_or_insert(outcome);
        if let Some(reply) = self.take_reply() {
            let _ = reply.send(Reply::Failed(Failure { outcome, message: message.to_string() }));
        } else if let Some(stream) = self.stream.take() {
            // The head is already sent: abort the body so the client sees a broken response.
            let _ = stream.try_send(Err(BodyError(format!("{}: {message}", outcome.as_str()))));
        }
    }
}

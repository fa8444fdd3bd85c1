//! An isolate's event loop, run under its limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use deno_core::{JsRuntime, PollEventLoopOptions};

use super::{ArrayBufferBudget, Guard};
use crate::ext::{Host, Level, Outcome};

/// What the function's log says when background work used up its budget.
pub(crate) const BACKGROUND_STOPPED: &str =
    "the isolate was stopped: work outside any invocation (a timer, \
    or a promise after the response) used up its CPU budget, one cpu_time after each invocation";

/// Runs the isolate's event loop until the worker ends: every handle dropped and every
/// invocation done (`Ok`), or the isolate stopped by a limit (`Err`).
///
/// Each entry into the isolate (one poll of the event loop) is timed on the thread's CPU
/// clock and guarded by the watchdog with the CPU the most spent live invocation has left.
/// The CPU an entry uses is charged to the invocations that took part in it, by their parts,
/// or to every invocation live during it when none did (see [`super::Meter`]). When the event loop
/// has nothing left to do but wait for new invocations, the handlers still in flight can
/// never settle and end with `no_response`.
pub(crate) async fn drive(
    js: &mut JsRuntime,
    guard: &Guard,
    budget: &ArrayBufferBudget,
    memory_in_use: &AtomicU64,
) -> Result<(), deno_core::error::CoreError> {
    let state = js.op_state();
    let mut wall_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| loop {
        if state.borrow().borrow::<Host>().abandoned() {
            // Nothing in flight and no handle left: end now, pending timers or not.
            return Poll::Ready(Ok(()));
        }
        let before = enter(state.borrow_mut().borrow_mut::<Host>(), guard);
        let polled = js.poll_event_loop(cx, PollEventLoopOptions::default());
        let (used, collecting) = leave(guard, before);
        // An allocation refused in the entry, or memory outside the heap that no collection
        // looked at yet, stops the isolate here.
        budget.stop_if_refused();
        budget.set_heap_used(js.v8_isolate().get_heap_statistics().used_heap_size());
        budget.over_after_collecting(js.v8_isolate());
        if guard.tripped().is_some() {
            // deno_core absorbs a termination inside its event loop tick; the isolate is
            // done for all the same. What the entry used still counts.
            state.borrow_mut().borrow_mut::<Host>().charge_stopping(used, collecting);
            return Poll::Ready(Ok(()));
        }
        memory_in_use.store(budget.in_use() as u64, Ordering::Relaxed);

        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        host.charge(used, collecting);
        if host.background_spent() {
            host.log_note(Level::Error, BACKGROUND_STOPPED.into());
            return Poll::Ready(Ok(()));
        }
        let next_deadline = host.expire();
        match polled {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                if host.busy() {
                    host.fail_all(Outcome::NoResponse, "the handler's promise can never settle");
                }
                if host.abandoned() {
                    return Poll::Ready(Ok(()));
                }
            }
            Poll::Pending if host.abandoned() => continue,
            Poll::Pending => {}
        }
        match next_deadline {
            Some(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                let timer =
                    wall_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    continue; // a deadline passed while polling: expire it now
                }
            }
            None => wall_timer = None,
        }
        return Poll::Pending;
    })
    .await
}

/// Begins an entry into the isolate: the host's meter marks its start, and the watchdog is
/// armed with the CPU the most spent live invocation has left. Answers the thread's CPU clock
/// now, for [`leave`].
pub(crate) fn enter(host: &mut Host, guard: &Guard) -> Duration {
    let before = guard.clock().now();
    let cpu_budget = host.enter();
    // What collections outside an entry took is no entry's.
    super::gc_time::take();
    guard.arm(before, cpu_budget);
    before
}

/// Ends the entry [`enter`] began at `before`: disarms the watchdog and answers the CPU time
/// the entry used and the wall time V8's garbage collections took in it.
pub(crate) fn leave(guard: &Guard, before: Duration) -> (Duration, Duration) {
    guard.disarm();
    (guard.clock().now().saturating_sub(before), super::gc_time::take())
}

/// [`drive`] without CPU or wall time measured: only for benchmarks that measure what
/// enforcing them costs (`WorkerOptions::enforce_limits`); the memory limit still holds.
pub(crate) async fn drive_without_time_limits(
    js: &mut JsRuntime,
) -> Result<(), deno_core::error::CoreError> {
    let state = js.op_state();
    std::future::poll_fn(|cx| loop {
        if state.borrow().borrow::<Host>().abandoned() {
            return Poll::Ready(Ok(()));
        }
        let polled = js.poll_event_loop(cx, PollEventLoopOptions::default());
        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        return match polled {
            Poll::Ready(Ok(())) => {
                host.fail_all(Outcome::NoResponse, "the handler's promise can never settle");
                if host.abandoned() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Poll::Pending if host.abandoned() => continue,
            other => other,
        };
    })
    .await
}

//! Wakes held until the end of a front thread's turn: a front thread hands an isolate every
//! request of its turn with one wake, so a thread switch is paid per turn, not per request.
//!
//! Without it, the first request of a turn woke the isolate's thread, which (having slept)
//! the kernel ran at once in the front thread's place: the isolate took that one request,
//! answered, slept again, and the front thread went on to the next, about four requests per
//! round trip of two thread switches. Only the front threads hold wakes: their turns run no
//! JavaScript, so they are short. An isolate's answers wake the front thread at once (held
//! until the isolate's turn ended, an answer could wait for as long as a function keeps its
//! isolate busy after answering).

use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

/// Wakes of another thread's tasks made on this thread and held until the tasks ready here
/// now have run: see [`deferred`].
#[derive(Default)]
struct Deferred {
    wakers: Vec<Waker>,
    /// The task that delivers them (`run_deferred_wakes`), once it has run.
    flusher: Option<Waker>,
    /// The flusher is woken already.
    scheduled: bool,
}

thread_local! {
    static DEFERRED: RefCell<Option<Deferred>> = const { RefCell::new(None) };
}

/// The task, one per front thread, that delivers the wakes [`deferred`] held: woken by the
/// first of them, it runs after the tasks ready before it (tokio's queue of a current-thread
/// runtime is first in, first out), that is once the connections ready in this turn have
/// handed over their requests.
pub async fn run_deferred_wakes() {
    /// Delivers what is held when the thread's runtime drops the task (it is ending).
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            let held = DEFERRED.try_with(|d| d.borrow_mut().take()).ok().flatten();
            for waker in held.map(|d| d.wakers).unwrap_or_default() {
                waker.wake();
            }
        }
    }
    let _flush = Flush;
    DEFERRED.with(|d| *d.borrow_mut() = Some(Deferred::default()));
    std::future::poll_fn(|cx| {
        let wakers = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            let d = d.as_mut().expect("set above, taken only when this task ends");
            d.flusher = Some(cx.waker().clone());
            d.scheduled = false;
            std::mem::take(&mut d.wakers)
        });
        for waker in wakers {
            waker.wake();
        }
        Poll::<()>::Pending
    })
    .await
}

/// A waker for `waker` whose wakes, made on a front thread, wait for that thread's current
/// turn to end (they are delivered by [`run_deferred_wakes`]); made anywhere else, they happen
/// at once. For an isolate waiting on its inbox.
pub fn deferred(waker: &Waker) -> Waker {
    Waker::from(Arc::new(DeferredWake(waker.clone())))
}

struct DeferredWake(Waker);

impl Wake for DeferredWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let held = DEFERRED.try_with(|d| {
            let mut d = d.borrow_mut();
            let d = d.as_mut()?;
            let flusher = d.flusher.clone()?;
            d.wakers.push(self.0.clone());
            let first = !std::mem::replace(&mut d.scheduled, true);
            Some(first.then_some(flusher))
        });
        match held {
            Ok(Some(Some(flusher))) => flusher.wake(),
            Ok(Some(None)) => {}
            // Not a thread that holds wakes (or it is ending): at once.
            _ => self.0.wake_by_ref(),
        }
    }
}

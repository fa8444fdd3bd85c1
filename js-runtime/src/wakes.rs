//! Wakes held until the end of a front thread's turn: a front thread hands an isolate every
//! request of its turn with one wake, so a thread switch is paid per turn, not per request.
//!
//! Without it, the first request of a turn woke the isolate's thread, which (having slept)
//! the kernel ran at once in the front thread's place: the isolate took that one request,
//! answered, slept again, and the front thread went on to the next, about four requests per
//! round trip of two thread switches. Only the front threads hold wakes: their turns run no
//! JavaScript, so they are short.
//!
//! The other way, an isolate's answers wake the front thread at once (held until the
//! isolate's turn ended, an answer could wait for as long as a function keeps its isolate
//! busy after answering), but through the front thread's [`Mailbox`]: a wake of a task on a
//! current-thread runtime from another thread costs that runtime a write to its eventfd, one
//! per answer, each a system call; the mailbox wakes one task of its own, and only when it is
//! not woken already, which wakes the answered tasks from the front thread itself.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// Where other threads leave wakes of a front thread's tasks: see the module's comment.
#[derive(Default)]
struct Mailbox {
    left: Mutex<Left>,
    /// The delivering task ([`run_mailbox`]) is woken already and will see what is left now.
    scheduled: AtomicBool,
    /// How many times another thread woke the delivering task.
    remote_wakes: AtomicUsize,
}

#[derive(Default)]
struct Left {
    wakers: Vec<Waker>,
    /// The delivering task's waker, once it has run.
    delivery: Option<Waker>,
}

thread_local! {
    /// The mailbox of the front thread this is, if it is one.
    static MAILBOX: RefCell<Option<Arc<Mailbox>>> = const { RefCell::new(None) };
}

/// The task, one per front thread, that wakes the tasks whose wakes other threads left in the
/// thread's mailbox. Run on the front thread, it makes the thread's mailbox.
pub async fn run_mailbox() {
    let mailbox = Arc::new(Mailbox::default());
    MAILBOX.with(|m| *m.borrow_mut() = Some(mailbox.clone()));
    /// Once the task ends (the thread's runtime is ending), wakes are no longer left here.
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            let _ = MAILBOX.try_with(|m| m.borrow_mut().take());
        }
    }
    let _close = Close;
    let mut taken = Vec::new();
    std::future::poll_fn(|cx| {
        // Cleared before taking: a wake left after the take finds it clear and wakes this
        // task again.
        mailbox.scheduled.store(false, Ordering::SeqCst);
        {
            let mut left = mailbox.left.lock().expect("mailbox");
            if !left.delivery.as_ref().is_some_and(|d| d.will_wake(cx.waker())) {
                left.delivery = Some(cx.waker().clone());
            }
            std::mem::swap(&mut left.wakers, &mut taken);
        }
        for waker in taken.drain(..) {
            waker.wake();
        }
        Poll::<()>::Pending
    })
    .await
}

/// A waker for `waker` that, woken from another thread, goes through this front thread's
/// mailbox: for a task on a front thread waiting for an isolate's answer. Anywhere but a front
/// thread, `waker` itself.
pub fn through_mailbox(waker: &Waker) -> Waker {
    match MAILBOX.with(|m| m.borrow().clone()) {
        Some(mailbox) => Waker::from(Arc::new(MailboxWake { waker: waker.clone(), mailbox })),
        None => waker.clone(),
    }
}

struct MailboxWake {
    waker: Waker,
    mailbox: Arc<Mailbox>,
}

impl Wake for MailboxWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let home = MAILBOX
            .try_with(|m| m.borrow().as_ref().is_some_and(|m| Arc::ptr_eq(m, &self.mailbox)))
            .unwrap_or(false);
        if home {
            // On the front thread itself a wake costs no system call.
            return self.waker.wake_by_ref();
        }
        let delivery = {
            let mut left = self.mailbox.left.lock().expect("mailbox");
            left.wakers.push(self.waker.clone());
            let first = !self.mailbox.scheduled.swap(true, Ordering::SeqCst);
            if first {
                left.delivery.clone()
            } else {
                None
            }
        };
        // None: the delivering task has not run yet (it takes what is left when it first
        // runs), or it is woken already.
        if let Some(delivery) = delivery {
            self.mailbox.remote_wakes.fetch_add(1, Ordering::Relaxed);
            delivery.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::sync::atomic::Ordering;
    use std::task::Context;

    use super::{run_mailbox, through_mailbox, MAILBOX};

    /// A batch of answers sent from another thread while the front thread is busy costs the
    /// front thread's runtime one wake from outside, not one per answer, and every answer
    /// arrives.
    #[test]
    fn answers_from_another_thread_wake_the_front_thread_once_per_batch() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            tokio::task::spawn_local(run_mailbox());
            let waiting_now = Rc::new(Cell::new(0));
            let mut senders = Vec::new();
            let mut waiting = Vec::new();
            for _ in 0..100 {
                let (tx, mut rx) = tokio::sync::oneshot::channel::<usize>();
                senders.push(tx);
                let waiting_now = waiting_now.clone();
                waiting.push(tokio::task::spawn_local(async move {
                    let mut counted = false;
                    std::future::poll_fn(|cx| {
                        let waker = through_mailbox(cx.waker());
                        let polled = Pin::new(&mut rx).poll(&mut Context::from_waker(&waker));
                        if !std::mem::replace(&mut counted, true) {
                            waiting_now.set(waiting_now.get() + 1);
                        }
                        polled
                    })
                    .await
                }));
            }
            while waiting_now.get() < 100 {
                tokio::task::yield_now().await;
            }
            let mailbox = MAILBOX.with(|m| m.borrow().clone()).expect("the mailbox runs");
            assert_eq!(mailbox.remote_wakes.load(Ordering::Relaxed), 0);
            // Joined before this thread runs anything else: every answer is sent while it is
            // busy.
            std::thread::spawn(move || {
                for (i, tx) in senders.into_iter().enumerate() {
                    tx.send(i).unwrap();
                }
            })
            .join()
            .unwrap();
            for (i, task) in waiting.into_iter().enumerate() {
                assert_eq!(task.await.unwrap(), Ok(i));
            }
            assert_eq!(mailbox.remote_wakes.load(Ordering::Relaxed), 1);
        });
    }
}

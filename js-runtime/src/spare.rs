//! Spare isolates: made from the snapshot ahead of time, each on its thread, waiting to be
//! given a function. Creating an isolate is most of a cold start (V8 deserialising the
//! snapshot into fresh memory); with a spare at hand a cold start is only binding the
//! function and loading its modules. A [`Spares`] keeps as many per memory limit as its
//! [`Runtime`](crate::Runtime) was made with (none by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::worker::{Isolate, Job};

/// How long after it is asked for a spare is made.
const SPARE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// The spare isolates of one runtime.
pub(crate) struct Spares {
    /// How many to keep per memory limit (0: none).
    wanted: usize,
    state: Mutex<State>,
}

/// Ready spares by memory limit, and how many are being made.
#[derive(Default)]
struct State {
    /// Ready spares, each waiting on its thread for a job.
    ready: HashMap<u64, Vec<oneshot::Sender<Job>>>,
    making: HashMap<u64, usize>,
}

impl Spares {
    pub fn new(wanted: usize) -> Spares {
        Spares { wanted, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many spares with this memory limit are ready now.
    pub fn ready(&self, memory: u64) -> usize {
        let state = self.state();
        state.ready.get(&memory).map_or(0, |list| list.iter().filter(|s| !s.is_closed()).count())
    }

    /// A ready spare with this memory limit, if there is one.
    pub fn take(&self, memory: u64) -> Option<oneshot::Sender<Job>> {
        let mut state = self.state();
        let list = state.ready.get_mut(&memory)?;
        while let Some(spare) = list.pop() {
            if !spare.is_closed() {
                return Some(spare);
            }
        }
        None
    }

    /// Starts making spares with this memory limit until the wanted number are ready or
    /// coming, each on a thread of its own.
    pub fn replenish(self: &Arc<Self>, memory: u64) {
        let mut state = self.state();
        let have = state.ready.get(&memory).map_or(0, Vec::len)
            + state.making.get(&memory).copied().unwrap_or(0);
        for _ in have..self.wanted {
            *state.making.entry(memory).or_default() += 1;
            let spares = self.clone();
            crate::threads::spawn(move || spares.spare(memory));
        }
    }

    /// Makes a spare on the current thread and waits for its function. It is made a moment
    /// after it is asked for: it is asked for when a spare was just taken, and making one
    /// (several milliseconds of V8 deserialising the snapshot, a core busy) would compete with
    /// that start's first request.
    async fn spare(self: Arc<Self>, memory: u64) {
        tokio::time::sleep(SPARE_DELAY).await;
        let isolate = Isolate::create(memory);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state();
            *state.making.entry(isolate.memory()).or_default() -= 1;
            state.ready.entry(isolate.memory()).or_default().push(tx);
        }
        // The spare does not keep its runtime's spares alive while it waits.
        drop(self);
        // Wait to be given a function; when the runtime is dropped the sender is dropped and
        // so is the isolate.
        if let Ok(job) = rx.await {
            isolate.run(job).await;
        }
    }
}

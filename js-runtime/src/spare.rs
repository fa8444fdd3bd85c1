//! Spare isolates: made from the snapshot ahead of time, each on its thread, waiting to be
//! given a function. Creating an isolate is most of a cold start (V8 deserialising the
//! snapshot into fresh memory); with a spare at hand a cold start is only binding the
//! function and loading its modules. Off until [`keep_spares`] asks for some.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::worker::{Isolate, Job};

/// How long after it is asked for a spare is made.
const SPARE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// How many spares to keep per memory limit (0: none).
static WANTED: AtomicUsize = AtomicUsize::new(0);

/// Ready spares by memory limit, and how many are being made.
struct Spares {
    /// Ready spares, each waiting on its thread for a job.
    ready: HashMap<u64, Vec<oneshot::Sender<Job>>>,
    making: HashMap<u64, usize>,
}

fn spares() -> &'static Mutex<Spares> {
    static SPARES: std::sync::OnceLock<Mutex<Spares>> = std::sync::OnceLock::new();
    SPARES.get_or_init(|| Mutex::new(Spares { ready: HashMap::new(), making: HashMap::new() }))
}

/// Keeps `count` spare isolates ready for every memory limit a worker has started with.
pub fn keep_spares(count: usize) {
    WANTED.store(count, Ordering::Relaxed);
}

/// How many spares with this memory limit are ready now.
pub fn spares_ready(memory: u64) -> usize {
    let spares = spares().lock().unwrap_or_else(|e| e.into_inner());
    spares.ready.get(&memory).map_or(0, |list| list.iter().filter(|s| !s.is_closed()).count())
}

/// A ready spare with this memory limit, if there is one.
pub(crate) fn take(memory: u64) -> Option<oneshot::Sender<Job>> {
    let mut spares = spares().lock().unwrap_or_else(|e| e.into_inner());
    let list = spares.ready.get_mut(&memory)?;
    while let Some(spare) = list.pop() {
        if !spare.is_closed() {
            return Some(spare);
        }
    }
    None
}

/// Starts making spares with this memory limit until the wanted number are ready or coming,
/// each on a thread of its own.
pub(crate) fn replenish(memory: u64) {
    let wanted = WANTED.load(Ordering::Relaxed);
    let mut spares = spares().lock().unwrap_or_else(|e| e.into_inner());
    let have = spares.ready.get(&memory).map_or(0, Vec::len)
        + spares.making.get(&memory).copied().unwrap_or(0);
    for _ in have..wanted {
        *spares.making.entry(memory).or_default() += 1;
        crate::threads::spawn(move || spare(memory));
    }
}

/// Makes a spare on the current thread and waits for its function. It is made a moment
/// after it is asked for: it is asked for when a spare was just taken, and making one (several
/// milliseconds of V8 deserialising the snapshot, a core busy) would compete with that start's
/// first request.
async fn spare(memory: u64) {
    tokio::time::sleep(SPARE_DELAY).await;
    let isolate = Isolate::create(memory);
    let (tx, rx) = oneshot::channel();
    {
        let mut spares = spares().lock().unwrap_or_else(|e| e.into_inner());
        *spares.making.entry(isolate.memory()).or_default() -= 1;
        spares.ready.entry(isolate.memory()).or_default().push(tx);
    }
    // Wait to be given a function; when the process needs no more spares the sender is
    // dropped and so is the isolate.
    if let Ok(job) = rx.await {
        isolate.run(job).await;
    }
}

//! The wall time V8 spends collecting garbage on the isolate's thread, between its prologue
//! and epilogue callbacks. The meter charges an entry into the isolate in which no
//! invocation took part by what it holds: a collection V8 runs in a task of its own (a
//! scavenge when the young generation fills) collects what every recent invocation left, so
//! it is shared in proportion to the CPU they used, not charged whole to whichever happens
//! to be live (a long response streamed while thousands of requests come and go).
//!
//! The time is kept per thread: a thread enters one isolate at a time, and [`take`] at the
//! start of an entry drops what collections outside it (a start, a check after the entry)
//! left.

use std::cell::Cell;
use std::ffi::c_void;
use std::time::{Duration, Instant};

use deno_core::v8;

thread_local! {
    /// When the collection under way began; collections can nest (a scavenge before a full
    /// collection), and only the outermost is timed.
    static STARTED: Cell<Option<(Instant, u32)>> = const { Cell::new(None) };
    static SPENT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Times every collection of `isolate` from now on.
pub(crate) fn watch(isolate: &mut v8::Isolate) {
    let all = v8::GCType::kGCTypeAll;
    isolate.add_gc_prologue_callback(prologue, std::ptr::null_mut(), all);
    isolate.add_gc_epilogue_callback(epilogue, std::ptr::null_mut(), all);
}

/// The collection time since the last call, on this thread.
pub(crate) fn take() -> Duration {
    SPENT.replace(Duration::ZERO)
}

unsafe extern "C" fn prologue(
    _: v8::UnsafeRawIsolatePtr,
    _: v8::GCType,
    _: v8::GCCallbackFlags,
    _: *mut c_void,
) {
    STARTED.set(match STARTED.get() {
        Some((at, depth)) => Some((at, depth + 1)),
        None => Some((Instant::now(), 1)),
    });
}

unsafe extern "C" fn epilogue(
    _: v8::UnsafeRawIsolatePtr,
    _: v8::GCType,
    _: v8::GCCallbackFlags,
    _: *mut c_void,
) {
    STARTED.set(match STARTED.get() {
        Some((at, 1)) => {
            SPENT.set(SPENT.get() + at.elapsed());
            None
        }
        Some((at, depth)) => Some((at, depth - 1)),
        None => None,
    });
}

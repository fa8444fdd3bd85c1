//! The memory limit outside the V8 heap: an ArrayBuffer allocator that counts every buffer,
//! and the checks of V8's external memory.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use deno_core::{v8, JsRuntime};

use super::{Guard, Tripped};

/// Counts the bytes of every ArrayBuffer of one isolate. An allocation that would take the
/// isolate past its memory limit (heap included) stops the isolate with `exceeded_memory`.
///
/// Memory V8 holds outside its heap without this allocator (buffers an op made in Rust and
/// handed over, WebAssembly memories) is V8's "external memory". It counts buffers that are
/// garbage until a collection frees them, so the exact check is made where the worker can
/// collect first ([`ArrayBufferBudget::over_after_collecting`]: after every entry and before a
/// response leaves); inside a long entry a coarser guard stops an isolate whose heap and
/// external memory pass twice its limit after a collection (V8 collects as external memory
/// grows).
pub(crate) struct ArrayBufferBudget {
    used: AtomicUsize,
    /// The V8 heap's size at the last look, kept by the worker after each entry.
    heap_used: AtomicUsize,
    /// V8's external memory at the last look.
    external: AtomicUsize,
    limit: usize,
    guard: Arc<Guard>,
    /// Allocations refused in a row.
    refusals: AtomicUsize,
    /// Bytes of Blob parts held in the isolate's blob store ([`CountedBlobStore`]).
    blobs: AtomicUsize,
}

/// V8 asks for an ArrayBuffer's memory four times before it gives up, collecting garbage
/// between the attempts.
const REFUSALS_IN_A_ROW: usize = 4;

impl ArrayBufferBudget {
    pub fn new(limit: u64, guard: Arc<Guard>) -> Arc<ArrayBufferBudget> {
        Arc::new(ArrayBufferBudget {
            used: AtomicUsize::new(0),
            heap_used: AtomicUsize::new(0),
            external: AtomicUsize::new(0),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            guard,
            refusals: AtomicUsize::new(0),
            blobs: AtomicUsize::new(0),
        })
    }

    /// A new isolate's parameters: its heap limit, and this budget's allocator.
    pub fn create_params(self: &Arc<Self>) -> v8::CreateParams {
        v8::CreateParams::default()
            .heap_limits(0, self.limit)
            .array_buffer_allocator(self.allocator())
    }

    /// Guards a new isolate made with [`ArrayBufferBudget::create_params`]: the watchdog can
    /// stop it, a collection checks its external memory, and reaching the heap limit stops
    /// the function instead of aborting the process.
    pub fn watch(self: &Arc<Self>, js: &mut JsRuntime) {
        self.guard.set_isolate(js.v8_isolate().thread_safe_handle());
        // The allocator holds the budget for as long as the isolate lives.
        let budget_ptr = Arc::as_ptr(self) as *mut c_void;
        js.v8_isolate().add_gc_epilogue_callback(
            check_after_gc,
            budget_ptr,
            v8::GCType::kGCTypeAll,
        );
        let guard = self.guard.clone();
        js.add_near_heap_limit_callback(move |current, _initial| {
            // Give V8 room to unwind instead of aborting the process.
            guard.trip(Tripped::Memory);
            current.saturating_mul(2)
        });
    }

    /// Notes the size of the V8 heap now.
    pub fn set_heap_used(&self, bytes: usize) {
        self.heap_used.store(bytes, Ordering::Relaxed);
    }

    /// Whether the isolate is over its limit once its garbage is collected: a collection is
    /// made only when the heap at the last look and the external memory now (garbage
    /// included) are over it. Stops the isolate if it is. Cheap when under: one read of a
    /// counter.
    pub fn over_after_collecting(&self, isolate: &mut v8::Isolate) -> bool {
        if !self.external_over(isolate) {
            return false;
        }
        isolate.low_memory_notification();
        self.heap_used.store(isolate.get_heap_statistics().used_heap_size(), Ordering::Relaxed);
        let over = self.external_over(isolate);
        if over {
            self.guard.trip(Tripped::Memory);
        }
        over
    }

    /// Reads V8's external memory now (its own counter: the heap statistics' figure leaves out
    /// WebAssembly memories); whether with the heap at the last look it is over the limit.
    fn external_over(&self, isolate: &mut v8::Isolate) -> bool {
        let external = isolate.adjust_amount_of_external_allocated_memory(0);
        self.external.store(usize::try_from(external).unwrap_or(0), Ordering::Relaxed);
        self.in_use() > self.limit
    }

    /// Bytes outside the heap: this allocator's, or V8's external memory at the last look if
    /// it is more (it counts the allocator's buffers too, and those made elsewhere).
    fn outside_heap(&self, allocated: usize) -> usize {
        allocated.max(self.external.load(Ordering::Relaxed))
    }

    /// The V8 heap and the external memory at the last look, or the ArrayBuffer bytes now.
    pub fn in_use(&self) -> usize {
        self.outside_heap(self.used.load(Ordering::Relaxed))
            .saturating_add(self.heap_used.load(Ordering::Relaxed))
            .saturating_add(self.blobs.load(Ordering::Relaxed))
    }

    /// Counts `len` more bytes, or refuses them when they would take the isolate past its
    /// limit. V8 collects garbage and asks again after a refusal (three times more, the last
    /// after collecting all it can), so buffers that are garbage already do not stop the
    /// isolate: the isolate stops at the last refusal of a row, or when the entry ends after
    /// a refusal (`refused`), whichever comes first.
    fn reserve(&self, len: usize) -> bool {
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        let total =
            before.saturating_add(len).saturating_add(self.heap_used.load(Ordering::Relaxed));
        if total > self.limit {
            self.used.fetch_sub(len, Ordering::Relaxed);
            if self.refusals.fetch_add(1, Ordering::Relaxed) + 1 >= REFUSALS_IN_A_ROW {
                self.guard.trip(Tripped::Memory);
            }
            return false;
        }
        self.refusals.store(0, Ordering::Relaxed);
        true
    }

    /// Whether the last allocation was refused; stops the isolate if so (the function may
    /// not go on after failing to allocate, whether or not it caught the `RangeError`).
    pub fn stop_if_refused(&self) {
        if self.refusals.swap(0, Ordering::Relaxed) > 0 {
            self.guard.trip(Tripped::Memory);
        }
    }

    /// A V8 ArrayBuffer allocator backed by this budget.
    pub fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
        static VTABLE: v8::RustAllocatorVtable<ArrayBufferBudget> =
            v8::RustAllocatorVtable { allocate, allocate_uninitialized, free, drop: drop_budget };
        let handle = Arc::into_raw(self.clone());
        // SAFETY: `handle` is a live Arc that the allocator owns until `drop_budget`, and the
        // vtable's functions expect exactly this type.
        unsafe { v8::new_rust_allocator(handle, &VTABLE) }
    }
}

/// A GC epilogue callback (`data` is the isolate's [`ArrayBufferBudget`]): V8 collects as its
/// external memory grows, so a function piling up buffers that no allocator of ours made is
/// stopped here within one long entry, once its heap and external memory pass twice its limit
/// (external memory may still count buffers this collection found dead).
unsafe extern "C" fn check_after_gc(
    isolate: v8::UnsafeRawIsolatePtr,
    _type: v8::GCType,
    _flags: v8::GCCallbackFlags,
    data: *mut c_void,
) {
    // SAFETY: V8 calls this on the isolate's own thread, with the isolate alive; `data` is the
    // budget the isolate's allocator keeps alive for as long as the isolate.
    let (mut isolate, budget) = unsafe {
        (v8::Isolate::from_raw_isolate_ptr_unchecked(isolate), &*(data as *const ArrayBufferBudget))
    };
    budget.set_heap_used(isolate.get_heap_statistics().used_heap_size());
    budget.external_over(&mut isolate);
    if budget.in_use() / 2 > budget.limit {
        budget.guard.trip(Tripped::Memory);
    }
}

unsafe extern "C" fn allocate(budget: &ArrayBufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc with a non-zero size; a null result is reported to V8 as a failure.
    let ptr = unsafe { libc::calloc(len.max(1), 1) };
    if ptr.is_null() {
        budget.used.fetch_sub(len, Ordering::Relaxed);
    }
    ptr
}

unsafe extern "C" fn allocate_uninitialized(budget: &ArrayBufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: as in `allocate`.
    let ptr = unsafe { libc::malloc(len.max(1)) };
    if ptr.is_null() {
        budget.used.fetch_sub(len, Ordering::Relaxed);
    }
    ptr
}

unsafe extern "C" fn free(budget: &ArrayBufferBudget, data: *mut c_void, len: usize) {
    // SAFETY: V8 frees only what this allocator returned, with the length it asked for.
    unsafe { libc::free(data) };
    budget.used.fetch_sub(len, Ordering::Relaxed);
}

unsafe extern "C" fn drop_budget(budget: *const ArrayBufferBudget) {
    // SAFETY: the pointer came from `Arc::into_raw` in `allocator` and is dropped once.
    drop(unsafe { Arc::from_raw(budget) });
}

/// The isolate's Blob store (deno_web's), counting the bytes of the parts it holds against
/// the isolate's memory limit. A Blob's bytes live in the store, in Rust, from its making
/// until a finalizer frees its part after a collection: neither the ArrayBuffer allocator nor
/// V8's external memory sees them, so a function could otherwise hold any amount of memory
/// in Blobs. A part that takes the isolate past its limit stops it (`exceeded_memory`), at
/// the next instruction of JavaScript: the bytes are held, garbage or not, until then.
#[derive(Debug)]
pub(crate) struct CountedBlobStore {
    inner: deno_web::BlobStore,
    budget: Arc<ArrayBufferBudget>,
}

impl std::fmt::Debug for ArrayBufferBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayBufferBudget").field("limit", &self.limit).finish()
    }
}

impl CountedBlobStore {
    pub fn new(budget: Arc<ArrayBufferBudget>) -> CountedBlobStore {
        CountedBlobStore { inner: deno_web::BlobStore::default(), budget }
    }
}

type Part = Arc<dyn deno_web::BlobPart + Send + Sync>;

impl deno_web::BlobStoreTrait for CountedBlobStore {
    fn insert_part(&self, part: Part) -> uuid::Uuid {
        self.budget.blobs.fetch_add(part.size(), Ordering::Relaxed);
        if self.budget.in_use() > self.budget.limit {
            self.budget.guard.trip(Tripped::Memory);
        }
        self.inner.insert_part(part)
    }

    fn get_part(&self, id: &uuid::Uuid) -> Option<Part> {
        self.inner.get_part(id)
    }

    fn remove_part(&self, id: &uuid::Uuid) -> Option<Part> {
        let removed = self.inner.remove_part(id);
        if let Some(part) = &removed {
            self.budget.blobs.fetch_sub(part.size(), Ordering::Relaxed);
        }
        removed
    }

    fn get_object_url(&self, url: deno_core::url::Url) -> Option<Arc<deno_web::Blob>> {
        self.inner.get_object_url(url)
    }

    fn insert_object_url(
        &self,
        blob: deno_web::Blob,
        location: Option<deno_core::url::Url>,
    ) -> deno_core::url::Url {
        self.inner.insert_object_url(blob, location)
    }

    fn remove_object_url(&self, url: &deno_core::url::Url) {
        self.inner.remove_object_url(url)
    }

    fn clear(&self) {
        self.inner.clear();
        self.budget.blobs.store(0, Ordering::Relaxed);
    }
}

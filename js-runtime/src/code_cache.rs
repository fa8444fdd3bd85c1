//! V8's code cache for a bundle's modules: the compiled form of a module kept after its first
//! compilation, so later cold starts deserialise instead of parsing and compiling again.

use std::sync::Arc;

/// Where code caches are kept; the node chooses (memory, disk). Keys are a module's SHA-256
/// (lowercase hex, as in the bundle manifest), so a cache never belongs to other code.
///
/// V8 itself refuses a cache made by another V8 version or with other flags, and the runtime
/// then compiles from source and offers a fresh cache through [`CodeCache::put`]. V8 does not
/// checksum the cache in release builds, so a store that can be corrupted (a disk) must check
/// the bytes it returns.
pub trait CodeCache: Send + Sync {
    /// The cache for the module with SHA-256 `module_hash`, if one is kept.
    fn get(&self, module_hash: &str) -> Option<Arc<[u8]>>;
    /// A new cache for the module, replacing any kept one (which V8 refused, if there was one).
    fn put(&self, module_hash: &str, data: &[u8]);
}

/// The key deno_core passes along with a cache: the first 8 bytes of the module's SHA-256.
pub(crate) fn short_hash(module_hash: &str) -> u64 {
    module_hash.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0)
}

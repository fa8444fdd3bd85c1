//! What makes a cold start cheap: decoded bundles in memory (backed by their artifacts under
//! `data_dir/bundles`) and V8 code caches (in memory and under `data_dir/code-cache`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bundler::{Bundle, BundleError};
use js_runtime::CodeCache;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::backend::local::write_atomically;

/// Why a bundle could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BundleStoreError {
    /// The artifact could not be read or written.
    #[error("bundle {hash}: {source}")]
    Io {
        hash: String,
        #[source]
        source: std::io::Error,
    },
    /// The artifact on disk is not a valid bundle (or not the one its name says).
    #[error("bundle {hash}: {source}")]
    Invalid {
        hash: String,
        #[source]
        source: BundleError,
    },
}

/// Bundles by content hash: artifacts on disk, decoded copies in a size-bounded memory cache.
pub struct Bundles {
    dir: PathBuf,
    memory: Cache<String, Arc<Bundle>>,
}

impl Bundles {
    /// Bundles under `dir` (created if missing), keeping at most `capacity` bytes decoded.
    pub fn open(dir: PathBuf, capacity: u64) -> std::io::Result<Bundles> {
        std::fs::create_dir_all(&dir)?;
        let memory = Cache::builder()
            .weigher(|_: &String, b: &Arc<Bundle>| u32::try_from(b.size()).unwrap_or(u32::MAX))
            .max_capacity(capacity)
            .build();
        Ok(Bundles { dir, memory })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.bundle"))
    }

    /// Keeps a bundle: its artifact written to disk (once per hash, synced) and the decoded
    /// bundle cached.
    pub fn keep(&self, bundle: Arc<Bundle>) -> Result<(), BundleStoreError> {
        let hash = bundle.hash().to_string();
        let path = self.path(&hash);
        if !path.exists() {
            write_atomically(&path, &bundle.encode(), true)
                .map_err(|source| BundleStoreError::Io { hash: hash.clone(), source })?;
        }
        self.memory.insert(hash, bundle);
        Ok(())
    }

    /// The bundle with this hash: the cached copy, or its artifact read and checked again.
    pub fn get(&self, hash: &str) -> Result<Arc<Bundle>, BundleStoreError> {
        if let Some(bundle) = self.memory.get(hash) {
            return Ok(bundle);
        }
        let bytes = std::fs::read(self.path(hash))
            .map_err(|source| BundleStoreError::Io { hash: hash.to_string(), source })?;
        let bundle = Bundle::decode(&bytes)
            .map_err(|source| BundleStoreError::Invalid { hash: hash.to_string(), source })?;
        if bundle.hash() != hash {
            let source = BundleError::HashMismatch {
                expected: hash.to_string(),
                actual: bundle.hash().to_string(),
            };
            return Err(BundleStoreError::Invalid { hash: hash.to_string(), source });
        }
        let bundle = Arc::new(bundle);
        self.memory.insert(hash.to_string(), bundle.clone());
        Ok(bundle)
    }

    /// Deletes every artifact whose hash is not in `keep`.
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".bundle")) else {
                continue;
            };
            if !keep.contains(hash) {
                self.memory.invalidate(hash);
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(error = %e, bundle = hash, "cannot delete an unused bundle");
                }
            }
        }
    }
}

/// How the code cache has been used since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCacheStats {
    /// Caches handed to V8 (from memory or disk).
    pub hits: u64,
    /// Modules compiled with no cache to offer.
    pub misses: u64,
    /// Caches V8 made and we kept.
    pub stored: u64,
    /// Files on disk that failed their checksum and were deleted.
    pub corrupt: u64,
}

/// V8 code caches, keyed by module SHA-256: in memory, and on disk as
/// `magic | V8 version | SHA-256 of the data | data`, checked on every read.
pub struct CodeCacheStore {
    dir: PathBuf,
    memory: Cache<String, Arc<[u8]>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    corrupt: AtomicU64,
}

const CACHE_MAGIC: &[u8; 8] = b"ISOLACC1";

impl CodeCacheStore {
    /// Caches under `dir` (created if missing), keeping at most `capacity` bytes in memory.
    /// Each V8 version has its own sub-folder, so an upgrade starts with an empty cache.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<CodeCacheStore> {
        let dir = dir.join(deno_core_v8_version());
        std::fs::create_dir_all(&dir)?;
        let memory = Cache::builder()
            .weigher(|_: &String, d: &Arc<[u8]>| u32::try_from(d.len()).unwrap_or(u32::MAX))
            .max_capacity(capacity)
            .build();
        Ok(CodeCacheStore {
            dir,
            memory,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        })
    }

    /// The file that holds the cache of a module.
    pub fn path(&self, module_hash: &str) -> PathBuf {
        self.dir.join(format!("{module_hash}.v8"))
    }

    pub fn stats(&self) -> CodeCacheStats {
        CodeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }

    fn read_disk(&self, module_hash: &str) -> Option<Arc<[u8]>> {
        let path = self.path(module_hash);
        let bytes = std::fs::read(&path).ok()?;
        let version = deno_core_v8_version().as_bytes();
        let header = CACHE_MAGIC.len() + 1 + version.len() + 32;
        let valid = bytes.len() > header
            && &bytes[..8] == CACHE_MAGIC
            && usize::from(bytes[8]) == version.len()
            && &bytes[9..9 + version.len()] == version
            && bytes[header - 32..header] == Sha256::digest(&bytes[header..])[..];
        if !valid {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), "code cache file is corrupt; ignored and removed");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(Arc::from(&bytes[header..]))
    }
}

impl CodeCache for CodeCacheStore {
    fn get(&self, module_hash: &str) -> Option<Arc<[u8]>> {
        let found = self.memory.get(module_hash).or_else(|| {
            let data = self.read_disk(module_hash)?;
            self.memory.insert(module_hash.to_string(), data.clone());
            Some(data)
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, module_hash: &str, data: &[u8]) {
        let version = deno_core_v8_version().as_bytes();
        let mut file = Vec::with_capacity(data.len() + 64);
        file.extend_from_slice(CACHE_MAGIC);
        file.push(version.len() as u8);
        file.extend_from_slice(version);
        file.extend_from_slice(&Sha256::digest(data));
        file.extend_from_slice(data);
        // A cache is rebuilt if lost, so it is not synced; the rename keeps readers from
        // seeing half a file.
        if let Err(e) = write_atomically(&self.path(module_hash), &file, false) {
            tracing::warn!(error = %e, "cannot write a code cache file");
        }
        self.memory.insert(module_hash.to_string(), Arc::from(data));
        self.stored.fetch_add(1, Ordering::Relaxed);
    }
}

fn deno_core_v8_version() -> &'static str {
    js_runtime::v8_version()
}

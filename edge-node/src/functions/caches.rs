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
    /// Files on disk, or entries of a pack, that failed their checksum (and were dropped).
    pub corrupt: u64,
    /// Caches received with a bundle (made by `edge-node bundle` or by another node).
    pub shipped: u64,
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
    shipped: AtomicU64,
}

const CACHE_MAGIC: &[u8; 8] = b"ISOLACC1";
const PACK_MAGIC: &[u8; 8] = b"ISOLACP1";

/// Why a code cache pack was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the code cache pack is damaged ({0})")]
    Damaged(&'static str),
    #[error("the code cache pack was made by V8 {version} with flags `{flags}`; this node runs V8 {} with flags `{}`", js_runtime::v8_version(), js_runtime::v8_flags())]
    OtherV8 { version: String, flags: String },
}

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
            shipped: AtomicU64::new(0),
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
            shipped: self.shipped.load(Ordering::Relaxed),
        }
    }

    /// What a pack is made for: the V8 version and flags its caches are valid with. Packs in
    /// the cluster are named by it, so nodes of different V8 builds each keep their own.
    pub fn pack_key() -> String {
        let digest = Sha256::digest(js_runtime::v8_flags().as_bytes());
        let flags: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("v8-{}-{flags}", js_runtime::v8_version())
    }

    /// The caches this node has for `bundle`'s modules, in one pack (see [`pack_code_caches`]).
    pub fn pack(&self, bundle: &Bundle) -> Option<Vec<u8>> {
        pack_code_caches(bundle, |hash| self.memory.get(hash).or_else(|| self.read_disk(hash)))
    }

    /// Takes the caches of a pack made by [`CodeCacheStore::pack`] for `bundle`: each entry
    /// whose checksum holds and that belongs to one of the bundle's modules is kept as if this
    /// node had made it. Answers how many were taken; a pack for another V8 or flags is
    /// refused whole (V8 would refuse each cache anyway).
    pub fn unpack(&self, bundle: &Bundle, pack: &[u8]) -> Result<usize, PackError> {
        let mut r = pack;
        let mut take = |n: usize| -> Result<&[u8], PackError> {
            if r.len() < n {
                return Err(PackError::Damaged("cut short"));
            }
            let (head, rest) = r.split_at(n);
            r = rest;
            Ok(head)
        };
        if take(PACK_MAGIC.len())? != PACK_MAGIC {
            return Err(PackError::Damaged("not a pack"));
        }
        let mut text = || -> Result<String, PackError> {
            let len = usize::from(take(1)?[0]);
            Ok(String::from_utf8_lossy(take(len)?).into_owned())
        };
        let (version, flags) = (text()?, text()?);
        if version != js_runtime::v8_version() || flags != js_runtime::v8_flags() {
            return Err(PackError::OtherV8 { version, flags });
        }
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let count = u32_at(take(4)?);
        let mut taken = 0;
        for _ in 0..count {
            let hash = String::from_utf8_lossy(take(64)?).into_owned();
            let checksum = take(32)?.to_vec();
            let len = u32_at(take(4)?);
            let data = take(len)?;
            if Sha256::digest(data)[..] != checksum[..] {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(module = %hash, "a shipped code cache fails its checksum; ignored");
                continue;
            }
            if !bundle.modules().any(|m| m.info.hash == hash) {
                continue;
            }
            self.keep(&hash, data);
            self.shipped.fetch_add(1, Ordering::Relaxed);
            taken += 1;
        }
        Ok(taken)
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
        self.keep(module_hash, data);
        self.stored.fetch_add(1, Ordering::Relaxed);
    }
}

impl CodeCacheStore {
    /// Writes a cache to disk and memory.
    fn keep(&self, module_hash: &str, data: &[u8]) {
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
    }
}

/// The caches of `bundle`'s script modules that `cache_of` has, in one pack: `magic | V8
/// version | flags | count | per module: its SHA-256 (hex) | SHA-256 of the data | length |
/// data`. Modules never loaded (imported only dynamically) have none and are left out; `None`
/// if no module has one.
pub fn pack_code_caches(
    bundle: &Bundle,
    cache_of: impl Fn(&str) -> Option<Arc<[u8]>>,
) -> Option<Vec<u8>> {
    let caches: Vec<(&str, Arc<[u8]>)> = bundle
        .modules()
        .filter(|m| m.info.kind == bundler::ModuleKind::Js)
        .filter_map(|m| Some((m.info.hash.as_str(), cache_of(&m.info.hash)?)))
        .collect();
    if caches.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(caches.iter().map(|(_, d)| d.len() + 100).sum());
    out.extend_from_slice(PACK_MAGIC);
    for text in [js_runtime::v8_version(), js_runtime::v8_flags()] {
        out.push(u8::try_from(text.len()).ok()?);
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&(caches.len() as u32).to_le_bytes());
    for (hash, data) in caches {
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(&Sha256::digest(&data));
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// Code caches held in memory only, for `edge-node bundle`'s compile.
#[derive(Default)]
pub struct MemoryCodeCache(std::sync::Mutex<std::collections::HashMap<String, Arc<[u8]>>>);

impl CodeCache for MemoryCodeCache {
    fn get(&self, module_hash: &str) -> Option<Arc<[u8]>> {
        self.0.lock().expect("cache lock").get(module_hash).cloned()
    }

    fn put(&self, module_hash: &str, data: &[u8]) {
        self.0.lock().expect("cache lock").insert(module_hash.to_string(), Arc::from(data));
    }
}

fn deno_core_v8_version() -> &'static str {
    js_runtime::v8_version()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bundle() -> Bundle {
        let mut sources = BTreeMap::new();
        sources.insert("a.js".to_string(), Arc::from("import './b.js'; export default {}"));
        sources.insert("b.js".to_string(), Arc::from("export const b = 1"));
        sources.insert("c.json".to_string(), Arc::from("{}"));
        Bundle::from_sources("f", "a.js", sources).unwrap()
    }

    fn hash(bundle: &Bundle, path: &str) -> String {
        bundle.module(path).unwrap().info.hash.clone()
    }

    #[test]
    fn a_pack_carries_the_caches_of_a_bundle_and_refuses_damage() {
        let bundle = bundle();
        let from = tempfile::tempdir().unwrap();
        let from = CodeCacheStore::open(from.path(), 1 << 20).unwrap();
        assert!(from.pack(&bundle).is_none(), "no cache, no pack");
        from.put(&hash(&bundle, "a.js"), b"compiled a");
        from.put(&hash(&bundle, "b.js"), b"compiled b");
        from.put("0123", b"another bundle's module");
        let pack = from.pack(&bundle).unwrap();

        let to = tempfile::tempdir().unwrap();
        let to = CodeCacheStore::open(to.path(), 1 << 20).unwrap();
        assert_eq!(to.unpack(&bundle, &pack).unwrap(), 2);
        assert_eq!(to.get(&hash(&bundle, "b.js")).as_deref(), Some(&b"compiled b"[..]));
        assert_eq!(to.stats().shipped, 2);
        assert!(to.path(&hash(&bundle, "a.js")).is_file(), "kept on disk too");

        // A pack offered for another bundle gives it nothing.
        let mut other = BTreeMap::new();
        other.insert("a.js".to_string(), Arc::<str>::from("export default 2"));
        let other = Bundle::from_sources("f", "a.js", other).unwrap();
        assert_eq!(to.unpack(&other, &pack).unwrap(), 0);

        // Every cut is refused; a flipped data byte drops that cache only.
        for len in 0..pack.len() {
            assert!(to.unpack(&bundle, &pack[..len]).is_err(), "cut at {len}");
        }
        let mut flipped = pack.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let before = to.stats().corrupt;
        assert_eq!(to.unpack(&bundle, &flipped).unwrap(), 1);
        assert_eq!(to.stats().corrupt, before + 1);

        // Another V8: refused whole.
        let version = js_runtime::v8_version();
        let at = PACK_MAGIC.len() + 1;
        let mut other_v8 = pack.clone();
        other_v8[at..at + version.len()].copy_from_slice(&b"9".repeat(version.len()));
        assert!(matches!(to.unpack(&bundle, &other_v8), Err(PackError::OtherV8 { .. })));
    }
}

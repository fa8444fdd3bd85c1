//! A function's modules, gathered into one immutable [`Bundle`] identified by a content hash.
//!
//! This first stage gathers the JavaScript (`.js`, `.mjs`) and JSON files of a function folder
//! as they are; the runtime loads them as separate ES modules and resolves imports only among
//! them. Nothing here knows V8 or sockets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The largest bundle accepted, counting the bytes of every module.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// File extensions gathered into a bundle.
const MODULE_EXTENSIONS: &[&str] = &["js", "mjs", "json"];

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The entry module named by edge.toml is not among the gathered files.
    #[error("entry module `{0}` not found in the function folder")]
    MissingEntry(String),
    /// The entry module is not JavaScript.
    #[error("entry module `{0}` must be a .js or .mjs file")]
    EntryNotJs(String),
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A module is not valid UTF-8.
    #[error("{} is not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    /// The modules together exceed [`MAX_BUNDLE_BYTES`].
    #[error("the function's modules exceed {} bytes", MAX_BUNDLE_BYTES)]
    TooLarge,
}

/// What a bundle holds, without the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    /// The entry module's path inside the bundle (`src/index.js`).
    pub entry: String,
    pub modules: Vec<ModuleInfo>,
}

/// One module of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Path inside the bundle, `/`-separated, relative to the function folder.
    pub path: String,
    /// SHA-256 of the source, lowercase hex.
    pub hash: String,
    pub size: u64,
}

/// A function's modules, immutable once built. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Bundle {
    manifest: Manifest,
    sources: BTreeMap<String, Arc<str>>,
    hash: String,
}

impl Bundle {
    /// Gathers the modules of a function folder. `entry` is relative to `dir`.
    pub fn from_dir(dir: &Path, name: &str, entry: &Path) -> Result<Bundle, BundleError> {
        let mut sources = BTreeMap::new();
        let mut total = 0u64;
        gather(dir, dir, &mut sources, &mut total)?;
        let entry = to_bundle_path(entry);
        Bundle::from_sources(name, &entry, sources)
    }

    /// Builds a bundle from in-memory sources keyed by bundle path.
    pub fn from_sources(
        name: &str,
        entry: &str,
        sources: BTreeMap<String, Arc<str>>,
    ) -> Result<Bundle, BundleError> {
        if !sources.contains_key(entry) {
            return Err(BundleError::MissingEntry(entry.to_string()));
        }
        if !(entry.ends_with(".js") || entry.ends_with(".mjs")) {
            return Err(BundleError::EntryNotJs(entry.to_string()));
        }
        let total: u64 = sources.values().map(|s| s.len() as u64).sum();
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        let mut whole = Sha256::new();
        whole.update(name.as_bytes());
        whole.update([0]);
        whole.update(entry.as_bytes());
        let modules = sources
            .iter()
            .map(|(path, source)| {
                let hash = hex(&Sha256::digest(source.as_bytes()));
                whole.update([0]);
                whole.update(path.as_bytes());
                whole.update([0]);
                whole.update(hash.as_bytes());
                ModuleInfo { path: path.clone(), hash, size: source.len() as u64 }
            })
            .collect();
        Ok(Bundle {
            manifest: Manifest { name: name.to_string(), entry: entry.to_string(), modules },
            sources,
            hash: hex(&whole.finalize()),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The content hash over the name, the entry and every module: equal hashes, equal bundles.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The source of the module at `path` (`src/lib/util.js`), if the bundle holds it.
    pub fn source(&self, path: &str) -> Option<&Arc<str>> {
        self.sources.get(path)
    }
}

fn to_bundle_path(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn gather(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Arc<str>>,
    total: &mut u64,
) -> Result<(), BundleError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Read { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        let kind = entry.file_type().map_err(read_err(&path))?;
        if kind.is_dir() {
            gather(root, &path, out, total)?;
        } else if kind.is_file()
            && path.extension().is_some_and(|e| MODULE_EXTENSIONS.iter().any(|m| e == *m))
        {
            let bytes = std::fs::read(&path).map_err(read_err(&path))?;
            *total += bytes.len() as u64;
            if *total > MAX_BUNDLE_BYTES {
                return Err(BundleError::TooLarge);
            }
            let text = String::from_utf8(bytes).map_err(|_| BundleError::NotUtf8(path.clone()))?;
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.insert(to_bundle_path(relative), Arc::from(text));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn gathers_modules_and_hashes_content() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/index.js", "export default {}");
        write(dir.path(), "src/lib/data.json", "{}");
        write(dir.path(), "README.md", "not a module");
        write(dir.path(), "node_modules/x/index.js", "skipped");
        let a = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap();
        let paths: Vec<_> = a.manifest().modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["src/index.js", "src/lib/data.json"]);
        assert_eq!(a.source("src/index.js").unwrap().as_ref(), "export default {}");

        let again = Bundle::from_dir(dir.path(), "f", Path::new("./src/index.js")).unwrap();
        assert_eq!(a.hash(), again.hash());
        write(dir.path(), "src/lib/data.json", "[]");
        let changed = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap();
        assert_ne!(a.hash(), changed.hash());
    }

    #[test]
    fn refuses_a_missing_entry() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/other.js", "");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(matches!(err, BundleError::MissingEntry(p) if p == "src/index.js"));
    }
}

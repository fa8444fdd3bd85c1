//! The in-memory [`Bundle`]: a function's modules, their import maps and the content hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{BundleError, MAX_BUNDLE_BYTES};

/// The bundle format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// How the runtime loads a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// An ES module (JavaScript, or TypeScript/JSX already transpiled).
    Js,
    /// A JSON module (`import data from "./x.json" with { type: "json" }`).
    Json,
    /// A text module (`import page from "./page.html" with { type: "text" }`).
    Text,
}

impl ModuleKind {
    /// The kind a file's extension gives: scripts are modules, `.json` is JSON, anything else
    /// imported is text.
    pub fn of_path(path: &str) -> ModuleKind {
        let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "js" | "mjs" | "cjs" | "jsx" | "ts" | "mts" | "cts" | "tsx" => ModuleKind::Js,
            "json" => ModuleKind::Json,
            _ => ModuleKind::Text,
        }
    }
}

/// What a bundle holds, without the sources: written at the head of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    /// The entry module's path inside the bundle (`src/index.ts`).
    pub entry: String,
    /// When the bundle was built, RFC 3339. Not part of the content hash.
    pub created_at: String,
    /// The tool that built it (`isola-bundler 0.1.0`). Not part of the content hash.
    pub tool: String,
    /// The content hash (see [`Bundle::hash`]).
    pub hash: String,
    /// The function's edge.toml as written, when the bundle carries it (a deployable bundle
    /// does: routes, vars and limits come with the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub modules: Vec<ModuleInfo>,
}

/// One module of a bundle, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Path inside the bundle, `/`-separated, relative to the function folder
    /// (`src/index.ts`, `node_modules/hono/dist/index.js`).
    pub path: String,
    pub kind: ModuleKind,
    /// SHA-256 of the module's code as the runtime loads it, lowercase hex.
    pub hash: String,
    /// Bytes of code.
    pub size: u64,
    /// Bytes of the source map back to the original file, when the code was transpiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_map_size: Option<u64>,
    /// Each import specifier written in the module and the bundle path it resolved to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub imports: BTreeMap<String, String>,
}

/// One module with its code.
#[derive(Debug, Clone)]
pub struct Module {
    pub info: ModuleInfo,
    pub code: Arc<str>,
    pub source_map: Option<Arc<[u8]>>,
}

/// A module handed to [`Bundle::new`].
#[derive(Debug, Clone)]
pub struct ModuleInput {
    pub kind: ModuleKind,
    pub code: String,
    pub source_map: Option<Vec<u8>>,
    pub imports: BTreeMap<String, String>,
}

/// A function's modules, immutable once built. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Bundle {
    manifest: Manifest,
    modules: BTreeMap<String, Module>,
}

impl Bundle {
    /// Assembles a bundle from its modules, keyed by bundle path, and computes its hash.
    pub fn new(
        name: &str,
        entry: &str,
        modules: BTreeMap<String, ModuleInput>,
    ) -> Result<Bundle, BundleError> {
        match modules.get(entry) {
            None => return Err(BundleError::MissingEntry(entry.to_string())),
            Some(m) if m.kind != ModuleKind::Js => {
                return Err(BundleError::EntryNotJs(entry.to_string()))
            }
            Some(_) => {}
        }
        let total: u64 = modules
            .values()
            .map(|m| (m.code.len() + m.source_map.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { limit: MAX_BUNDLE_BYTES });
        }
        let modules: BTreeMap<String, Module> = modules
            .into_iter()
            .map(|(path, m)| {
                let info = ModuleInfo {
                    path: path.clone(),
                    kind: m.kind,
                    hash: hex(&Sha256::digest(m.code.as_bytes())),
                    size: m.code.len() as u64,
                    source_map_size: m.source_map.as_ref().map(|s| s.len() as u64),
                    imports: m.imports,
                };
                let module = Module {
                    info,
                    code: Arc::from(m.code),
                    source_map: m.source_map.map(Arc::from),
                };
                (path, module)
            })
            .collect();
        let hash = content_hash(name, entry, None, &modules);
        let manifest = Manifest {
            format: FORMAT,
            name: name.to_string(),
            entry: entry.to_string(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            tool: concat!("isola-bundler ", env!("CARGO_PKG_VERSION")).to_string(),
            hash,
            config: None,
            modules: modules.values().map(|m| m.info.clone()).collect(),
        };
        Ok(Bundle { manifest, modules })
    }

    /// The bundle with the function's edge.toml text inside, which then counts in the hash.
    pub fn with_config(mut self, edge_toml: String) -> Bundle {
        let m = &self.manifest;
        self.manifest.hash = content_hash(&m.name, &m.entry, Some(&edge_toml), &self.modules);
        self.manifest.config = Some(edge_toml);
        self
    }

    /// Builds a bundle of plain JavaScript modules given as text, keyed by bundle path; imports
    /// between them are resolved at run time, relative to the importing module.
    pub fn from_sources(
        name: &str,
        entry: &str,
        sources: BTreeMap<String, Arc<str>>,
    ) -> Result<Bundle, BundleError> {
        let modules = sources
            .into_iter()
            .map(|(path, code)| {
                let kind = ModuleKind::of_path(&path);
                let input = ModuleInput {
                    kind,
                    code: code.to_string(),
                    source_map: None,
                    imports: Default::default(),
                };
                (path, input)
            })
            .collect();
        Bundle::new(name, entry, modules)
    }

    /// Rebuilds a bundle read back from an artifact, whose manifest must match its content.
    pub(crate) fn from_parts(
        manifest: Manifest,
        modules: BTreeMap<String, Module>,
    ) -> Result<Bundle, BundleError> {
        let actual =
            content_hash(&manifest.name, &manifest.entry, manifest.config.as_deref(), &modules);
        if actual != manifest.hash {
            return Err(BundleError::HashMismatch { expected: manifest.hash, actual });
        }
        match modules.get(&manifest.entry) {
            Some(m) if m.info.kind == ModuleKind::Js => {}
            _ => return Err(BundleError::MissingEntry(manifest.entry)),
        }
        Ok(Bundle { manifest, modules })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The content hash over the name, the entry, the edge.toml text if carried and every
    /// module (path, kind, code, source map, import map): equal hashes, equal bundles. The build time and tool are left out, so
    /// building the same source twice gives the same hash.
    pub fn hash(&self) -> &str {
        &self.manifest.hash
    }

    /// The module at `path` (`src/lib/util.ts`), if the bundle holds it.
    pub fn module(&self, path: &str) -> Option<&Module> {
        self.modules.get(path)
    }

    /// The code of the module at `path`, if the bundle holds it.
    pub fn source(&self, path: &str) -> Option<&Arc<str>> {
        self.modules.get(path).map(|m| &m.code)
    }

    /// Every module, by path.
    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.values()
    }

    /// Bytes of code and source maps together.
    pub fn size(&self) -> u64 {
        self.modules.values().map(|m| m.info.size + m.info.source_map_size.unwrap_or(0)).sum()
    }
}

fn content_hash(
    name: &str,
    entry: &str,
    config: Option<&str>,
    modules: &BTreeMap<String, Module>,
) -> String {
    let mut whole = Sha256::new();
    let mut field = |bytes: &[u8]| {
        whole.update((bytes.len() as u64).to_le_bytes());
        whole.update(bytes);
    };
    field(b"isola-bundle");
    field(&FORMAT.to_le_bytes());
    field(name.as_bytes());
    field(entry.as_bytes());
    match config {
        Some(config) => {
            field(b"config");
            field(config.as_bytes());
        }
        None => field(b"no config"),
    }
    for (path, m) in modules {
        field(path.as_bytes());
        field(format!("{:?}", m.info.kind).as_bytes());
        field(&Sha256::digest(m.code.as_bytes()));
        match &m.source_map {
            Some(map) => field(&Sha256::digest(map)),
            None => field(b""),
        }
        for (specifier, target) in &m.info.imports {
            field(specifier.as_bytes());
            field(target.as_bytes());
        }
        field(b"end");
    }
    hex(&whole.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

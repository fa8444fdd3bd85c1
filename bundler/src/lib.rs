//! A function's source tree -> one immutable, content-addressed [`Bundle`].
//!
//! [`Bundle::from_dir`] starts at the entry module, follows every import (relative paths and
//! npm packages from `node_modules`), transpiles TypeScript and JSX with oxc and keeps a source
//! map per transpiled module. [`Bundle::encode`] writes the artifact a node stores: a JSON
//! manifest and lz4-compressed modules; [`Bundle::decode`] reads it back and refuses it whole if
//! it is truncated, tampered or too large. Nothing here knows V8 or sockets.

mod artifact;
mod build;
mod bundle;
mod commonjs;
mod define;
mod node;
mod transform;

use std::path::PathBuf;

pub use build::BuildOptions;
pub use bundle::{Bundle, Manifest, Module, ModuleInfo, ModuleInput, ModuleKind, FORMAT};

/// The largest bundle accepted, counting the bytes of every module and source map.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a bundle could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The entry module named by edge.toml does not exist.
    #[error("entry module `{0}` not found in the function folder")]
    MissingEntry(String),
    /// The entry module is not a script.
    #[error("entry module `{0}` must be a JavaScript or TypeScript file")]
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
    /// A module does not parse (or a JSON module is not JSON).
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: String, line: usize, column: usize, message: String },
    /// An import cannot be resolved to a module inside the function folder.
    #[error("cannot resolve `{specifier}` imported from {importer}: {reason}")]
    Unresolved { importer: String, specifier: String, reason: String },
    /// The modules together exceed the limit.
    #[error("the bundle is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The artifact does not start like a bundle.
    #[error("not a bundle (wrong magic bytes)")]
    NotABundle,
    /// The artifact was written by a format this version cannot read.
    #[error("unsupported bundle format {0}")]
    UnsupportedFormat(u32),
    /// The artifact ends before its declared content.
    #[error("the bundle is truncated")]
    Truncated,
    /// The artifact's content does not decode or does not match its manifest.
    #[error("the bundle is corrupt: {0}")]
    Corrupt(String),
    /// The content hash recomputed over the artifact differs from the one in its manifest.
    #[error("the bundle's content hash is {actual}, its manifest says {expected}")]
    HashMismatch { expected: String, actual: String },
}

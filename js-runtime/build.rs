//! Evaluates the Web API extensions and Isola's runtime JavaScript into a V8 startup
//! snapshot, so a new isolate starts with every global already in place.

#[allow(dead_code, unused_imports, reason = "only the extension list is used here")]
#[path = "src/ext/mod.rs"]
mod ext;
#[path = "src/wakes.rs"]
#[allow(dead_code, reason = "the snapshot's build runs no isolate thread")]
mod wakes;

/// The part of the limits the extension's `Host` keeps: the time accounts of invocations.
#[allow(dead_code, reason = "only the extension list is used here")]
#[path = "src/limits/meter.rs"]
mod meter;
mod limits {
    pub(crate) use super::meter::{Charged, Meter};
}

/// The outbound WebSocket op is never called while the snapshot is made.
#[allow(dead_code, reason = "only the extension list is used here")]
mod websocket {
    use crate::ext::{SocketIn, SocketOut};
    pub async fn open(
        _: &str,
        _: &str,
    ) -> Result<
        (tokio::sync::mpsc::Sender<SocketOut>, tokio::sync::mpsc::Receiver<SocketIn>, String),
        String,
    > {
        Err("no sockets while the snapshot is made".into())
    }
}

/// The snapshot is made with deno_web's own URL ops; the runtime swaps in ada-url's
/// (`src/url_ops.rs`), which keep their signatures.
mod url_ops {
    pub fn replace(op: deno_core::OpDecl) -> deno_core::OpDecl {
        op
    }
}

/// This package's folder as cargo gives it to this run. Cargo may reuse this script, compiled
/// in another checkout of the repository, in this one (its fingerprint names files relative to
/// the package), so paths fixed at compile time (`env!`, and the extensions' JavaScript files,
/// which deno_core's macros name that way) can point at the other checkout, or at one that is
/// gone; they are taken from here instead.
fn manifest_dir() -> &'static str {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    Box::leak(dir.into_boxed_str())
}

/// The extensions, their JavaScript files read from this checkout (see [`manifest_dir`]).
fn extensions(here: &'static str) -> Vec<deno_core::Extension> {
    use deno_core::ExtensionFileSourceCode::LoadedFromFsDuringSnapshot;
    let compiled_in = env!("CARGO_MANIFEST_DIR");
    let mut extensions = ext::extensions(deno_fetch::Options::default());
    for extension in &mut extensions {
        for files in [
            &mut extension.js_files,
            &mut extension.esm_files,
            &mut extension.lazy_loaded_esm_files,
            &mut extension.lazy_loaded_js_files,
        ] {
            for file in files.to_mut() {
                if let LoadedFromFsDuringSnapshot(path) = file.code {
                    if let Some(rest) = path.strip_prefix(compiled_in) {
                        let moved = Box::leak(format!("{here}{rest}").into_boxed_str());
                        file.code = LoadedFromFsDuringSnapshot(moved);
                    }
                }
            }
        }
    }
    extensions
}

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set"));
    let here = manifest_dir();
    let snapshot = deno_core::snapshot::create_snapshot(
        deno_core::snapshot::CreateSnapshotOptions {
            cargo_manifest_dir: here,
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: extensions(here),
            extension_transpiler: None,
            with_runtime_cb: None,
        },
        None,
    )
    .expect("the runtime JavaScript evaluates into a snapshot");
    for path in snapshot.files_loaded_during_snapshot {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=src/ext");
    std::fs::write(out.join("SNAPSHOT.bin"), snapshot.output).expect("write the snapshot");
}

//! Evaluates the Web API extensions and Isola's runtime JavaScript into a V8 startup
//! snapshot, so a new isolate starts with every global already in place.

#[allow(dead_code, unused_imports, reason = "only the extension list is used here")]
#[path = "src/ext/mod.rs"]
mod ext;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set"));
    let snapshot = deno_core::snapshot::create_snapshot(
        deno_core::snapshot::CreateSnapshotOptions {
            cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: ext::extensions(deno_fetch::Options::default()),
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

//! `bundle`: a function folder built into one deployable file.

use std::path::Path;

use std::sync::Arc;

use anyhow::Context;
use js_runtime::CodeCache;

use edge_node::{pack_code_caches, MemoryCodeCache};

use super::BadConfig;

#[allow(clippy::print_stdout, reason = "the command's answer")]
pub fn bundle(dir: &Path, output: &Path, code_cache: bool) -> anyhow::Result<()> {
    let bundle = Arc::new(build_bundle(dir)?);
    let pack = if code_cache { Some(compile(&bundle)?) } else { None };
    let bytes = bundle.encode_with_code_cache(pack.as_deref());
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} modules, {} bytes of code, {} bytes written{}\nhash {}",
        output.display(),
        bundle.manifest().modules.len(),
        bundle.size(),
        bytes.len(),
        pack.map_or(String::new(), |p| format!(" ({} of them code cache)", p.len())),
        bundle.hash()
    );
    Ok(())
}

/// V8's code cache of the bundle's statically imported modules, compiled here, in a pack.
fn compile(bundle: &Arc<bundler::Bundle>) -> anyhow::Result<Vec<u8>> {
    let cache = Arc::new(MemoryCodeCache::default());
    js_runtime::compile_modules(bundle.clone(), cache.clone())
        .map_err(|e| BadConfig(format!("the function's modules do not compile: {e}")))?;
    pack_code_caches(bundle, |hash| cache.get(hash))
        .ok_or_else(|| anyhow::anyhow!("compiling left no code cache"))
}

/// Builds the deployable bundle of a function folder: its modules and its edge.toml.
pub fn build_bundle(dir: &Path) -> anyhow::Result<bundler::Bundle> {
    let config = config::EdgeConfig::load(dir).map_err(|e| BadConfig(e.to_string()))?;
    let options = bundler::BuildOptions { node_globals: config.nodejs_compat() };
    let bundle = bundler::Bundle::from_dir_with(dir, &config.name, &config.entry, &options)
        .map_err(|e| BadConfig(format!("{}: {e}", dir.display())))?;
    let file = dir.join(config::EDGE_FILE);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(bundle.with_config(text))
}

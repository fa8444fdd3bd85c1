//! `bundle`: a function folder built into one deployable file.

use std::path::Path;

use anyhow::Context;

use super::BadConfig;

#[allow(clippy::print_stdout, reason = "the command's answer")]
pub fn bundle(dir: &Path, output: &Path) -> anyhow::Result<()> {
    let bundle = build_bundle(dir)?;
    let bytes = bundle.encode();
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} modules, {} bytes of code, {} bytes written\nhash {}",
        output.display(),
        bundle.manifest().modules.len(),
        bundle.size(),
        bytes.len(),
        bundle.hash()
    );
    Ok(())
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

//! `--fn DIR` for the cold-start and isolates benches: a function folder bundled as the node
//! bundles it (its edge.toml's `nodejs_compat` included), in place of hello world.

use std::path::PathBuf;
use std::sync::Arc;

use bundler::{BuildOptions, Bundle};

/// The bundle of the folder named by `--fn DIR`, if one is.
pub fn from_args() -> Option<Arc<Bundle>> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--fn")?;
    let dir = PathBuf::from(args.get(at + 1).expect("--fn DIR"));
    let config = config::EdgeConfig::load(&dir).expect("the folder's edge.toml");
    let options = BuildOptions { node_globals: config.nodejs_compat() };
    let bundle =
        Bundle::from_dir_with(&dir, &config.name, &config.entry, &options).expect("bundle");
    Some(Arc::new(bundle))
}

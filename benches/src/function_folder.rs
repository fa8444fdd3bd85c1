//! A function folder written for a bench: `ROOT/NAME` holding `edge.toml` and `index.js`,
//! loaded as the node loads function folders.

use edge_node::FunctionSpec;

/// Writes `ROOT/NAME` with the edge.toml `toml` and the module `js`, and loads it.
pub fn function(root: &std::path::Path, name: &str, toml: &str, js: &str) -> FunctionSpec {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("edge.toml"), toml).expect("edge.toml");
    std::fs::write(dir.join("index.js"), js).expect("index.js");
    FunctionSpec::load(&dir, &config::LimitsConfig::default()).expect("function")
}

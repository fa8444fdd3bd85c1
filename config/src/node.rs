//! `node.toml`: one per node. Defaults live in the `Default` impls below and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Table;

use crate::limits::{over_max, read_request, Limits};
use crate::reader::{parse_toml, Reader};
use crate::{ConfigError, Problem};

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub http: HttpConfig,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub fetch: FetchConfig,
    /// `[functions]`: function folders served as they are on disk.
    pub functions: Option<FunctionsConfig>,
}

/// `[node]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// This node's id in logs and metrics. Default: `"local"`.
    pub id: String,
    /// The region it serves. Default: `"local"`.
    pub region: String,
    /// Where the node keeps its state. Default: `./data` beside node.toml.
    pub data_dir: PathBuf,
}

/// `[http]`: plaintext HTTP/1.1 listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Addresses to listen on. Default: `["0.0.0.0:8080"]`.
    pub listen: Vec<SocketAddr>,
}

/// `[runtime]`: what functions may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeConfig {
    /// Allow `eval` and `new Function`. Default: `false`, as on Workers.
    pub allow_eval: bool,
}

/// `[limits]`: the limits of a function that sets none, and `[limits.max]`, the most a
/// function's edge.toml may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub defaults: Limits,
    pub max: Limits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { defaults: Limits::default(), max: Limits::default_max() }
    }
}

/// `[fetch]`: what outbound `fetch` from functions may reach.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchConfig {
    /// Hosts reachable although they are loopback, private, link-local or metadata
    /// addresses: `"127.0.0.1:9000"` (that port only) or `"db.internal"` (any port).
    pub allow: Vec<String>,
}

/// `[functions]`: serve every function folder found under `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionsConfig {
    /// A folder whose sub-folders each hold an `edge.toml`.
    pub dir: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { id: "local".into(), region: "local".into(), data_dir: PathBuf::from("data") }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: vec![SocketAddr::from(([0, 0, 0, 0], 8080))] }
    }
}

impl NodeConfig {
    /// Reads and checks a node.toml; relative paths are resolved from the file's folder.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse(&text, base)
            .map_err(|problems| ConfigError::Invalid { file: path.to_path_buf(), problems })
    }

    /// Parses node.toml text; relative paths are resolved from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, Vec<Problem>> {
        let table = parse_toml(text).map_err(|p| vec![p])?;
        let mut r = Reader::default();
        let config = read(&mut r, &table, base);
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(r.problems)
        }
    }
}

fn read(r: &mut Reader, t: &Table, base: &Path) -> NodeConfig {
    let mut c = NodeConfig::default();
    r.deny_unknown(t, "", &["version", "node", "http", "runtime", "limits", "fetch", "functions"]);
    match r.integer(t, "", "version") {
        Some(1) => {}
        Some(v) => {
            r.problem("version", format!("unsupported version {v}; this node reads version 1"))
        }
        None if !t.contains_key("version") => r.problem("version", "missing; write `version = 1`"),
        None => {}
    }
    let resolve = |p: String| base.join(p);

    if let Some(s) = r.table(t, "", "node") {
        r.deny_unknown(s, "node", &["id", "region", "data_dir"]);
        if let Some(v) = r.string(s, "node", "id") {
            c.node.id = v;
        }
        if let Some(v) = r.string(s, "node", "region") {
            c.node.region = v;
        }
        if let Some(v) = r.string(s, "node", "data_dir") {
            c.node.data_dir = resolve(v);
        }
    }
    if c.node.data_dir.is_relative() {
        c.node.data_dir = base.join(&c.node.data_dir);
    }
    if let Some(s) = r.table(t, "", "http") {
        r.deny_unknown(s, "http", &["listen"]);
        if let Some(list) = r.string_list(s, "http", "listen") {
            c.http.listen.clear();
            for (i, addr) in list {
                match addr.parse::<SocketAddr>() {
                    Ok(a) => c.http.listen.push(a),
                    Err(_) => r.problem(
                        format!("http.listen[{i}]"),
                        format!("`{addr}` is not an address like \"0.0.0.0:8080\""),
                    ),
                }
            }
        }
    }
    if let Some(s) = r.table(t, "", "runtime") {
        r.deny_unknown(s, "runtime", &["allow_eval"]);
        if let Some(v) = r.bool(s, "runtime", "allow_eval") {
            c.runtime.allow_eval = v;
        }
    }
    if let Some(s) = r.table(t, "", "limits") {
        let defaults = read_request(r, s, "limits", &["max"]);
        let max = s.get("max");
        c.limits.defaults = defaults.over(&c.limits.defaults);
        if let Some(max) = max {
            match max.as_table() {
                Some(m) => c.limits.max = read_request(r, m, "limits.max", &[]).over(&c.limits.max),
                None => r.problem("limits.max", "expected a table"),
            }
        }
        for p in over_max(&c.limits.defaults, &c.limits.max) {
            r.problem(
                p.path,
                format!("the default {}", p.message.replace("this node allows", "limits.max")),
            );
        }
    }
    if let Some(s) = r.table(t, "", "fetch") {
        r.deny_unknown(s, "fetch", &["allow"]);
        if let Some(list) = r.string_list(s, "fetch", "allow") {
            for (i, host) in list {
                if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                    r.problem(
                        format!("fetch.allow[{i}]"),
                        format!("`{host}` is not a host or host:port"),
                    );
                } else {
                    c.fetch.allow.push(host.to_ascii_lowercase());
                }
            }
        }
    }
    if let Some(s) = r.table(t, "", "functions") {
        r.deny_unknown(s, "functions", &["dir"]);
        match r.string(s, "functions", "dir") {
            Some(dir) => c.functions = Some(FunctionsConfig { dir: resolve(dir) }),
            None if !s.contains_key("dir") => r.problem("functions.dir", "missing"),
            None => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c =
            NodeConfig::parse("version = 1\n[functions]\ndir = \"fns\"", Path::new("/etc/edge"))
                .unwrap();
        assert_eq!(c.http.listen, HttpConfig::default().listen);
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/edge/data"));
        assert_eq!(c.functions.unwrap().dir, PathBuf::from("/etc/edge/fns"));
    }

    #[test]
    fn limits_defaults_and_maximums() {
        let c = NodeConfig::parse(
            "version = 1\n[limits]\ncpu_time = \"100ms\"\n[limits.max]\nmemory = \"1GiB\"",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.limits.defaults.cpu_time, std::time::Duration::from_millis(100));
        assert_eq!(c.limits.defaults.memory, Limits::default().memory);
        assert_eq!(c.limits.max.memory, 1024 * 1024 * 1024);
        let problems = NodeConfig::parse(
            "version = 1\n[limits]\nmemory = \"2GiB\"\nwall_time = \"0s\"\ncolour = 1\n[limits.max]\nmemory = \"1GiB\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["limits.colour", "limits.wall_time", "limits.memory"], "{problems:?}");
    }

    #[test]
    fn every_problem_with_its_path() {
        let problems = NodeConfig::parse(
            "version = 2\n[http]\nlisten = [\"nope\", \"127.0.0.1:1\"]\nport = 3\n[runtime]\nallow_eval = \"yes\"",
            Path::new("/"),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["version", "http.port", "http.listen[0]", "runtime.allow_eval"]);
    }
}

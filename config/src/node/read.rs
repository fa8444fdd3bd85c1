//! Reading node.toml: serde for the keys, `EDGE__` overrides over them, and the checks between
//! keys in [`NodeConfig::validate`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::{LimitsConfig, NodeConfig};
use crate::de::{self, in_file_order, join, parse_toml};
use crate::limits::{over_max, LimitsRequest};
use crate::{ConfigError, Problem};

impl NodeConfig {
    /// Reads and checks a node.toml; relative paths are resolved from the file's folder.
    /// `env` holds the process environment: `EDGE__<SECTION>__<KEY>` variables override keys
    /// of the file (`EDGE__HTTP__LISTEN='["0.0.0.0:80"]'`, `EDGE__LIMITS__MAX__MEMORY=1GiB`).
    pub fn load(path: &Path, env: &[(String, String)]) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse_with_env(&text, base, env)
            .map_err(|problems| ConfigError::Invalid { file: path.to_path_buf(), problems })
    }

    /// Parses node.toml text; relative paths are resolved from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, Vec<Problem>> {
        NodeConfig::parse_with_env(text, base, &[])
    }

    /// Parses node.toml text with `EDGE__` environment overrides applied over it.
    pub fn parse_with_env(
        text: &str,
        base: &Path,
        env: &[(String, String)],
    ) -> Result<NodeConfig, Vec<Problem>> {
        match NodeConfig::parse_lenient(text, base, env) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(problems),
        }
    }

    /// Reads node.toml for `check`: every problem, and the config made of the keys that were
    /// fine (defaults in place of the others), so the function folders it names can be
    /// checked in the same pass. `None` when the file is not TOML at all.
    pub fn load_lenient(
        path: &Path,
        env: &[(String, String)],
    ) -> Result<(Option<NodeConfig>, Vec<Problem>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(NodeConfig::parse_lenient(&text, base, env))
    }

    fn parse_lenient(
        text: &str,
        base: &Path,
        env: &[(String, String)],
    ) -> (Option<NodeConfig>, Vec<Problem>) {
        let mut table = match parse_toml(text) {
            Ok(table) => table,
            Err(problem) => return (None, vec![problem]),
        };
        let mut problems = Vec::new();
        let overridden = apply_env(&mut problems, &mut table, env);
        let mut rest = table.clone();
        let version = rest.remove("version");
        let limits = rest.remove("limits");
        let first = problems.len();
        let mut removed = de::Removed::default();
        let mut config: NodeConfig = de::read(Value::Table(rest), "", &mut problems, &mut removed);
        also_expected(&mut problems[first..], "", &["version", "limits"]);
        match version {
            Some(Value::Integer(1)) => {}
            Some(Value::Integer(v)) => problems.push(Problem {
                path: "version".into(),
                message: format!("unsupported version {v}; this node reads version 1"),
            }),
            Some(_) => problems.push(Problem {
                path: "version".into(),
                message: "expected an integer (`version = 1`)".into(),
            }),
            None => problems.push(Problem {
                path: "version".into(),
                message: "missing; write `version = 1`".into(),
            }),
        }
        if let Some(limits) = limits {
            config.limits = read_limits(limits, &mut problems);
        }
        config.resolve(base);
        de::add_checks(&mut problems, config.validate(), &removed);
        for problem in &mut problems {
            let by = overridden.iter().find(|(path, _)| {
                problem.path == *path
                    || problem.path.starts_with(&format!("{path}."))
                    || problem.path.starts_with(&format!("{path}["))
            });
            if let Some((_, var)) = by {
                problem.message.push_str(&format!(" (set by {var})"));
            }
        }
        in_file_order(&mut problems, &table);
        (Some(config), problems)
    }

    /// Makes every relative path absolute from `base` (node.toml's folder).
    fn resolve(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.node.data_dir);
        if let Some(https) = &mut self.https {
            resolve(&mut https.cert);
            resolve(&mut https.key);
        }
        if let Some(cluster) = &mut self.cluster {
            for path in [
                &mut cluster.credentials,
                &mut cluster.tls_ca,
                &mut cluster.tls_cert,
                &mut cluster.tls_key,
            ]
            .into_iter()
            .flatten()
            {
                resolve(path);
            }
        }
        if let Some(functions) = &mut self.functions {
            resolve(&mut functions.dir);
        }
        for path in [&mut self.admin.cert, &mut self.admin.key, &mut self.secrets.key_file]
            .into_iter()
            .flatten()
        {
            resolve(path);
        }
        for host in &mut self.fetch.allow {
            host.make_ascii_lowercase();
        }
    }

    /// The checks a key's type cannot make: ranges, keys that go together, a default above
    /// its maximum. Every problem is returned with its key path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem =
            |path: &str, message: String| problems.push(Problem { path: path.into(), message });
        let http = &self.http;
        for (key, value, min) in [
            ("max_headers", http.max_headers, 1),
            ("max_connections", http.max_connections, 1),
            ("h2_max_concurrent_streams", http.h2_max_concurrent_streams as usize, 1),
            ("max_connections_per_ip", http.max_connections_per_ip, 1),
        ] {
            if value < min {
                problem(&join("http", key), format!("must be at least {min}"));
            }
        }
        if let Some(https) = &self.https {
            if https.listen.is_empty() {
                problem("https.listen", "missing (e.g. [\"0.0.0.0:8443\"])".into());
            }
            for (key, file) in [("cert", &https.cert), ("key", &https.key)] {
                if file.as_os_str().is_empty() {
                    problem(&join("https", key), "missing (a PEM file)".into());
                }
            }
        }
        if let Some(cluster) = &self.cluster {
            let url = &cluster.nats_url;
            if url.is_empty() {
                problem("cluster.nats_url", "missing (e.g. \"nats://127.0.0.1:4222\")".into());
            } else if !url.split(',').all(|one| {
                ["nats://", "tls://"].iter().any(|scheme| one.trim().starts_with(scheme))
            }) {
                problem("cluster.nats_url", format!("`{url}` is not a nats:// or tls:// URL"));
            }
            if cluster.node_ttl < Duration::from_secs(2) {
                problem("cluster.node_ttl", "must be at least 2s".into());
            }
            if cluster.tls_cert.is_some() != cluster.tls_key.is_some() {
                let missing = if cluster.tls_cert.is_some() { "tls_key" } else { "tls_cert" };
                problem(
                    &join("cluster", missing),
                    "missing (tls_cert and tls_key go together)".into(),
                );
            }
        }
        match (&self.admin.cert, &self.admin.key) {
            (Some(_), None) => problem("admin.key", "missing: `cert` is set, so is its key".into()),
            (None, Some(_)) => {
                problem("admin.cert", "missing: `key` is set, so is its certificate".into())
            }
            _ => {}
        }
        if let Some(replicas) = self.cluster.as_ref().and_then(|c| c.replicas) {
            if !(1..=5).contains(&replicas) {
                problem(
                    "cluster.replicas",
                    format!("{replicas} is out of range: JetStream keeps 1 to 5 replicas"),
                );
            }
        }
        if self.admin.keep_versions < 1 {
            problem("admin.keep_versions", "must be at least 1".into());
        }
        let pool = &self.pool;
        for (key, value, min) in [
            ("max_isolates", pool.max_isolates, 1),
            ("max_isolates_per_function", pool.max_isolates_per_function, 1),
            ("concurrency", pool.concurrency, 1),
        ] {
            if value < min {
                problem(&join("pool", key), format!("{value} is less than {min}"));
            }
        }
        for (key, value, max) in
            [("spare_isolates", pool.spare_isolates, 64), ("threads", pool.threads, 1024)]
        {
            if value > max {
                problem(&join("pool", key), format!("{value} is not between 0 and {max}"));
            }
        }
        for (i, host) in self.fetch.allow.iter().enumerate() {
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                problem(
                    &format!("fetch.allow[{i}]"),
                    format!("`{host}` is not a host or host:port"),
                );
            }
        }
        if self.functions.as_ref().is_some_and(|f| f.dir.as_os_str().is_empty()) {
            problem("functions.dir", "missing".into());
        }
        for p in over_max(&self.limits.defaults, &self.limits.max) {
            let message = p.message.replace("this node allows", "limits.max");
            problem(&p.path, format!("the default {message}"));
        }
        problems
    }
}

/// `[limits]`: the node's defaults, and `[limits.max]` in it.
fn read_limits(limits: Value, problems: &mut Vec<Problem>) -> LimitsConfig {
    let mut config = LimitsConfig::default();
    let Value::Table(mut defaults) = limits else {
        problems.push(Problem { path: "limits".into(), message: "expected a table".into() });
        return config;
    };
    let max = defaults.remove("max");
    let first = problems.len();
    let request: LimitsRequest =
        de::read(Value::Table(defaults), "limits", problems, &mut de::Removed::default());
    also_expected(&mut problems[first..], "limits", &["max"]);
    problems.extend(request.validate("limits"));
    config.defaults = request.over(&config.defaults);
    match max {
        Some(max @ Value::Table(_)) => {
            let request: LimitsRequest =
                de::read(max, "limits.max", problems, &mut de::Removed::default());
            problems.extend(request.validate("limits.max"));
            config.max = request.over(&config.max);
        }
        Some(_) => {
            problems.push(Problem { path: "limits.max".into(), message: "expected a table".into() })
        }
        None => {}
    }
    config
}

/// Adds keys read apart from serde to the "expected one of" list of unknown keys in `table`.
fn also_expected(problems: &mut [Problem], table: &str, keys: &[&str]) {
    for p in problems {
        let in_table = match p.path.rsplit_once('.') {
            Some((parent, _)) => parent == table,
            None => table.is_empty(),
        };
        if in_table && p.message.starts_with("unknown key (expected one of: ") {
            p.message.insert_str(p.message.len() - 1, &format!(", {}", keys.join(", ")));
        }
    }
}

/// Writes `EDGE__A__B=value` over key `a.b` of the table; a value is read as TOML when it
/// parses as such (`true`, `30`, `["a", "b"]`) and as a string otherwise. Returns the key paths
/// set, each with its variable.
fn apply_env(
    problems: &mut Vec<Problem>,
    table: &mut Table,
    env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut set = Vec::new();
    'vars: for (name, value) in env {
        let Some(rest) = name.strip_prefix("EDGE__") else { continue };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            problems.push(Problem {
                path: name.clone(),
                message: "an override names a section and a key, like EDGE__HTTP__LISTEN".into(),
            });
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(value.clone()));
        let (last, sections) = parts.split_last().expect("at least two parts");
        let mut t = &mut *table;
        for (depth, section) in sections.iter().enumerate() {
            let entry = t.entry(section.clone()).or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(inner) => t = inner,
                _ => {
                    problems.push(Problem {
                        path: parts[..=depth].join("."),
                        message: format!("is not a table, so {name} cannot set a key in it"),
                    });
                    continue 'vars;
                }
            }
        }
        t.insert(last.clone(), parsed);
        set.push((parts.join("."), name.clone()));
    }
    set
}

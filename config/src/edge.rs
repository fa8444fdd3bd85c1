//! `edge.toml`: one per function, beside its code.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Value;

use crate::access::{Binding, Grant};
use crate::de::{self, in_file_order, join, parse_toml};
use crate::limits::LimitsRequest;
use crate::triggers::Triggers;
use crate::{ConfigError, Problem};

/// The file name a function folder must hold.
pub const EDGE_FILE: &str = "edge.toml";

/// A function's own settings, read from its `edge.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// The function's name: lowercase letters, digits and `-`, starting with a letter, at most
    /// 63 characters. It names the function in logs, metrics and the admin API.
    pub name: String,
    /// The entry module, relative to the function folder (`src/index.js`).
    pub entry: PathBuf,
    /// Where HTTP requests reach the function: `"/path/*"` or `"host/path/*"`; `*` matches any
    /// run of characters, `/` included; a host may start with `*.`. Empty: no HTTP route.
    #[serde(deserialize_with = "de::one_or_many")]
    pub routes: Vec<Route>,
    /// Plain-text variables the function reads as `env.NAME`.
    pub vars: BTreeMap<String, String>,
    /// `[limits]`: what the function asks for; the node's defaults fill the rest and its
    /// maximums cap it.
    pub limits: LimitsRequest,
    /// The folder holding `edge.toml`; `entry` is resolved from it.
    #[serde(skip)]
    pub dir: PathBuf,
    /// `[[triggers.cron]]`, `[[triggers.queue]]`.
    pub triggers: Triggers,
    /// `[bindings]`: `env.NAME` for queues, buckets and tables.
    pub bindings: BTreeMap<String, Binding>,
    /// `[[grants]]`: the resources of this function other functions may reach.
    pub grants: Vec<Grant>,
    /// The regions whose nodes serve the function; empty: every node.
    #[serde(deserialize_with = "de::one_or_many")]
    pub regions: Vec<String>,
    /// As on Workers: `"nodejs_compat"` adds Node's globals (`Buffer`, `process`, `global`,
    /// `setImmediate`) to the function's global scope. Node's modules import without it.
    pub compatibility_flags: Vec<String>,
}

/// The compatibility flags a function may set.
pub const COMPATIBILITY_FLAGS: &[&str] = &["nodejs_compat"];

impl EdgeConfig {
    /// Whether `compatibility_flags` has `nodejs_compat`.
    pub fn nodejs_compat(&self) -> bool {
        self.compatibility_flags.iter().any(|f| f == "nodejs_compat")
    }
}

/// One route pattern of a function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The host pattern (`api.example.com`, `*.example.com`), or `None` for any host.
    pub host: Option<String>,
    /// The path pattern, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.host.as_deref().unwrap_or(""), self.path)
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Route::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Route {
    /// Parses `"/path/*"` or `"host/path/*"`.
    pub fn parse(text: &str) -> Result<Route, String> {
        if text.is_empty() {
            return Err("a route cannot be empty".into());
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("route `{text}` contains whitespace"));
        }
        if text.contains("://") {
            return Err(format!("route `{text}` must not name a scheme; write `host/path`"));
        }
        let (host, path) = match text.find('/') {
            Some(0) => (None, text),
            Some(i) => (Some(&text[..i]), &text[i..]),
            None => return Err(format!("route `{text}` needs a path, e.g. `{text}/*`")),
        };
        if let Some(host) = host {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            let valid = !bare.is_empty()
                && bare.split(':').next().is_some_and(|h| {
                    h.split('.').all(|label| {
                        !label.is_empty()
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
                });
            if !valid {
                return Err(format!(
                    "route `{text}` has an invalid host `{host}` (only `*.` may start a host pattern)"
                ));
            }
        }
        Ok(Route { host: host.map(|h| h.to_ascii_lowercase()), path: path.to_string() })
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `name` can name a var or secret: a letter or `_`, then letters, digits and `_`.
pub fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EdgeConfig {
    /// Reads `DIR/edge.toml` and checks it, including that the entry file exists (reported
    /// with the file's other problems, not instead of them).
    pub fn load(dir: &Path) -> Result<EdgeConfig, ConfigError> {
        let file = dir.join(EDGE_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        EdgeConfig::read(&text, dir, true)
            .map_err(|problems| ConfigError::Invalid { file, problems })
    }

    /// Parses the text of an `edge.toml` whose folder is `dir`, without touching the disk.
    pub fn parse(text: &str, dir: &Path) -> Result<EdgeConfig, Vec<Problem>> {
        EdgeConfig::read(text, dir, false)
    }

    fn read(text: &str, dir: &Path, on_disk: bool) -> Result<EdgeConfig, Vec<Problem>> {
        let table = parse_toml(text).map_err(|p| vec![p])?;
        let mut problems = Vec::new();
        let mut removed = de::Removed::default();
        let mut config: EdgeConfig =
            de::read(Value::Table(table.clone()), "", &mut problems, &mut removed);
        config.dir = dir.to_path_buf();
        de::add_checks(&mut problems, config.validate(), &removed);
        let entry = dir.join(&config.entry);
        if on_disk && !problems.iter().any(|p| p.path == "entry") && !entry.is_file() {
            problems.push(Problem {
                path: "entry".into(),
                message: format!("entry file {} does not exist", entry.display()),
            });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            in_file_order(&mut problems, &table);
            Err(problems)
        }
    }

    /// The checks a key's type cannot make, each problem with its key path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem =
            |path: &str, message: String| problems.push(Problem { path: path.into(), message });
        if self.name.is_empty() {
            problem("name", "missing (the function's name)".into());
        } else if !valid_name(&self.name) {
            problem("name", format!("`{}` is not a valid name: use lowercase letters, digits and `-`, start with a letter, at most 63 characters", self.name));
        }
        for (i, flag) in self.compatibility_flags.iter().enumerate() {
            if !COMPATIBILITY_FLAGS.contains(&flag.as_str()) {
                problem(
                    &format!("compatibility_flags[{i}]"),
                    format!("unknown flag `{flag}` (known: {})", COMPATIBILITY_FLAGS.join(", ")),
                );
            }
        }
        let entry = &self.entry;
        if entry.as_os_str().is_empty() {
            problem("entry", "missing (the entry module, e.g. \"src/index.js\")".into());
        } else if entry.is_absolute()
            || entry.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            problem(
                "entry",
                format!("`{}` must be a path inside the function folder", entry.display()),
            );
        }
        for key in self.vars.keys().filter(|key| !valid_var_name(key)) {
            problem(&join("vars", key), "a variable name uses letters, digits and `_`".into());
        }
        for name in self.bindings.keys() {
            if !valid_var_name(name) {
                problem(
                    &join("bindings", name),
                    "a binding name uses letters, digits and `_`".into(),
                );
            } else if self.vars.contains_key(name) {
                problem(&join("bindings", name), "a var of the same name exists".into());
            }
        }
        for (i, grant) in self.grants.iter().enumerate() {
            for (j, to) in grant.to.iter().enumerate() {
                let path = format!("grants[{i}].to[{j}]");
                if !valid_name(to) {
                    problem(&path, format!("`{to}` is not a function name"));
                } else if *to == self.name {
                    problem(&path, "a function needs no grant to reach its own resources".into());
                }
            }
        }
        problems.extend(self.limits.validate("limits"));
        problems.extend(self.triggers.validate());
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EdgeConfig, Vec<Problem>> {
        EdgeConfig::parse(text, Path::new("/fn"))
    }

    #[test]
    fn reads_a_full_file() {
        let c = parse(
            r#"name = "hello"
entry = "src/index.js"
routes = ["/hello/*", "*.example.com/*"]
[limits]
memory = "64MiB"
cpu_time = "10ms"
[vars]
GREETING = "hi"
"#,
        )
        .unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!(c.entry, PathBuf::from("src/index.js"));
        assert_eq!(c.routes[1].host.as_deref(), Some("*.example.com"));
        assert_eq!(c.vars["GREETING"], "hi");
        assert_eq!(c.limits.memory, Some(64 * 1024 * 1024));
        assert_eq!(c.limits.cpu_time, Some(std::time::Duration::from_millis(10)));
        assert_eq!(c.limits.wall_time, None);
    }

    #[test]
    fn lists_every_problem_at_once() {
        let problems = parse(
            r#"name = "Hello World"
entry = "../outside.js"
routes = ["hello", 3, "http://x/y"]
colour = "blue"
[vars]
N = 3
"#,
        )
        .unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["name", "entry", "routes[0]", "routes[1]", "routes[2]", "colour", "vars.N"],
            "{problems:?}"
        );
    }

    #[test]
    fn missing_keys_and_syntax_errors() {
        let problems = parse("routes = []").unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("missing"));
        // A mistyped key is reported once: not as missing too.
        let problems = parse("name = \"f\"\nentry = 42").unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines, ["entry: expected a string, found an integer"]);
        let problems = parse("name = \"x\"\nentry = ").unwrap_err();
        assert!(problems[0].message.contains("line 2"), "{problems:?}");
    }
}

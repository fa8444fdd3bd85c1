//! `edge.toml`: one per function, beside its code.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Table;

use crate::limits::{read_request, LimitsRequest};
use crate::reader::{join, parse_toml, Reader};
use crate::triggers::{read_bindings, read_triggers, Binding, Triggers};
use crate::{ConfigError, Problem};

/// The file name a function folder must hold.
pub const EDGE_FILE: &str = "edge.toml";

/// A function's own settings, read from its `edge.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The function's name: lowercase letters, digits and `-`, starting with a letter, at most
    /// 63 characters. It names the function in logs, metrics and the admin API.
    pub name: String,
    /// The entry module, relative to the function folder (`src/index.js`).
    pub entry: PathBuf,
    /// Where HTTP requests reach the function: `"/path/*"` or `"host/path/*"`; `*` matches any
    /// run of characters, `/` included; a host may start with `*.`. Empty: no HTTP route.
    pub routes: Vec<Route>,
    /// Plain-text variables the function reads as `env.NAME`.
    pub vars: BTreeMap<String, String>,
    /// `[limits]`: what the function asks for; the node's defaults fill the rest and its
    /// maximums cap it.
    pub limits: LimitsRequest,
    /// The folder holding `edge.toml`; `entry` is resolved from it.
    pub dir: PathBuf,
    /// `[[triggers.cron]]`, `[[triggers.queue]]`.
    pub triggers: Triggers,
    /// `[bindings]`: `env.NAME` for queues.
    pub bindings: BTreeMap<String, Binding>,
    /// The regions whose nodes serve the function; empty: every node.
    pub regions: Vec<String>,
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
    /// Reads `DIR/edge.toml` and checks it, including that the entry file exists.
    pub fn load(dir: &Path) -> Result<EdgeConfig, ConfigError> {
        let file = dir.join(EDGE_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        let config = EdgeConfig::parse(&text, dir)
            .map_err(|problems| ConfigError::Invalid { file: file.clone(), problems })?;
        let entry = dir.join(&config.entry);
        if !entry.is_file() {
            return Err(ConfigError::Invalid {
                file,
                problems: vec![Problem {
                    path: "entry".into(),
                    message: format!("entry file {} does not exist", entry.display()),
                }],
            });
        }
        Ok(config)
    }

    /// Parses the text of an `edge.toml` whose folder is `dir`, without touching the disk.
    pub fn parse(text: &str, dir: &Path) -> Result<EdgeConfig, Vec<Problem>> {
        let table = parse_toml(text).map_err(|p| vec![p])?;
        let mut r = Reader::default();
        let config = read(&mut r, &table, dir);
        match config {
            Some(config) if r.problems.is_empty() => Ok(config),
            _ => Err(r.problems),
        }
    }
}

fn read(r: &mut Reader, t: &Table, dir: &Path) -> Option<EdgeConfig> {
    r.deny_unknown(
        t,
        "",
        &["name", "entry", "routes", "vars", "limits", "triggers", "bindings", "regions"],
    );
    let name = r.string(t, "", "name");
    match &name {
        None if !t.contains_key("name") => r.problem("name", "missing (the function's name)"),
        Some(n) if !valid_name(n) => r.problem(
            "name",
            format!("`{n}` is not a valid name: use lowercase letters, digits and `-`, start with a letter, at most 63 characters"),
        ),
        _ => {}
    }
    let entry = r.string(t, "", "entry").map(PathBuf::from);
    match &entry {
        None if !t.contains_key("entry") => {
            r.problem("entry", "missing (the entry module, e.g. \"src/index.js\")")
        }
        Some(e)
            if e.is_absolute()
                || e.components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) =>
        {
            r.problem(
                "entry",
                format!("`{}` must be a path inside the function folder", e.display()),
            )
        }
        _ => {}
    }
    let mut routes = Vec::new();
    for (i, text) in r.string_list(t, "", "routes").unwrap_or_default() {
        match Route::parse(&text) {
            Ok(route) => routes.push(route),
            Err(e) => r.problem(format!("routes[{i}]"), e),
        }
    }
    let mut vars = BTreeMap::new();
    if let Some(table) = r.table(t, "", "vars") {
        for (key, value) in table {
            let path = join("vars", key);
            if !valid_var_name(key) {
                r.problem(&path, "a variable name uses letters, digits and `_`");
            }
            match value.as_str() {
                Some(v) => {
                    vars.insert(key.clone(), v.to_string());
                }
                None => r.problem(&path, "expected a string (vars are plain text)"),
            }
        }
    }
    let limits = match r.table(t, "", "limits") {
        Some(table) => read_request(r, table, "limits", &[]),
        None => LimitsRequest::default(),
    };
    let regions: Vec<String> =
        r.string_list(t, "", "regions").unwrap_or_default().into_iter().map(|(_, s)| s).collect();
    let triggers = read_triggers(r, t);
    let bindings = read_bindings(r, t);
    for name in bindings.keys() {
        if vars.contains_key(name) {
            r.problem(join("bindings", name), "a var of the same name exists");
        }
    }
    Some(EdgeConfig {
        name: name?,
        entry: entry?,
        routes,
        vars,
        limits,
        dir: dir.to_path_buf(),
        triggers,
        bindings,
        regions,
    })
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
            ["colour", "name", "entry", "routes[1]", "routes[0]", "routes[2]", "vars.N"],
            "{problems:?}"
        );
    }

    #[test]
    fn missing_keys_and_syntax_errors() {
        let problems = parse("routes = []").unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("missing"));
        let problems = parse("name = \"x\"\nentry = ").unwrap_err();
        assert!(problems[0].message.contains("line 2"), "{problems:?}");
    }
}

//! Builds a bundle from a function folder: start at the entry, follow every import, resolve
//! relative paths and npm packages (oxc's resolver), transpile TypeScript and JSX.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use oxc_resolver::{ResolveError, ResolveOptions, Resolver};

use crate::bundle::{Bundle, ModuleInput, ModuleKind};
use crate::{commonjs, define, node, transform};
use crate::{BundleError, MAX_BUNDLE_BYTES};

/// `package.json` conditions for `import`, in the order a Workers-style runtime prefers them.
const CONDITIONS: &[&str] = &["workerd", "worker", "browser", "import", "default"];
/// `package.json` conditions for `require`.
const REQUIRE_CONDITIONS: &[&str] = &["workerd", "worker", "browser", "require", "default"];
/// Extensions tried for extension-less specifiers.
const EXTENSIONS: &[&str] = &[".ts", ".tsx", ".mts", ".js", ".jsx", ".mjs", ".cjs", ".json"];

/// How a module was reached: which conditions resolve its own specifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Import,
    Require,
}

/// The resolvers of a build: ES imports and requires, each first without the `node`
/// condition and then, for packages that only have a Node build, with it.
struct Resolvers {
    import: [Resolver; 2],
    require: [Resolver; 2],
}

impl Resolvers {
    fn new() -> Resolvers {
        let make = |conditions: &[&str], node: bool, main_fields: &[&str]| {
            let mut names: Vec<String> = conditions.iter().map(|c| c.to_string()).collect();
            if node {
                names.push("node".into());
            }
            Resolver::new(ResolveOptions {
                condition_names: names,
                extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
                main_fields: main_fields.iter().map(|f| f.to_string()).collect(),
                // TypeScript's convention: `import "./util.js"` finds `util.ts`.
                extension_alias: vec![
                    (".js".into(), vec![".ts".into(), ".tsx".into(), ".js".into()]),
                    (".mjs".into(), vec![".mts".into(), ".mjs".into()]),
                ],
                // A package's `browser` field may swap or drop its Node-only files.
                alias_fields: vec![vec!["browser".into()]],
                builtin_modules: true,
                ..ResolveOptions::default()
            })
        };
        Resolvers {
            // A package's browser build first (its `browser` field as a string), as wrangler
            // and browser bundlers choose; its Node build only without one.
            import: [
                make(CONDITIONS, false, &["browser", "module", "main"]),
                make(CONDITIONS, true, &["module", "main"]),
            ],
            require: [
                make(REQUIRE_CONDITIONS, false, &["browser", "main"]),
                make(REQUIRE_CONDITIONS, true, &["main"]),
            ],
        }
    }

    fn resolve(&self, via: Via, file: &Path, specifier: &str) -> Result<Resolved, ResolveError> {
        let [plain, node] = match via {
            Via::Import => &self.import,
            Via::Require => &self.require,
        };
        match plain.resolve_file(file, specifier) {
            Ok(r) => Ok(Resolved::File(r.path().to_path_buf())),
            Err(ResolveError::Builtin { resolved, .. }) => Ok(Resolved::Builtin(resolved)),
            Err(ResolveError::Ignored(_)) => Ok(Resolved::Empty),
            Err(first) => match node.resolve_file(file, specifier) {
                Ok(r) => Ok(Resolved::File(r.path().to_path_buf())),
                Err(ResolveError::Builtin { resolved, .. }) => Ok(Resolved::Builtin(resolved)),
                Err(ResolveError::Ignored(_)) => Ok(Resolved::Empty),
                Err(_) => Err(first),
            },
        }
    }
}

enum Resolved {
    File(PathBuf),
    /// `node:x`.
    Builtin(String),
    /// A file a package's `browser` field maps to `false`.
    Empty,
}

/// A module read in the first pass; CommonJS files and the imports of ES modules are settled
/// in the second, once every module's format is known.
enum Read {
    Done(ModuleInput),
    Esm { script: transform::Script },
    CommonJs { text: String, scan: commonjs::Scan },
}

impl Bundle {
    /// Builds the bundle of the function in `dir` whose entry module is `entry` (relative to
    /// `dir`): every module reachable from the entry by static imports, re-exports,
    /// `import("…")` and `require("…")` with a literal specifier, and nothing else. CommonJS
    /// files become ES modules ([`commonjs`]); Node.js built-ins come from [`crate::node`].
    pub fn from_dir(dir: &Path, name: &str, entry: &Path) -> Result<Bundle, BundleError> {
        Bundle::from_dir_with(dir, name, entry, &BuildOptions::default())
    }

    /// [`Bundle::from_dir`] with `options`.
    pub fn from_dir_with(
        dir: &Path,
        name: &str,
        entry: &Path,
        options: &BuildOptions,
    ) -> Result<Bundle, BundleError> {
        let root = dir
            .canonicalize()
            .map_err(|source| BundleError::Read { path: dir.to_path_buf(), source })?;
        let entry_path = bundle_path(&PathBuf::from_iter(
            entry.components().filter(|c| matches!(c, std::path::Component::Normal(_))),
        ));
        let entry_file = root.join(&entry_path);
        if !entry_file.is_file() {
            return Err(BundleError::MissingEntry(entry_path));
        }
        if ModuleKind::of_path(&entry_path) != ModuleKind::Js {
            return Err(BundleError::EntryNotJs(entry_path));
        }
        let resolvers = Resolvers::new();

        let mut read: BTreeMap<String, Read> = BTreeMap::new();
        // Per module: each specifier and the bundle path it resolved to.
        let mut resolved: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        // Who first reached each module, with which specifier: the chain in error messages.
        let mut parents: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut total = 0u64;
        let mut queue = VecDeque::from([entry_path.clone()]);
        if options.node_globals {
            queue.push_back(node::GLOBALS.to_string());
        }
        while let Some(path) = queue.pop_front() {
            if read.contains_key(&path) {
                continue;
            }
            let (module, specifiers, file) = if let Some(builtin) = node::module_of_path(&path) {
                let script = transform::script(&path, &builtin.code)?;
                let specifiers = script.specifiers.iter().map(|s| (s.clone(), false)).collect();
                (Read::Esm { script }, specifiers, None)
            } else if path == commonjs::RUNTIME || path == EMPTY {
                let code = if path == EMPTY { EMPTY_CODE } else { commonjs::RUNTIME_CODE };
                let input = ModuleInput {
                    kind: ModuleKind::Js,
                    code: code.to_string(),
                    source_map: None,
                    imports: BTreeMap::new(),
                };
                (Read::Done(input), Vec::new(), None)
            } else {
                let file = root.join(&path);
                let bytes = std::fs::read(&file)
                    .map_err(|source| BundleError::Read { path: file.clone(), source })?;
                total += bytes.len() as u64;
                if total > MAX_BUNDLE_BYTES {
                    return Err(BundleError::TooLarge { limit: MAX_BUNDLE_BYTES });
                }
                let text =
                    String::from_utf8(bytes).map_err(|_| BundleError::NotUtf8(file.clone()))?;
                let (module, specifiers) = read_file(&path, text)?;
                (module, specifiers, Some(file))
            };
            let own_via = match &module {
                Read::CommonJs { .. } => Via::Require,
                _ => Via::Import,
            };
            let mut imports = BTreeMap::new();
            for (specifier, optional) in specifiers {
                let target = match &file {
                    // A built-in's own imports are other built-ins.
                    None => node::path_of(&specifier).map(|p| Resolved::File(p.into())).ok_or_else(
                        || BundleError::Unresolved {
                            importer: path.clone(),
                            specifier: specifier.clone(),
                            reason: "not a built-in module".into(),
                        },
                    ),
                    Some(file) => {
                        resolve(&resolvers, own_via, &root, file, &path, &specifier, &parents)
                    }
                };
                let target = match target {
                    Ok(Resolved::File(target)) => target.to_string_lossy().into_owned(),
                    Ok(Resolved::Builtin(builtin)) => match node::path_of(&builtin) {
                        Some(target) => target,
                        None => {
                            return Err(BundleError::Unresolved {
                                importer: chain_of(&parents, &path),
                                specifier,
                                reason: format!(
                                "the Node.js built-in `{builtin}` is not available in functions"
                            ),
                            })
                        }
                    },
                    Ok(Resolved::Empty) => EMPTY.to_string(),
                    // A require inside `try` may be missing: it throws when it runs.
                    Err(_) if optional => continue,
                    Err(e) => return Err(e),
                };
                parents.entry(target.clone()).or_insert_with(|| (path.clone(), specifier.clone()));
                queue.push_back(target.clone());
                imports.insert(specifier, target);
            }
            if matches!(module, Read::CommonJs { .. }) {
                parents
                    .entry(commonjs::RUNTIME.to_string())
                    .or_insert_with(|| (path.clone(), commonjs::RUNTIME.to_string()));
                queue.push_back(commonjs::RUNTIME.to_string());
            }
            resolved.insert(path.clone(), imports);
            read.insert(path, module);
        }
        let (mut modules, mut entry) = settle(read, resolved, &entry_path)?;
        if options.node_globals {
            // An entry that sets Node's globals before the function's own modules evaluate.
            let (globals, target) = (commonjs::quote(node::GLOBALS), commonjs::quote(&entry));
            let code = format!(
                "import {globals};\nimport * as entry from {target};\nexport * from {target};\nexport default entry.default;\n"
            );
            let imports = BTreeMap::from([
                (node::GLOBALS.to_string(), node::GLOBALS.to_string()),
                (entry.clone(), entry.clone()),
            ]);
            let input = ModuleInput { kind: ModuleKind::Js, code, source_map: None, imports };
            modules.insert(ENTRY_WITH_GLOBALS.to_string(), input);
            entry = ENTRY_WITH_GLOBALS.to_string();
        }
        Bundle::new(name, &entry, modules)
    }
}

/// What a build adds to the function's own modules.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Node's globals (`Buffer`, `process`, `global`, `setImmediate`) in the global scope,
    /// set before any of the function's modules evaluate (edge.toml's `nodejs_compat`).
    pub node_globals: bool,
}

/// The entry of a bundle built with [`BuildOptions::node_globals`].
const ENTRY_WITH_GLOBALS: &str = "__isola__/entry.js";

/// The module a package's `browser` field maps to `false`: an empty CommonJS module.
const EMPTY: &str = "__isola__/empty.js";
const EMPTY_CODE: &str = "export function __isola_cjs() { return {}; }\nexport default {};\n";

/// Reads one JavaScript/TypeScript/JSON/text file: its module (settled later for scripts) and
/// the specifiers it names, each with whether it may be missing (a `require` inside `try`).
fn read_file(path: &str, text: String) -> Result<(Read, Vec<(String, bool)>), BundleError> {
    let kind = ModuleKind::of_path(path);
    let done =
        |code: String| ModuleInput { kind, code, source_map: None, imports: BTreeMap::new() };
    match kind {
        ModuleKind::Json => {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                return Err(BundleError::Syntax {
                    path: path.to_string(),
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                });
            }
            Ok((Read::Done(done(text)), Vec::new()))
        }
        ModuleKind::Text => Ok((Read::Done(done(text)), Vec::new())),
        ModuleKind::Js => {
            let commonjs_file = path.ends_with(".cjs") || path.ends_with(".cts");
            // Packages read `process.env.NODE_ENV` to pick their build (user code keeps it).
            let text = if path.starts_with("node_modules/") && !transform::needs_transpiling(path) {
                let as_module = oxc::span::SourceType::mjs();
                define::node_env(&text, as_module)
                    .or_else(|| define::node_env(&text, oxc::span::SourceType::cjs()))
                    .unwrap_or(text)
            } else {
                text
            };
            let script = if commonjs_file { None } else { Some(transform::script(path, &text)) };
            let scan = match &script {
                None => Some(commonjs::scan(path, &text)?),
                Some(Ok(s)) if !s.has_module_syntax && commonjs::looks_like_commonjs(&text) => {
                    Some(commonjs::scan(path, &text)?)
                }
                // Top-level `return` and other syntax only a function body allows.
                Some(Err(_))
                    if !transform::needs_transpiling(path)
                        && commonjs::looks_like_commonjs(&text) =>
                {
                    commonjs::scan(path, &text).ok()
                }
                _ => None,
            };
            if let Some(scan) = scan {
                let specifiers = scan.specifiers();
                return Ok((Read::CommonJs { text, scan }, specifiers));
            }
            let script = script.expect("not CommonJS, so parsed")?;
            let specifiers = script.specifiers.iter().map(|s| (s.clone(), false)).collect();
            Ok((Read::Esm { script }, specifiers))
        }
    }
}

/// The second pass: CommonJS files become ES modules, and ES imports of them go to their
/// interop modules. Answers the modules and the entry (the entry's interop module when the
/// entry itself is CommonJS).
fn settle(
    read: BTreeMap<String, Read>,
    resolved: BTreeMap<String, BTreeMap<String, String>>,
    entry: &str,
) -> Result<(BTreeMap<String, ModuleInput>, String), BundleError> {
    let is_commonjs = |path: &str| matches!(read.get(path), Some(Read::CommonJs { .. }));
    let scans: BTreeMap<&str, &commonjs::Scan> = read
        .iter()
        .filter_map(|(p, r)| match r {
            Read::CommonJs { scan, .. } => Some((p.as_str(), scan)),
            _ => None,
        })
        .collect();
    let mut modules = BTreeMap::new();
    let mut interops: BTreeMap<String, String> = BTreeMap::new();
    let interop_of = |target: &str, interops: &mut BTreeMap<String, String>| -> String {
        let path = format!("__isola__/esm/{target}");
        interops.entry(target.to_string()).or_insert_with(|| path.clone());
        path
    };
    for (path, module) in &read {
        let imports = resolved.get(path).cloned().unwrap_or_default();
        let input = match module {
            Read::Done(input) => ModuleInput { imports, ..input.clone() },
            Read::Esm { script } => {
                let imports = imports
                    .into_iter()
                    .map(|(specifier, target)| {
                        let target = if is_commonjs(&target) {
                            interop_of(&target, &mut interops)
                        } else {
                            target
                        };
                        (specifier, target)
                    })
                    .collect();
                ModuleInput {
                    kind: ModuleKind::Js,
                    code: script.code.clone(),
                    source_map: script.source_map.clone(),
                    imports,
                }
            }
            Read::CommonJs { text, scan } => {
                let deps: Vec<(String, commonjs::Dependency)> = imports
                    .iter()
                    .map(|(specifier, target)| {
                        let dependency = if is_commonjs(target) || target == EMPTY {
                            commonjs::Dependency::CommonJs
                        } else if node::module_of_path(target).is_some() {
                            commonjs::Dependency::Builtin
                        } else if ModuleKind::of_path(target) == ModuleKind::Json {
                            commonjs::Dependency::Json
                        } else {
                            commonjs::Dependency::Module
                        };
                        (specifier.clone(), dependency)
                    })
                    .collect();
                let mut imports = imports.clone();
                imports.insert(commonjs::RUNTIME.to_string(), commonjs::RUNTIME.to_string());
                ModuleInput {
                    kind: ModuleKind::Js,
                    code: commonjs::module(path, text, &deps, &scan.globals),
                    source_map: None,
                    imports,
                }
            }
        };
        modules.insert(path.clone(), input);
    }
    let entry =
        if is_commonjs(entry) { interop_of(entry, &mut interops) } else { entry.to_string() };
    for (target, path) in interops {
        let names = exported_names(&target, &scans, &resolved, &mut Vec::new());
        let code = commonjs::interop(&target, &names);
        let imports = BTreeMap::from([(target.clone(), target.clone())]);
        modules.insert(path, ModuleInput { kind: ModuleKind::Js, code, source_map: None, imports });
    }
    Ok((modules, entry))
}

/// The names a CommonJS module exports, its re-exports' included.
fn exported_names(
    path: &str,
    scans: &BTreeMap<&str, &commonjs::Scan>,
    resolved: &BTreeMap<String, BTreeMap<String, String>>,
    visiting: &mut Vec<String>,
) -> Vec<String> {
    let Some(scan) = scans.get(path) else { return Vec::new() };
    if visiting.iter().any(|v| v == path) {
        return Vec::new();
    }
    visiting.push(path.to_string());
    let mut names = scan.exports.clone();
    for specifier in &scan.reexports {
        if let Some(target) = resolved.get(path).and_then(|imports| imports.get(specifier)) {
            names.extend(exported_names(target, scans, resolved, visiting));
        }
    }
    visiting.pop();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// `src/index.js → node_modules/a/index.js → node_modules/a/lib/b.js`: how `path` was reached.
fn chain_of(parents: &BTreeMap<String, (String, String)>, path: &str) -> String {
    let mut out = vec![path.to_string()];
    let mut at = path.to_string();
    while let Some((parent, _)) = parents.get(&at) {
        if out.contains(parent) {
            break;
        }
        out.push(parent.clone());
        at = parent.clone();
    }
    out.reverse();
    out.join(" → ")
}

/// Resolves one specifier of `importer` to a file inside `root` (or a built-in), refusing
/// files outside the function folder.
fn resolve(
    resolvers: &Resolvers,
    via: Via,
    root: &Path,
    file: &Path,
    importer: &str,
    specifier: &str,
    parents: &BTreeMap<String, (String, String)>,
) -> Result<Resolved, BundleError> {
    let unresolved = |reason: String| BundleError::Unresolved {
        importer: chain_of(parents, importer),
        specifier: specifier.to_string(),
        reason,
    };
    let resolution = resolvers.resolve(via, file, specifier).map_err(|e| match e {
        ResolveError::NotFound(_) => unresolved("no such file or package".to_string()),
        other => unresolved(other.to_string()),
    })?;
    let Resolved::File(target) = resolution else { return Ok(resolution) };
    let target = target.canonicalize().unwrap_or(target);
    let relative = target
        .strip_prefix(root)
        .map_err(|_| unresolved(format!("{} is outside the function folder", target.display())))?;
    Ok(Resolved::File(PathBuf::from(bundle_path(relative))))
}

fn bundle_path(relative: &Path) -> String {
    relative
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn package(dir: &Path) {
        write(
            dir,
            "node_modules/greet/package.json",
            r#"{"name":"greet","exports":{".":{"workerd":"./worker.js","node":"./node.js","default":"./index.js"}}}"#,
        );
        write(dir, "node_modules/greet/worker.js", "export const greet = (n) => `hi ${n}`;\n");
        write(dir, "node_modules/greet/node.js", "export const greet = () => 'node';\n");
        write(dir, "node_modules/cjs/package.json", r#"{"name":"cjs","main":"index.js"}"#);
        write(dir, "node_modules/cjs/index.js", "module.exports = { a: require('./a') };\n");
    }

    #[test]
    fn follows_imports_across_typescript_and_packages() {
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        write(
            dir.path(),
            "src/index.ts",
            "import { greet } from 'greet';\nimport { two } from './util.js';\nimport data from './data.json' with { type: 'json' };\nexport default { fetch: (r: Request) => new Response(greet(two + data.n)) };\n",
        );
        write(dir.path(), "src/util.ts", "export const two: number = 2;\n");
        write(dir.path(), "src/data.json", "{\"n\": 1}");
        write(dir.path(), "src/unused.ts", "export {}");
        let bundle = Bundle::from_dir(dir.path(), "f", Path::new("./src/index.ts")).unwrap();
        let paths: Vec<_> = bundle.manifest().modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            ["node_modules/greet/worker.js", "src/data.json", "src/index.ts", "src/util.ts"]
        );
        let entry = bundle.module("src/index.ts").unwrap();
        assert_eq!(entry.info.imports["greet"], "node_modules/greet/worker.js");
        assert_eq!(entry.info.imports["./util.js"], "src/util.ts");
        assert!(entry.source_map.is_some());

        let again = Bundle::from_dir(dir.path(), "f", Path::new("src/index.ts")).unwrap();
        assert_eq!(bundle.hash(), again.hash());
        write(dir.path(), "src/util.ts", "export const two: number = 3;\n");
        let changed = Bundle::from_dir(dir.path(), "f", Path::new("src/index.ts")).unwrap();
        assert_ne!(bundle.hash(), changed.hash());
    }

    #[test]
    fn names_the_importer_and_specifier_it_cannot_resolve() {
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        write(dir.path(), "src/index.js", "import './lib.js';\n");
        write(dir.path(), "src/lib.js", "import 'left-pad';\n");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(
            matches!(&err, BundleError::Unresolved { importer, specifier, .. } if importer.ends_with("src/lib.js") && specifier == "left-pad"),
            "{err}"
        );
        assert!(err.to_string().contains("src/lib.js") && err.to_string().contains("left-pad"));

        // A built-in we do not have is refused, naming the chain of imports that reached it.
        write(dir.path(), "src/lib.js", "import wasi from 'node:wasi';\n");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        let said = err.to_string();
        assert!(said.contains("src/index.js → src/lib.js") && said.contains("node:wasi"), "{said}");
    }

    #[test]
    fn commonjs_becomes_es_modules_with_interop_for_importers() {
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        write(
            dir.path(),
            "node_modules/cjs/a.js",
            "exports.one = 1;\nexports.two = require('./b.json').two;\n",
        );
        write(dir.path(), "node_modules/cjs/b.json", "{\"two\": 2}");
        write(dir.path(), "src/index.js", "import c, { a } from 'cjs';\nimport { EventEmitter } from 'node:events';\nexport default { c, a, EventEmitter };\n");
        let bundle = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap();
        let paths: Vec<_> = bundle.manifest().modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "__isola__/commonjs.js",
                "__isola__/esm/node_modules/cjs/index.js",
                "__isola__/node/events.js",
                "node_modules/cjs/a.js",
                "node_modules/cjs/b.json",
                "node_modules/cjs/index.js",
                "src/index.js",
            ]
        );
        let entry = bundle.module("src/index.js").unwrap();
        assert_eq!(entry.info.imports["cjs"], "__isola__/esm/node_modules/cjs/index.js");
        assert_eq!(entry.info.imports["node:events"], "__isola__/node/events.js");
        let interop = bundle.module("__isola__/esm/node_modules/cjs/index.js").unwrap();
        assert!(interop.code.contains("export default __isola_e"), "{}", interop.code);
        assert!(
            interop.code.contains("__isola_0 as a"),
            "the scanned name is exported: {}",
            interop.code
        );
        let cjs = bundle.module("node_modules/cjs/index.js").unwrap();
        assert!(cjs.code.contains("export function __isola_cjs()"), "{}", cjs.code);
        assert_eq!(cjs.info.imports["./a"], "node_modules/cjs/a.js");
    }

    #[test]
    fn refuses_a_missing_entry() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/other.js", "");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(matches!(err, BundleError::MissingEntry(p) if p == "src/index.js"));
    }
}

//! Builds a bundle from a function folder: start at the entry, follow every import, resolve
//! relative paths and npm packages (oxc's resolver), transpile TypeScript and JSX.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use oxc_resolver::{ResolveError, ResolveOptions, Resolver};

use crate::bundle::{Bundle, ModuleInput, ModuleKind};
use crate::transform;
use crate::{BundleError, MAX_BUNDLE_BYTES};

/// `package.json` conditions, in the order a Workers-style runtime prefers them.
const CONDITIONS: &[&str] = &["workerd", "worker", "browser", "import", "default"];
/// Extensions tried for extension-less specifiers.
const EXTENSIONS: &[&str] = &[".ts", ".tsx", ".mts", ".js", ".jsx", ".mjs", ".json"];

impl Bundle {
    /// Builds the bundle of the function in `dir` whose entry module is `entry` (relative to
    /// `dir`): every module reachable from the entry by static imports, re-exports and
    /// `import("…")` with a literal specifier, and nothing else.
    pub fn from_dir(dir: &Path, name: &str, entry: &Path) -> Result<Bundle, BundleError> {
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
        let resolver = Resolver::new(ResolveOptions {
            condition_names: CONDITIONS.iter().map(|c| c.to_string()).collect(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            main_fields: vec!["module".into(), "main".into()],
            // TypeScript's convention: `import "./util.js"` finds `util.ts`.
            extension_alias: vec![
                (".js".into(), vec![".ts".into(), ".tsx".into(), ".js".into()]),
                (".mjs".into(), vec![".mts".into(), ".mjs".into()]),
            ],
            builtin_modules: true,
            ..ResolveOptions::default()
        });

        let mut modules = BTreeMap::new();
        let mut total = 0u64;
        // Each module to visit, with the module and specifier that first imported it.
        let mut queue = VecDeque::from([(entry_path.clone(), None::<(String, String)>)]);
        while let Some((path, imported_by)) = queue.pop_front() {
            if modules.contains_key(&path) {
                continue;
            }
            let file = root.join(&path);
            let bytes = std::fs::read(&file)
                .map_err(|source| BundleError::Read { path: file.clone(), source })?;
            total += bytes.len() as u64;
            if total > MAX_BUNDLE_BYTES {
                return Err(BundleError::TooLarge { limit: MAX_BUNDLE_BYTES });
            }
            let text = String::from_utf8(bytes).map_err(|_| BundleError::NotUtf8(file.clone()))?;
            let kind = ModuleKind::of_path(&path);
            let module = match kind {
                ModuleKind::Json => {
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                        return Err(BundleError::Syntax {
                            path,
                            line: e.line(),
                            column: e.column(),
                            message: e.to_string(),
                        });
                    }
                    ModuleInput { kind, code: text, source_map: None, imports: BTreeMap::new() }
                }
                ModuleKind::Text => {
                    ModuleInput { kind, code: text, source_map: None, imports: BTreeMap::new() }
                }
                ModuleKind::Js => {
                    let script = transform::script(&path, &text)?;
                    if is_commonjs(&script, &text) {
                        let (importer, specifier) = imported_by.unwrap_or_default();
                        return Err(BundleError::CommonJs { path, importer, specifier });
                    }
                    let mut imports = BTreeMap::new();
                    for specifier in &script.specifiers {
                        let target = resolve(&resolver, &root, &file, &path, specifier)?;
                        queue.push_back((target.clone(), Some((path.clone(), specifier.clone()))));
                        imports.insert(specifier.clone(), target);
                    }
                    ModuleInput { kind, code: script.code, source_map: script.source_map, imports }
                }
            };
            modules.insert(path, module);
        }
        Bundle::new(name, &entry_path, modules)
    }
}

/// Resolves one specifier of `importer` to a bundle path inside `root`, refusing builtins,
/// files outside the function folder and CommonJS.
fn resolve(
    resolver: &Resolver,
    root: &Path,
    file: &Path,
    importer: &str,
    specifier: &str,
) -> Result<String, BundleError> {
    let unresolved = |reason: String| BundleError::Unresolved {
        importer: importer.to_string(),
        specifier: specifier.to_string(),
        reason,
    };
    let resolution = resolver.resolve_file(file, specifier).map_err(|e| match e {
        ResolveError::Builtin { .. } => {
            unresolved("Node.js built-in modules are not available in functions".to_string())
        }
        ResolveError::NotFound(_) => unresolved("no such file or package".to_string()),
        other => unresolved(other.to_string()),
    })?;
    let target = resolution.path();
    let target = target.canonicalize().unwrap_or_else(|_| target.to_path_buf());
    let relative = target
        .strip_prefix(root)
        .map_err(|_| unresolved(format!("{} is outside the function folder", target.display())))?;
    Ok(bundle_path(relative))
}

/// A script that reads like CommonJS: no `import`/`export` but `require(`, `module.exports` or
/// `exports.`.
fn is_commonjs(script: &transform::Script, text: &str) -> bool {
    !script.has_module_syntax
        && (text.contains("require(")
            || text.contains("module.exports")
            || text.contains("exports."))
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
            matches!(&err, BundleError::Unresolved { importer, specifier, .. } if importer == "src/lib.js" && specifier == "left-pad"),
            "{err}"
        );
        assert!(err.to_string().contains("src/lib.js") && err.to_string().contains("left-pad"));

        write(dir.path(), "src/lib.js", "import fs from 'node:fs';\n");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(err.to_string().contains("built-in"), "{err}");

        write(dir.path(), "src/lib.js", "import c from 'cjs';\n");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(
            matches!(&err, BundleError::CommonJs { path, .. } if path == "node_modules/cjs/index.js"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_missing_entry() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/other.js", "");
        let err = Bundle::from_dir(dir.path(), "f", Path::new("src/index.js")).unwrap_err();
        assert!(matches!(err, BundleError::MissingEntry(p) if p == "src/index.js"));
    }
}

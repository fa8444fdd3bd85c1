//! CommonJS as ES modules, so the runtime loads one module system.
//!
//! A CommonJS file becomes an ES module that exports `__isola_cjs`, a function running the
//! file's body once and answering its `module.exports`: `require` of another CommonJS file
//! calls that file's function, so requires run when and in the order Node runs them, and a
//! circular require gets the partly filled `exports`, as in Node. Literal `require`s become
//! static imports (the bundler follows them); a non-literal one is looked up at run time among
//! the bundle's CommonJS modules. An ES module importing a CommonJS file imports its interop
//! module instead: `default` is `module.exports`, and the named exports are the names a static
//! scan finds, as Node's cjs-module-lexer does.

use oxc::allocator::Allocator;
use oxc::ast::ast::{
    Argument, AssignmentExpression, AssignmentTarget, CallExpression, Expression,
    ObjectPropertyKind, TryStatement,
};
use oxc::ast_visit::{walk, Visit};
use oxc::parser::Parser;
use oxc::span::SourceType;

use crate::BundleError;

/// What a scan of a CommonJS file finds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Literal `require("…")` specifiers in source order, each once, with whether every use is
    /// inside a `try` block (an optional dependency: it may be missing).
    pub requires: Vec<(String, bool)>,
    /// Names assigned on `exports` / `module.exports`, or keys of an object literal assigned
    /// to `module.exports`.
    pub exports: Vec<String>,
    /// Specifiers whose exports this file re-exports (`module.exports = require("x")`,
    /// `__exportStar(require("x"), exports)`).
    pub reexports: Vec<String>,
    /// Node's globals the file uses without declaring them (`process`, `Buffer`, `global`,
    /// `setImmediate`): they are given to it as its module's own, as Node bundlers do.
    pub globals: Vec<&'static str>,
}

impl Scan {
    /// What the file names for the bundler to follow: its literal requires (each with whether
    /// it may be missing), then the built-ins that provide the Node globals it uses.
    pub(crate) fn specifiers(&self) -> Vec<(String, bool)> {
        let mut out = self.requires.clone();
        for global in &self.globals {
            let source = NODE_GLOBALS.iter().find(|(n, _)| n == global).map(|(_, s)| *s);
            if let Some(source) = source.filter(|s| !s.is_empty()) {
                if !out.iter().any(|(s, _)| s == source) {
                    out.push((source.to_string(), false));
                }
            }
        }
        out
    }
}

/// `text` as a JavaScript string literal (JSON's quoting is valid JavaScript).
pub(crate) fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// The Node.js globals a CommonJS module gets in its scope, and the built-in each comes from.
const NODE_GLOBALS: &[(&str, &str)] = &[
    ("process", "node:process"),
    ("Buffer", "node:buffer"),
    ("global", ""),
    ("setImmediate", "node:timers"),
    ("clearImmediate", "node:timers"),
];

/// Whether a script without `import`/`export` reads like CommonJS.
pub(crate) fn looks_like_commonjs(text: &str) -> bool {
    text.contains("require(") || text.contains("module.exports") || text.contains("exports.")
}

/// The body of a CommonJS file as it runs: a leading `#!` line is blanked (it cannot stand
/// inside the function the body is wrapped in; the line count stays the same).
fn body(text: &str) -> String {
    match text.strip_prefix("#!") {
        Some(rest) => format!("//{rest}"),
        None => text.to_string(),
    }
}

/// Parses a CommonJS file (top-level `return` allowed, sloppy-mode syntax as a function body
/// accepts it) and scans it.
pub(crate) fn scan(path: &str, text: &str) -> Result<Scan, BundleError> {
    let allocator = Allocator::default();
    let source = body(text);
    let parsed = Parser::new(&allocator, &source, SourceType::cjs()).parse();
    if let Some(error) = parsed.diagnostics.errors().next() {
        return Err(crate::transform::syntax_error(path, &source, error));
    }
    let mut scanner = Scanner { try_depth: 0, scan: Scan::default() };
    scanner.visit_program(&parsed.program);
    let mut scan = scanner.scan;
    let scoping =
        oxc::semantic::SemanticBuilder::new().build(&parsed.program).semantic.into_scoping();
    for (name, _) in NODE_GLOBALS {
        if scoping.root_unresolved_references().contains_key(*name) {
            scan.globals.push(name);
        }
    }
    let mut seen = std::collections::HashSet::new();
    scan.exports.retain(|name| {
        name != "default" && name != "__esModule" && valid_name(name) && seen.insert(name.clone())
    });
    Ok(scan)
}

/// A name an ES module can export: a JavaScript identifier name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

struct Scanner {
    try_depth: usize,
    scan: Scan,
}

fn literal<'a>(argument: &'a Argument<'_>) -> Option<&'a str> {
    match argument {
        Argument::StringLiteral(s) => Some(s.value.as_str()),
        Argument::TemplateLiteral(t) if t.expressions.is_empty() && t.quasis.len() == 1 => {
            t.quasis[0].value.cooked.as_ref().map(|c| c.as_str())
        }
        _ => None,
    }
}

/// `require("x")` → `x`.
fn required<'a>(expression: &'a Expression<'_>) -> Option<&'a str> {
    let Expression::CallExpression(call) = expression else { return None };
    match &call.callee {
        Expression::Identifier(id) if id.name == "require" && call.arguments.len() == 1 => {
            literal(&call.arguments[0])
        }
        _ => None,
    }
}

/// `exports` or `module.exports`.
fn is_exports(expression: &Expression<'_>) -> bool {
    match expression {
        Expression::Identifier(id) => id.name == "exports",
        Expression::StaticMemberExpression(m) => is_module_exports(m),
        _ => false,
    }
}

fn is_module_exports(m: &oxc::ast::ast::StaticMemberExpression<'_>) -> bool {
    matches!(&m.object, Expression::Identifier(id) if id.name == "module")
        && m.property.name == "exports"
}

impl<'a> Visit<'a> for Scanner {
    fn visit_try_statement(&mut self, it: &TryStatement<'a>) {
        self.try_depth += 1;
        self.visit_block_statement(&it.block);
        self.try_depth -= 1;
        if let Some(handler) = &it.handler {
            self.visit_catch_clause(handler);
        }
        if let Some(finalizer) = &it.finalizer {
            self.visit_block_statement(finalizer);
        }
    }

    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if let Expression::Identifier(id) = &it.callee {
            if id.name == "require" && it.arguments.len() == 1 {
                if let Some(specifier) = literal(&it.arguments[0]) {
                    // Optional only if every require of it sits in a `try`.
                    let in_try = self.try_depth > 0;
                    match self.scan.requires.iter_mut().find(|(s, _)| s == specifier) {
                        Some((_, optional)) => *optional = *optional && in_try,
                        None => self.scan.requires.push((specifier.to_string(), in_try)),
                    }
                }
            }
            // TypeScript's and Babel's re-export helpers.
            if matches!(id.name.as_str(), "__exportStar" | "__export") {
                if let Some(specifier) =
                    it.arguments.first().and_then(Argument::as_expression).and_then(required)
                {
                    self.scan.reexports.push(specifier.to_string());
                }
            }
        }
        // Object.defineProperty(exports, "name", …)
        if let Expression::StaticMemberExpression(m) = &it.callee {
            let object_define = matches!(&m.object, Expression::Identifier(o) if o.name == "Object")
                && m.property.name == "defineProperty";
            if object_define && it.arguments.len() >= 2 {
                let target = it.arguments[0].as_expression().is_some_and(is_exports);
                if let (true, Some(name)) = (target, literal(&it.arguments[1])) {
                    self.scan.exports.push(name.to_string());
                }
            }
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_assignment_expression(&mut self, it: &AssignmentExpression<'a>) {
        match &it.left {
            AssignmentTarget::StaticMemberExpression(m) if is_module_exports(m) => {
                match &it.right {
                    Expression::ObjectExpression(object) => {
                        for property in &object.properties {
                            if let ObjectPropertyKind::ObjectProperty(p) = property {
                                if let Some(name) = p.key.static_name() {
                                    self.scan.exports.push(name.to_string());
                                }
                            }
                        }
                    }
                    right => {
                        if let Some(specifier) = required(right) {
                            self.scan.reexports.push(specifier.to_string());
                        }
                    }
                }
            }
            AssignmentTarget::StaticMemberExpression(m) if is_exports(&m.object) => {
                self.scan.exports.push(m.property.name.to_string());
            }
            AssignmentTarget::ComputedMemberExpression(m) if is_exports(&m.object) => {
                if let Expression::StringLiteral(s) = &m.expression {
                    self.scan.exports.push(s.value.to_string());
                }
            }
            _ => {}
        }
        walk::walk_assignment_expression(self, it);
    }
}

/// The bundle path (and specifier) of the module every CommonJS module imports: `require`
/// itself, and the registry of the bundle's CommonJS modules for non-literal requires.
pub(crate) const RUNTIME: &str = "__isola__/commonjs.js";

/// [`RUNTIME`]'s code.
pub(crate) const RUNTIME_CODE: &str = r#"// require() of CommonJS modules, made by the bundler.
const modules = new Map();

export function register(path, run) {
  modules.set(path, run);
}

function normalize(parts) {
  const out = [];
  for (const part of parts) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return out.join("/");
}

// A specifier no literal require named: a relative path is looked up among the bundle's
// CommonJS modules, with Node's extensions and index files.
function find(from, specifier) {
  if (!specifier.startsWith("./") && !specifier.startsWith("../") && !specifier.startsWith("/")) {
    return undefined;
  }
  const dir = from.includes("/") ? from.slice(0, from.lastIndexOf("/")) : "";
  const base = normalize((specifier.startsWith("/") ? specifier : `${dir}/${specifier}`).split("/"));
  for (const candidate of [base, `${base}.js`, `${base}.cjs`, `${base}/index.js`]) {
    const run = modules.get(candidate);
    if (run !== undefined) return run;
  }
  return undefined;
}

export function requirer(from, deps) {
  function require(specifier) {
    if (typeof specifier !== "string") {
      throw new TypeError(`require() takes a string, not ${typeof specifier}`);
    }
    if (Object.hasOwn(deps, specifier)) return deps[specifier]();
    const run = find(from, specifier);
    if (run !== undefined) return run();
    const error = new Error(
      `Cannot find module '${specifier}' required from /${from}: it is not in the function's bundle (the bundler includes what a require with a literal specifier names)`,
    );
    error.code = "MODULE_NOT_FOUND";
    throw error;
  }
  require.resolve = (specifier) => specifier;
  require.cache = Object.create(null);
  return require;
}
"#;

/// How a CommonJS file reaches one thing it requires.
#[derive(Debug, Clone)]
pub(crate) enum Dependency {
    /// Another CommonJS file: its `__isola_cjs`.
    CommonJs,
    /// An ES module: its namespace (Node's `require(esm)`).
    Module,
    /// A Node.js built-in (an ES module whose `default` is what `require` gives).
    Builtin,
    /// A JSON file: its value.
    Json,
}

/// The module a CommonJS file at bundle path `path` becomes. `requires` maps each literal
/// specifier it resolved to how it is reached; the prelude stays on the first line, so the
/// file's own lines keep their numbers.
pub(crate) fn module(
    path: &str,
    text: &str,
    requires: &[(String, Dependency)],
    globals: &[&str],
) -> String {
    let mut imports = String::new();
    let mut deps = String::new();
    // Node's globals it uses, as parameters of its wrapper.
    let mut names = String::new();
    let mut values = String::new();
    for global in globals {
        let source = NODE_GLOBALS.iter().find(|(n, _)| n == global).map_or("", |(_, s)| *s);
        let at = requires.iter().position(|(s, _)| s == source);
        let value = match (*global, at) {
            ("global", _) => "globalThis".to_string(),
            ("process", Some(i)) => format!("__isola_{i}.default"),
            (name, Some(i)) => format!("__isola_{i}.{name}"),
            (_, None) => continue,
        };
        names.push_str(&format!(", {global}"));
        values.push_str(&format!(", {value}"));
    }
    for (i, (specifier, dependency)) in requires.iter().enumerate() {
        let quoted = quote(specifier);
        let value = match dependency {
            Dependency::CommonJs => {
                imports
                    .push_str(&format!("import {{ __isola_cjs as __isola_{i} }} from {quoted};"));
                format!("__isola_{i}()")
            }
            Dependency::Module => {
                imports.push_str(&format!("import * as __isola_{i} from {quoted};"));
                format!("__isola_{i}")
            }
            Dependency::Builtin => {
                imports.push_str(&format!("import * as __isola_{i} from {quoted};"));
                format!("__isola_{i}.default")
            }
            Dependency::Json => {
                imports.push_str(&format!(
                    "import __isola_{i} from {quoted} with {{ type: \"json\" }};"
                ));
                format!("__isola_{i}")
            }
        };
        deps.push_str(&format!("{quoted}: () => {value},"));
    }
    let file = quote(&format!("/{path}"));
    let dir = quote(&path.rsplit_once('/').map_or("/".to_string(), |(d, _)| format!("/{d}")));
    let (key, runtime) = (quote(path), quote(RUNTIME));
    format!(
        "import {{ requirer as __isola_requirer, register as __isola_register }} from {runtime};{imports}\
var __isola_m;const __isola_deps = {{{deps}}};\
export function __isola_cjs() {{ if (__isola_m !== undefined) return __isola_m.exports; \
const module = __isola_m = {{ exports: {{}}, id: {file}, filename: {file}, loaded: false, children: [], paths: [] }}; \
const require = __isola_requirer({key}, __isola_deps); module.require = require; \
(function (exports, require, module, __filename, __dirname{names}) {{{body}\n}}).call(module.exports, module.exports, require, module, {file}, {dir}{values}); \
module.loaded = true; return module.exports; }}\n\
__isola_register({key}, __isola_cjs);\n",
        body = body(text),
    )
}

/// The module an ES module imports in place of the CommonJS file at `target` (`specifier`
/// from the interop module reaches it): `default` is `module.exports`, and each of `names`
/// is exported as its property at import time.
pub(crate) fn interop(specifier: &str, names: &[String]) -> String {
    let quoted = quote(specifier);
    let mut out = format!(
        "import {{ __isola_cjs }} from {quoted};\nconst __isola_e = __isola_cjs();\nexport default __isola_e;\n"
    );
    if !names.is_empty() {
        let locals: Vec<String> = (0..names.len()).map(|i| format!("__isola_{i}")).collect();
        out.push_str(&format!(
            "const __isola_o = __isola_e ?? {{}};\nconst {};\nexport {{ {} }};\n",
            names
                .iter()
                .zip(&locals)
                .map(|(n, l)| format!("{l} = __isola_o[{}]", quote(n)))
                .collect::<Vec<_>>()
                .join(", "),
            names
                .iter()
                .zip(&locals)
                .map(|(n, l)| format!("{l} as {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_requires_exports_and_reexports() {
        let text = r#"#!/usr/bin/env node
'use strict';
const a = require('./a');
const b = require("b");
try { require('optional-dep'); } catch {}
if (x) require('./a');
exports.one = 1;
module.exports.two = 2;
exports['three'] = 3;
Object.defineProperty(exports, 'four', { get() { return 4 } });
module.exports = { five, six: 6, 'seven': 7, ...rest };
module.exports = require('./re');
__exportStar(require('./star'), exports);
exports.default = 0;
return;
"#;
        let scan = scan("x.js", text).unwrap();
        assert_eq!(
            scan.requires,
            [
                ("./a".to_string(), false),
                ("b".to_string(), false),
                ("optional-dep".to_string(), true),
                ("./re".to_string(), false),
                ("./star".to_string(), false),
            ]
        );
        assert_eq!(scan.exports, ["one", "two", "three", "four", "five", "six", "seven"]);
        assert_eq!(scan.reexports, ["./re", "./star"]);
    }

    #[test]
    fn keeps_line_numbers() {
        let code = module(
            "lib/x.js",
            "line1();\nline2();\n",
            &[("./y".into(), Dependency::CommonJs)],
            &[],
        );
        let lines: Vec<&str> = code.lines().collect();
        assert!(lines[0].ends_with("line1();"), "{code}");
        assert_eq!(lines[1], "line2();");
    }
}

//! One source file -> the code the runtime loads, its source map and the specifiers it imports.
//! Parsing, TypeScript/JSX transpiling and printing are oxc's.

use std::path::{Path, PathBuf};

use oxc::allocator::Allocator;
use oxc::codegen::{Codegen, CodegenOptions};
use oxc::diagnostics::OxcDiagnostic;
use oxc::parser::{Parser, ParserReturn};
use oxc::semantic::SemanticBuilder;
use oxc::span::SourceType;
use oxc::transformer::{TransformOptions, Transformer};

use crate::BundleError;

/// A script after transpiling.
#[derive(Debug)]
pub(crate) struct Script {
    pub code: String,
    pub source_map: Option<Vec<u8>>,
    /// Specifiers of static imports and re-exports, and of `import("…")` with a literal.
    pub specifiers: Vec<String>,
    /// The file uses `import`/`export`.
    pub has_module_syntax: bool,
}

/// Whether a path is TypeScript or JSX, which must be transpiled.
pub(crate) fn needs_transpiling(path: &str) -> bool {
    [".ts", ".mts", ".cts", ".tsx", ".jsx"].iter().any(|ext| path.ends_with(ext))
}

/// Parses a script, transpiling TypeScript and JSX. `path` is the bundle path: it names the
/// file in errors, and the source map's source is its file name (relative to the module's own
/// URL, so stack traces point at the original file).
pub(crate) fn script(path: &str, text: &str) -> Result<Script, BundleError> {
    let source_type = SourceType::from_path(path).unwrap_or_else(|_| SourceType::mjs());
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, text, source_type).parse();
    check(path, text, &parsed)?;
    if !needs_transpiling(path) {
        return Ok(Script {
            code: text.to_string(),
            source_map: None,
            specifiers: specifiers(text, &parsed),
            has_module_syntax: parsed.module_record.has_module_syntax,
        });
    }

    let has_module_syntax = parsed.module_record.has_module_syntax;
    let mut program = parsed.program;
    let scoping = SemanticBuilder::new().build(&program).semantic.into_scoping();
    let options = TransformOptions::default();
    let transformed = Transformer::new(&allocator, Path::new(path), &options)
        .build_with_scoping(scoping, &mut program);
    if let Some(error) = transformed.diagnostics.errors().next() {
        return Err(syntax_error(path, text, error));
    }
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let printed = Codegen::new()
        .with_options(CodegenOptions {
            source_map_path: Some(PathBuf::from(file_name)),
            ..CodegenOptions::default()
        })
        .build(&program);
    let source_map = printed.map.map(|map| map.to_json_string().into_bytes());

    // Type-only imports are gone from the output; read the imports off what is left.
    let allocator = Allocator::default();
    let reparsed = Parser::new(&allocator, &printed.code, SourceType::mjs()).parse();
    check(path, &printed.code, &reparsed)?;
    let specifiers = specifiers(&printed.code, &reparsed);
    Ok(Script { code: printed.code, source_map, specifiers, has_module_syntax })
}

fn check(path: &str, text: &str, parsed: &ParserReturn) -> Result<(), BundleError> {
    match parsed.diagnostics.errors().next() {
        Some(error) => Err(syntax_error(path, text, error)),
        None if parsed.panicked => Err(BundleError::Syntax {
            path: path.to_string(),
            line: 1,
            column: 1,
            message: "cannot parse".to_string(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn syntax_error(path: &str, text: &str, error: &OxcDiagnostic) -> BundleError {
    let offset = error.labels.first().map_or(0, |label| label.offset() as usize);
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    BundleError::Syntax { path: path.to_string(), line, column, message: error.message.to_string() }
}

/// Static specifiers in source order, then literal dynamic ones; each once.
fn specifiers(text: &str, parsed: &ParserReturn) -> Vec<String> {
    let record = &parsed.module_record;
    let mut found: Vec<(u32, String)> = record
        .requested_modules
        .iter()
        .filter_map(|(name, requests)| {
            let first = requests.iter().map(|r| r.span.start).min()?;
            Some((first, name.to_string()))
        })
        .collect();
    found.sort();
    let mut out: Vec<String> = found.into_iter().map(|(_, name)| name).collect();
    for import in &record.dynamic_imports {
        let span = import.module_request;
        let raw = text.get(span.start as usize..span.end as usize).unwrap_or("");
        if let Some(literal) = string_literal(raw) {
            out.push(literal.to_string());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    out
}

/// The text of a string literal without escapes or substitutions, `'./x.js'` -> `./x.js`.
fn string_literal(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    let quote = raw.chars().next()?;
    if !matches!(quote, '"' | '\'' | '`') || raw.len() < 2 || !raw.ends_with(quote) {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    (!inner.contains('\\') && !inner.contains("${") && !inner.contains(quote)).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpiles_typescript_and_keeps_value_imports_only() {
        let ts = r#"import type { A } from "./types";
import { type B, helper } from "./util.ts";
import { type C } from "./only-types";
export * from "./re";
const lazy = () => import("./lazy.ts");
const dynamic = (n: string) => import(`./pages/${n}.ts`);
export default { fetch(req: Request): Response { return helper(req) as Response } };
"#;
        let out = script("src/index.ts", ts).unwrap();
        assert!(!out.code.contains(": Request"), "{}", out.code);
        assert_eq!(out.specifiers, ["./util.ts", "./re", "./lazy.ts"]);
        assert!(out.has_module_syntax);
        let map: serde_json::Value = serde_json::from_slice(&out.source_map.unwrap()).unwrap();
        assert_eq!(map["sources"][0], "index.ts");
    }

    #[test]
    fn leaves_javascript_as_written() {
        let js = "import x from 'x';\nexport default x;\n";
        let out = script("node_modules/y/index.js", js).unwrap();
        assert_eq!(out.code, js);
        assert!(out.source_map.is_none());
        assert_eq!(out.specifiers, ["x"]);
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = script("src/bad.ts", "const a = 1;\nconst b = ;\n").unwrap_err();
        match err {
            BundleError::Syntax { path, line, .. } => {
                assert_eq!(path, "src/bad.ts");
                assert_eq!(line, 2);
            }
            other => panic!("{other}"),
        }
    }
}

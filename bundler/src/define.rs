//! `process.env.NODE_ENV` replaced by `"production"`, as bundlers for Workers and browsers
//! define it: much of npm reads it at load time to choose its build, and a function has no
//! `process` (unless `nodejs_compat` is on). Only the global `process` is replaced (a module's
//! own `process` variable is left alone), in place, so lines and columns stay as written.

use oxc::allocator::Allocator;
use oxc::ast::ast::{Expression, StaticMemberExpression};
use oxc::ast_visit::{walk, Visit};
use oxc::parser::Parser;
use oxc::semantic::{Scoping, SemanticBuilder};
use oxc::span::{SourceType, Span};

const NEEDLE: &str = "process.env.NODE_ENV";
const VALUE: &str = "\"production\"";

/// `text` with every `process.env.NODE_ENV` of the global `process` replaced, or `None` when
/// there is none (or the text does not parse as `source_type`).
pub(crate) fn node_env(text: &str, source_type: SourceType) -> Option<String> {
    if !text.contains(NEEDLE) {
        return None;
    }
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, text, source_type).parse();
    if parsed.panicked || parsed.diagnostics.errors().next().is_some() {
        return None;
    }
    let scoping = SemanticBuilder::new().build(&parsed.program).semantic.into_scoping();
    let mut finder = Finder { scoping: &scoping, spans: Vec::new() };
    finder.visit_program(&parsed.program);
    if finder.spans.is_empty() {
        return None;
    }
    let mut out = text.to_string();
    for span in finder.spans.iter().rev() {
        out.replace_range(span.start as usize..span.end as usize, VALUE);
    }
    Some(out)
}

struct Finder<'s> {
    scoping: &'s Scoping,
    spans: Vec<Span>,
}

impl<'a> Visit<'a> for Finder<'_> {
    fn visit_static_member_expression(&mut self, it: &StaticMemberExpression<'a>) {
        if it.property.name == "NODE_ENV" {
            if let Expression::StaticMemberExpression(env) = &it.object {
                if let Expression::Identifier(process) = &env.object {
                    let global = process
                        .reference_id
                        .get()
                        .is_some_and(|id| self.scoping.get_reference(id).symbol_id().is_none());
                    if process.name == "process" && env.property.name == "env" && global {
                        self.spans.push(it.span);
                        return;
                    }
                }
            }
        }
        walk::walk_static_member_expression(self, it);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_global_process_only_and_keeps_lines() {
        let text = "if (process.env.NODE_ENV !== 'production') warn();\nfunction f(process) { return process.env.NODE_ENV }\nconst x = typeof process === 'undefined' ? 0 : process.env.NODE_ENV;\n";
        let out = node_env(text, SourceType::mjs()).unwrap();
        assert_eq!(
            out,
            "if (\"production\" !== 'production') warn();\nfunction f(process) { return process.env.NODE_ENV }\nconst x = typeof process === 'undefined' ? 0 : \"production\";\n"
        );
        assert_eq!(node_env("const a = 1;", SourceType::mjs()), None);
    }
}

//! Resolves and loads a function's modules from its bundle, and from nowhere else.

use std::cell::RefCell;
use std::sync::Arc;

use bundler::Bundle;
use deno_core::{
    ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleResolveResponse,
    ModuleSource, ModuleSourceCode, ModuleSpecifier, ModuleType, ResolutionKind,
};
use deno_error::JsErrorBox;

/// The URL of a bundle's module: `file:///src/index.js` for the bundle path `src/index.js`.
pub(crate) fn module_url(path: &str) -> ModuleSpecifier {
    ModuleSpecifier::parse(&format!("file:///{path}")).expect("bundle paths form valid URLs")
}

/// Loads from the bundle of the function the isolate runs; an isolate made ahead of time
/// (a spare) gets its bundle when it is given a function.
#[derive(Default)]
pub(crate) struct BundleLoader {
    bundle: RefCell<Option<Arc<Bundle>>>,
}

impl BundleLoader {
    pub fn set(&self, bundle: Arc<Bundle>) {
        *self.bundle.borrow_mut() = Some(bundle);
    }

    fn source(&self, path: &str) -> Option<Arc<str>> {
        self.bundle.borrow().as_ref()?.source(path).cloned()
    }

    fn bundle_path(specifier: &ModuleSpecifier) -> Option<&str> {
        (specifier.scheme() == "file").then(|| specifier.path().trim_start_matches('/'))
    }
}

impl ModuleLoader for BundleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        _kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        let resolved = deno_core::resolve_import(specifier, referrer).map_err(|_| {
            JsErrorBox::type_error(format!(
                "cannot resolve `{specifier}` imported from {referrer}: only relative imports of the function's own modules are available"
            ))
        })?;
        match Self::bundle_path(&resolved) {
            Some(path) if self.source(path).is_some() => Ok(resolved),
            _ => Err(JsErrorBox::type_error(format!(
                "cannot resolve `{specifier}` imported from {referrer}: no such module in the function"
            ))),
        }
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        _referrer: Option<&ModuleLoadReferrer>,
        _options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        let source = Self::bundle_path(specifier).and_then(|path| {
            let source = self.source(path)?;
            let kind =
                if path.ends_with(".json") { ModuleType::Json } else { ModuleType::JavaScript };
            Some((source, kind))
        });
        ModuleLoadResponse::Sync(match source {
            Some((source, kind)) => Ok(ModuleSource::new(
                kind,
                ModuleSourceCode::String(source.to_string().into()),
                specifier,
                None,
            )),
            None => {
                Err(JsErrorBox::type_error(format!("module {specifier} is not in the function")))
            }
        })
    }
}

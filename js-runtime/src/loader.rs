//! Resolves and loads a function's modules from its bundle, and from nowhere else.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bundler::{Bundle, ModuleKind};
use deno_core::{
    ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleResolveResponse,
    ModuleSource, ModuleSourceCode, ModuleSpecifier, ModuleType, RequestedModuleType,
    ResolutionKind, SourceCodeCacheInfo,
};
use deno_error::JsErrorBox;

use crate::code_cache::{short_hash, CodeCache};

/// The URL of a bundle's module: `file:///src/index.ts` for the bundle path `src/index.ts`.
/// A path that forms no URL (a bundle's manifest comes from an upload) is an error, not a
/// panic: this runs inside V8's module resolution callback.
pub(crate) fn module_url(path: &str) -> Result<ModuleSpecifier, String> {
    ModuleSpecifier::parse(&format!("file:///{path}"))
        .map_err(|e| format!("the bundle path `{path}` forms no URL: {e}"))
}

/// Loads from the bundle of the function the isolate runs; an isolate made ahead of time
/// (a spare) gets its bundle when it is given a function.
#[derive(Default)]
pub(crate) struct BundleLoader {
    bundle: RefCell<Option<Arc<Bundle>>>,
    code_cache: RefCell<Option<Arc<dyn CodeCache>>>,
}

impl BundleLoader {
    pub fn set(&self, bundle: Arc<Bundle>, code_cache: Option<Arc<dyn CodeCache>>) {
        *self.bundle.borrow_mut() = Some(bundle);
        *self.code_cache.borrow_mut() = code_cache;
    }

    fn bundle(&self) -> Option<Arc<Bundle>> {
        self.bundle.borrow().clone()
    }

    fn bundle_path(specifier: &str) -> Option<&str> {
        specifier.strip_prefix("file:///")
    }

    /// The import map entry the bundler recorded for `specifier` in `referrer`, or, for
    /// specifiers it could not see (`import(variable)`), the relative path if the bundle has it.
    fn resolve_in(&self, specifier: &str, referrer: &str) -> Result<ModuleSpecifier, String> {
        let bundle = self.bundle().ok_or("the isolate has no function")?;
        if let Some(target) = Self::bundle_path(referrer)
            .and_then(|path| bundle.module(path))
            .and_then(|module| module.info.imports.get(specifier))
        {
            return module_url(target);
        }
        let resolved = deno_core::resolve_import(specifier, referrer)
            .map_err(|_| "only the function's own modules can be imported".to_string())?;
        match Self::bundle_path(resolved.as_str()) {
            Some(path) if bundle.module(path).is_some() => Ok(resolved),
            _ => Err("no such module in the function's bundle".to_string()),
        }
    }
}

impl ModuleLoader for BundleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        _kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        self.resolve_in(specifier, referrer).map_err(|reason| {
            JsErrorBox::type_error(format!(
                "cannot resolve `{specifier}` imported from {referrer}: {reason}"
            ))
        })
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        _referrer: Option<&ModuleLoadReferrer>,
        options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        let bundle = self.bundle();
        let module = Self::bundle_path(specifier.as_str())
            .and_then(|path| bundle.as_ref()?.module(path).cloned());
        let Some(module) = module else {
            return ModuleLoadResponse::Sync(Err(JsErrorBox::type_error(format!(
                "module {specifier} is not in the function"
            ))));
        };
        let kind = match module.info.kind {
            ModuleKind::Js => ModuleType::JavaScript,
            ModuleKind::Json => ModuleType::Json,
            ModuleKind::Text if options.requested_module_type == RequestedModuleType::Text => {
                ModuleType::Text
            }
            ModuleKind::Text => {
                return ModuleLoadResponse::Sync(Err(JsErrorBox::type_error(format!(
                    "{specifier} is a text file: import it `with {{ type: \"text\" }}`"
                ))))
            }
        };
        let code_cache = match (&*self.code_cache.borrow(), &kind) {
            (Some(cache), ModuleType::JavaScript) => Some(SourceCodeCacheInfo {
                hash: short_hash(&module.info.hash),
                data: cache.get(&module.info.hash).map(|data| Cow::Owned(data.to_vec())),
            }),
            _ => None,
        };
        ModuleLoadResponse::Sync(Ok(ModuleSource::new(
            kind,
            ModuleSourceCode::String(module.code.clone().into()),
            specifier,
            code_cache,
        )))
    }

    fn code_cache_ready(
        &self,
        specifier: ModuleSpecifier,
        _hash: u64,
        code_cache: &[u8],
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let bundle = self.bundle();
        let module =
            Self::bundle_path(specifier.as_str()).and_then(|path| bundle.as_ref()?.module(path));
        if let (Some(module), Some(cache)) = (module, &*self.code_cache.borrow()) {
            cache.put(&module.info.hash, code_cache);
        }
        Box::pin(async {})
    }

    fn get_source_map(&self, file_name: &str) -> Option<Cow<'_, [u8]>> {
        let bundle = self.bundle()?;
        let map = bundle.module(Self::bundle_path(file_name)?)?.source_map.clone()?;
        Some(Cow::Owned(map.to_vec()))
    }

    /// Line `line_number` (from 0) of a module as its author wrote it: from its source map's
    /// `sourcesContent` when it was transpiled, else its code. For an error's code frame.
    fn get_source_mapped_source_line(&self, file_name: &str, line_number: usize) -> Option<String> {
        let bundle = self.bundle()?;
        let module = bundle.module(Self::bundle_path(file_name)?)?;
        let line = |text: &str| text.lines().nth(line_number).map(str::to_string);
        match &module.source_map {
            Some(map) => {
                let map: serde_json::Value = serde_json::from_slice(map).ok()?;
                line(map["sourcesContent"][0].as_str()?)
            }
            None => line(&module.code),
        }
    }
}

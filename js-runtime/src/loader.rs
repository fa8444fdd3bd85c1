//! Resolves and loads a function's modules from its bundle, and from nowhere else.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bundler::{Bundle, ModuleKind};
use deno_core::v8;
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

/// A module compiled from source, and the code cache V8 made as it compiled it.
type HeldCache = (ModuleSpecifier, Vec<u8>);

/// Loads from the bundle of the function the isolate runs; an isolate made ahead of time
/// (a spare) gets its bundle when it is given a function.
#[derive(Default)]
pub(crate) struct BundleLoader {
    bundle: RefCell<Option<Arc<Bundle>>>,
    code_cache: RefCell<Option<Arc<dyn CodeCache>>>,
    /// While the function starts: the caches of the modules compiled from source (no cache
    /// kept, or V8 refused it), held until its modules have run. `None` otherwise: a module
    /// compiled later (a dynamic import), or by `compile_modules`, is cached as it is compiled.
    held: RefCell<Option<Vec<HeldCache>>>,
}

impl BundleLoader {
    pub fn set(&self, bundle: Arc<Bundle>, code_cache: Option<Arc<dyn CodeCache>>) {
        *self.bundle.borrow_mut() = Some(bundle);
        *self.code_cache.borrow_mut() = code_cache;
    }

    /// Holds the caches of the modules compiled from here on until [`store_held_caches`]:
    /// called as the function's start begins to load its modules.
    ///
    /// [`store_held_caches`]: BundleLoader::store_held_caches
    pub fn hold_caches(&self) {
        *self.held.borrow_mut() = Some(Vec::new());
    }

    /// Hands the store the caches held while the function started, each made again now that
    /// its module has run. A cache made as a module is compiled holds its top level only, so
    /// every start compiled again each function the module called while it loaded (0.1–0.2 ms
    /// for `node:buffer` and `node:crypto`); made after the run it holds those too: V8's
    /// compilation cache hands back the module compiled, functions and all, for the same
    /// source and origin. A module that cannot be compiled again keeps its first cache.
    pub fn store_held_caches(&self, scope: &mut v8::PinScope) {
        let held = self.held.take().unwrap_or_default();
        let (Some(bundle), Some(cache)) = (self.bundle(), self.code_cache.borrow().clone()) else {
            return;
        };
        for (specifier, first) in held {
            let Some(module) = Self::bundle_path(specifier.as_str()).and_then(|p| bundle.module(p))
            else {
                continue;
            };
            match Self::cache_again(scope, &specifier, &module.code) {
                Some(after_run) => cache.put(&module.info.hash, &after_run),
                None => cache.put(&module.info.hash, &first),
            }
        }
    }

    /// The code cache of the module `specifier` with source `code` as V8 has it now.
    fn cache_again(
        scope: &mut v8::PinScope,
        specifier: &ModuleSpecifier,
        code: &str,
    ) -> Option<v8::UniqueRef<v8::CachedData<'static>>> {
        let name = v8::String::new(scope, specifier.as_str())?;
        let code = v8::String::new(scope, code)?;
        // The origin deno_core gives a module (`deno_core::modules::script_origin`), which the
        // compilation cache's key includes.
        let origin = v8::ScriptOrigin::new(
            scope,
            name.into(),
            0,
            0,
            false,
            0,
            None,
            false,
            false,
            true,
            None,
        );
        let mut source = v8::script_compiler::Source::new(code, Some(&origin));
        let module = v8::script_compiler::compile_module(scope, &mut source)?;
        module.get_unbound_module_script(scope).create_code_cache()
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
            match &mut *self.held.borrow_mut() {
                Some(held) => held.push((specifier, code_cache.to_vec())),
                None => cache.put(&module.info.hash, code_cache),
            }
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

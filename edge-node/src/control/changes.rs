//! Changes that reach the control plane from outside the admin API: deployments and secrets
//! changed through other nodes of the cluster (the backend's change stream), and the functions
//! folder read again on SIGHUP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bundler::Bundle;
use tokio::sync::mpsc;

use super::{AdminError, Control};
use crate::backend::{AbortOnDrop, Change, VersionRecord};
use crate::front::http::Site;
use crate::functions::{shared_route, Function, FunctionSpec};

impl Control {
    /// Applies the changes made through other nodes until their stream ends. A change that
    /// fails (NATS gone mid-fetch, say) is tried again a few times.
    pub fn follow(self: &Arc<Self>, mut changes: mpsc::Receiver<Change>) -> AbortOnDrop {
        let control = self.clone();
        AbortOnDrop(tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                for attempt in 1..=5u32 {
                    let applied = match &change {
                        Change::Deployment { name, active } => {
                            control.apply_deployment(name, active.clone()).await
                        }
                        Change::Secret { name, key, value } => {
                            control.apply_secret(name, key, value.as_deref()).await
                        }
                    };
                    match applied {
                        Ok(()) => break,
                        Err(e) if attempt == 5 => {
                            tracing::error!(change = ?change, error = %e, "cluster change not applied");
                        }
                        Err(_) => tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await,
                    }
                }
            }
        }))
    }

    /// Applies the cluster's active version of `name` and the highest version number given
    /// out (`None`: deleted) to this node: fetches the bundle if this node lacks it, records
    /// the version and serves it.
    async fn apply_deployment(
        &self,
        name: &str,
        active: Option<(VersionRecord, u64)>,
    ) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        if self.in_folder(name) {
            return Ok(());
        }
        let Some((active, latest)) = active else {
            if self.store.delete(name)? {
                self.swap(name, None);
                self.collect_bundles();
                tracing::info!(function = name, "deleted (cluster)");
            }
            return Ok(());
        };
        if self
            .store
            .active_version(name)?
            .is_some_and(|v| v.version == active.version && v.bundle == active.bundle)
        {
            return Ok(());
        }
        if self.shared.bundles.get(&active.bundle).is_err() {
            let bytes = self.deployments.fetch_bundle(&active.bundle).await?;
            let (bundle, embedded) = Bundle::decode_with_code_cache(&bytes)
                .map_err(|e| AdminError::InvalidBundle(e.to_string()))?;
            if bundle.hash() != active.bundle {
                return Err(AdminError::InvalidBundle(
                    "the cluster's bundle does not match its hash".into(),
                ));
            }
            // The code cache the bundle carries, or the one the deploying node made: this
            // node's first start is warm.
            if let Some(pack) = embedded {
                self.take_code_cache(&bundle, pack);
            }
            match self.deployments.fetch_code_cache(&active.bundle).await {
                Ok(Some(pack)) => self.take_code_cache(&bundle, &pack),
                Ok(None) => {}
                Err(e) => tracing::info!(function = name, error = %e, "no code cache fetched"),
            }
            self.shared
                .bundles
                .keep(Arc::new(bundle))
                .map_err(|e| AdminError::Internal(e.to_string()))?;
        }
        self.store.apply(name, &active, latest, self.keep_versions)?;
        self.restart(name, &active).await?;
        tracing::info!(function = name, version = active.version, "deployed (cluster)");
        Ok(())
    }

    /// Applies a secret set (`Some`) or removed (`None`) through another node of the cluster.
    async fn apply_secret(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        let current = self.store.secrets(name)?;
        let changed = match value {
            Some(value) if current.get(key).map(String::as_str) != Some(value) => {
                self.store.set_secret(name, key, value)?;
                true
            }
            None if current.contains_key(key) => self.store.unset_secret(name, key)?,
            _ => false,
        };
        if changed {
            self.restart_active(name).await?;
            tracing::info!(function = name, secret = key, "secret changed (cluster)");
        }
        Ok(())
    }

    /// Serves `specs` as the functions folder from now on (SIGHUP): a function whose bundle,
    /// edge.toml, limits and secrets are unchanged keeps its isolates; a new one starts; one
    /// gone from the folder stops. A deployed function of the same name as a folder function
    /// is not served while the folder has it, and is served again once it does not.
    pub async fn reload_folder(&self, specs: Vec<FunctionSpec>) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        let names: HashSet<String> = specs.iter().map(|s| s.config.name.clone()).collect();
        let old = self.folder.lock().expect("folder lock").clone();
        let site = self.app.site.load();
        // Deployed functions stay, but not one whose name or a route a folder function takes.
        let mut functions: Vec<Arc<Function>> = Vec::new();
        for f in site.functions.iter().filter(|f| !old.contains(&f.config.name)) {
            let clash = shared_route(&f.config, specs.iter().map(|s| &s.config));
            if let Some((route, other)) = clash {
                tracing::warn!(function = %f.config.name, %route, other = %other.name, "deployed function not served: a folder function has the same route");
            } else if !names.contains(&f.config.name) {
                functions.push(f.clone());
            }
        }
        let (mut kept, mut started) = (0, 0);
        for spec in specs {
            let same = site.functions.iter().find(|f| {
                old.contains(&f.config.name) && f.config.name == spec.config.name && f.is(&spec)
            });
            match same {
                Some(f) => {
                    kept += 1;
                    functions.push(f.clone())
                }
                None => {
                    started += 1;
                    functions.push(Arc::new(Function::start(spec, self.shared.clone()).await))
                }
            }
        }
        // Deployed functions the old folder hid and the new one does not.
        for spec in Self::deployed_specs(&self.store, &self.shared, &self.limits) {
            let name = &spec.config.name;
            if old.contains(name) && !names.contains(name) {
                functions.push(Arc::new(Function::start(spec, self.shared.clone()).await));
            }
        }
        let stopped = old.difference(&names).count();
        *self.folder.lock().expect("folder lock") = names;
        self.triggers.sync(&functions);
        self.app.site.store(Arc::new(Site::new(functions)));
        self.collect_bundles();
        tracing::info!(kept, started, stopped, "reloaded the functions folder");
        Ok(())
    }
}

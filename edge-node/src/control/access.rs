//! The control plane's side of ownership: before a deploy, a rollback or a delete changes
//! what is served, every function served after it must use only what it owns or is granted
//! (`functions::access`); what the deployed function is the first to name is then recorded
//! as its own.

use std::collections::BTreeMap;

use config::{EdgeConfig, Resource};

use super::{parse_config, AdminError, Control};
use crate::functions::access;

impl Control {
    /// The edge.toml of every function served after `name` becomes `config` (`None`: `name`
    /// is deleted): the active version of each deployed function and the folder's functions.
    fn configs_with(&self, name: &str, config: Option<&EdgeConfig>) -> Vec<EdgeConfig> {
        let mut configs: Vec<EdgeConfig> = Vec::new();
        let site = self.app.site.load();
        for f in site.functions.iter().filter(|f| self.in_folder(&f.config.name)) {
            configs.push(f.config.clone());
        }
        match self.store.active() {
            Ok(active) => {
                for (record, version) in active {
                    if self.in_folder(&record.name) {
                        continue;
                    }
                    match parse_config(&record.name, &version.config, &self.limits) {
                        Ok(c) => configs.push(c),
                        Err(e) => {
                            tracing::warn!(function = %record.name, error = %e, "a deployed function's edge.toml does not read")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the deployed functions"),
        }
        configs.retain(|c| c.name != name);
        configs.extend(config.cloned());
        configs
    }

    /// Checks that serving `config` as `name` (`None`: deleting `name`) leaves every function
    /// using only what it owns or is granted; returns the owners of what nobody owned yet.
    pub(super) async fn check_access(
        &self,
        name: &str,
        config: Option<&EdgeConfig>,
    ) -> Result<BTreeMap<Resource, String>, AdminError> {
        let configs = self.configs_with(name, config);
        let claimed = self.owners.all().await?;
        let served: Vec<&EdgeConfig> = configs.iter().collect();
        let (mut owners, refusals) = access::resolve(&served, &claimed);
        let refusals: Vec<String> =
            refusals.iter().filter(|r| r.involves(name)).map(|r| r.to_string()).collect();
        if !refusals.is_empty() {
            return Err(match config {
                Some(_) => AdminError::NotGranted(refusals),
                None => AdminError::InUse(refusals),
            });
        }
        owners.retain(|resource, _| !claimed.contains_key(resource));
        Ok(owners)
    }

    /// Records the owners [`Control::check_access`] found. A resource another node recorded an
    /// owner of meanwhile refuses the deploy.
    pub(super) async fn claim(&self, owners: BTreeMap<Resource, String>) -> Result<(), AdminError> {
        for (resource, owner) in owners {
            let recorded = self.owners.claim(&resource, &owner).await?;
            if recorded != owner {
                return Err(AdminError::NotGranted(vec![format!(
                    "function `{owner}`: {resource} was just claimed by function `{recorded}`"
                )]));
            }
        }
        Ok(())
    }
}

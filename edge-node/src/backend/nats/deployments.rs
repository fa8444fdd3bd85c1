//! Deployments shared by a cluster: the active version of every function in the JetStream KV
//! bucket `isola-deployments` (`{latest, active}` per function, written with compare-and-set so
//! version numbers never repeat), bundles in the Object Store `isola-bundles` by content hash,
//! secrets in `isola-secrets`. Every node watches the buckets from their last values on, so a
//! node that was down catches up when it starts, and fetches each bundle once (then it is in
//! its own bundle store). A change is shared first and written to this node's store after, so
//! nothing is acknowledged that the cluster does not have.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::{kv, object_store};
use async_trait::async_trait;
use config::Resource;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{Link, DEPLOYMENTS_BUCKET, SECRETS_BUCKET};
use crate::backend::{
    owner_key, resource_of, AbortOnDrop, Change, Claims, Deployed, Deployments, NewVersion, Owners,
    Store, StoreError, VersionRecord,
};
use crate::functions::caches::CodeCacheStore;

/// A function's entry in the deployments bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentEntry {
    /// The highest version number given out.
    pub latest: u64,
    /// The version every node serves.
    pub active: VersionRecord,
}

impl Link {
    /// Publishes a new version of `name` (its number is chosen here) with its bundle; answers
    /// the version as every node will serve it.
    pub async fn publish(
        &self,
        name: &str,
        mut record: VersionRecord,
        bundle: &[u8],
    ) -> Result<VersionRecord, String> {
        let stores = self.ready().await?;
        if stores.bundles.info(&record.bundle).await.is_err() {
            let mut data = bundle;
            stores
                .bundles
                .put(record.bundle.as_str(), &mut data)
                .await
                .map_err(|e| e.to_string())?;
        }
        loop {
            let current = stores.deployments.entry(name).await.map_err(|e| e.to_string())?;
            let live = current.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let latest = live
                .and_then(|e| serde_json::from_slice::<DeploymentEntry>(&e.value).ok())
                .map_or(0, |s| s.latest);
            record.version = latest + 1;
            let value = serde_json::to_vec(&DeploymentEntry {
                latest: record.version,
                active: record.clone(),
            })
            .expect("deployments serialise");
            let written = match &current {
                None => stores
                    .deployments
                    .create(name, value.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Some(entry) => stores
                    .deployments
                    .update(name, value.into(), entry.revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(record),
                // Another node deployed meanwhile: number again.
                Err(e) if e.contains("wrong last sequence") || e.contains("key exists") => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes a kept version the active one everywhere.
    pub async fn activate(&self, name: &str, record: &VersionRecord) -> Result<(), String> {
        let stores = self.ready().await?;
        loop {
            let current = stores.deployments.entry(name).await.map_err(|e| e.to_string())?;
            let Some(entry) = current.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(format!("function `{name}` is not deployed in the cluster"));
            };
            let latest = serde_json::from_slice::<DeploymentEntry>(&entry.value)
                .map_or(record.version, |s| s.latest);
            let value = serde_json::to_vec(&DeploymentEntry { latest, active: record.clone() })
                .expect("serialises");
            match stores.deployments.update(name, value.into(), entry.revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().contains("wrong last sequence") => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Removes a function everywhere.
    pub async fn retract(&self, name: &str) -> Result<(), String> {
        self.ready().await?.deployments.delete(name).await.map_err(|e| e.to_string())
    }

    /// Sets (`Some`) or removes (`None`) a secret everywhere.
    pub async fn secret(&self, name: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let stores = self.ready().await?;
        let entry = format!("{name}.{key}");
        match value {
            Some(value) => stores
                .secrets
                .put(entry, value.to_string().into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => stores.secrets.delete(entry).await.map_err(|e| e.to_string()),
        }
    }

    /// Seals every secret of the cluster's bucket under `new` instead of `old` (one sealed
    /// under `new` already is left as it is); answers how many it re-sealed. One that opens
    /// with neither stops it, naming the secret.
    pub async fn reseal_secrets(
        &self,
        old: &crate::backend::sealed::SecretKey,
        new: &crate::backend::sealed::SecretKey,
    ) -> Result<usize, String> {
        let stores = self.ready().await?;
        let mut keys = stores.secrets.keys().await.map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        while let Some(entry) = keys.next().await {
            entries.push(entry.map_err(|e| e.to_string())?);
        }
        let mut already = 0;
        for entry in &entries {
            let Some((name, key)) = entry.split_once('.') else { continue };
            let Some(sealed) = stores.secrets.get(entry).await.map_err(|e| e.to_string())? else {
                continue;
            };
            let sealed = String::from_utf8_lossy(&sealed);
            // Re-sealed already, by another node's rotation: each node of a cluster runs it.
            if new.open(name, key, &sealed).is_ok() {
                already += 1;
                continue;
            }
            let value = old.open(name, key, &sealed).map_err(|_| {
                format!(
                    "secret {key} of `{name}` in the cluster opens with neither the current key nor the new one"
                )
            })?;
            let resealed = new.seal(name, key, &value);
            stores.secrets.put(entry, resealed.into()).await.map_err(|e| e.to_string())?;
        }
        Ok(entries.len() - already)
    }

    /// A bundle's artifact from the cluster.
    pub async fn fetch(&self, hash: &str) -> Result<Vec<u8>, String> {
        let mut object = self.ready().await?.bundles.get(hash).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    /// Keeps the code cache pack of a bundle beside it in the bundles' Object Store, named
    /// `<bundle hash>.<V8 build key>`; the first pack of a bundle and build stays.
    pub async fn put_code_cache(&self, hash: &str, key: &str, pack: &[u8]) -> Result<(), String> {
        let stores = self.ready().await?;
        let name = format!("{hash}.{key}");
        if stores.bundles.info(&name).await.is_ok() {
            return Ok(());
        }
        let mut data = pack;
        stores.bundles.put(name.as_str(), &mut data).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The code cache pack kept beside a bundle for a V8 build, if one is.
    pub async fn fetch_code_cache(&self, hash: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let stores = self.ready().await?;
        let mut object = match stores.bundles.get(format!("{hash}.{key}")).await {
            Ok(object) => object,
            Err(e) if matches!(e.kind(), object_store::GetErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
        Ok(Some(bytes))
    }

    /// Claims one run of a schedule for this node: `true` if no other node claimed it first.
    pub async fn claim(&self, key: &str, node: &str) -> Result<bool, String> {
        let stores = self.stores()?;
        match stores.cron.create(key, node.to_string().into()).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every owner recorded in the cluster, by resource key.
    pub async fn owners(&self) -> Result<Vec<(String, String)>, String> {
        let stores = self.ready().await?;
        let mut keys = stores.owners.keys().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            if let Some(owner) = stores.owners.get(&key).await.map_err(|e| e.to_string())? {
                out.push((key, String::from_utf8_lossy(&owner).into_owned()));
            }
        }
        Ok(out)
    }

    /// Records `function` as the owner of `key` unless a node recorded one first; the owner.
    pub async fn claim_owner(&self, key: &str, function: &str) -> Result<String, String> {
        let stores = self.ready().await?;
        match stores.owners.create(key, function.to_string().into()).await {
            Ok(_) => Ok(function.to_string()),
            Err(e) if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) => {
                let owner = stores.owners.get(key).await.map_err(|e| e.to_string())?;
                Ok(owner.map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends the cluster's deployments to `changes`, from their current values on.
    pub fn follow_deployments(
        self: &Arc<Self>,
        changes: mpsc::Sender<Change>,
    ) -> tokio::task::JoinHandle<()> {
        self.follow_bucket(
            DEPLOYMENTS_BUCKET,
            |s| &s.deployments,
            move |_, entry| {
                let changes = changes.clone();
                async move {
                    let active = match entry.operation {
                        kv::Operation::Put => {
                            serde_json::from_slice::<DeploymentEntry>(&entry.value)
                                .ok()
                                .map(|e| (e.active, e.latest))
                        }
                        _ => None,
                    };
                    let _ = changes.send(Change::Deployment { name: entry.key, active }).await;
                }
            },
        )
    }

    /// Sends the cluster's secrets to `changes`, from their current values on, opened with
    /// `secret_key`; one that does not open (another key) is logged and never applied.
    pub fn follow_secrets(
        self: &Arc<Self>,
        changes: mpsc::Sender<Change>,
        secret_key: crate::backend::sealed::SecretKey,
    ) -> tokio::task::JoinHandle<()> {
        self.follow_bucket(
            SECRETS_BUCKET,
            |s| &s.secrets,
            move |_, entry| {
                let (changes, secret_key) = (changes.clone(), secret_key.clone());
                async move {
                    let Some((name, key)) = entry.key.split_once('.') else { return };
                    let value = match entry.operation {
                        kv::Operation::Put => {
                            let sealed = String::from_utf8_lossy(&entry.value);
                            match secret_key.open(name, key, &sealed) {
                                Ok(value) => Some(value),
                                Err(e) => {
                                    tracing::error!(function = name, key, error = %e, "a secret from the cluster was not applied: every node of a cluster needs the same [secrets] key");
                                    return;
                                }
                            }
                        }
                        _ => None,
                    };
                    let (name, key) = (name.to_string(), key.to_string());
                    let _ = changes.send(Change::Secret { name, key, value }).await;
                }
            },
        )
    }
}

fn unavailable(e: String) -> StoreError {
    StoreError::Cluster(e)
}

/// Deployments and secrets shared through the cluster first, then kept in this node's store.
pub(super) struct NatsDeployments {
    pub link: Arc<Link>,
    pub store: Store,
    /// The watches feeding the change stream (stopped with the backend).
    pub _follow: Vec<AbortOnDrop>,
}

#[async_trait]
impl Deployments for NatsDeployments {
    async fn deploy(
        &self,
        name: &str,
        new: NewVersion,
        bundle: &[u8],
        keep: usize,
    ) -> Result<Deployed, StoreError> {
        let record = VersionRecord {
            version: 0,
            bundle: new.bundle,
            entry: new.entry,
            modules: new.modules,
            size: new.size,
            config: new.config,
            deployed_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            deployed_by: new.deployed_by,
        };
        // Published first: nothing is acknowledged that the cluster does not have.
        let record = self.link.publish(name, record, bundle).await.map_err(unavailable)?;
        self.store.apply(name, &record, record.version, keep)?;
        Ok(Deployed { version: record, pruned: Vec::new() })
    }

    async fn rollback(&self, name: &str, to: Option<u64>) -> Result<VersionRecord, StoreError> {
        let target = self.store.rollback_target(name, to)?;
        self.link.activate(name, &target).await.map_err(unavailable)?;
        self.store.rollback(name, to)
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if self.store.function(name)?.is_some() {
            self.link.retract(name).await.map_err(unavailable)?;
        }
        self.store.delete(name)
    }

    async fn set_secret(&self, name: &str, key: &str, value: &str) -> Result<(), StoreError> {
        // Sealed before it leaves the node: the cluster's bucket holds no plaintext.
        let sealed = self.store.seal(name, key, value);
        self.link.secret(name, key, Some(&sealed)).await.map_err(unavailable)?;
        self.store.set_secret(name, key, value)
    }

    async fn unset_secret(&self, name: &str, key: &str) -> Result<bool, StoreError> {
        self.link.secret(name, key, None).await.map_err(unavailable)?;
        self.store.unset_secret(name, key)
    }

    async fn fetch_bundle(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        self.link.fetch(hash).await.map_err(unavailable)
    }

    async fn share_code_cache(
        &self,
        hash: &str,
        pack: &(dyn Fn() -> Option<Vec<u8>> + Sync),
    ) -> Result<(), StoreError> {
        let Some(pack) = pack() else { return Ok(()) };
        let key = CodeCacheStore::pack_key();
        self.link.put_code_cache(hash, &key, &pack).await.map_err(unavailable)
    }

    async fn fetch_code_cache(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = CodeCacheStore::pack_key();
        self.link.fetch_code_cache(hash, &key).await.map_err(unavailable)
    }
}

/// Cron runs claimed in the KV bucket `isola-cron`: the first node to create a run's key
/// fires it.
pub(super) struct NatsClaims {
    pub link: Arc<Link>,
    pub node: String,
}

#[async_trait]
impl Claims for NatsClaims {
    async fn claim(&self, key: &str) -> Result<bool, StoreError> {
        self.link.claim(key, &self.node).await.map_err(unavailable)
    }
}

/// Owners of queues, buckets and tables in the KV bucket `isola-owners`: the first node to
/// create a resource's key records its owner for the whole cluster.
pub(super) struct NatsOwners {
    pub link: Arc<Link>,
}

#[async_trait]
impl Owners for NatsOwners {
    async fn all(&self) -> Result<BTreeMap<Resource, String>, StoreError> {
        let owners = self.link.owners().await.map_err(unavailable)?;
        Ok(owners
            .into_iter()
            .filter_map(|(key, owner)| Some((resource_of(&key)?, owner)))
            .collect())
    }

    async fn claim(&self, resource: &Resource, function: &str) -> Result<String, StoreError> {
        self.link.claim_owner(&owner_key(resource), function).await.map_err(unavailable)
    }
}

//! The node's own backend, used when it is not in a cluster: its redb store (deployments,
//! secrets, queues, buckets and tables) and object contents on disk beside it.

pub mod objects;
pub mod queues;
pub mod routes;
pub mod store;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use config::{QueueTrigger, Resource};

use self::objects::{LocalObjects, LocalStorage};
use self::queues::{now_ms, Encoding, Leased, QueueStats, Queues, Verdict};
use self::routes::{record_queue, storage_queue, EventRoutes};
use self::store::{Deployed, NewVersion, Store, StoreError, VersionRecord};
use crate::backend::{
    event_trigger, owner_key, resource_of, Backend, Claims, Consumer, Deployments, Membership,
    Owners, Queueing, Report, Subscriber,
};

/// The backend of a standalone node on `store`, object contents under `blobs`.
pub fn backend(store: &Store, blobs: PathBuf) -> Result<Backend, StoreError> {
    let queues = Arc::new(Queues::new(store.database())?);
    let released = queues.release_leases()?;
    if released > 0 {
        tracing::info!(
            messages = released,
            "messages leased before the restart are delivered again"
        );
    }
    let routes = Arc::new(EventRoutes::default());
    let objects = LocalObjects::new(store.database(), blobs, queues.clone(), routes.clone())?;
    // Nothing else changes deployments: the stream of changes ends at once.
    let (_, changes) = tokio::sync::mpsc::channel(1);
    let backend = Backend {
        storage: Arc::new(LocalStorage(Arc::new(objects))),
        owners: Arc::new(LocalOwners { store: store.clone() }),
        queues: Arc::new(LocalQueueing { queues, routes }),
        claims: Arc::new(LocalClaims),
        deployments: Arc::new(LocalDeployments { store: store.clone() }),
        membership: Arc::new(Alone(std::sync::OnceLock::new())),
        changes,
    };
    Ok(backend)
}

/// Runs a store operation off the async threads (it syncs to disk).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Decode(format!("a store task failed: {e}")))?
}

/// Writes `path` through a temporary file and a rename, so it is whole or absent; with `sync`
/// the data and the directory entry reach the disk before this returns.
pub fn write_atomically(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    write_with_mode(path, data, sync, 0o666)
}

/// [`write_atomically`], synced, for a file only the node's user may read (mode 0600 from
/// the moment it exists).
pub fn write_private_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, data, true, 0o600)
}

fn write_with_mode(path: &Path, data: &[u8], sync: bool, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync {
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The node's queues; change events ride internal queues of the functions they are for.
struct LocalQueueing {
    queues: Arc<Queues>,
    routes: Arc<EventRoutes>,
}

#[async_trait]
impl Queueing for LocalQueueing {
    async fn send(
        &self,
        queue: &str,
        encoding: Encoding,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError> {
        let (queues, queue) = (self.queues.clone(), queue.to_string());
        blocking(move || {
            let refs: Vec<(Encoding, &[u8])> =
                messages.iter().map(|m| (encoding, m.as_slice())).collect();
            queues.send(&queue, &refs)
        })
        .await
    }

    async fn stats(&self) -> Result<BTreeMap<String, QueueStats>, StoreError> {
        let queues = self.queues.clone();
        blocking(move || {
            let mut out = BTreeMap::new();
            for name in queues.names()? {
                let stats = queues.stats(&name)?;
                out.insert(name, stats);
            }
            Ok(out)
        })
        .await
    }

    fn route(&self, served: &[Subscriber<'_>]) {
        self.routes.set(served);
    }

    fn consumers(&self, function: &Subscriber<'_>) -> Vec<Box<dyn Consumer>> {
        let consumer = |trigger: QueueTrigger, handler: &'static str| -> Box<dyn Consumer> {
            Box::new(LocalConsumer {
                queues: self.queues.clone(),
                function: function.name.to_string(),
                trigger,
                handler,
            })
        };
        let t = function.triggers;
        let mut out: Vec<Box<dyn Consumer>> =
            t.queue.iter().map(|trigger| consumer(trigger.clone(), "queue")).collect();
        // A function's events wait in its internal queues, one for storage and one for record
        // events, whatever bucket or table they come from.
        if !t.storage.is_empty() {
            out.push(consumer(event_trigger(storage_queue(function.name)), "storage"));
        }
        if !t.record.is_empty() {
            out.push(consumer(event_trigger(record_queue(function.name)), "record"));
        }
        out
    }
}

/// Leases batches of one queue of the node's store.
struct LocalConsumer {
    queues: Arc<Queues>,
    function: String,
    trigger: QueueTrigger,
    handler: &'static str,
}

#[async_trait]
impl Consumer for LocalConsumer {
    fn handler(&self) -> &'static str {
        self.handler
    }

    fn trigger(&self) -> &QueueTrigger {
        &self.trigger
    }

    async fn next(&mut self) -> Vec<Leased> {
        let (name, trigger) = (&self.function, &self.trigger);
        let notified = self.queues.sent.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (q, queue) = (self.queues.clone(), trigger.queue.clone());
        let (visible, oldest) = match blocking(move || q.peek(&queue)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(function = %name, queue = %trigger.queue, error = %e, "cannot read the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Vec::new();
            }
        };
        let waited = oldest.map(|t| Duration::from_millis(now_ms().saturating_sub(t)));
        let ready = visible >= trigger.max_batch_size
            || waited.is_some_and(|w| w >= trigger.max_batch_timeout);
        if !ready {
            // Wake on a send, when the oldest message has waited long enough, or to look
            // for messages whose lease ran out.
            let wait = match waited {
                Some(w) => trigger.max_batch_timeout.saturating_sub(w),
                None => Duration::from_millis(500),
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait.min(Duration::from_millis(500))) => {}
            }
            return Vec::new();
        }
        let q = self.queues.clone();
        let (queue, max, visibility) =
            (trigger.queue.clone(), trigger.max_batch_size, trigger.visibility_timeout);
        match blocking(move || q.lease(&queue, max, visibility)).await {
            Ok(leased) => leased,
            Err(e) => {
                tracing::warn!(function = %name, queue = %trigger.queue, error = %e, "cannot lease messages");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
        }
    }

    async fn settle(&mut self, verdicts: &[(u64, Verdict)]) {
        let (q, queue) = (self.queues.clone(), self.trigger.queue.clone());
        let (verdicts, dlq) = (verdicts.to_vec(), self.trigger.dead_letter_queue.clone());
        if blocking(move || q.settle(&queue, &verdicts, dlq.as_deref())).await.is_err() {
            tracing::warn!(function = %self.function, queue = %self.trigger.queue, "cannot settle a batch; it is delivered again after the visibility timeout");
        }
    }
}

/// Alone, the node fires every run.
struct LocalClaims;

#[async_trait]
impl Claims for LocalClaims {
    async fn claim(&self, _key: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// Owners of queues, buckets and tables in the node's store.
struct LocalOwners {
    store: Store,
}

#[async_trait]
impl Owners for LocalOwners {
    async fn all(&self) -> Result<BTreeMap<Resource, String>, StoreError> {
        let store = self.store.clone();
        let owners = blocking(move || store.owners()).await?;
        Ok(owners
            .into_iter()
            .filter_map(|(key, owner)| Some((resource_of(&key)?, owner)))
            .collect())
    }

    async fn claim(&self, resource: &Resource, function: &str) -> Result<String, StoreError> {
        let (store, key, function) =
            (self.store.clone(), owner_key(resource), function.to_string());
        blocking(move || store.claim(&key, &function)).await
    }
}

/// Deployments and secrets in the node's store only.
struct LocalDeployments {
    store: Store,
}

#[async_trait]
impl Deployments for LocalDeployments {
    async fn deploy(
        &self,
        name: &str,
        new: NewVersion,
        _bundle: &[u8],
        keep: usize,
    ) -> Result<Deployed, StoreError> {
        self.store.deploy(name, new, keep)
    }

    async fn rollback(&self, name: &str, to: Option<u64>) -> Result<VersionRecord, StoreError> {
        self.store.rollback(name, to)
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.store.delete(name)
    }

    async fn set_secret(&self, name: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.store.set_secret(name, key, value)
    }

    async fn unset_secret(&self, name: &str, key: &str) -> Result<bool, StoreError> {
        self.store.unset_secret(name, key)
    }

    async fn fetch_bundle(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::Decode(format!("bundle {hash} is not in this node's store")))
    }
}

/// A node on its own: the only member.
struct Alone(std::sync::OnceLock<Report>);

#[async_trait]
impl Membership for Alone {
    fn join(&self, report: Report) {
        let _ = self.0.set(report);
    }

    async fn status(&self) -> Result<serde_json::Value, StoreError> {
        let nodes: Vec<_> = self.0.get().map(|report| report()).into_iter().collect();
        Ok(serde_json::json!({ "mode": "standalone", "nodes": nodes }))
    }
}

//! Where the node's durable state lives, chosen once in `Node::start`: the node's own redb
//! store when standalone ([`local`]), the cluster's NATS JetStream once it is in one
//! ([`nats`]). What differs between the two is a trait here (buckets and tables, queues and
//! their consumers, cron claims, deployments and secrets with their change stream); the rest
//! of the node holds a [`Backend`] and never asks which one it has.

pub mod local;
pub mod nats;
mod objects;
pub mod sealed;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use config::{Kind, QueueTrigger, Resource};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use local::queues::{now_ms, Encoding, Leased, QueueStats, Verdict};
pub use local::store::{Deployed, FunctionRecord, NewVersion, Store, StoreError, VersionRecord};
pub use objects::{ObjectMeta, Page, PageBuilder, MAX_OBJECT_BYTES, MAX_RECORD_BYTES};

/// The largest message a function may send, as on Workers.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The node's backend, one of two kinds, each part behind its trait.
pub struct Backend {
    pub storage: Arc<dyn Storage>,
    pub owners: Arc<dyn Owners>,
    pub queues: Arc<dyn Queueing>,
    pub claims: Arc<dyn Claims>,
    pub deployments: Arc<dyn Deployments>,
    pub membership: Arc<dyn Membership>,
    /// Deployments and secrets changed through other nodes, for the control plane to apply
    /// (standalone: a stream that ends at once).
    pub changes: mpsc::Receiver<Change>,
}

/// Buckets (objects by key) and tables (JSON records by key). Every change fires the storage
/// or record triggers that match it, at least once, even if the node dies right after.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Stores an object.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError>;
    /// An object's metadata and content.
    async fn get(&self, bucket: &str, key: &str)
        -> Result<Option<(ObjectMeta, Bytes)>, StoreError>;
    /// Deletes an object; whether it existed.
    async fn delete(&self, bucket: &str, key: &str) -> Result<bool, StoreError>;
    /// Objects by key, from after `cursor`, whose key starts with `prefix`.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError>;
    /// A record's JSON text.
    async fn get_record(&self, table: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a record (JSON text).
    async fn put_record(&self, table: &str, key: &str, json: String) -> Result<(), StoreError>;
    /// Deletes a record; whether it existed.
    async fn delete_record(&self, table: &str, key: &str) -> Result<bool, StoreError>;
    /// Records by key, from after `cursor`, whose key starts with `prefix`.
    async fn list_records(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError>;
}

/// A function as its consumers see it.
pub struct Subscriber<'a> {
    pub name: &'a str,
    pub triggers: &'a config::Triggers,
    /// When this node began serving it: change events from then on reach it.
    pub since: SystemTime,
}

/// Durable queues, and the consumers that deliver queue messages and change events.
#[async_trait]
pub trait Queueing: Send + Sync {
    /// Appends messages to `queue`; answers their ids once they are durable.
    async fn send(
        &self,
        queue: &str,
        encoding: Encoding,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError>;
    /// The figures of every queue, by name.
    async fn stats(&self) -> Result<BTreeMap<String, QueueStats>, StoreError>;
    /// The functions served now: where storage and record events go from now on.
    fn route(&self, served: &[Subscriber<'_>]);
    /// What delivers `function`'s queue messages and its storage and record events.
    fn consumers(&self, function: &Subscriber<'_>) -> Vec<Box<dyn Consumer>>;
}

/// Delivers batches of one queue or change log to one function.
#[async_trait]
pub trait Consumer: Send {
    /// The handler its batches go to: `queue`, `storage` or `record`.
    fn handler(&self) -> &'static str;
    /// Its batch size, timeout, retries and dead-letter queue.
    fn trigger(&self) -> &QueueTrigger;
    /// Waits for the next batch; empty when there was none in time (ask again).
    async fn next(&mut self) -> Vec<Leased>;
    /// How often to [`keep`](Consumer::keep) a batch while its handler runs, if at all.
    fn keep_every(&self) -> Option<Duration> {
        None
    }
    /// Says the batch handed out last is still being worked on.
    async fn keep(&mut self) {}
    /// Acknowledges, retries or dead-letters the batch handed out last.
    async fn settle(&mut self, verdicts: &[(u64, Verdict)]);
}

/// Who owns each queue, bucket and table (see `functions::access`): recorded once, for good.
#[async_trait]
pub trait Owners: Send + Sync {
    /// Every recorded owner.
    async fn all(&self) -> Result<BTreeMap<Resource, String>, StoreError>;
    /// Records `function` as the owner of `resource` unless one is recorded already; returns
    /// the owner after.
    async fn claim(&self, resource: &Resource, function: &str) -> Result<String, StoreError>;
}

/// How an owner's record is keyed: `<kind>.<name>` (`queue.jobs`).
pub(crate) fn owner_key(resource: &Resource) -> String {
    format!("{}.{}", resource.kind.as_str(), resource.name)
}

/// The resource an owner's record is about, from its key.
pub(crate) fn resource_of(key: &str) -> Option<Resource> {
    let (kind, name) = key.split_once('.')?;
    let kind = match kind {
        "queue" => Kind::Queue,
        "bucket" => Kind::Bucket,
        "table" => Kind::Table,
        _ => return None,
    };
    Some(Resource::new(kind, name))
}

/// Which node fires each cron run.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Whether this node fires the run called `key`: it claimed the run first.
    async fn claim(&self, key: &str) -> Result<bool, StoreError>;
}

/// Deployed versions and secrets: written here, and (in a cluster) shared first.
#[async_trait]
pub trait Deployments: Send + Sync {
    /// Adds a version and makes it the active one, keeping at most `keep` versions.
    async fn deploy(
        &self,
        name: &str,
        new: NewVersion,
        bundle: &[u8],
        keep: usize,
    ) -> Result<Deployed, StoreError>;
    /// Makes a kept version (`None`: the one before the active one) the active one.
    async fn rollback(&self, name: &str, to: Option<u64>) -> Result<VersionRecord, StoreError>;
    /// Removes a function's versions and secrets; whether it existed.
    async fn delete(&self, name: &str) -> Result<bool, StoreError>;
    async fn set_secret(&self, name: &str, key: &str, value: &str) -> Result<(), StoreError>;
    /// Removes a secret; whether it existed.
    async fn unset_secret(&self, name: &str, key: &str) -> Result<bool, StoreError>;
    /// A bundle's artifact, deployed through another node (a [`Change::Deployment`]).
    async fn fetch_bundle(&self, hash: &str) -> Result<Vec<u8>, StoreError>;
    /// Shares the code cache pack of the bundle `hash` (made by `pack`, for this node's V8
    /// build) with the nodes that will fetch the bundle. Nothing to do, and no pack made, on a
    /// node alone.
    async fn share_code_cache(
        &self,
        _hash: &str,
        _pack: &(dyn Fn() -> Option<Vec<u8>> + Sync),
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// The code cache pack another node shared for the bundle `hash`, for this node's V8
    /// build.
    async fn fetch_code_cache(&self, _hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}

/// The nodes serving together: this one alone, or the cluster's, each reporting itself.
#[async_trait]
pub trait Membership: Send + Sync {
    /// Starts reporting this node; `report` says what it is at each moment.
    fn join(&self, report: Report);
    /// `{"mode": "cluster" | "standalone", "nodes": [...]}`.
    async fn status(&self) -> Result<serde_json::Value, StoreError>;
}

/// One node as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub region: String,
    /// Plaintext HTTP addresses.
    pub http: Vec<String>,
    /// TLS addresses.
    pub https: Vec<String>,
    /// Admin API addresses.
    pub admin: Vec<String>,
    pub version: String,
    /// When the node started, ms since the epoch.
    pub started_ms: u64,
    /// When this entry was written, ms since the epoch.
    pub seen_ms: u64,
    /// Functions served and isolates alive at the last heartbeat.
    pub functions: usize,
    pub isolates: usize,
    /// What it serves of each function: the deployed version (none for a function of its
    /// folder) and the bundle's hash.
    #[serde(default)]
    pub served: std::collections::BTreeMap<String, Served>,
}

/// What a node serves of one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub version: Option<u64>,
    pub bundle: String,
}

/// What the heartbeat reports about the node now.
pub type Report = Arc<dyn Fn() -> NodeInfo + Send + Sync>;

/// A change made through another node of the cluster.
#[derive(Debug)]
pub enum Change {
    /// The version every node serves of `name` and the highest version number given out;
    /// `None`: the function was deleted.
    Deployment { name: String, active: Option<(VersionRecord, u64)> },
    /// A secret set (`Some`) or removed (`None`).
    Secret { name: String, key: String, value: Option<String> },
}

/// How storage and record events are delivered: one per invocation, retried like queue
/// messages and dropped (logged) after 5 attempts.
pub(crate) fn event_trigger(queue: String) -> QueueTrigger {
    QueueTrigger {
        queue,
        max_batch_size: 1,
        max_batch_timeout: Duration::ZERO,
        max_retries: 5,
        visibility_timeout: Duration::from_secs(60),
        retry_delay: Duration::from_secs(1),
        dead_letter_queue: None,
    }
}

/// A task stopped when its owner is dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

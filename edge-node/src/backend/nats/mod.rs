//! Deployments shared by a cluster: the active version of every function in the JetStream KV
//! bucket `isola-deployments` (`{latest, active}` per function, written with compare-and-set so
//! version numbers never repeat), bundles in the Object Store `isola-bundles` by content hash.
//! Every node watches the bucket from its last values on, so a node that was down catches up
//! when it starts, and fetches each bundle once (then it is in its own bundle store).

pub mod membership;
pub mod objects;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use config::ClusterConfig;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::backend::local::queues::Encoding;
use crate::backend::local::store::VersionRecord;
use crate::control::Control;

pub const DEPLOYMENTS_BUCKET: &str = "isola-deployments";
pub const BUNDLES_BUCKET: &str = "isola-bundles";
/// The stream of the cluster's queues; a queue `q` is the subject `isola.queue.q`.
pub const QUEUES_STREAM: &str = "ISOLA_QUEUES";
pub const QUEUE_SUBJECT: &str = "isola.queue";
/// The header saying how a queue message's body is encoded (`json` or `v8`).
const ENCODING_HEADER: &str = "Isola-Encoding";
/// Secrets of the cluster's functions: key `<function>.<NAME>`.
pub const SECRETS_BUCKET: &str = "isola-secrets";
/// Claims of cron runs: the first node to create a run's key fires it.
pub const CRON_BUCKET: &str = "isola-cron";

/// A function's entry in the deployments bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shared {
    /// The highest version number given out.
    pub latest: u64,
    /// The version every node serves.
    pub active: VersionRecord,
}

#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) client: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    deployments: kv::Store,
    bundles: object_store::ObjectStore,
    cron: kv::Store,
    secrets: kv::Store,
    /// Object metadata of the buckets (see `shared_objects`).
    pub(crate) objects: kv::Store,
    /// Records of the tables.
    pub(crate) records: kv::Store,
    /// Object contents by SHA-256.
    pub(crate) blobs: object_store::ObjectStore,
}

/// This node's link to the cluster's deployments.
pub struct DeployLink {
    stores: watch::Receiver<Option<Stores>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DeployLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DeployLink {
    /// Connects in the background (retrying) and opens or creates the buckets.
    pub fn connect(config: &ClusterConfig) -> Arc<DeployLink> {
        let (tx, rx) = watch::channel(None);
        let config = config.clone();
        let task = tokio::spawn(async move {
            let client = match crate::backend::nats::membership::connect(&config).await {
                Ok(client) => client,
                Err(e) => {
                    return tracing::error!(error = %e, "cannot reach the cluster's deployments")
                }
            };
            let js = async_nats::jetstream::new(client.clone());
            loop {
                match open(&js, &client).await {
                    Ok(stores) => {
                        let _ = tx.send(Some(stores));
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster deployments not open yet"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Arc::new(DeployLink { stores: rx, task })
    }

    /// The buckets, waiting up to 2 s for the connection (a node just started is still
    /// connecting); then a change is refused rather than held until NATS comes back.
    pub(crate) async fn ready(&self) -> Result<Stores, String> {
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match self.stores() {
                Ok(stores) => return Ok(stores),
                Err(e) if tokio::time::Instant::now() >= until => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The buckets, while connected: a change is refused at once rather than held until NATS
    /// comes back.
    fn stores(&self) -> Result<Stores, String> {
        let stores = self.stores.borrow().clone();
        match stores {
            Some(stores)
                if stores.client.connection_state() == async_nats::connection::State::Connected =>
            {
                Ok(stores)
            }
            _ => Err("the cluster (NATS) cannot be reached".into()),
        }
    }

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
                .and_then(|e| serde_json::from_slice::<Shared>(&e.value).ok())
                .map_or(0, |s| s.latest);
            record.version = latest + 1;
            let value =
                serde_json::to_vec(&Shared { latest: record.version, active: record.clone() })
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
            let latest =
                serde_json::from_slice::<Shared>(&entry.value).map_or(record.version, |s| s.latest);
            let value =
                serde_json::to_vec(&Shared { latest, active: record.clone() }).expect("serialises");
            match stores.deployments.update(name, value.into(), entry.revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().contains("wrong last sequence") => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
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

    /// Applies the cluster's secrets to this node, from their current values on.
    pub fn follow_secrets(self: &Arc<Self>, control: Arc<Control>) -> tokio::task::JoinHandle<()> {
        self.follow_bucket(SECRETS_BUCKET, |s| &s.secrets, move |_, entry| {
            let control = control.clone();
            async move {
                let Some((name, key)) = entry.key.split_once('.') else { return };
                let value = match entry.operation {
                    kv::Operation::Put => Some(String::from_utf8_lossy(&entry.value).into_owned()),
                    _ => None,
                };
                if let Err(e) = control.apply_secret(name, key, value.as_deref()).await {
                    tracing::error!(function = name, secret = key, error = %e, "cluster secret not applied");
                }
            }
        })
    }

    /// Runs `apply` on the entries of one bucket — the last value of every key, then each
    /// change — once the buckets are open, watching again after an interruption, until the
    /// task is aborted.
    fn follow_bucket<F, Fut>(
        self: &Arc<Self>,
        name: &'static str,
        bucket: fn(&Stores) -> &kv::Store,
        apply: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Arc<DeployLink>, kv::Entry) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let link = self.clone();
        tokio::spawn(async move {
            let mut ready = link.stores.clone();
            let stores = loop {
                if let Some(stores) = ready.borrow().clone() {
                    break stores;
                }
                if ready.changed().await.is_err() {
                    return;
                }
            };
            loop {
                match bucket(&stores).watch_with_history(">").await {
                    Ok(mut watch) => {
                        while let Some(Ok(entry)) = watch.next().await {
                            apply(link.clone(), entry).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(bucket = name, error = %e, "cannot watch a cluster bucket")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// Removes a function everywhere.
    pub async fn retract(&self, name: &str) -> Result<(), String> {
        self.ready().await?.deployments.delete(name).await.map_err(|e| e.to_string())
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

    /// Appends messages to a queue of the cluster; answers once JetStream has stored them.
    pub async fn send(
        &self,
        queue: &str,
        messages: &[(Encoding, &[u8])],
    ) -> Result<Vec<u64>, String> {
        let stores = self.ready().await?;
        let subject = format!("{QUEUE_SUBJECT}.{queue}");
        let mut acks = Vec::with_capacity(messages.len());
        for (encoding, body) in messages {
            let mut headers = async_nats::HeaderMap::new();
            let name = if *encoding == Encoding::Json { "json" } else { "v8" };
            headers.insert(ENCODING_HEADER, name);
            let ack = stores
                .js
                .publish_with_headers(subject.clone(), headers, bytes::Bytes::copy_from_slice(body))
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        let mut ids = Vec::with_capacity(acks.len());
        for ack in acks {
            ids.push(ack.await.map_err(|e| e.to_string())?.sequence);
        }
        Ok(ids)
    }

    /// The durable consumer of `queue` for `function`: every function consuming a queue gets
    /// each message, and any node may take the next batch.
    pub async fn consumer(
        &self,
        function: &str,
        trigger: &config::QueueTrigger,
    ) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
        let stores = self.ready().await?;
        let stream = stores.js.get_stream(QUEUES_STREAM).await.map_err(|e| e.to_string())?;
        let digest: String = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!("{function}/{}", trigger.queue),
        ))[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name: String = format!("{function}-{}-{digest}", trigger.queue)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        stream
            .get_or_create_consumer(
                &name,
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{QUEUE_SUBJECT}.{}", trigger.queue),
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: trigger.visibility_timeout,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// The figures of the cluster's queues, by name. A queue that functions consume: the
    /// messages its most behind consumer has not acknowledged; one nobody consumes (a
    /// dead-letter queue, say): every message it holds. Dead-lettering is not counted here.
    pub async fn queue_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::backend::local::queues::QueueStats>, String>
    {
        use crate::backend::local::queues::QueueStats;
        use futures::TryStreamExt;
        let stores = self.stores()?;
        let stream = stores.js.get_stream(QUEUES_STREAM).await.map_err(|e| e.to_string())?;
        let prefix = format!("{QUEUE_SUBJECT}.");
        let age = |m: &async_nats::jetstream::message::StreamMessage| {
            let published = (m.time.unix_timestamp_nanos() / 1_000_000) as u64;
            crate::backend::local::queues::now_ms().saturating_sub(published)
        };
        let mut out: std::collections::BTreeMap<String, QueueStats> = Default::default();
        let consumers: Vec<_> =
            stream.consumers().try_collect().await.map_err(|e| e.to_string())?;
        for info in consumers {
            let subject = info.config.filter_subject.clone();
            let Some(queue) = subject.strip_prefix(&prefix) else { continue };
            let depth = info.num_pending + info.num_ack_pending as u64;
            let mut stats =
                QueueStats { depth, in_flight: info.num_ack_pending as u64, ..Default::default() };
            if depth > 0 {
                let oldest = stream
                    .raw_message_builder()
                    .sequence(info.ack_floor.stream_sequence + 1)
                    .next_by_subject(subject.clone())
                    .send()
                    .await;
                stats.oldest_age_ms = oldest.map(|m| age(&m)).unwrap_or(0);
            }
            let entry = out.entry(queue.to_string()).or_default();
            if stats.depth >= entry.depth {
                *entry = stats;
            }
        }
        let mut info =
            stream.info_with_subjects(format!("{prefix}>")).await.map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        while let Some((subject, count)) = info.try_next().await.map_err(|e| e.to_string())? {
            held.push((subject, count));
        }
        for (subject, count) in held {
            let Some(queue) = subject.strip_prefix(&prefix) else { continue };
            if out.contains_key(queue) {
                continue;
            }
            let first = stream.get_next_raw_message_by_subject(&subject).await;
            let oldest_age_ms = first.map(|m| age(&m)).unwrap_or(0);
            out.insert(
                queue.to_string(),
                QueueStats { depth: count as u64, oldest_age_ms, ..Default::default() },
            );
        }
        Ok(out)
    }

    /// A bundle's artifact from the cluster.
    pub async fn fetch(&self, hash: &str) -> Result<Vec<u8>, String> {
        let mut object = self.ready().await?.bundles.get(hash).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    /// Applies the cluster's deployments to this node, from their current values on.
    pub fn follow(self: &Arc<Self>, control: Arc<Control>) -> tokio::task::JoinHandle<()> {
        self.follow_bucket(DEPLOYMENTS_BUCKET, |s| &s.deployments, move |link, entry| {
            let control = control.clone();
            async move {
                let shared = match entry.operation {
                    kv::Operation::Put => serde_json::from_slice::<Shared>(&entry.value).ok(),
                    _ => None,
                };
                // A failure (NATS gone mid-fetch, say) is tried again a few times.
                for attempt in 1..=5u32 {
                    match control.apply_shared(&link, &entry.key, shared.clone()).await {
                        Ok(()) => break,
                        Err(e) if attempt == 5 => {
                            tracing::error!(function = %entry.key, error = %e, "cluster deployment not applied");
                        }
                        Err(_) => tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await,
                    }
                }
            }
        })
    }
}

/// The KV bucket `config.bucket`, created with `config` if it does not exist.
pub(crate) async fn open_kv(
    js: &async_nats::jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, String> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js.create_key_value(config).await.map_err(|e| e.to_string()),
    }
}

/// The Object Store `bucket`, created (described as `description`) if it does not exist.
pub(crate) async fn open_object_store(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    description: &str,
) -> Result<object_store::ObjectStore, String> {
    match js.get_object_store(bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.into(),
                description: Some(description.into()),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn open(
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
) -> Result<Stores, String> {
    let deployments = open_kv(
        js,
        kv::Config {
            bucket: DEPLOYMENTS_BUCKET.into(),
            description: "the active version of every function".into(),
            history: 5,
            ..Default::default()
        },
    )
    .await?;
    let bundles = open_object_store(js, BUNDLES_BUCKET, "function bundles by content hash").await?;
    let cron = open_kv(
        js,
        kv::Config {
            bucket: CRON_BUCKET.into(),
            description: "which node fired each cron run".into(),
            history: 1,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await?;
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: QUEUES_STREAM.into(),
        subjects: vec![format!("{QUEUE_SUBJECT}.>")],
        description: Some("the cluster's queues".into()),
        max_age: Duration::from_secs(14 * 24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let secrets = open_kv(
        js,
        kv::Config {
            bucket: SECRETS_BUCKET.into(),
            description: "secrets of the cluster's functions".into(),
            history: 1,
            ..Default::default()
        },
    )
    .await?;
    let (objects, records, blobs) = crate::backend::nats::objects::open(js).await?;
    Ok(Stores {
        client: client.clone(),
        js: js.clone(),
        deployments,
        bundles,
        cron,
        secrets,
        objects,
        records,
        blobs,
    })
}

/// How a delivered message's body is encoded.
pub fn encoding_of(message: &async_nats::jetstream::Message) -> Encoding {
    let v8 = message
        .headers
        .as_ref()
        .and_then(|h| h.get(ENCODING_HEADER))
        .is_some_and(|v| v.as_str() == "v8");
    if v8 {
        Encoding::V8
    } else {
        Encoding::Json
    }
}

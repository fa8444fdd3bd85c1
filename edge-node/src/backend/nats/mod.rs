//! The cluster's backend on NATS JetStream: deployments and secrets in KV buckets with a
//! change stream every node follows (`deployments`), queues in one stream with a durable
//! consumer per function (`queues`), buckets and tables in KV buckets whose streams are their
//! change logs (`objects`), cron claims, and membership by heartbeat (`membership`).

mod deployments;
pub mod membership;
mod objects;
mod queues;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use config::ClusterConfig;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::backend::local::queues::Encoding;
use crate::backend::{Backend, Store};

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
/// Owners of the cluster's queues, buckets and tables: key `<kind>.<name>`.
pub const OWNERS_BUCKET: &str = "isola-owners";

#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) client: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    deployments: kv::Store,
    bundles: object_store::ObjectStore,
    cron: kv::Store,
    secrets: kv::Store,
    owners: kv::Store,
    /// Object metadata of the buckets (see `shared_objects`).
    pub(crate) objects: kv::Store,
    /// Records of the tables.
    pub(crate) records: kv::Store,
    /// Object contents by SHA-256.
    pub(crate) blobs: object_store::ObjectStore,
}

/// This node's connection to the cluster's JetStream, opened in the background.
pub struct Link {
    stores: watch::Receiver<Option<Stores>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
impl Link {
    /// Connects in the background (retrying) and opens or creates the buckets.
    pub fn connect(config: &ClusterConfig) -> Arc<Link> {
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
            let (replicas, servers) = replicas_for(&config, &client);
            loop {
                match open(&js, &client, replicas).await {
                    Ok(stores) => {
                        tracing::info!(nats = %config.nats_url, replicas, servers, "the cluster's streams and buckets are open");
                        let _ = tx.send(Some(stores));
                        return;
                    }
                    Err(e) if e.starts_with(TOO_FEW_REPLICAS) => {
                        return tracing::error!(error = %e, "not using the cluster: its buckets have fewer replicas than [cluster] replicas; serving what this node has");
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster deployments not open yet"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Arc::new(Link { stores: rx, task })
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
        F: Fn(Arc<Link>, kv::Entry) -> Fut + Send + 'static,
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
}

/// The backend of a node in the cluster `config` names, with `store` as this node's copy of
/// the deployments and secrets, and `node` its id (cron claims name it).
pub fn backend(config: &ClusterConfig, store: &Store, node: &str) -> Backend {
    let link = Link::connect(config);
    let (tx, changes) = mpsc::channel(64);
    let follow =
        vec![link.follow_deployments(tx.clone()), link.follow_secrets(tx, store.key().clone())];
    Backend {
        storage: Arc::new(objects::NatsStorage(link.clone())),
        queues: Arc::new(queues::NatsQueueing { link: link.clone() }),
        claims: Arc::new(deployments::NatsClaims { link: link.clone(), node: node.to_string() }),
        owners: Arc::new(deployments::NatsOwners { link: link.clone() }),
        membership: Arc::new(membership::NatsMembership {
            config: config.clone(),
            heartbeat: std::sync::OnceLock::new(),
        }),
        deployments: Arc::new(deployments::NatsDeployments {
            link,
            store: store.clone(),
            _follow: follow.into_iter().map(crate::backend::AbortOnDrop).collect(),
        }),
        changes,
    }
}

/// The replicas of what the node creates: `[cluster] replicas`, else three copies when the
/// NATS cluster has at least three servers (as `nats_url` lists them or the server announces
/// them) and one otherwise; with the servers seen.
pub(crate) fn replicas_for(config: &ClusterConfig, client: &async_nats::Client) -> (usize, usize) {
    let listed = config.nats_url.split(',').filter(|u| !u.trim().is_empty()).count();
    let servers = client.server_info().connect_urls.len().max(listed).max(1);
    (config.replicas.unwrap_or(if servers >= 3 { 3 } else { 1 }), servers)
}

/// How an open refused for too few replicas begins.
const TOO_FEW_REPLICAS: &str = "too few replicas";

/// Refuses a stream (a bucket's) kept with fewer replicas than asked for.
async fn check_replicas(
    js: &async_nats::jetstream::Context,
    stream: &str,
    replicas: usize,
) -> Result<(), String> {
    let mut stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let kept = stream.info().await.map_err(|e| e.to_string())?.config.num_replicas.max(1);
    if kept < replicas {
        return Err(format!(
            "{TOO_FEW_REPLICAS}: {} has {kept} replica(s) and [cluster] replicas asks for {replicas}; raise them with `nats stream edit {} --replicas {replicas}` (or set replicas = {kept})",
            stream.cached_info().config.name,
            stream.cached_info().config.name,
        ));
    }
    Ok(())
}

/// The KV bucket `config.bucket`, created with `config` (and `replicas`) if it does not
/// exist; refused if it exists with fewer replicas.
pub(crate) async fn open_kv(
    js: &async_nats::jetstream::Context,
    config: kv::Config,
    replicas: usize,
) -> Result<kv::Store, String> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => {
            check_replicas(js, &format!("KV_{}", config.bucket), replicas).await?;
            Ok(store)
        }
        Err(_) => js
            .create_key_value(kv::Config { num_replicas: replicas, ..config })
            .await
            .map_err(|e| e.to_string()),
    }
}

/// The Object Store `bucket`, created (described as `description`, with `replicas`) if it
/// does not exist; refused if it exists with fewer replicas.
pub(crate) async fn open_object_store(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore, String> {
    match js.get_object_store(bucket).await {
        Ok(store) => {
            check_replicas(js, &format!("OBJ_{bucket}"), replicas).await?;
            Ok(store)
        }
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.into(),
                description: Some(description.into()),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn open(
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
    replicas: usize,
) -> Result<Stores, String> {
    let deployments = open_kv(
        js,
        kv::Config {
            bucket: DEPLOYMENTS_BUCKET.into(),
            description: "the active version of every function".into(),
            history: 5,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    let bundles =
        open_object_store(js, BUNDLES_BUCKET, "function bundles by content hash", replicas).await?;
    let cron = open_kv(
        js,
        kv::Config {
            bucket: CRON_BUCKET.into(),
            description: "which node fired each cron run".into(),
            history: 1,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        },
        replicas,
    )
    .await?;
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: QUEUES_STREAM.into(),
        subjects: vec![format!("{QUEUE_SUBJECT}.>")],
        description: Some("the cluster's queues".into()),
        max_age: Duration::from_secs(14 * 24 * 3600),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    check_replicas(js, QUEUES_STREAM, replicas).await?;
    let secrets = open_kv(
        js,
        kv::Config {
            bucket: SECRETS_BUCKET.into(),
            description: "secrets of the cluster's functions".into(),
            history: 1,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    let owners = open_kv(
        js,
        kv::Config {
            bucket: OWNERS_BUCKET.into(),
            description: "the function owning each queue, bucket and table".into(),
            history: 1,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    let (objects, records, blobs) = crate::backend::nats::objects::open(js, replicas).await?;
    Ok(Stores {
        owners,
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

//! Cluster membership on NATS JetStream: each node keeps an entry in the KV bucket
//! `isola-nodes` (id, region, addresses, version, load), refreshed by a heartbeat and expiring
//! `node_ttl` after the last one. The node connects in the background and retries, so it
//! starts and serves whether or not NATS is up.

use std::time::Duration;

use async_nats::jetstream::kv;
use config::ClusterConfig;
use futures::StreamExt;
use tokio::sync::watch;

use crate::backend::{Membership, NodeInfo, Report, StoreError};

/// The KV bucket of the cluster's nodes.
pub const NODES_BUCKET: &str = "isola-nodes";

/// A node's membership: the heartbeat task and the bucket once connected.
pub struct Cluster {
    bucket: watch::Receiver<Option<kv::Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Joins in the background: connects (retrying), opens or creates the bucket, and writes
    /// the node's entry every third of `node_ttl`.
    pub fn join(config: &ClusterConfig, report: Report) -> Cluster {
        let (tx, rx) = watch::channel(None);
        let config = config.clone();
        let task = tokio::spawn(async move { heartbeat(config, report, tx).await });
        Cluster { bucket: rx, task }
    }

    /// The nodes whose entries have not expired; an error while NATS cannot be reached.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, String> {
        let bucket = self.bucket.borrow().clone().ok_or("not connected to NATS yet")?;
        let mut keys = bucket.keys().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            if let Some(value) = bucket.get(&key).await.map_err(|e| e.to_string())? {
                if let Ok(info) = serde_json::from_slice::<NodeInfo>(&value) {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        Ok(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A NATS connection that keeps retrying in the background.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("edge-node")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
    }
    let servers: Vec<&str> = config.nats_url.split(',').map(str::trim).collect();
    options.connect(servers).await.map_err(|e| e.to_string())
}

async fn heartbeat(
    config: ClusterConfig,
    report: Report,
    bucket: watch::Sender<Option<kv::Store>>,
) {
    let client = match connect(&config).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot join the cluster");
            return;
        }
    };
    let (replicas, _) = crate::backend::nats::replicas_for(&config, &client);
    let jetstream = async_nats::jetstream::new(client);
    let every = config.node_ttl / 3;
    loop {
        if bucket.borrow().is_none() {
            let store = crate::backend::nats::open_kv(
                &jetstream,
                kv::Config {
                    bucket: NODES_BUCKET.to_string(),
                    description: "the nodes of an Isola cluster".to_string(),
                    history: 1,
                    max_age: config.node_ttl,
                    ..Default::default()
                },
                replicas,
            )
            .await;
            if let Ok(store) = store {
                tracing::info!(nats = %config.nats_url, "joined the cluster");
                let _ = bucket.send(Some(store));
            }
        }
        let store = bucket.borrow().clone();
        if let Some(store) = store {
            let info = report();
            let value = serde_json::to_vec(&info).expect("node info serialises");
            if let Err(e) = store.put(&info.id, value.into()).await {
                tracing::warn!(error = %e, "cluster heartbeat not written");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// This node's membership of the cluster, once it has joined.
pub(super) struct NatsMembership {
    pub config: ClusterConfig,
    pub heartbeat: std::sync::OnceLock<Cluster>,
}

#[async_trait::async_trait]
impl Membership for NatsMembership {
    fn join(&self, report: Report) {
        let _ = self.heartbeat.set(Cluster::join(&self.config, report));
    }

    async fn status(&self) -> Result<serde_json::Value, StoreError> {
        let cluster = self.heartbeat.get().ok_or(StoreError::Cluster("not joined yet".into()))?;
        let nodes = cluster.nodes().await.map_err(StoreError::Cluster)?;
        Ok(serde_json::json!({ "mode": "cluster", "nodes": nodes }))
    }
}

//! `edge-node secrets rotate-key`: every secret sealed under a new key, in this node's store
//! and, for a node of a cluster, in the cluster's bucket; then the key file holds the new key.
//! Run with the node stopped (its store is locked while it runs). In a cluster every node
//! runs it in turn with the same new key: the first re-seals the bucket, the others find it
//! re-sealed and re-seal their own stores.

use config::NodeConfig;

use crate::backend::local::store::Store;
use crate::backend::nats::Link;
use crate::backend::sealed::SecretKey;

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// Secrets re-sealed in this node's store.
    pub store: usize,
    /// Secrets re-sealed in the cluster's bucket (`None` for a standalone node).
    pub cluster: Option<usize>,
    /// The key file now holding the new key (`None` when the key comes from the environment).
    pub key_file: Option<std::path::PathBuf>,
}

/// Re-seals the secrets of the node `config` describes under `new_key` (64 hex digits).
pub async fn rotate_secrets_key(config: &NodeConfig, new_key: &str) -> Result<Rotated, String> {
    let data = &config.node.data_dir;
    let key_file = config.secrets.key_file.clone().unwrap_or_else(|| data.join("secrets.key"));
    let from_env = std::env::var(&config.secrets.key_env).ok().filter(|v| !v.is_empty());
    let old = SecretKey::load(from_env.as_deref(), &config.secrets.key_env, &key_file)
        .map_err(|e| e.to_string())?;
    let new = SecretKey::from_hex(new_key, "given").map_err(|e| e.to_string())?;
    let store_path = data.join("store.redb");
    let mut store = Store::open(&store_path, old.clone()).map_err(|e| {
        let text = e.to_string();
        if text.contains("already open") || text.contains("lock") {
            format!("{} is in use: stop the node first", store_path.display())
        } else {
            text
        }
    })?;
    // The cluster first: if it cannot be reached, nothing has changed yet.
    let cluster = match &config.cluster {
        Some(cluster) => {
            let link = Link::connect(cluster);
            // Not one transaction: secrets re-sealed before a failure stay re-sealed.
            let count = link.reseal_secrets(&old, &new).await.map_err(|e| {
                format!("the cluster's secrets were not all re-sealed (this node's store is unchanged): {e}")
            })?;
            Some(count)
        }
        None => None,
    };
    let count = store.rekey(new.clone()).map_err(|e| e.to_string())?;
    let key_file = match from_env {
        Some(_) => None,
        None => {
            new.save(&key_file).map_err(|e| e.to_string())?;
            Some(key_file)
        }
    };
    Ok(Rotated { store: count, cluster, key_file })
}

//! Buckets (objects on disk, metadata in the store) and tables (JSON records by key). Every
//! change commits, in one transaction with it, an event message for each function whose
//! storage or record trigger matches: the events ride the durable queues, so they are
//! delivered at least once even if the node dies right after the change.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::local::queues::{now_ms, Encoding, Queues};
use crate::backend::local::store::StoreError;
use crate::backend::nats::DeployLink;

/// (bucket, key) -> [`ObjectMeta`] as JSON.
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// (table, key) -> the record's JSON text.
const RECORDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("records");

/// The largest object accepted.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;
/// The largest record accepted (its JSON text).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// An object's metadata; its content is `data_dir/blobs/<etag>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub etag: String,
    #[serde(rename = "contentType")]
    pub content_type: String,
    pub uploaded: u64,
}

/// Where a change's events go: the internal queue of each function whose trigger matches.
pub trait EventRoutes: Send + Sync {
    /// The event queues for a change to `key` in bucket `bucket`.
    fn storage(&self, bucket: &str, key: &str) -> Vec<String>;
    /// The event queues for a change in table `table`.
    fn record(&self, table: &str) -> Vec<String>;
}

/// The buckets and tables of a standalone node, in its redb store.
pub struct LocalObjects {
    db: Arc<Database>,
    blobs: PathBuf,
    queues: Arc<Queues>,
}

/// The node's buckets and tables, one interface over two stores: the node's own (redb, blobs
/// on disk, events into its internal queues) when standalone, the cluster's (JetStream, see
/// `shared_objects`) once the node is in one. Both are tested by the same tests.
pub struct Objects {
    local: Arc<LocalObjects>,
    cluster: OnceLock<Arc<DeployLink>>,
}

/// Runs a standalone store's operation off the async threads (it syncs to disk).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Decode(format!("a store task failed: {e}")))?
}

impl Objects {
    pub fn new(local: LocalObjects) -> Objects {
        Objects { local: Arc::new(local), cluster: OnceLock::new() }
    }

    /// From now on buckets and tables are the cluster's.
    pub fn join_cluster(&self, link: Arc<DeployLink>) {
        let _ = self.cluster.set(link);
    }

    /// Stores an object; its storage events are sent once it is acknowledged.
    pub async fn put(
        &self,
        routes: Arc<dyn EventRoutes>,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.object_put(bucket, key, data, content_type).await;
        }
        let (local, bucket, key, ct) =
            (self.local.clone(), bucket.to_string(), key.to_string(), content_type.to_string());
        blocking(move || local.put(&*routes, &bucket, &key, &data, &ct)).await
    }

    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Bytes)>, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.object_get(bucket, key).await;
        }
        let (local, bucket, key) = (self.local.clone(), bucket.to_string(), key.to_string());
        blocking(move || local.get(&bucket, &key)).await
    }

    pub async fn delete(
        &self,
        routes: Arc<dyn EventRoutes>,
        bucket: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.object_delete(bucket, key).await;
        }
        let (local, bucket, key) = (self.local.clone(), bucket.to_string(), key.to_string());
        blocking(move || local.delete(&*routes, &bucket, &key)).await
    }

    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.object_list(bucket, prefix, limit, cursor).await;
        }
        let (local, bucket, prefix) = (self.local.clone(), bucket.to_string(), prefix.to_string());
        let cursor = cursor.map(str::to_string);
        blocking(move || local.list(&bucket, &prefix, limit, cursor.as_deref())).await
    }

    pub async fn get_record(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.record_get(table, key).await;
        }
        let (local, table, key) = (self.local.clone(), table.to_string(), key.to_string());
        blocking(move || local.get_record(&table, &key)).await
    }

    pub async fn put_record(
        &self,
        routes: Arc<dyn EventRoutes>,
        table: &str,
        key: &str,
        json: String,
    ) -> Result<(), StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.record_put(table, key, &json).await;
        }
        let (local, table, key) = (self.local.clone(), table.to_string(), key.to_string());
        blocking(move || local.put_record(&*routes, &table, &key, &json)).await
    }

    pub async fn delete_record(
        &self,
        routes: Arc<dyn EventRoutes>,
        table: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.record_delete(table, key).await;
        }
        let (local, table, key) = (self.local.clone(), table.to_string(), key.to_string());
        blocking(move || local.delete_record(&*routes, &table, &key)).await
    }

    pub async fn list_records(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError> {
        if let Some(link) = self.cluster.get() {
            return link.record_list(table, prefix, limit, cursor).await;
        }
        let (local, table, prefix) = (self.local.clone(), table.to_string(), prefix.to_string());
        let cursor = cursor.map(str::to_string);
        blocking(move || local.list_records(&table, &prefix, limit, cursor.as_deref())).await
    }
}

/// A listing page.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `None` on the last one.
    pub cursor: Option<String>,
}

impl LocalObjects {
    pub fn new(
        db: Arc<Database>,
        blobs: PathBuf,
        queues: Arc<Queues>,
    ) -> Result<LocalObjects, StoreError> {
        std::fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::Decode(format!("blobs folder: {e}")))?;
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.open_table(RECORDS)?;
        tx.commit()?;
        Ok(LocalObjects { db, blobs, queues })
    }

    /// Stores an object: content synced to disk, then metadata and events committed.
    pub fn put(
        &self,
        routes: &dyn EventRoutes,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let etag: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
        let path = self.blobs.join(&etag);
        if !path.exists() {
            crate::functions::caches::write_atomically(&path, data, true)
                .map_err(|e| StoreError::Decode(format!("writing an object: {e}")))?;
        }
        let meta = ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag,
            content_type: content_type.to_string(),
            uploaded: now_ms(),
        };
        let tx = self.db.begin_write()?;
        {
            let mut objects = tx.open_table(OBJECTS)?;
            objects.insert(
                (bucket, key),
                serde_json::to_vec(&meta).expect("metadata serialises").as_slice(),
            )?;
        }
        let event = serde_json::json!({
            "bucket": bucket, "key": key, "size": meta.size, "etag": meta.etag, "op": "put",
        });
        self.events(&tx, &routes.storage(bucket, key), &event)?;
        tx.commit()?;
        self.queues.sent.notify_waiters();
        Ok(meta)
    }

    pub fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        let meta = match objects.get((bucket, key))? {
            Some(v) => serde_json::from_slice(v.value()).ok(),
            None => None,
        };
        Ok(meta)
    }

    /// An object's metadata and content.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<(ObjectMeta, Bytes)>, StoreError> {
        let Some(meta) = self.head(bucket, key)? else { return Ok(None) };
        let data = std::fs::read(self.blobs.join(&meta.etag))
            .map_err(|e| StoreError::Decode(format!("reading an object: {e}")))?;
        Ok(Some((meta, Bytes::from(data))))
    }

    /// Deletes an object; returns whether it existed. The event is committed with it.
    pub fn delete(
        &self,
        routes: &dyn EventRoutes,
        bucket: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let removed: Option<ObjectMeta> = {
            let mut objects = tx.open_table(OBJECTS)?;
            let removed = objects.remove((bucket, key))?;
            removed.and_then(|v| serde_json::from_slice(v.value()).ok())
        };
        let Some(meta) = removed else { return Ok(false) };
        let event = serde_json::json!({
            "bucket": bucket, "key": key, "size": meta.size, "etag": meta.etag, "op": "delete",
        });
        self.events(&tx, &routes.storage(bucket, key), &event)?;
        tx.commit()?;
        self.queues.sent.notify_waiters();
        Ok(true)
    }

    /// Objects of a bucket by key, from after `cursor`, whose key starts with `prefix`.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        let entries = objects.range((bucket, cursor.unwrap_or(prefix))..)?.map(|entry| {
            entry.map(|(k, v)| {
                (k.value().0.to_string(), k.value().1.to_string(), v.value().to_vec())
            })
        });
        let page = paginate(entries, bucket, prefix, limit, cursor)?;
        let items =
            page.items.into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect();
        Ok(Page { items, cursor: page.cursor })
    }

    pub fn get_record(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        let value = records.get((table, key))?.map(|v| v.value().to_string());
        Ok(value)
    }

    /// Writes a record (JSON text) and its event in one transaction.
    pub fn put_record(
        &self,
        routes: &dyn EventRoutes,
        table: &str,
        key: &str,
        json: &str,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        let previous = {
            let mut records = tx.open_table(RECORDS)?;
            let previous = records.insert((table, key), json)?.map(|v| v.value().to_string());
            previous
        };
        let event = serde_json::json!({
            "table": table,
            "key": key,
            "op": "put",
            "value": serde_json::from_str::<serde_json::Value>(json).unwrap_or_default(),
            "previous": previous.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
        });
        self.events(&tx, &routes.record(table), &event)?;
        tx.commit()?;
        self.queues.sent.notify_waiters();
        Ok(())
    }

    pub fn delete_record(
        &self,
        routes: &dyn EventRoutes,
        table: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let previous = {
            let mut records = tx.open_table(RECORDS)?;
            let previous = records.remove((table, key))?.map(|v| v.value().to_string());
            previous
        };
        let Some(previous) = previous else { return Ok(false) };
        let event = serde_json::json!({
            "table": table,
            "key": key,
            "op": "delete",
            "value": null,
            "previous": serde_json::from_str::<serde_json::Value>(&previous).ok(),
        });
        self.events(&tx, &routes.record(table), &event)?;
        tx.commit()?;
        self.queues.sent.notify_waiters();
        Ok(true)
    }

    /// Records of a table by key, from after `cursor`, whose key starts with `prefix`.
    pub fn list_records(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError> {
        let tx = self.db.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        let entries = records.range((table, cursor.unwrap_or(prefix))..)?.map(|entry| {
            entry.map(|(k, v)| {
                (k.value().0.to_string(), k.value().1.to_string(), v.value().to_string())
            })
        });
        paginate(entries, table, prefix, limit, cursor)
    }

    fn events(
        &self,
        tx: &WriteTransaction,
        queues: &[String],
        event: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let body = event.to_string();
        for queue in queues {
            Queues::append(tx, queue, &[(Encoding::Json, body.as_bytes())])?;
        }
        Ok(())
    }
}

/// The entries of `scope` (a bucket or table) whose key starts with `prefix`, after `cursor`,
/// at most `limit`, from a range that starts at the cursor or the prefix.
fn paginate<V>(
    entries: impl Iterator<Item = Result<(String, String, V), redb::StorageError>>,
    scope: &str,
    prefix: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<(String, V)>, StoreError> {
    let mut page = PageBuilder::new(limit);
    for entry in entries {
        let (s, key, value) = entry?;
        if s != scope || !key.starts_with(prefix) {
            break;
        }
        if cursor == Some(key.as_str()) {
            continue;
        }
        if !page.offer(key, value) {
            break;
        }
    }
    Ok(page.finish())
}

/// Collects one listing page: at most `limit` items, noting whether more follow.
pub(crate) struct PageBuilder<T> {
    items: Vec<(String, T)>,
    limit: usize,
    more: bool,
}

impl<T> PageBuilder<T> {
    pub fn new(limit: usize) -> PageBuilder<T> {
        PageBuilder { items: Vec::new(), limit, more: false }
    }

    /// Adds the next item; `false` when the page is full (the item is then left out, and the
    /// page says more follow).
    pub fn offer(&mut self, key: String, item: T) -> bool {
        if self.items.len() == self.limit {
            self.more = true;
            return false;
        }
        self.items.push((key, item));
        true
    }

    pub fn finish(self) -> Page<(String, T)> {
        let cursor = self.more.then(|| self.items.last().map(|(k, _)| k.clone())).flatten();
        Page { items: self.items, cursor }
    }
}

//! Buckets (objects on disk, metadata in the store) and tables (JSON records by key) of a
//! standalone node. Every change commits, in one transaction with it, an event message for
//! each function whose storage or record trigger matches: the events ride the durable queues,
//! so they are delivered at least once even if the node dies right after the change.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use sha2::{Digest, Sha256};

use super::blocking;
use super::queues::{now_ms, Encoding, Queues};
use super::routes::EventRoutes;
use super::store::StoreError;
use crate::backend::{ObjectMeta, Page, PageBuilder, Storage};

/// (bucket, key) -> [`ObjectMeta`] as JSON.
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// (table, key) -> the record's JSON text.
const RECORDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("records");

/// The buckets and tables of a standalone node, in its redb store.
pub struct LocalObjects {
    db: Arc<Database>,
    blobs: PathBuf,
    queues: Arc<Queues>,
    /// Which functions' event queues each change goes to.
    routes: Arc<EventRoutes>,
}

impl LocalObjects {
    pub fn new(
        db: Arc<Database>,
        blobs: PathBuf,
        queues: Arc<Queues>,
        routes: Arc<EventRoutes>,
    ) -> Result<LocalObjects, StoreError> {
        std::fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::Decode(format!("blobs folder: {e}")))?;
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.open_table(RECORDS)?;
        tx.commit()?;
        Ok(LocalObjects { db, blobs, queues, routes })
    }

    /// Stores an object: content synced to disk, then metadata and events committed.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let etag: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
        let path = self.blobs.join(&etag);
        if !path.exists() {
            super::write_atomically(&path, data, true)
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
        self.events(&tx, &self.routes.storage(bucket, key), &event)?;
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
    pub fn delete(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
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
        self.events(&tx, &self.routes.storage(bucket, key), &event)?;
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
    pub fn put_record(&self, table: &str, key: &str, json: &str) -> Result<(), StoreError> {
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
        self.events(&tx, &self.routes.record(table), &event)?;
        tx.commit()?;
        self.queues.sent.notify_waiters();
        Ok(())
    }

    pub fn delete_record(&self, table: &str, key: &str) -> Result<bool, StoreError> {
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
        self.events(&tx, &self.routes.record(table), &event)?;
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

/// A standalone node's buckets and tables, each operation off the async threads.
pub struct LocalStorage(pub Arc<LocalObjects>);

#[async_trait]
impl Storage for LocalStorage {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let (local, bucket, key, ct) =
            (self.0.clone(), bucket.to_string(), key.to_string(), content_type.to_string());
        blocking(move || local.put(&bucket, &key, &data, &ct)).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Bytes)>, StoreError> {
        let (local, bucket, key) = (self.0.clone(), bucket.to_string(), key.to_string());
        blocking(move || local.get(&bucket, &key)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        let (local, bucket, key) = (self.0.clone(), bucket.to_string(), key.to_string());
        blocking(move || local.delete(&bucket, &key)).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError> {
        let (local, bucket, prefix) = (self.0.clone(), bucket.to_string(), prefix.to_string());
        let cursor = cursor.map(str::to_string);
        blocking(move || local.list(&bucket, &prefix, limit, cursor.as_deref())).await
    }

    async fn get_record(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (local, table, key) = (self.0.clone(), table.to_string(), key.to_string());
        blocking(move || local.get_record(&table, &key)).await
    }

    async fn put_record(&self, table: &str, key: &str, json: String) -> Result<(), StoreError> {
        let (local, table, key) = (self.0.clone(), table.to_string(), key.to_string());
        blocking(move || local.put_record(&table, &key, &json)).await
    }

    async fn delete_record(&self, table: &str, key: &str) -> Result<bool, StoreError> {
        let (local, table, key) = (self.0.clone(), table.to_string(), key.to_string());
        blocking(move || local.delete_record(&table, &key)).await
    }

    async fn list_records(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError> {
        let (local, table, prefix) = (self.0.clone(), table.to_string(), prefix.to_string());
        let cursor = cursor.map(str::to_string);
        blocking(move || local.list_records(&table, &prefix, limit, cursor.as_deref())).await
    }
}

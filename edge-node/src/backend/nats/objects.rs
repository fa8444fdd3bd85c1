//! Buckets and tables of a cluster, in JetStream: object metadata in the KV bucket
//! `isola-objects`, records in `isola-records` (key `<hex scope>.<hex key>`, so any bucket,
//! table or key name fits and hex order is byte order), object contents in the Object Store
//! `isola-blobs` by SHA-256.
//!
//! A change is one KV entry that carries its own event (`op`, and for a record the value
//! before it), so the KV stream itself is the event log: storage and record triggers are
//! durable consumers on it, shared by every node, and an acknowledged change fires at least
//! once even if the node that made it dies right after. A delete writes a tombstone entry
//! (the event) and then deletes the key. The buckets keep the last 64 entries of each key,
//! so events of a key changed 64 times before a consumer caught up are lost but the latest.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{kv, object_store};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{open_kv, open_object_store, Link};
use crate::backend::now_ms;
use crate::backend::{ObjectMeta, Page, PageBuilder};
use crate::backend::{Storage, StoreError};

pub const OBJECTS_BUCKET: &str = "isola-objects";
pub const RECORDS_BUCKET: &str = "isola-records";
pub const BLOBS_BUCKET: &str = "isola-blobs";
/// Entries kept per key (JetStream's most for a KV bucket).
const HISTORY: i64 = 64;
/// How long a change event handed to a node stays its own without word from it; the node
/// says "still working" every [`EVENT_PROGRESS`] while the handler runs, so an event of a
/// node that died is handed to another within seconds.
pub const EVENT_ACK_WAIT: Duration = Duration::from_secs(5);
pub const EVENT_PROGRESS: Duration = Duration::from_secs(1);

/// Opens or creates the buckets.
pub(crate) async fn open(
    js: &async_nats::jetstream::Context,
    replicas: usize,
) -> Result<(kv::Store, kv::Store, object_store::ObjectStore), String> {
    let kv = |bucket: &str, description: &str| {
        open_kv(
            js,
            kv::Config {
                bucket: bucket.into(),
                description: description.into(),
                history: HISTORY,
                ..Default::default()
            },
            replicas,
        )
    };
    let objects = kv(OBJECTS_BUCKET, "object metadata of the cluster's buckets").await?;
    let records = kv(RECORDS_BUCKET, "records of the cluster's tables").await?;
    let blobs = open_object_store(js, BLOBS_BUCKET, "object contents by SHA-256", replicas).await?;
    Ok((objects, records, blobs))
}

fn nats(e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(e.to_string())
}

fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn kv_key(scope: &str, key: &str) -> String {
    format!("{}.{}", hex(scope.as_bytes()), hex(key.as_bytes()))
}

/// An object's entry: its metadata and the change that wrote it.
#[derive(Debug, Serialize, Deserialize)]
struct ObjectEntry {
    op: String,
    bucket: String,
    #[serde(flatten)]
    meta: ObjectMeta,
}

/// A record's entry, which is also its record event.
#[derive(Debug, Serialize, Deserialize)]
struct RecordEntry {
    op: String,
    table: String,
    key: String,
    value: Option<Box<RawValue>>,
    previous: Option<Box<RawValue>>,
}

/// Which of the cluster's change logs a trigger consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeLog {
    Objects,
    Records,
}

impl ChangeLog {
    fn bucket(self) -> &'static str {
        match self {
            ChangeLog::Objects => OBJECTS_BUCKET,
            ChangeLog::Records => RECORDS_BUCKET,
        }
    }
}

/// The event a change log message stands for (the JSON the function's `storage` or `record`
/// handler gets), or `None` for a key's deletion marker, which follows its tombstone.
pub fn change_event(log: ChangeLog, message: &async_nats::jetstream::Message) -> Option<Bytes> {
    let deleted = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
    if deleted || message.payload.is_empty() {
        return None;
    }
    match log {
        ChangeLog::Records => Some(message.payload.clone()),
        ChangeLog::Objects => {
            let entry: ObjectEntry = serde_json::from_slice(&message.payload).ok()?;
            let event = serde_json::json!({
                "bucket": entry.bucket,
                "key": entry.meta.key,
                "size": entry.meta.size,
                "etag": entry.meta.etag,
                "op": entry.op,
            });
            Some(Bytes::from(event.to_string()))
        }
    }
}

impl Link {
    /// Writes `value` at `key` unless it changed since `entry` was read (then `Ok(false)`).
    async fn write(
        store: &kv::Store,
        key: &str,
        entry: Option<&kv::Entry>,
        value: String,
    ) -> Result<bool, StoreError> {
        let written = match entry {
            Some(entry) => {
                store.update(key, value.into(), entry.revision).await.map(|_| ()).map_err(|e| {
                    (matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision), e.to_string())
                })
            }
            None => store.create(key, value.into()).await.map(|_| ()).map_err(|e| {
                (matches!(e.kind(), kv::CreateErrorKind::AlreadyExists), e.to_string())
            }),
        };
        match written {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(StoreError::Cluster(e)),
        }
    }

    /// The live entry of `key`: `None` when absent or deleted.
    async fn live(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, StoreError> {
        let entry = store.entry(key).await.map_err(nats)?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }

    pub async fn object_put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let etag = hex(&Sha256::digest(&data));
        if stores.blobs.info(&etag).await.is_err() {
            stores.blobs.put(etag.as_str(), &mut data.as_ref()).await.map_err(nats)?;
        }
        let meta = ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag,
            content_type: content_type.to_string(),
            uploaded: now_ms(),
        };
        let entry = ObjectEntry { op: "put".into(), bucket: bucket.into(), meta };
        let text = serde_json::to_string(&entry).expect("an entry serialises");
        stores.objects.put(kv_key(bucket, key), text.into()).await.map_err(nats)?;
        Ok(entry.meta)
    }

    pub async fn object_head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let entry = Self::live(&stores.objects, &kv_key(bucket, key)).await?;
        Ok(entry.and_then(|e| serde_json::from_slice::<ObjectEntry>(&e.value).ok()).and_then(|e| {
            match e.op.as_str() {
                "put" => Some(e.meta),
                _ => None,
            }
        }))
    }

    pub async fn object_get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Bytes)>, StoreError> {
        let Some(meta) = self.object_head(bucket, key).await? else { return Ok(None) };
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let mut object = stores.blobs.get(&meta.etag).await.map_err(nats)?;
        let mut data = Vec::with_capacity(meta.size as usize);
        object.read_to_end(&mut data).await.map_err(nats)?;
        Ok(Some((meta, Bytes::from(data))))
    }

    /// Deletes an object: its tombstone (the event) first, then the key.
    pub async fn object_delete(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let k = kv_key(bucket, key);
        loop {
            let Some(entry) = Self::live(&stores.objects, &k).await? else { return Ok(false) };
            let Ok(mut old) = serde_json::from_slice::<ObjectEntry>(&entry.value) else {
                return Ok(false);
            };
            if old.op != "put" {
                return Ok(false);
            }
            old.op = "delete".into();
            let text = serde_json::to_string(&old).expect("an entry serialises");
            if Self::write(&stores.objects, &k, Some(&entry), text).await? {
                stores.objects.delete(&k).await.map_err(nats)?;
                return Ok(true);
            }
        }
    }

    pub async fn object_list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let page = Self::page(&stores.objects, bucket, prefix, limit, cursor, |value| {
            serde_json::from_slice::<ObjectEntry>(value)
                .ok()
                .filter(|e| e.op == "put")
                .map(|e| e.meta)
        })
        .await?;
        Ok(Page {
            items: page.items.into_iter().map(|(_, meta)| meta).collect(),
            cursor: page.cursor,
        })
    }

    pub async fn record_get(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let entry = Self::live(&stores.records, &kv_key(table, key)).await?;
        Ok(entry.and_then(|e| record_value(&e.value)))
    }

    /// Writes a record; its entry carries the value it replaces (compare-and-set, so the
    /// previous value is exact under concurrent writers).
    pub async fn record_put(&self, table: &str, key: &str, json: &str) -> Result<(), StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let value = RawValue::from_string(json.to_string())
            .map_err(|e| StoreError::Decode(format!("a record is JSON: {e}")))?;
        let k = kv_key(table, key);
        loop {
            let entry = stores.records.entry(&k).await.map_err(nats)?;
            let previous = entry
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| record_value(&e.value))
                .and_then(|p| RawValue::from_string(p).ok());
            let record = RecordEntry {
                op: "put".into(),
                table: table.into(),
                key: key.into(),
                value: Some(value.clone()),
                previous,
            };
            let text = serde_json::to_string(&record).expect("an entry serialises");
            let max = stores.client.server_info().max_payload;
            if text.len() + k.len() + 256 > max {
                return Err(StoreError::TooLarge(format!(
                    "the record with the value it replaces is {} bytes, more than the cluster's \
                     NATS max_payload ({max} bytes)",
                    text.len()
                )));
            }
            if Self::write(&stores.records, &k, entry.as_ref(), text).await? {
                return Ok(());
            }
        }
    }

    pub async fn record_delete(&self, table: &str, key: &str) -> Result<bool, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        let k = kv_key(table, key);
        loop {
            let Some(entry) = Self::live(&stores.records, &k).await? else { return Ok(false) };
            let Some(previous) = record_value(&entry.value) else { return Ok(false) };
            let record = RecordEntry {
                op: "delete".into(),
                table: table.into(),
                key: key.into(),
                value: None,
                previous: RawValue::from_string(previous).ok(),
            };
            let text = serde_json::to_string(&record).expect("an entry serialises");
            if Self::write(&stores.records, &k, Some(&entry), text).await? {
                stores.records.delete(&k).await.map_err(nats)?;
                return Ok(true);
            }
        }
    }

    pub async fn record_list(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError> {
        let stores = self.ready().await.map_err(StoreError::Cluster)?;
        Self::page(&stores.records, table, prefix, limit, cursor, record_value).await
    }

    /// One page of the live entries of `scope` whose key starts with `prefix`, after
    /// `cursor`, by key; `read` turns an entry into an item (`None`: a tombstone).
    async fn page<T>(
        store: &kv::Store,
        scope: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
        read: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Page<(String, T)>, StoreError> {
        let start = format!("{}.", hex(scope.as_bytes()));
        let mut keys: Vec<String> = store
            .keys()
            .await
            .map_err(nats)?
            .filter_map(|k| async move { k.ok() })
            .filter_map(|k| {
                let key = k.strip_prefix(&start).and_then(unhex);
                async move { key }
            })
            .filter(|k| {
                let wanted = k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c);
                async move { wanted }
            })
            .collect()
            .await;
        keys.sort();
        let mut page = PageBuilder::new(limit);
        for key in keys {
            let Some(value) = store.get(kv_key(scope, &key)).await.map_err(nats)? else {
                continue;
            };
            let Some(item) = read(&value) else { continue };
            if !page.offer(key, item) {
                break;
            }
        }
        Ok(page.finish())
    }

    /// The durable consumer of `scope`'s changes (a bucket's objects or a table's records)
    /// for `function`, shared by every node: changes from `since` on (when the function came
    /// to be served; the durable consumer keeps its place after that).
    pub async fn change_consumer(
        &self,
        function: &str,
        log: ChangeLog,
        scope: &str,
        since: SystemTime,
    ) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
        let stores = self.ready().await?;
        let stream = stores
            .js
            .get_stream(format!("KV_{}", log.bucket()))
            .await
            .map_err(|e| e.to_string())?;
        let digest = hex(&Sha256::digest(format!("{function}/{scope}"))[..6]);
        let name: String = format!("{function}-{}-{digest}", log.bucket())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        let since = time::OffsetDateTime::from(since);
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("$KV.{}.{}.>", log.bucket(), hex(scope.as_bytes())),
                    deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: EVENT_ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())
    }
}

/// The cluster's buckets and tables.
pub(super) struct NatsStorage(pub Arc<Link>);

#[async_trait]
impl Storage for NatsStorage {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.object_put(bucket, key, data, content_type).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Bytes)>, StoreError> {
        self.0.object_get(bucket, key).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        self.0.object_delete(bucket, key).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ObjectMeta>, StoreError> {
        self.0.object_list(bucket, prefix, limit, cursor).await
    }

    async fn get_record(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.0.record_get(table, key).await
    }

    async fn put_record(&self, table: &str, key: &str, json: String) -> Result<(), StoreError> {
        self.0.record_put(table, key, &json).await
    }

    async fn delete_record(&self, table: &str, key: &str) -> Result<bool, StoreError> {
        self.0.record_delete(table, key).await
    }

    async fn list_records(
        &self,
        table: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String)>, StoreError> {
        self.0.record_list(table, prefix, limit, cursor).await
    }
}

/// A record entry's value as JSON text, `None` for a tombstone.
fn record_value(entry: &[u8]) -> Option<String> {
    let entry: RecordEntry = serde_json::from_slice(entry).ok()?;
    match entry.op.as_str() {
        "put" => entry.value.map(|v| v.get().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_their_order() {
        let keys = ["a", "a/b", "a.b", "b", "é", "images/x.png"];
        let mut encoded: Vec<String> = keys.iter().map(|k| hex(k.as_bytes())).collect();
        encoded.sort();
        let decoded: Vec<String> = encoded.iter().map(|k| unhex(k).unwrap()).collect();
        let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        sorted.sort();
        assert_eq!(decoded, sorted);
        assert_eq!(unhex("zz"), None);
        assert_eq!(kv_key("users", "ada"), "7573657273.616461");
    }
}

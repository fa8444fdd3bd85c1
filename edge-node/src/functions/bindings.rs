//! What a function's bindings do (`env.NAME` for a queue, a bucket or a table): each call
//! runs on the node's runtime, off the isolate's thread.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use config::Binding;
use js_runtime::Bindings;
use serde::Deserialize;

use crate::backend::{
    Encoding, Queueing, Storage, StoreError, MAX_MESSAGE_BYTES, MAX_OBJECT_BYTES, MAX_RECORD_BYTES,
};

/// The bindings of one function, served on the node's runtime.
pub struct NodeBindings {
    pub bindings: BTreeMap<String, Binding>,
    pub queues: Arc<dyn Queueing>,
    pub storage: Arc<dyn Storage>,
    pub runtime: tokio::runtime::Handle,
}

#[derive(Deserialize)]
struct SendArgs {
    sizes: Vec<usize>,
}

#[derive(Deserialize)]
struct KeyArgs {
    key: String,
    #[serde(rename = "contentType", default)]
    content_type: Option<String>,
    /// A table record's JSON text.
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

fn args<T: for<'de> Deserialize<'de>>(args: &str) -> Result<T, String> {
    serde_json::from_str(args).map_err(|e| format!("bad arguments: {e}"))
}

fn key_ok(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 1024 {
        return Err("a key is 1 to 1024 bytes long".into());
    }
    Ok(())
}

/// A bucket binding's method, run on the node.
async fn bucket_call(
    objects: &dyn Storage,
    bucket: &str,
    method: &str,
    raw: &str,
    data: Vec<u8>,
) -> Result<String, String> {
    let e = |e: StoreError| e.to_string();
    match method {
        "put" => {
            let a: KeyArgs = args(raw)?;
            key_ok(&a.key)?;
            if data.len() > MAX_OBJECT_BYTES {
                return Err(format!("an object is at most {} bytes", MAX_OBJECT_BYTES));
            }
            let content_type = a.content_type.unwrap_or_else(|| "application/octet-stream".into());
            let data = bytes::Bytes::from(data);
            let meta = objects.put(bucket, &a.key, data, &content_type).await.map_err(e)?;
            Ok(serde_json::to_string(&meta).expect("metadata serialises"))
        }
        "get" => {
            let a: KeyArgs = args(raw)?;
            match objects.get(bucket, &a.key).await.map_err(e)? {
                None => Ok("null".into()),
                Some((meta, body)) => {
                    use base64::Engine;
                    let body = base64::engine::general_purpose::STANDARD.encode(&body);
                    Ok(serde_json::json!({ "meta": meta, "body": body }).to_string())
                }
            }
        }
        "delete" => {
            let a: KeyArgs = args(raw)?;
            Ok(objects.delete(bucket, &a.key).await.map_err(e)?.to_string())
        }
        "list" => {
            let a: ListArgs = args(raw)?;
            let page = objects
                .list(
                    bucket,
                    &a.prefix,
                    a.limit.unwrap_or(1000).clamp(1, 1000),
                    a.cursor.as_deref(),
                )
                .await
                .map_err(e)?;
            Ok(serde_json::json!({ "objects": page.items, "cursor": page.cursor }).to_string())
        }
        other => Err(format!("a bucket has no method {other}")),
    }
}

/// A table binding's method, run on the node.
async fn table_call(
    objects: &dyn Storage,
    table: &str,
    method: &str,
    raw: &str,
) -> Result<String, String> {
    let e = |e: StoreError| e.to_string();
    match method {
        "get" => {
            let a: KeyArgs = args(raw)?;
            Ok(objects.get_record(table, &a.key).await.map_err(e)?.unwrap_or_else(|| "null".into()))
        }
        "put" => {
            let a: KeyArgs = args(raw)?;
            key_ok(&a.key)?;
            let value = a.value.ok_or("put needs a value")?;
            if value.len() > MAX_RECORD_BYTES {
                return Err(format!("a record is at most {} bytes of JSON", MAX_RECORD_BYTES));
            }
            objects.put_record(table, &a.key, value).await.map_err(e)?;
            Ok("true".into())
        }
        "delete" => {
            let a: KeyArgs = args(raw)?;
            Ok(objects.delete_record(table, &a.key).await.map_err(e)?.to_string())
        }
        "list" => {
            let a: ListArgs = args(raw)?;
            let page = objects
                .list_records(
                    table,
                    &a.prefix,
                    a.limit.unwrap_or(1000).clamp(1, 1000),
                    a.cursor.as_deref(),
                )
                .await
                .map_err(e)?;
            let records: Vec<serde_json::Value> = page
                .items
                .iter()
                .map(|(key, value)| {
                    serde_json::json!({ "key": key, "value": serde_json::from_str::<serde_json::Value>(value).unwrap_or_default() })
                })
                .collect();
            Ok(serde_json::json!({ "records": records, "cursor": page.cursor }).to_string())
        }
        other => Err(format!("a table has no method {other}")),
    }
}

impl Bindings for NodeBindings {
    fn call(
        &self,
        binding: &str,
        method: &str,
        args: String,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        let queue = match (self.bindings.get(binding), method) {
            (Some(Binding::Queue(queue)), "send") => queue.clone(),
            (Some(Binding::Bucket(bucket)), _) => {
                let storage = self.storage.clone();
                let (bucket, method) = (bucket.clone(), method.to_string());
                let work = self.runtime.spawn(async move {
                    bucket_call(&*storage, &bucket, &method, &args, data).await
                });
                return Box::pin(async move { work.await.map_err(|e| e.to_string())? });
            }
            (Some(Binding::Table(table)), _) => {
                let storage = self.storage.clone();
                let (table, method) = (table.clone(), method.to_string());
                let work = self
                    .runtime
                    .spawn(async move { table_call(&*storage, &table, &method, &args).await });
                return Box::pin(async move { work.await.map_err(|e| e.to_string())? });
            }
            _ => {
                let message = format!("binding {binding} has no method {method}");
                return Box::pin(async move { Err(message) });
            }
        };
        let queues = self.queues.clone();
        let work = self.runtime.spawn(async move {
            let args: SendArgs = serde_json::from_str(&args).map_err(|e| e.to_string())?;
            if args.sizes.iter().sum::<usize>() != data.len() {
                return Err("the message sizes do not add up".to_string());
            }
            if args.sizes.iter().any(|&n| n > MAX_MESSAGE_BYTES) {
                return Err(format!("a message is larger than {MAX_MESSAGE_BYTES} bytes"));
            }
            let mut at = 0;
            let mut messages = Vec::with_capacity(args.sizes.len());
            for &n in &args.sizes {
                messages.push(data[at..at + n].to_vec());
                at += n;
            }
            let ids =
                queues.send(&queue, Encoding::V8, messages).await.map_err(|e| e.to_string())?;
            Ok(serde_json::json!({ "ids": ids }).to_string())
        });
        Box::pin(async move { work.await.map_err(|e| e.to_string())? })
    }
}

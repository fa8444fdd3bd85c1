//! What a function's bindings do (`env.NAME` for a queue, a bucket or a table). A call is
//! decoded once into an [`Operation`] (the binding's kind decides which methods it has), then
//! run on the node's runtime, off the isolate's thread, against the node's backend.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use config::{Access, Binding, Kind};
use js_runtime::{BindingError as CallError, Bindings};
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

/// Why a binding call was refused; the function sees the message as the error it throws.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The binding does not exist, or has no such method.
    #[error("binding {binding} has no method {method}")]
    NoMethod { binding: String, method: String },
    /// The arguments the runtime passed do not decode.
    #[error("bad arguments: {0}")]
    Arguments(#[from] serde_json::Error),
    /// A key is empty or longer than 1024 bytes.
    #[error("a key is 1 to 1024 bytes long")]
    Key,
    /// An object, record or message is larger than its limit.
    #[error("{what} is at most {max} bytes")]
    TooLarge { what: &'static str, max: usize },
    /// The message sizes of a send do not add up to its data.
    #[error("the message sizes do not add up")]
    Sizes,
    /// A write through a read-only binding.
    #[error("binding {binding} is read-only: it has no method {method}")]
    ReadOnly { binding: String, method: String },
    /// A table's put without a value.
    #[error("put needs a value")]
    NoValue,
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task running the call failed.
    #[error("the call did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One call of a binding's method.
#[derive(Debug)]
pub enum Operation {
    Send { queue: String, messages: Vec<Vec<u8>> },
    Put { bucket: String, key: String, content_type: String, data: Vec<u8> },
    Get { bucket: String, key: String },
    Delete { bucket: String, key: String },
    List { bucket: String, page: PageArgs },
    GetRecord { table: String, key: String },
    PutRecord { table: String, key: String, value: String },
    DeleteRecord { table: String, key: String },
    ListRecords { table: String, page: PageArgs },
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

/// Which page of a listing.
#[derive(Debug, Deserialize)]
pub struct PageArgs {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

impl PageArgs {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(1000).clamp(1, 1000)
    }
}

/// The key of `args`, checked.
fn key(args: &str) -> Result<KeyArgs, BindingError> {
    let a: KeyArgs = serde_json::from_str(args)?;
    if a.key.is_empty() || a.key.len() > 1024 {
        return Err(BindingError::Key);
    }
    Ok(a)
}

fn at_most(what: &'static str, len: usize, max: usize) -> Result<(), BindingError> {
    if len > max {
        return Err(BindingError::TooLarge { what, max });
    }
    Ok(())
}

impl Operation {
    /// Decodes a call of `method` on `binding` with JSON `args` and a binary part.
    pub fn decode(
        binding: Option<&Binding>,
        name: &str,
        method: &str,
        args: &str,
        data: Vec<u8>,
    ) -> Result<Operation, BindingError> {
        let Some(binding) = binding else {
            return Err(BindingError::NoMethod { binding: name.into(), method: method.into() });
        };
        let target = binding.resource.name.clone();
        let op = match (binding.resource.kind, method) {
            (Kind::Queue, "send") => {
                let a: SendArgs = serde_json::from_str(args)?;
                let total = a.sizes.iter().try_fold(0usize, |sum, &n| sum.checked_add(n));
                if total != Some(data.len()) {
                    return Err(BindingError::Sizes);
                }
                let mut messages = Vec::with_capacity(a.sizes.len());
                let mut at = 0;
                for &n in &a.sizes {
                    at_most("a message", n, MAX_MESSAGE_BYTES)?;
                    messages.push(data[at..at + n].to_vec());
                    at += n;
                }
                Operation::Send { queue: target, messages }
            }
            (Kind::Bucket, "put") => {
                let a = key(args)?;
                at_most("an object", data.len(), MAX_OBJECT_BYTES)?;
                let content_type =
                    a.content_type.unwrap_or_else(|| "application/octet-stream".into());
                Operation::Put { bucket: target, key: a.key, content_type, data }
            }
            (Kind::Bucket, "get") => {
                Operation::Get { bucket: target, key: serde_json::from_str::<KeyArgs>(args)?.key }
            }
            (Kind::Bucket, "delete") => Operation::Delete {
                bucket: target,
                key: serde_json::from_str::<KeyArgs>(args)?.key,
            },
            (Kind::Bucket, "list") => {
                Operation::List { bucket: target, page: serde_json::from_str(args)? }
            }
            (Kind::Table, "get") => Operation::GetRecord {
                table: target,
                key: serde_json::from_str::<KeyArgs>(args)?.key,
            },
            (Kind::Table, "put") => {
                let a = key(args)?;
                let value = a.value.ok_or(BindingError::NoValue)?;
                at_most("a record's JSON", value.len(), MAX_RECORD_BYTES)?;
                Operation::PutRecord { table: target, key: a.key, value }
            }
            (Kind::Table, "delete") => Operation::DeleteRecord {
                table: target,
                key: serde_json::from_str::<KeyArgs>(args)?.key,
            },
            (Kind::Table, "list") => {
                Operation::ListRecords { table: target, page: serde_json::from_str(args)? }
            }
            _ => {
                return Err(BindingError::NoMethod { binding: name.into(), method: method.into() })
            }
        };
        let writes = matches!(
            op,
            Operation::Send { .. }
                | Operation::Put { .. }
                | Operation::Delete { .. }
                | Operation::PutRecord { .. }
                | Operation::DeleteRecord { .. }
        );
        if writes && binding.access == Access::Read {
            return Err(BindingError::ReadOnly { binding: name.into(), method: method.into() });
        }
        Ok(op)
    }

    /// Runs the operation; its answer as the JSON text the runtime hands to the function.
    pub async fn run(
        self,
        storage: &dyn Storage,
        queues: &dyn Queueing,
    ) -> Result<String, BindingError> {
        use serde_json::json;
        let answer = match self {
            Operation::Send { queue, messages } => {
                json!({ "ids": queues.send(&queue, Encoding::V8, messages).await? })
            }
            Operation::Put { bucket, key, content_type, data } => {
                json!(storage.put(&bucket, &key, data.into(), &content_type).await?)
            }
            Operation::Get { bucket, key } => match storage.get(&bucket, &key).await? {
                None => serde_json::Value::Null,
                Some((meta, body)) => {
                    let body = base64::engine::general_purpose::STANDARD.encode(&body);
                    json!({ "meta": meta, "body": body })
                }
            },
            Operation::Delete { bucket, key } => json!(storage.delete(&bucket, &key).await?),
            Operation::List { bucket, page } => {
                let cursor = page.cursor.as_deref();
                let found = storage.list(&bucket, &page.prefix, page.limit(), cursor).await?;
                json!({ "objects": found.items, "cursor": found.cursor })
            }
            // The record's stored text, as it is.
            Operation::GetRecord { table, key } => {
                let found = storage.get_record(&table, &key).await?;
                return Ok(found.unwrap_or_else(|| "null".into()));
            }
            Operation::PutRecord { table, key, value } => {
                storage.put_record(&table, &key, value).await?;
                json!(true)
            }
            Operation::DeleteRecord { table, key } => {
                json!(storage.delete_record(&table, &key).await?)
            }
            Operation::ListRecords { table, page } => {
                let cursor = page.cursor.as_deref();
                let found =
                    storage.list_records(&table, &page.prefix, page.limit(), cursor).await?;
                let records: Vec<serde_json::Value> = found
                    .items
                    .iter()
                    .map(|(key, value)| {
                        let value =
                            serde_json::from_str::<serde_json::Value>(value).unwrap_or_default();
                        json!({ "key": key, "value": value })
                    })
                    .collect();
                json!({ "records": records, "cursor": found.cursor })
            }
        };
        Ok(answer.to_string())
    }
}

impl Bindings for NodeBindings {
    fn call(
        &self,
        binding: &str,
        method: &str,
        args: String,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, CallError>> + Send>> {
        let operation = Operation::decode(self.bindings.get(binding), binding, method, &args, data);
        let (storage, queues) = (self.storage.clone(), self.queues.clone());
        let work = operation
            .map(|op| self.runtime.spawn(async move { op.run(&*storage, &*queues).await }));
        Box::pin(async move { Ok(work?.await.map_err(BindingError::from)??) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(binding: &Binding, method: &str, args: &str, data: &[u8]) -> String {
        match Operation::decode(Some(binding), "B", method, args, data.to_vec()) {
            Ok(op) => format!("{op:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn calls_decode_by_the_kind_of_binding() {
        let (queue, bucket, table) = (
            Binding::new(Kind::Queue, "jobs"),
            Binding::new(Kind::Bucket, "files"),
            Binding::new(Kind::Table, "users"),
        );
        assert_eq!(
            decode(&queue, "send", r#"{"sizes":[1,2]}"#, b"abc"),
            r#"Send { queue: "jobs", messages: [[97], [98, 99]] }"#
        );
        assert_eq!(decode(&queue, "get", "{}", b""), "error: binding B has no method get");
        assert_eq!(decode(&bucket, "send", "{}", b""), "error: binding B has no method send");
        assert_eq!(
            decode(&table, "put", r#"{"key":"ada","value":"{}"}"#, b""),
            r#"PutRecord { table: "users", key: "ada", value: "{}" }"#
        );
        assert_eq!(
            Operation::decode(None, "X", "get", "{}", Vec::new()).unwrap_err().to_string(),
            "binding X has no method get"
        );
        // A read-only binding (a read grant) reads and lists, and writes nothing.
        let read_only = Binding { access: Access::Read, ..Binding::new(Kind::Bucket, "files") };
        assert_eq!(
            decode(&read_only, "get", r#"{"key":"a"}"#, b""),
            r#"Get { bucket: "files", key: "a" }"#
        );
        for method in ["put", "delete"] {
            assert_eq!(
                decode(&read_only, method, r#"{"key":"a"}"#, b""),
                format!("error: binding B is read-only: it has no method {method}")
            );
        }
        let read_only = Binding { access: Access::Read, ..Binding::new(Kind::Table, "users") };
        assert!(decode(&read_only, "put", r#"{"key":"a","value":"1"}"#, b"").contains("read-only"));
        assert!(decode(&read_only, "list", "{}", b"").starts_with("ListRecords"));
    }

    #[test]
    fn bad_calls_are_refused_with_a_reason() {
        let (queue, bucket, table) = (
            Binding::new(Kind::Queue, "jobs"),
            Binding::new(Kind::Bucket, "files"),
            Binding::new(Kind::Table, "users"),
        );
        assert_eq!(
            decode(&queue, "send", r#"{"sizes":[18446744073709551615,2]}"#, b"ab"),
            "error: the message sizes do not add up"
        );
        assert_eq!(
            decode(&queue, "send", r#"{"sizes":[4]}"#, b"abc"),
            "error: the message sizes do not add up"
        );
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        let args = format!(r#"{{"sizes":[{}]}}"#, big.len());
        assert_eq!(
            decode(&queue, "send", &args, &big),
            format!("error: a message is at most {MAX_MESSAGE_BYTES} bytes")
        );
        assert_eq!(
            decode(&bucket, "put", r#"{"key":""}"#, b"x"),
            "error: a key is 1 to 1024 bytes long"
        );
        let long = format!(r#"{{"key":"{}"}}"#, "k".repeat(1025));
        assert_eq!(decode(&bucket, "put", &long, b"x"), "error: a key is 1 to 1024 bytes long");
        assert_eq!(decode(&table, "put", r#"{"key":"a"}"#, b""), "error: put needs a value");
        assert!(decode(&bucket, "get", "not json", b"").starts_with("error: bad arguments: "));
    }

    proptest! {
        /// Whatever the arguments and data, a call decodes or is refused; it never panics.
        #[test]
        fn any_call_decodes_or_is_refused(
            kind in 0..3u8,
            method in "(send|put|get|delete|list|x)",
            args in r#"\{("(sizes|key|value|prefix|limit|cursor|contentType)": ?(\[[0-9, ]*\]|"[a-z]*"|[0-9]+|null),?)*\}?"#,
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let binding = match kind {
                0 => Binding::new(Kind::Queue, "q"),
                1 => Binding::new(Kind::Bucket, "b"),
                _ => Binding::new(Kind::Table, "t"),
            };
            let _ = Operation::decode(Some(&binding), "B", &method, &args, data);
        }
    }
}

//! The admin API's buckets and tables: objects and records listed, read, written and
//! deleted, each change firing the triggers that match it.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{json, read, text, valid_queue, Answer, Checked, Shared};
use crate::backend::{MAX_OBJECT_BYTES, MAX_RECORD_BYTES};
use crate::control::AdminError;

/// `?prefix=&limit=&cursor=` of a listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl ListParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(1000).clamp(1, 1000)
    }
}

pub(super) async fn list_objects(
    State(admin): Shared,
    Checked(Path(bucket)): Checked<Path<String>>,
    Checked(Query(asked)): Checked<Query<ListParams>>,
) -> Answer {
    valid_queue(&bucket)?;
    let storage = admin.control.storage();
    let page = storage.list(&bucket, &asked.prefix, asked.limit(), asked.cursor.as_deref()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "objects": page.items, "cursor": page.cursor })))
}

pub(super) async fn put_object(
    State(admin): Shared,
    Checked(Path((bucket, key))): Checked<Path<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    valid_queue(&bucket)?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let data = read(&headers, body, MAX_OBJECT_BYTES as u64).await?;
    let meta = admin.control.storage().put(&bucket, &key, data, &content_type).await?;
    Ok(json(StatusCode::CREATED, &meta))
}

pub(super) async fn get_object(
    State(admin): Shared,
    Checked(Path((bucket, key))): Checked<Path<(String, String)>>,
) -> Answer {
    valid_queue(&bucket)?;
    let Some((meta, data)) = admin.control.storage().get(&bucket, &key).await? else {
        return Err(AdminError::NotFound("no such object".into()));
    };
    let headers = [
        (http::header::CONTENT_TYPE, meta.content_type),
        (http::header::ETAG, format!("\"{}\"", meta.etag)),
    ];
    Ok((headers, data).into_response())
}

pub(super) async fn delete_object(
    State(admin): Shared,
    Checked(Path((bucket, key))): Checked<Path<(String, String)>>,
) -> Answer {
    valid_queue(&bucket)?;
    if !admin.control.storage().delete(&bucket, &key).await? {
        return Err(AdminError::NotFound("no such object".into()));
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": true })))
}

pub(super) async fn list_records(
    State(admin): Shared,
    Checked(Path(table)): Checked<Path<String>>,
    Checked(Query(asked)): Checked<Query<ListParams>>,
) -> Answer {
    valid_queue(&table)?;
    let storage = admin.control.storage();
    let page =
        storage.list_records(&table, &asked.prefix, asked.limit(), asked.cursor.as_deref()).await?;
    let records: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|(k, v)| {
            let value = serde_json::from_str::<serde_json::Value>(v).unwrap_or_default();
            serde_json::json!({ "key": k, "value": value })
        })
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "records": records, "cursor": page.cursor })))
}

pub(super) async fn put_record(
    State(admin): Shared,
    Checked(Path((table, key))): Checked<Path<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    valid_queue(&table)?;
    let data = read(&headers, body, MAX_RECORD_BYTES as u64).await?;
    let value: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| AdminError::BadRequest(format!("a record is JSON: {e}")))?;
    admin.control.storage().put_record(&table, &key, value.to_string()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "written": true })))
}

pub(super) async fn get_record(
    State(admin): Shared,
    Checked(Path((table, key))): Checked<Path<(String, String)>>,
) -> Answer {
    valid_queue(&table)?;
    let Some(text_json) = admin.control.storage().get_record(&table, &key).await? else {
        return Err(AdminError::NotFound("no such record".into()));
    };
    Ok(text("application/json", text_json))
}

pub(super) async fn delete_record(
    State(admin): Shared,
    Checked(Path((table, key))): Checked<Path<(String, String)>>,
) -> Answer {
    valid_queue(&table)?;
    if !admin.control.storage().delete_record(&table, &key).await? {
        return Err(AdminError::NotFound("no such record".into()));
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": true })))
}

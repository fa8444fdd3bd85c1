//! The admin API: HTTP/JSON on the admin listener (loopback by default), every `/v1` route
//! behind a bearer token compared in constant time. Routes are in docs/api.md.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::local::queues::Encoding;
use crate::control::{AdminError, Control, ManualInvoke};

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The dashboard: one static page reading the JSON and event-stream endpoints.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the admin listeners share.
pub struct Admin {
    pub control: Arc<Control>,
    /// The bearer token; `None` refuses every `/v1` request.
    pub token: Option<String>,
    pub max_bundle_size: u64,
    /// Set once every listener is bound.
    pub membership: Arc<dyn crate::backend::Membership>,
}

/// Accepts admin connections on `listener` until `stop` is cancelled.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let (stream, _remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Binds every admin address; returns the bound addresses.
pub async fn bind(
    addrs: &[SocketAddr],
) -> Result<Vec<(SocketAddr, TcpListener)>, (SocketAddr, std::io::Error)> {
    let mut out = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await.map_err(|e| (*addr, e))?;
        let bound = listener.local_addr().map_err(|e| (*addr, e))?;
        out.push((bound, listener));
    }
    Ok(out)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).expect("responses serialise");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("a valid response")
}

fn text(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .body(full(body))
        .expect("a valid response")
}

fn error(e: &AdminError) -> Response<Body> {
    let mut response = json(
        e.status(),
        &serde_json::json!({ "error": { "code": e.code(), "message": e.to_string() } }),
    );
    if matches!(e, AdminError::Unauthorized) {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    response
}

#[derive(Deserialize)]
struct RollbackBody {
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        match self.route(req).await {
            Ok(response) => response,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(%method, %path, error = %e, "admin request failed");
                }
                error(&e)
            }
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else { return false };
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Lengths differ → unequal; equal lengths are compared without early exit.
        given.as_bytes().ct_eq(token.as_bytes()).into()
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, AdminError> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        match (method.clone(), segments.as_slice()) {
            (Method::GET, ["healthz"]) => return Ok(json(StatusCode::OK, &"ok")),
            (Method::GET, ["readyz"]) => return Ok(json(StatusCode::OK, &"ready")),
            (Method::GET, ["metrics"]) => {
                return Ok(text(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.control.metrics().await,
                ))
            }
            (Method::GET, [""]) => return Ok(text("text/html; charset=utf-8", DASHBOARD)),
            _ => {}
        }
        if segments.first() != Some(&"v1") {
            return Err(AdminError::NotFound(format!("no route {path}")));
        }
        if !self.authorized(&req) {
            return Err(AdminError::Unauthorized);
        }
        if matches!(segments.get(1), Some(&"buckets") | Some(&"tables")) {
            let found = self.objects_route(&method, &segments[1..], req).await?;
            return found.ok_or_else(|| AdminError::NotFound(format!("no route {method} {path}")));
        }
        self.route_v1(req, method, &path).await
    }

    /// The buckets and tables routes; `None` when none matches.
    async fn objects_route(
        &self,
        method: &Method,
        segments: &[&str],
        req: Request<Incoming>,
    ) -> Result<Option<Response<Body>>, AdminError> {
        let control = self.control.clone();
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| {
                AdminError::BadRequest(format!("`{s}` is not valid percent-encoding"))
            })
        };
        let response = match (method.clone(), segments) {
            (Method::GET, ["buckets", bucket, "objects"])
            | (Method::GET, ["tables", bucket, "records"]) => {
                valid_queue(bucket)?;
                let params = ListParams::parse(req.uri().query().unwrap_or(""))?;
                let (bucket, is_bucket) = (bucket.to_string(), segments[0] == "buckets");
                let objects = control.storage();
                let (prefix, limit, cursor) =
                    (&params.prefix, params.limit, params.cursor.as_deref());
                let page = if is_bucket {
                    let page = objects.list(&bucket, prefix, limit, cursor).await?;
                    serde_json::json!({ "objects": page.items, "cursor": page.cursor })
                } else {
                    let page = objects.list_records(&bucket, prefix, limit, cursor).await?;
                    let records: Vec<serde_json::Value> = page.items.iter().map(|(k, v)| {
                        serde_json::json!({ "key": k, "value": serde_json::from_str::<serde_json::Value>(v).unwrap_or_default() })
                    }).collect();
                    serde_json::json!({ "records": records, "cursor": page.cursor })
                };
                json(StatusCode::OK, &page)
            }
            (m, ["buckets", bucket, "objects", key @ ..]) if !key.is_empty() => {
                valid_queue(bucket)?;
                let key = decode(&key.join("/"))?;
                let bucket = bucket.to_string();
                match m {
                    Method::PUT => {
                        let content_type = req
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("application/octet-stream")
                            .to_string();
                        let data = self.body(req, crate::backend::MAX_OBJECT_BYTES as u64).await?;
                        let meta =
                            control.storage().put(&bucket, &key, data, &content_type).await?;
                        json(StatusCode::CREATED, &meta)
                    }
                    Method::GET => {
                        let found = control.storage().get(&bucket, &key).await?;
                        let Some((meta, data)) = found else {
                            return Err(AdminError::NotFound("no such object".into()));
                        };
                        Response::builder()
                            .header(http::header::CONTENT_TYPE, meta.content_type)
                            .header(http::header::ETAG, format!("\"{}\"", meta.etag))
                            .body(full(data))
                            .expect("a valid response")
                    }
                    Method::DELETE => {
                        let deleted = control.storage().delete(&bucket, &key).await?;
                        if !deleted {
                            return Err(AdminError::NotFound("no such object".into()));
                        }
                        json(StatusCode::OK, &serde_json::json!({ "deleted": true }))
                    }
                    _ => return Ok(None),
                }
            }
            (m, ["tables", table, "records", key @ ..]) if !key.is_empty() => {
                valid_queue(table)?;
                let key = decode(&key.join("/"))?;
                let table = table.to_string();
                match m {
                    Method::PUT => {
                        let data = self.body(req, crate::backend::MAX_RECORD_BYTES as u64).await?;
                        let value: serde_json::Value =
                            serde_json::from_slice(&data).map_err(|e| {
                                AdminError::BadRequest(format!("a record is JSON: {e}"))
                            })?;
                        control.storage().put_record(&table, &key, value.to_string()).await?;
                        json(StatusCode::OK, &serde_json::json!({ "written": true }))
                    }
                    Method::GET => {
                        let found = control.storage().get_record(&table, &key).await?;
                        let Some(text) = found else {
                            return Err(AdminError::NotFound("no such record".into()));
                        };
                        text_json(text)
                    }
                    Method::DELETE => {
                        let deleted = control.storage().delete_record(&table, &key).await?;
                        if !deleted {
                            return Err(AdminError::NotFound("no such record".into()));
                        }
                        json(StatusCode::OK, &serde_json::json!({ "deleted": true }))
                    }
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(response))
    }

    async fn route_v1(
        &self,
        req: Request<Incoming>,
        method: Method,
        path: &str,
    ) -> Result<Response<Body>, AdminError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let control = &self.control;
        match (method, &segments[1..]) {
            (Method::GET, ["functions"]) => {
                Ok(json(StatusCode::OK, &serde_json::json!({ "functions": control.list()? })))
            }
            (Method::GET, ["functions", name]) => Ok(json(StatusCode::OK, &control.show(name)?)),
            (Method::PUT, ["functions", name]) => {
                let deployer = req
                    .headers()
                    .get("x-isola-deployer")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown")
                    .chars()
                    .take(200)
                    .collect::<String>();
                let name = name.to_string();
                let bytes = self.body(req, self.max_bundle_size).await?;
                let version = control.deploy(&name, &bytes, &deployer).await?;
                Ok(json(StatusCode::CREATED, &version))
            }
            (Method::DELETE, ["functions", name]) => {
                control.delete(name).await?;
                Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": name })))
            }
            (Method::POST, ["functions", name, "rollback"]) => {
                let name = name.to_string();
                let bytes = self.body(req, 64 * 1024).await?;
                let body: RollbackBody = if bytes.is_empty() {
                    RollbackBody { version: None }
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| {
                        AdminError::BadRequest(format!("expected {{\"version\": N}}: {e}"))
                    })?
                };
                Ok(json(StatusCode::OK, &control.rollback(&name, body.version).await?))
            }
            (Method::GET, ["stats"]) => Ok(json(StatusCode::OK, &control.stats())),
            (Method::GET, ["cluster"]) => {
                let status = self
                    .membership
                    .status()
                    .await
                    .map_err(|e| AdminError::Internal(format!("cluster: {e}")))?;
                Ok(json(StatusCode::OK, &status))
            }
            (Method::GET, ["queues"]) => {
                let out: Vec<serde_json::Value> = control
                    .queue_stats()
                    .await?
                    .into_iter()
                    .map(|(name, stats)| serde_json::json!({ "queue": name, "stats": stats }))
                    .collect();
                Ok(json(StatusCode::OK, &serde_json::json!({ "queues": out })))
            }
            (Method::GET, ["queues", queue]) => {
                valid_queue(queue)?;
                let stats = control.queue_stats().await?.remove(*queue).unwrap_or_default();
                Ok(json(StatusCode::OK, &stats))
            }
            (Method::POST, ["queues", queue, "messages"]) => {
                let queue = queue.to_string();
                valid_queue(&queue)?;
                let bytes = self.body(req, 16 * 1024 * 1024).await?;
                let bodies = message_bodies(&bytes)?;
                let messages = bodies.into_iter().map(String::into_bytes).collect();
                let ids = control.queues().send(&queue, Encoding::Json, messages).await?;
                Ok(json(StatusCode::CREATED, &serde_json::json!({ "ids": ids })))
            }
            (Method::POST, ["functions", name, "invoke"]) => {
                let name = name.to_string();
                let bytes = self.body(req, 1024 * 1024).await?;
                let asked: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| AdminError::BadRequest(format!("expected JSON: {e}")))?;
                let manual = match asked["trigger"].as_str() {
                    Some("cron") => ManualInvoke::Cron,
                    Some("queue") => ManualInvoke::Queue {
                        queue: asked["queue"].as_str().unwrap_or("manual").to_string(),
                        body: asked["body"].clone(),
                    },
                    _ => {
                        return Err(AdminError::BadRequest(
                            "expected {\"trigger\": \"cron\"} or {\"trigger\": \"queue\", \"queue\": ..., \"body\": ...}".into(),
                        ))
                    }
                };
                Ok(json(StatusCode::OK, &control.invoke(&name, manual).await?))
            }
            (Method::GET, ["functions", name, "cron"]) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "runs": control.triggers.cron_runs(name)? }),
            )),
            (Method::GET, ["functions", name, "logs"]) => {
                let params = LogParams::parse(req.uri().query().unwrap_or(""))?;
                self.logs(name, params)
            }
            (Method::GET, ["functions", name, "secrets"]) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "secrets": control.secret_names(name)? }),
            )),
            (Method::PUT, ["functions", name, "secrets", key]) => {
                let (name, key) = (name.to_string(), key.to_string());
                let bytes = self.body(req, 64 * 1024).await?;
                // The value is never echoed, not even in a parse error.
                let body: SecretBody = serde_json::from_slice(&bytes).map_err(|_| {
                    AdminError::BadRequest("expected a JSON body {\"value\": \"...\"}".into())
                })?;
                control.set_secret(&name, &key, &body.value).await?;
                Ok(json(StatusCode::OK, &serde_json::json!({ "set": key })))
            }
            (Method::DELETE, ["functions", name, "secrets", key]) => {
                control.unset_secret(name, key).await?;
                Ok(json(StatusCode::OK, &serde_json::json!({ "unset": key })))
            }
            _ => Err(AdminError::NotFound(format!("no route {} {path}", req.method()))),
        }
    }

    /// A function's log: stored records, or with `follow` an event stream of new ones (after
    /// the stored ones `since` asks for).
    fn logs(&self, name: &str, params: LogParams) -> Result<Response<Body>, AdminError> {
        let store = self.control.logs();
        if !params.follow {
            let records = store
                .query(name, &params.query)
                .map_err(|e| AdminError::Internal(format!("reading the log: {e}")))?;
            return Ok(json(StatusCode::OK, &serde_json::json!({ "records": records })));
        }
        let live = store.subscribe();
        let backlog = match params.query.since {
            Some(_) => store
                .query(name, &params.query)
                .map_err(|e| AdminError::Internal(format!("reading the log: {e}")))?,
            None => Vec::new(),
        };
        let mut first = String::from(": following\n\n");
        for record in backlog {
            first.push_str(&event(&record));
        }
        let name = name.to_string();
        let stream = futures::stream::unfold(
            (Some(first), live, name),
            |(first, mut live, name)| async move {
                if let Some(first) = first {
                    return Some((Ok(Frame::data(Bytes::from(first))), (None, live, name)));
                }
                loop {
                    use tokio::sync::broadcast::error::RecvError;
                    let frame = match tokio::time::timeout(Duration::from_secs(15), live.recv())
                        .await
                    {
                        Err(_) => ": keep-alive\n\n".to_string(),
                        Ok(Ok(record)) if *record.function == *name => event(&record),
                        Ok(Ok(_)) => continue,
                        Ok(Err(RecvError::Lagged(n))) => format!("event: lagged\ndata: {n}\n\n"),
                        Ok(Err(RecvError::Closed)) => return None,
                    };
                    return Some((Ok(Frame::data(Bytes::from(frame))), (None, live, name)));
                }
            },
        );
        Ok(Response::builder()
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(BoxBody::new(StreamBody::new(stream)))
            .expect("a valid response"))
    }

    /// Reads a whole request body of at most `limit` bytes.
    async fn body(&self, req: Request<Incoming>, limit: u64) -> Result<Bytes, AdminError> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(AdminError::TooLarge(limit));
        }
        let limited = Limited::new(req.into_body(), usize::try_from(limit).unwrap_or(usize::MAX));
        match limited.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(AdminError::TooLarge(limit))
            }
            Err(e) => Err(AdminError::BadRequest(format!("the request body was cut off: {e}"))),
        }
    }
}

/// One server-sent event carrying a record.
fn event(record: &crate::observe::logstore::Record) -> String {
    format!("data: {}\n\n", serde_json::to_string(record).expect("records serialise"))
}

/// `?since=&until=&invocation=&kind=&limit=&follow=1`; times as milliseconds since the epoch
/// or RFC 3339.
struct LogParams {
    query: crate::observe::logstore::Query,
    follow: bool,
}

impl LogParams {
    fn parse(query: &str) -> Result<LogParams, AdminError> {
        let mut out =
            LogParams { query: crate::observe::logstore::Query::default(), follow: false };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let time = |v: &str| {
                v.parse::<u64>()
                    .ok()
                    .or_else(|| {
                        humantime::parse_rfc3339_weak(v).ok().map(crate::observe::logstore::millis)
                    })
                    .ok_or_else(|| AdminError::BadRequest(format!("`{key}={v}` is not a time")))
            };
            match key.as_ref() {
                "since" => out.query.since = Some(time(&value)?),
                "until" => out.query.until = Some(time(&value)?),
                "invocation" => out.query.invocation_id = Some(value.into_owned()),
                "kind" => out.query.kind = Some(value.into_owned()),
                "limit" => {
                    out.query.limit = Some(value.parse().map_err(|_| {
                        AdminError::BadRequest(format!("`limit={value}` is not a number"))
                    })?)
                }
                "follow" => out.follow = matches!(value.as_ref(), "1" | "true"),
                other => {
                    return Err(AdminError::BadRequest(format!("unknown parameter `{other}`")))
                }
            }
        }
        Ok(out)
    }
}

fn valid_queue(name: &str) -> Result<(), AdminError> {
    if config::valid_queue_name(name) {
        Ok(())
    } else {
        Err(AdminError::BadRequest(format!("`{name}` is not a valid queue name")))
    }
}

/// `{"body": <json>}` or `{"messages": [{"body": <json>}, ...]}` -> each body's JSON text.
fn message_bodies(bytes: &[u8]) -> Result<Vec<String>, AdminError> {
    let bad = |m: &str| AdminError::BadRequest(m.to_string());
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("expected JSON: {e}")))?;
    let bodies: Vec<&serde_json::Value> = match (&value["body"], value["messages"].as_array()) {
        (serde_json::Value::Null, Some(messages)) => messages
            .iter()
            .map(|m| m.get("body").ok_or_else(|| bad("every message needs a \"body\"")))
            .collect::<Result<_, _>>()?,
        (body, None) if !body.is_null() || value.get("body").is_some() => vec![body],
        _ => return Err(bad("expected {\"body\": ...} or {\"messages\": [{\"body\": ...}]}")),
    };
    let out: Vec<String> = bodies.iter().map(|b| b.to_string()).collect();
    if out.iter().any(|b| b.len() > crate::backend::MAX_MESSAGE_BYTES) {
        return Err(AdminError::BadRequest(format!(
            "a message is larger than {} bytes",
            crate::backend::MAX_MESSAGE_BYTES
        )));
    }
    Ok(out)
}

/// A record's stored JSON text as a response.
fn text_json(json_text: String) -> Response<Body> {
    text("application/json", json_text)
}

/// Decodes `%XX` escapes of a path segment; `None` for invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// `?prefix=&limit=&cursor=` of a listing.
struct ListParams {
    prefix: String,
    limit: usize,
    cursor: Option<String>,
}

impl ListParams {
    fn parse(query: &str) -> Result<ListParams, AdminError> {
        let mut out = ListParams { prefix: String::new(), limit: 1000, cursor: None };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "prefix" => out.prefix = value.into_owned(),
                "cursor" => out.cursor = Some(value.into_owned()),
                "limit" => {
                    out.limit = value
                        .parse::<usize>()
                        .map_err(|_| {
                            AdminError::BadRequest(format!("`limit={value}` is not a number"))
                        })?
                        .clamp(1, 1000)
                }
                other => {
                    return Err(AdminError::BadRequest(format!("unknown parameter `{other}`")))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A queue's POST body of any bytes, or any JSON-like text: bodies or a 400, never a
        /// panic.
        #[test]
        fn any_message_body_is_read_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            text in r#"\{("(body|messages)": ?(\[|\{|null|"x"|1|\[\{"body": ?1\}\]),?)*\}?"#,
        ) {
            let _ = message_bodies(&bytes);
            let _ = message_bodies(text.as_bytes());
        }
    }
}

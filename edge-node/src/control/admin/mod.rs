//! The admin API: HTTP/JSON on the admin listener (loopback by default), an axum router;
//! every `/v1` route behind a bearer token compared in constant time. Routes are in
//! docs/api.md.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use self::storage::{
    delete_object, delete_record, get_object, get_record, list_objects, list_records, put_object,
    put_record,
};

use crate::backend::Encoding;
use crate::control::{AdminError, Control, ManualInvoke};
use crate::observe::logstore::{millis, Query as LogQuery, Record};

mod storage;

/// The dashboard: one static page reading the JSON and event-stream endpoints.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the admin listeners share.
pub struct Admin {
    pub control: Arc<Control>,
    /// The bearer token; `None` refuses every `/v1` request.
    pub token: Option<String>,
    pub max_bundle_size: u64,
    pub membership: Arc<dyn crate::backend::Membership>,
}

pub(super) type Shared = State<Arc<Admin>>;

/// Every route of the admin API.
pub fn router(admin: Arc<Admin>) -> Router {
    let v1 = Router::new()
        .route("/functions", get(list_functions))
        .route("/functions/{name}", get(show_function).put(deploy).delete(delete_function))
        .route("/functions/{name}/rollback", post(rollback))
        .route("/functions/{name}/invoke", post(invoke))
        .route("/functions/{name}/cron", get(cron_runs))
        .route("/functions/{name}/logs", get(logs))
        .route("/functions/{name}/secrets", get(secret_names))
        .route("/functions/{name}/secrets/{key}", put(set_secret).delete(unset_secret))
        .route("/stats", get(stats))
        .route("/cluster", get(cluster))
        .route("/queues", get(queues))
        .route("/queues/{queue}", get(queue))
        .route("/queues/{queue}/messages", post(send))
        .route("/buckets/{bucket}/objects", get(list_objects))
        .route(
            "/buckets/{bucket}/objects/{*key}",
            put(put_object).get(get_object).delete(delete_object),
        )
        .route("/tables/{table}/records", get(list_records))
        .route(
            "/tables/{table}/records/{*key}",
            put(put_record).get(get_record).delete(delete_record),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(admin.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { json(StatusCode::OK, &"ok") }))
        .route("/readyz", get(|| async { json(StatusCode::OK, &"ready") }))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { text("text/html; charset=utf-8", DASHBOARD) }))
        .nest("/v1", v1)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(admin)
}

/// Accepts admin connections on `listener` until `stop` is cancelled; over TLS when `tls`
/// is given (a handshake must end within 10 s).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
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
        let (router, builder, stop, tls) =
            (router.clone(), builder.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                router.clone().oneshot(req.map(Body::new))
            });
            let served = async {
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(tls) => {
                        let handshake = tokio::time::timeout(HANDSHAKE, tls.accept(stream));
                        let Ok(Ok(stream)) = handshake.await else { return };
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            };
            tokio::select! {
                _ = served => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// How long an admin client has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

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

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec_pretty(value).expect("responses serialise");
    (status, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn text(content_type: &'static str, body: impl Into<Bytes>) -> Response {
    ([(http::header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let mut response = json(
            self.status(),
            &serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } }),
        );
        if matches!(self, AdminError::Unauthorized) {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(super) type Answer = Result<Response, AdminError>;

async fn no_route(method: Method, uri: Uri) -> AdminError {
    AdminError::NotFound(format!("no route {method} {}", uri.path()))
}

/// Lets a `/v1` request through only with the bearer token.
async fn authorize(State(admin): Shared, req: Request, next: Next) -> Answer {
    let Some(token) = &admin.token else { return Err(AdminError::Unauthorized) };
    // The scheme is case-insensitive (RFC 7235); the token is not.
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token);
    // Lengths differ → unequal; equal lengths are compared without early exit.
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return Err(AdminError::Unauthorized);
    }
    Ok(next.run(req).await)
}

/// An extractor whose rejection is answered as our 400 like every other: path parameters
/// (`Checked<Path<T>>`, percent-decoded) and query strings (`Checked<Query<T>>`, an unknown
/// or malformed parameter refused).
pub(super) struct Checked<E>(E);

impl<E, S> FromRequestParts<S> for Checked<E>
where
    E: FromRequestParts<S>,
    E::Rejection: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        match E::from_request_parts(parts, state).await {
            Ok(value) => Ok(Checked(value)),
            Err(e) => Err(AdminError::BadRequest(e.to_string())),
        }
    }
}

/// Reads a whole request body of at most `limit` bytes.
async fn read(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, AdminError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(AdminError::TooLarge(limit));
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(AdminError::TooLarge(limit)),
        Err(e) => Err(AdminError::BadRequest(format!("the request body was cut off: {e}"))),
    }
}

async fn metrics(State(admin): Shared) -> Response {
    text(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        admin.control.metrics().await,
    )
}

// ---- functions ------------------------------------------------------------------------------

async fn list_functions(State(admin): Shared) -> Answer {
    Ok(json(StatusCode::OK, &serde_json::json!({ "functions": admin.control.list()? })))
}

async fn show_function(State(admin): Shared, Checked(Path(name)): Checked<Path<String>>) -> Answer {
    Ok(json(StatusCode::OK, &admin.control.show(&name)?))
}

async fn deploy(
    State(admin): Shared,
    Checked(Path(name)): Checked<Path<String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let deployer: String = headers
        .get("x-isola-deployer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .chars()
        .take(200)
        .collect();
    let bytes = read(&headers, body, admin.max_bundle_size).await?;
    let (version, unchanged) = admin.control.deploy(&name, &bytes, &deployer).await?;
    // The active version again: nothing was made (200, `unchanged`), as PUT of the same thing.
    let status = if unchanged { StatusCode::OK } else { StatusCode::CREATED };
    let mut answer = serde_json::to_value(&version).unwrap_or_default();
    answer["unchanged"] = serde_json::Value::Bool(unchanged);
    Ok(json(status, &answer))
}

async fn delete_function(
    State(admin): Shared,
    Checked(Path(name)): Checked<Path<String>>,
) -> Answer {
    admin.control.delete(&name).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": name })))
}

#[derive(Deserialize)]
struct RollbackBody {
    version: Option<u64>,
}

async fn rollback(
    State(admin): Shared,
    Checked(Path(name)): Checked<Path<String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bytes = read(&headers, body, 64 * 1024).await?;
    let body: RollbackBody = if bytes.is_empty() {
        RollbackBody { version: None }
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| AdminError::BadRequest(format!("expected {{\"version\": N}}: {e}")))?
    };
    Ok(json(StatusCode::OK, &admin.control.rollback(&name, body.version).await?))
}

async fn invoke(
    State(admin): Shared,
    Checked(Path(name)): Checked<Path<String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bytes = read(&headers, body, 1024 * 1024).await?;
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
                "expected {\"trigger\": \"cron\"} or {\"trigger\": \"queue\", \"queue\": ..., \"body\": ...}"
                    .into(),
            ))
        }
    };
    Ok(json(StatusCode::OK, &admin.control.invoke(&name, manual).await?))
}

async fn cron_runs(State(admin): Shared, Checked(Path(name)): Checked<Path<String>>) -> Answer {
    let runs = admin.control.triggers.cron_runs(&name)?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "runs": runs })))
}

async fn secret_names(State(admin): Shared, Checked(Path(name)): Checked<Path<String>>) -> Answer {
    let secrets = admin.control.secret_names(&name)?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "secrets": secrets })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

async fn set_secret(
    State(admin): Shared,
    Checked(Path((name, key))): Checked<Path<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bytes = read(&headers, body, 64 * 1024).await?;
    // The value is never echoed, not even in a parse error.
    let body: SecretBody = serde_json::from_slice(&bytes)
        .map_err(|_| AdminError::BadRequest("expected a JSON body {\"value\": \"...\"}".into()))?;
    admin.control.set_secret(&name, &key, &body.value).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "set": key })))
}

async fn unset_secret(
    State(admin): Shared,
    Checked(Path((name, key))): Checked<Path<(String, String)>>,
) -> Answer {
    admin.control.unset_secret(&name, &key).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "unset": key })))
}

// ---- node -----------------------------------------------------------------------------------

async fn stats(State(admin): Shared) -> Answer {
    Ok(json(StatusCode::OK, &admin.control.stats()))
}

async fn cluster(State(admin): Shared) -> Answer {
    let status = admin
        .membership
        .status()
        .await
        .map_err(|e| AdminError::Internal(format!("cluster: {e}")))?;
    Ok(json(StatusCode::OK, &status))
}

// ---- logs -----------------------------------------------------------------------------------

/// `?since=&until=&invocation=&kind=&limit=&follow=1`; times as milliseconds since the epoch
/// or RFC 3339.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    since: Option<String>,
    until: Option<String>,
    invocation: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    follow: Option<String>,
}

impl LogParams {
    fn query(&self) -> Result<LogQuery, AdminError> {
        let time = |key: &str, v: &Option<String>| -> Result<Option<u64>, AdminError> {
            let Some(v) = v else { return Ok(None) };
            v.parse::<u64>()
                .ok()
                .or_else(|| humantime::parse_rfc3339_weak(v).ok().map(millis))
                .map(Some)
                .ok_or_else(|| AdminError::BadRequest(format!("`{key}={v}` is not a time")))
        };
        Ok(LogQuery {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            invocation_id: self.invocation.clone(),
            kind: self.kind.clone(),
            limit: self.limit,
        })
    }
}

/// A function's log: stored records, or with `follow` an event stream of new ones (after the
/// stored ones `since` asks for).
async fn logs(
    State(admin): Shared,
    Checked(Path(name)): Checked<Path<String>>,
    Checked(Query(params)): Checked<Query<LogParams>>,
) -> Answer {
    let store = admin.control.logs();
    let query = params.query()?;
    let read_failed = |e: std::io::Error| AdminError::Internal(format!("reading the log: {e}"));
    if !params.follow.as_deref().is_some_and(|f| f == "1" || f == "true") {
        let records = store.query(&name, &query).map_err(read_failed)?;
        return Ok(json(StatusCode::OK, &serde_json::json!({ "records": records })));
    }
    let live = store.subscribe();
    let backlog = match query.since {
        Some(_) => store.query(&name, &query).map_err(read_failed)?,
        None => Vec::new(),
    };
    let first = std::iter::once(Event::default().comment("following"))
        .chain(backlog.iter().map(event).collect::<Vec<_>>())
        .map(Ok::<_, Infallible>);
    let stream = futures::stream::unfold((live, name), |(mut live, name)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = match live.recv().await {
                Ok(record) if *record.function == *name => event(&record),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (live, name)));
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::iter(first), stream);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response();
    response
        .headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One server-sent event carrying a record.
fn event(record: &Record) -> Event {
    Event::default().data(serde_json::to_string(record).expect("records serialise"))
}

// ---- queues ---------------------------------------------------------------------------------

async fn queues(State(admin): Shared) -> Answer {
    let out: Vec<serde_json::Value> = admin
        .control
        .queue_stats()
        .await?
        .into_iter()
        .map(|(name, stats)| serde_json::json!({ "queue": name, "stats": stats }))
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "queues": out })))
}

async fn queue(State(admin): Shared, Checked(Path(queue)): Checked<Path<String>>) -> Answer {
    valid_queue(&queue)?;
    let stats = admin.control.queue_stats().await?.remove(&queue).unwrap_or_default();
    Ok(json(StatusCode::OK, &stats))
}

async fn send(
    State(admin): Shared,
    Checked(Path(queue)): Checked<Path<String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    valid_queue(&queue)?;
    let bytes = read(&headers, body, 16 * 1024 * 1024).await?;
    let messages = message_bodies(&bytes)?.into_iter().map(String::into_bytes).collect();
    let ids = admin.control.queues().send(&queue, Encoding::Json, messages).await?;
    Ok(json(StatusCode::CREATED, &serde_json::json!({ "ids": ids })))
}

/// A bucket, table or queue name as edge.toml takes it.
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

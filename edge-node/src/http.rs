//! The HTTP front: accepts connections, routes each request to its function and turns the
//! invocation's outcome into a response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use js_runtime::{Failure, Outcome};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{request_body, OutBody};
use crate::functions::Function;
use crate::router::Router;

/// The functions being served and the table that routes to them; swapped whole on reload.
pub struct Site {
    pub functions: Vec<Function>,
    pub router: Router,
}

impl Site {
    pub fn new(functions: Vec<Function>) -> Site {
        let router = Router::new(
            functions.iter().enumerate().map(|(i, f)| (i, f.spec.config.routes.as_slice())),
        );
        Site { functions, router }
    }
}

pub struct App {
    pub site: ArcSwap<Site>,
}

/// Accepts connections until `stop` is cancelled, then lets open connections finish their
/// requests within `grace`.
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken, grace: Duration) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&app, req, remote).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The error body every failure answers with.
fn failure_response(outcome: Outcome, request_id: &str) -> Response<OutBody> {
    let status = outcome.http_status().unwrap_or(500);
    let body = serde_json::json!({ "error": outcome.as_str(), "request_id": request_id });
    let mut response = Response::new(OutBody::full(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn bad_request(message: &str, request_id: &str) -> Response<OutBody> {
    let body =
        serde_json::json!({ "error": "bad_request", "message": message, "request_id": request_id });
    let mut response = Response::new(OutBody::full(body.to_string()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The host a request was sent to, without the port: the `Host` header (HTTP/1.1) or the
/// URI's authority (HTTP/2).
fn request_host(req: &Request<Incoming>) -> Option<String> {
    let authority = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.to_string(),
    };
    Some(authority)
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split(']').next().map_or(authority, |h| &authority[..h.len() + 1]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

async fn handle(app: &App, req: Request<Incoming>, remote: SocketAddr) -> Response<OutBody> {
    let request_id = new_request_id();
    let mut response = route(app, req, &request_id, remote).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn route(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
    remote: SocketAddr,
) -> Response<OutBody> {
    let Some(authority) = request_host(&req) else {
        return bad_request("the request names no host", request_id);
    };
    let site = app.site.load_full();
    let path = req.uri().path().to_string();
    let Some(index) = site.router.find(strip_port(&authority), &path) else {
        return failure_response(Outcome::NotFound, request_id);
    };
    let function = &site.functions[index];
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{authority}{path_and_query}");
    let (mut parts, incoming) = req.into_parts();
    parts.uri = match url.parse() {
        Ok(uri) => uri,
        Err(_) => return bad_request("the request URL is malformed", request_id),
    };
    let request = Request::from_parts(parts, request_body(incoming));
    tracing::debug!(%remote, function = %function.spec.config.name, %request_id, %path, "invoke");
    match function.invoke(Arc::from(request_id), request).await {
        Ok(response) => response.map(OutBody::from),
        Err(Failure { outcome, message }) => {
            if outcome == Outcome::Internal {
                tracing::error!(function = %function.spec.config.name, %request_id, %message, "invocation failed");
            }
            failure_response(outcome, request_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}

//! The HTTP front: accepts connections, routes each request to its function and turns the
//! invocation's outcome into a response.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use config::HttpConfig;
use http::{header, HeaderValue, Request, Response, StatusCode};
use js_runtime::{Failure, Outcome};

use crate::front::body::{request_body, OutBody};
use crate::front::router::Router;
use crate::front::websocket::{self, Sockets};
use crate::functions::Function;
use crate::observe::telemetry::Telemetry;
use crate::observe::trace::TraceParent;
use tracing::Instrument;

/// The functions being served and the table that routes to them; swapped whole on reload.
pub struct Site {
    pub functions: Vec<Arc<Function>>,
    pub router: Router,
}

impl Site {
    pub fn new(functions: Vec<Arc<Function>>) -> Site {
        let router =
            Router::new(functions.iter().enumerate().map(|(i, f)| (i, f.config.routes.as_slice())));
        Site { functions, router }
    }
}

pub struct App {
    pub site: ArcSwap<Site>,
    /// The request limits of `[http]`.
    pub limits: HttpConfig,
    pub telemetry: Arc<Telemetry>,
    /// The WebSockets open, and their settings.
    pub sockets: Arc<Sockets>,
}

impl App {
    /// Starts an isolate for the function serving `host`, if it has none: called with the
    /// TLS ClientHello's server name, so the isolate is ready when the request arrives.
    pub fn prewarm(&self, host: &str) {
        let site = self.site.load_full();
        let Some(index) = site.router.find(host, "/") else { return };
        let function = &site.functions[index];
        if function.has_isolate() || !function.is_ready() {
            return;
        }
        tokio::spawn(async move { site.functions[index].prewarm().await });
    }
}

/// How a connection reached the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub tls: bool,
    /// The `Alt-Svc` value advertising HTTP/3 on TLS listeners (`h3=":8443"`), if served.
    pub alt_svc: Option<HeaderValue>,
}

impl Protocol {
    pub fn plain() -> Protocol {
        Protocol { tls: false, alt_svc: None }
    }
    pub fn tls(alt_svc: Option<HeaderValue>) -> Protocol {
        Protocol { tls: true, alt_svc }
    }
}

/// Made once, not parsed from a string on every response.
const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

thread_local! {
    /// The random part of this thread's request ids, drawn once; each id adds a count to it.
    static ID_RANDOM: std::cell::Cell<(u16, u64)> = std::cell::Cell::new({
        let random = uuid::Uuid::new_v4().as_u64_pair();
        (random.0 as u16, random.1)
    });
}

/// A UUIDv7 (time-ordered): the millisecond, then a random part drawn once per thread and
/// counted up per id, so ids stay unique without drawing random bytes or taking a lock for
/// each request.
fn new_request_id() -> Arc<str> {
    let (high, low) = ID_RANDOM.with(|random| {
        let (high, low) = random.get();
        random.set((high, low.wrapping_add(1)));
        (high, low)
    });
    let mut rest = [0u8; 10];
    rest[..2].copy_from_slice(&high.to_be_bytes());
    rest[2..].copy_from_slice(&low.to_be_bytes());
    let millis = crate::observe::logstore::millis(std::time::SystemTime::now());
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    Arc::from(&*id.simple().encode_lower(&mut text))
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
    if outcome == Outcome::LoadShed {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The error answer of `dev` (`[http] error_detail`): the failure's message and stack, as an
/// HTML page for a browser, else in the JSON body.
fn detailed_failure(
    outcome: Outcome,
    request_id: &str,
    message: &str,
    html: bool,
) -> Response<OutBody> {
    let mut response = failure_response(outcome, request_id);
    if html {
        let escape = |text: &str| {
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let page = format!(
            "<!doctype html><meta charset=\"utf-8\"><title>{outcome}</title>\
             <style>body{{font:15px system-ui;margin:2em}}pre{{background:#fee;padding:1em;overflow:auto}}</style>\
             <h1>{outcome}</h1><pre>{message}</pre><p>request {request_id}</p>",
            outcome = outcome.as_str(),
            message = escape(message),
            request_id = escape(request_id),
        );
        *response.body_mut() = OutBody::full(page);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    } else {
        let body = serde_json::json!({ "error": outcome.as_str(), "message": message, "request_id": request_id });
        *response.body_mut() = OutBody::full(body.to_string());
    }
    response
}

/// A request refused before it reached a function (the client's fault: 4xx).
fn refuse(status: StatusCode, error: &str, message: &str, request_id: &str) -> Response<OutBody> {
    let body = serde_json::json!({ "error": error, "message": message, "request_id": request_id });
    let mut response = Response::new(OutBody::full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The host a request was sent to, without the port: the `Host` header (HTTP/1.1) or the
/// URI's authority (HTTP/2).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(header::HOST)?.to_str().ok(),
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split(']').next().map_or(authority, |h| &authority[..h.len() + 1]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

pub async fn handle<B>(
    app: &App,
    req: Request<B>,
    remote: SocketAddr,
    protocol: Protocol,
) -> Response<OutBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + 'static,
{
    let request_id = new_request_id();
    let head = req.method() == http::Method::HEAD;
    let alt_svc =
        if req.version() == http::Version::HTTP_3 { None } else { protocol.alt_svc.clone() };
    let mut response = match check_limits(&app.limits, &req, &request_id) {
        Some(refused) => refused,
        None => route(app, req, &request_id, remote, protocol).await,
    };
    if head {
        // A HEAD response has no body on any protocol; keep the length the GET would have.
        let length = match response.body() {
            OutBody::Full(Some(bytes)) => Some(bytes.len() as u64),
            OutBody::Stream(_, _, length) => *length,
            OutBody::Full(None) => None,
        };
        if let Some(length) = length {
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        *response.body_mut() = OutBody::Full(None);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    if let Some(alt_svc) = alt_svc {
        response.headers_mut().insert(header::ALT_SVC, alt_svc);
    }
    response
}

/// The request limits of `[http]` that can be checked from the head alone.
fn check_limits<B>(
    limits: &HttpConfig,
    req: &Request<B>,
    request_id: &str,
) -> Option<Response<OutBody>> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target as u64 > limits.max_url_length {
        let message = format!("the URL is longer than {} bytes", limits.max_url_length);
        return Some(refuse(StatusCode::URI_TOO_LONG, "uri_too_long", &message, request_id));
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers as u64 > limits.max_header_size || req.headers().len() > limits.max_headers {
        let message = format!(
            "the headers are larger than {} bytes or more than {} fields",
            limits.max_header_size, limits.max_headers
        );
        return Some(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &message,
            request_id,
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_size) {
        return Some(body_too_large(limits, request_id));
    }
    None
}

fn body_too_large(limits: &HttpConfig, request_id: &str) -> Response<OutBody> {
    let message = format!("the body is larger than {} bytes", limits.max_body_size);
    refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &message, request_id)
}

async fn route<B>(
    app: &App,
    req: Request<B>,
    request_id: &Arc<str>,
    remote: SocketAddr,
    protocol: Protocol,
) -> Response<OutBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + 'static,
{
    let Some(authority) = request_host(&req) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request names no host",
            request_id,
        );
    };
    let site = app.site.load_full();
    let Some(index) = site.router.find(strip_port(authority), req.uri().path()) else {
        app.telemetry.unrouted();
        return failure_response(Outcome::NotFound, request_id);
    };
    let function = &site.functions[index];
    if !function.serves_here() {
        let regions = function.config.regions.join(", ");
        let message = format!(
            "`{}` runs only in the regions {regions}; this node is elsewhere",
            function.config.name
        );
        let mut response =
            refuse(StatusCode::MISDIRECTED_REQUEST, "wrong_region", &message, request_id);
        if let Ok(value) = HeaderValue::from_str(&regions) {
            response.headers_mut().insert("x-isola-regions", value);
        }
        return response;
    }
    // The absolute URL the function sees, from parts hyper has parsed already.
    let mut uri = http::uri::Parts::default();
    uri.scheme =
        Some(if protocol.tls { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
    uri.authority = http::uri::Authority::try_from(authority).ok();
    uri.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let rooted = uri.path_and_query.as_ref().is_some_and(|p| p.as_str().starts_with('/'));
    let mut req = req;
    let upgrade = websocket::take(&mut req);
    if upgrade.is_some() && app.sockets.open.load(Ordering::Relaxed) >= app.sockets.max_open {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_websockets",
            "the node has as many WebSockets open as it may",
            request_id,
        );
    }
    let (mut parts, incoming) = req.into_parts();
    let wants_html = app.limits.error_detail
        && parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    let client = client_address(&mut parts.headers, remote.ip(), &app.limits.trusted_proxies);
    parts.headers.insert(CF_CONNECTING_IP, address_header(client));
    parts.uri = match http::Uri::from_parts(uri) {
        Ok(uri) if rooted => uri,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request URL is malformed",
                request_id,
            )
        }
    };
    let bytes_in = function.meters.bytes_in.clone();
    let bytes_out = function.meters.bytes_out.clone();
    let (body, overflowed) = request_body(incoming, app.limits.max_body_size, bytes_in);
    let traced = parts.headers.get(TRACEPARENT).and_then(TraceParent::parse);
    let mut request = Request::from_parts(parts, body);
    let span = tracing::debug_span!("request", %request_id, function = %function.config.name, protocol = ?request.version());
    if let Some(incoming) = traced {
        // The caller's trace continues through this span into the function's fetches.
        let own = crate::observe::trace::continue_trace(&span, &incoming);
        request.headers_mut().insert(TRACEPARENT, incoming.child(own));
    }
    let _entered = span.enter();
    tracing::debug!(%remote, path = request.uri().path(), "invoke");
    drop(_entered);
    // One await of one future: two (with and without the span) would each take room in this
    // future, which is moved whole on every request.
    let invoked = function.invoke(request_id.clone(), request).instrument(span).await;
    match invoked {
        Ok(response) => match response.into_parts() {
            (head, js_runtime::ResponseBody::WebSocket(ends)) => match upgrade {
                Some(upgrade) => {
                    let meters = app.telemetry.socket_meters(&function.config.name);
                    websocket::accept(upgrade, head, ends, app.sockets.clone(), meters)
                }
                None => {
                    function.log_error(
                        "the function answered 101 with a WebSocket to a request that is no WebSocket upgrade".into(),
                    );
                    failure_response(Outcome::Exception, request_id)
                }
            },
            (head, body) => Response::from_parts(head, OutBody::counted(body, bytes_out)),
        },
        Err(_) if overflowed.is_some_and(|o| o.load(Ordering::Relaxed)) => {
            body_too_large(&app.limits, request_id)
        }
        Err(Failure { outcome, message }) => {
            if outcome == Outcome::Internal {
                tracing::error!(function = %function.config.name, %request_id, %message, "invocation failed");
            }
            if app.limits.error_detail {
                return detailed_failure(outcome, request_id, &message, wants_html);
            }
            failure_response(outcome, request_id)
        }
    }
}

/// W3C trace context.
const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");

/// The client's address as the function sees it (`CF-Connecting-IP`, `request.cf.clientIp`).
const CF_CONNECTING_IP: header::HeaderName = header::HeaderName::from_static("cf-connecting-ip");
const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

thread_local! {
    /// The last address made into a header value on this thread: a connection's requests (and
    /// a client's connections) reuse it.
    static ADDRESS_HEADER: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `ip` as a header value.
fn address_header(ip: std::net::IpAddr) -> HeaderValue {
    ADDRESS_HEADER.with(|cached| {
        let mut cached = cached.borrow_mut();
        match &*cached {
            Some((at, value)) if *at == ip => value.clone(),
            _ => {
                let value = HeaderValue::try_from(ip.to_string())
                    .expect("an IP address is a valid header value");
                *cached = Some((ip, value.clone()));
                value
            }
        }
    })
}

/// Whether `ip` is in `[http] trusted_proxies`.
pub fn is_trusted_proxy(trusted: &[ipnet::IpNet], ip: &std::net::IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address
/// of `X-Forwarded-For` that is not a trusted proxy. A peer that is not trusted cannot say
/// who the client is: its `X-Forwarded-For` and `Forwarded` are dropped (and the caller's
/// `CF-Connecting-IP` replaces its own).
fn client_address(
    headers: &mut http::HeaderMap,
    peer: std::net::IpAddr,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| is_trusted_proxy(trusted, ip);
    if !is_trusted(&peer) {
        headers.remove(header::FORWARDED);
        headers.remove(X_FORWARDED_FOR);
        return peer;
    }
    let mut client = peer;
    let forwarded = headers.get_all(X_FORWARDED_FOR).iter().rev();
    for hop in forwarded.flat_map(|v| v.to_str().unwrap_or("").rsplit(',')) {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::{client_address, new_request_id, strip_port};

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = |xff: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h.insert("cf-connecting-ip", "6.6.6.6".parse().unwrap());
            h
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // A client claiming another address through the headers is not believed.
        let mut h = headers(&["1.2.3.4"]);
        assert_eq!(client_address(&mut h, ip("203.0.113.9"), &trusted), ip("203.0.113.9"));
        assert!(h.get("x-forwarded-for").is_none());
        // Through trusted proxies: the last address not a proxy.
        let mut h = headers(&["6.6.6.6, 198.51.100.7, 10.0.0.3"]);
        assert_eq!(client_address(&mut h, ip("10.0.0.2"), &trusted), ip("198.51.100.7"));
        let mut h = headers(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(client_address(&mut h, ip("10.0.0.2"), &trusted), ip("198.51.100.7"));
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(client_address(&mut headers(&[]), ip("10.0.0.2"), &trusted), ip("10.0.0.2"));
        let mut h = headers(&["not an address"]);
        assert_eq!(client_address(&mut h, ip("10.0.0.2"), &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn request_ids_are_distinct_time_ordered_uuid_v7s() {
        let ids: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).map(|_| new_request_id()).collect::<Vec<_>>()))
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let now = crate::observe::logstore::millis(std::time::SystemTime::now());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 32, "{id}");
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(now.abs_diff(millis) < 60_000, "{id} is not stamped with the time");
        }
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}

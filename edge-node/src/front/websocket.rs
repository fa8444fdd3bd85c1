//! WebSockets a function accepts: the upgrade request (HTTP/1.1 `Upgrade: websocket`, or
//! HTTP/2 extended CONNECT, RFC 8441) reaches the function as a GET with `Upgrade: websocket`;
//! when it answers `101` with a socket, the node completes the upgrade and bridges the socket
//! to the isolate's channels with tokio-tungstenite, which does the framing, reassembles
//! fragments, answers pings and the close handshake. The node closes a socket idle past
//! `[http] websocket_idle_timeout` (1001) and one whose message is over
//! `[http] websocket_max_message` (1009).
//!
//! tokio-tungstenite rather than fastwebsockets (Deno's): it is a `Stream` and a `Sink`, so the
//! bridge is one `select!` over cancel-safe futures, and it applies the protocol's rules
//! (fragments, control frames, close) itself. Neither offers `permessage-deflate`, so the node
//! declines it (the handshake's answer names no extension, which RFC 7692 allows).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use js_runtime::{SocketEnds, SocketIn};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::front::body::OutBody;

/// An upgrade request's handle on its connection, taken before the request goes on.
pub struct Upgrade {
    on: OnUpgrade,
    /// HTTP/1.1's `Sec-WebSocket-Key`; `None` over HTTP/2, which has no key.
    key: Option<HeaderValue>,
}

/// The node's WebSocket settings and its count of open sockets.
pub struct Sockets {
    pub open: AtomicUsize,
    pub max_open: usize,
    pub max_message: usize,
    pub idle_timeout: Duration,
}

/// One function's WebSocket meters.
#[derive(Clone)]
pub struct SocketMeters {
    pub open: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// Takes the upgrade handle of a request for a WebSocket, if it is one, and makes an HTTP/2
/// extended CONNECT look like the HTTP/1.1 upgrade (GET, `Upgrade: websocket`) a function
/// checks for.
pub fn take<B>(req: &mut Request<B>) -> Option<Upgrade> {
    let h2 = req.method() == http::Method::CONNECT
        && req.extensions().get::<hyper::ext::Protocol>().map(|p| p.as_str()) == Some("websocket");
    let h1 = req.method() == http::Method::GET
        && req.version() <= http::Version::HTTP_11
        && header_has(req.headers(), header::UPGRADE, "websocket")
        && header_has(req.headers(), header::CONNECTION, "upgrade");
    if !h1 && !h2 {
        return None;
    }
    let key = if h1 { Some(req.headers().get(header::SEC_WEBSOCKET_KEY)?.clone()) } else { None };
    req.extensions().get::<OnUpgrade>()?;
    let on = hyper::upgrade::on(&mut *req);
    if h2 {
        *req.method_mut() = http::Method::GET;
        req.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    Some(Upgrade { on, key })
}

/// Whether header `name` lists `token` (case-insensitive, comma-separated).
fn header_has(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The answer to an upgrade the function accepted (its headers in `head`): `101` with
/// `Sec-WebSocket-Accept` over HTTP/1.1, `200` over HTTP/2; the socket is bridged once the
/// connection hands it over.
pub fn accept(
    upgrade: Upgrade,
    mut head: http::response::Parts,
    ends: SocketEnds,
    sockets: Arc<Sockets>,
    meters: SocketMeters,
) -> Response<OutBody> {
    // The function's headers go out, except what the node decides.
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        head.headers.remove(name);
    }
    match &upgrade.key {
        Some(key) => {
            head.status = StatusCode::SWITCHING_PROTOCOLS;
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            head.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            head.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            if let Ok(accept) = HeaderValue::from_str(&accept) {
                head.headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
        }
        None => head.status = StatusCode::OK,
    }
    sockets.open.fetch_add(1, Ordering::Relaxed);
    meters.open.inc();
    let open = tokio_util::sync::CancellationToken::new();
    let closed = open.clone().drop_guard();
    tokio::spawn(async move {
        bridge(upgrade.on, ends, &sockets, &meters).await;
        meters.open.dec();
        sockets.open.fetch_sub(1, Ordering::Relaxed);
        drop(closed);
    });
    let mut response = Response::from_parts(head, OutBody::Full(None));
    response.extensions_mut().insert(Open(open));
    response
}

/// On the answer to an accepted upgrade: cancelled when the socket ends. Over HTTP/2 the
/// socket is a stream of a connection that must not count as idle while it is open.
#[derive(Clone)]
pub struct Open(pub tokio_util::sync::CancellationToken);

/// Completes the upgrade, then carries messages between the client and the function until the
/// socket ends.
async fn bridge(on: OnUpgrade, ends: SocketEnds, sockets: &Sockets, meters: &SocketMeters) {
    let upgraded = match on.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            let _ = ends.incoming.send(SocketIn::Close(1006, String::new())).await;
            return;
        }
    };
    let config = js_runtime::websocket::config(sockets.max_message);
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let meters = meters.clone();
    let counted = Box::new(move |received: bool, bytes: usize| {
        let (messages, total) = if received {
            (&meters.messages_in, &meters.bytes_in)
        } else {
            (&meters.messages_out, &meters.bytes_out)
        };
        messages.inc();
        total.inc_by(bytes as u64);
    });
    let settings = js_runtime::websocket::Bridge {
        max_message: sockets.max_message,
        idle_timeout: sockets.idle_timeout,
        counted,
    };
    js_runtime::websocket::bridge(ws, ends, settings).await;
}

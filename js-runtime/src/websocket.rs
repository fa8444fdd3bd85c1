//! WebSockets on the wire, for both directions: the bridge between a socket (tokio-tungstenite)
//! and a function's channels, used by the node for the sockets functions accept, and the
//! outbound connection of `new WebSocket(url)`, under the same policy as `fetch`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::ext::{SocketEnds, SocketIn, SocketOut, INCOMING_BUFFER, OUTGOING_BUFFER};
use crate::fetch_policy::FetchPolicy;

/// What the bridge of one socket needs to know and to tell.
pub struct Bridge {
    /// The largest message the peer may send; larger closes the socket with 1009.
    pub max_message: usize,
    /// No message either way for this long closes the socket with 1001.
    pub idle_timeout: Duration,
    /// Told of every message: whether it came in (`true`) or went out, and its bytes.
    pub counted: Box<dyn Fn(bool, usize) + Send>,
}

/// tungstenite's settings for a socket: its default buffers are 128 KiB each, allocated per
/// socket; most sockets carry small messages, and a larger one grows the buffer as it comes.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Carries messages between the socket and the function's channels until the socket ends.
pub async fn bridge<S>(ws: WebSocketStream<S>, ends: SocketEnds, settings: Bridge)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let SocketEnds { mut outgoing, incoming } = ends;
    let (mut sink, mut stream) = ws.split();
    let idle = settings.idle_timeout;
    let mut deadline = tokio::time::Instant::now() + idle;
    // Set once the function has nothing more to send (it closed, or it is gone).
    let mut function_done = false;
    loop {
        tokio::select! {
            message = stream.next() => {
                deadline = tokio::time::Instant::now() + idle;
                let event = match message {
                    Some(Ok(Message::Text(text))) => {
                        (settings.counted)(true, text.len());
                        SocketIn::Text(text.as_str().to_string())
                    }
                    Some(Ok(Message::Binary(data))) => {
                        (settings.counted)(true, data.len());
                        SocketIn::Binary(data)
                    }
                    // Pings are answered by tungstenite; pongs and raw frames mean nothing here.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.as_str().to_string())
                        });
                        let _ = incoming.send(SocketIn::Close(code, reason)).await;
                        // tungstenite answers the close; the stream ends after it.
                        continue;
                    }
                    Some(Err(WsError::Capacity(_))) => {
                        let reason = format!("a message is at most {} bytes", settings.max_message);
                        let _ = sink.send(close_message(1009, &reason)).await;
                        let _ = incoming.send(SocketIn::Close(1009, reason)).await;
                        return;
                    }
                    Some(Err(WsError::ConnectionClosed)) | None => {
                        let _ = incoming.send(SocketIn::Close(1006, String::new())).await;
                        return;
                    }
                    Some(Err(_)) => {
                        let _ = incoming.send(SocketIn::Close(1006, String::new())).await;
                        return;
                    }
                };
                if incoming.send(event).await.is_err() && !function_done {
                    // The function's side is gone (its isolate ended).
                    let _ = sink.send(close_message(1011, "the function ended")).await;
                    function_done = true;
                }
            }
            out = outgoing.recv(), if !function_done => {
                deadline = tokio::time::Instant::now() + idle;
                let sent = match out {
                    Some(SocketOut::Text(text)) => {
                        (settings.counted)(false, text.len());
                        sink.send(Message::text(text)).await
                    }
                    Some(SocketOut::Binary(data)) => {
                        (settings.counted)(false, data.len());
                        sink.send(Message::binary(data)).await
                    }
                    Some(SocketOut::Close(code, reason)) => {
                        function_done = true;
                        sink.send(close_message(code, &reason)).await
                    }
                    None => {
                        function_done = true;
                        sink.send(close_message(1011, "the function ended")).await
                    }
                };
                if sent.is_err() {
                    let _ = incoming.send(SocketIn::Close(1006, String::new())).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let _ = sink.send(close_message(1001, "idle")).await;
                let _ = incoming.send(SocketIn::Close(1001, "idle".into())).await;
                return;
            }
        }
    }
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
}

/// [`connect`] under the outbound policy of the isolate this thread is polling.
pub async fn open(
    url: &str,
    protocols: &str,
) -> Result<(mpsc::Sender<SocketOut>, mpsc::Receiver<SocketIn>, String), String> {
    let policy = crate::fetch_policy::current().ok_or("no outbound policy on this thread")?;
    connect(url, protocols, policy).await
}

/// Opens an outbound WebSocket to `url` (`ws:` or `wss:`) with the subprotocols `protocols`
/// (comma-separated, may be empty), if `policy` allows its destination; bridges it on this
/// thread's runtime and answers the function's ends of it and the protocol the server chose.
pub async fn connect(
    url: &str,
    protocols: &str,
    policy: Arc<FetchPolicy>,
) -> Result<(mpsc::Sender<SocketOut>, mpsc::Receiver<SocketIn>, String), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("invalid WebSocket URL {url:?}"))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(format!("a WebSocket URL is ws: or wss:, not {url:?}")),
    };
    let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addrs = policy.resolve(&host, port).await?;
    let tcp = connect_any(&addrs).await?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .map_err(|e| e.to_string())?;
    if !protocols.is_empty() {
        let value = http::HeaderValue::from_str(protocols).map_err(|e| e.to_string())?;
        request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    request
        .headers_mut()
        .insert(http::header::USER_AGENT, http::HeaderValue::from_static(crate::ext::USER_AGENT));
    let max_message = 32 * 1024 * 1024;
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_BUFFER);
    let ends = SocketEnds { outgoing: outgoing_rx, incoming: incoming_tx };
    let settings = Bridge {
        max_message,
        idle_timeout: Duration::from_secs(3600),
        counted: Box::new(|_, _| {}),
    };
    let protocol = if tls {
        let tls_config =
            deno_tls::create_client_config(deno_tls::TlsClientConfigOptions::default())
                .map_err(|e| e.to_string())?;
        let name = rustls_name(&host)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {host}: {e}"))?;
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config(max_message)))
                .await
                .map_err(|e| format!("WebSocket handshake with {host}: {e}"))?;
        tokio::spawn(bridge(ws, ends, settings));
        chosen_protocol(&response)
    } else {
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config(max_message)))
                .await
                .map_err(|e| format!("WebSocket handshake with {host}: {e}"))?;
        tokio::spawn(bridge(ws, ends, settings));
        chosen_protocol(&response)
    };
    Ok((outgoing_tx, incoming_rx, protocol))
}

fn chosen_protocol<B>(response: &http::Response<B>) -> String {
    response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn rustls_name(host: &str) -> Result<deno_tls::rustls::pki_types::ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    deno_tls::rustls::pki_types::ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{host}: {e}"))
}

async fn connect_any(addrs: &[std::net::SocketAddr]) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!("cannot connect: {last}"))
}

//! HTTP/3: QUIC (quinn) on the `[https]` port over UDP, same certificate, and the same request
//! path as HTTP/1.1 and HTTP/2 (`http::handle`). 0-RTT is off: early data can be replayed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::StreamError;
use h3::server::RequestStream;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::front::http::{handle, Protocol};
use crate::front::server::Listeners;
use crate::front::tls::CertStore;

/// A QUIC endpoint for HTTP/3 on `addr` (UDP), presenting the store's certificate.
pub fn endpoint(
    addr: SocketAddr,
    certs: &Arc<CertStore>,
    http: &config::HttpConfig,
) -> std::io::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0; // no 0-RTT: early data can be replayed
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(std::io::Error::other)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(http.h2_max_concurrent_streams.into());
    transport.max_concurrent_uni_streams(16u32.into());
    if let Ok(idle) = quinn::IdleTimeout::try_from(http.idle_timeout) {
        transport.max_idle_timeout(Some(idle));
    }
    server.transport_config(Arc::new(transport));
    quinn::Endpoint::server(server, addr)
}

/// QUIC handshakes under way at once, over all HTTP/3 listeners.
pub const MAX_HANDSHAKES: usize = 256;
/// HTTP/3's H3_EXCESSIVE_LOAD error code (RFC 9114).
const H3_EXCESSIVE_LOAD: u32 = 0x0107;

impl Listeners {
    /// Accepts QUIC connections until shutdown begins; then each connection says GOAWAY and
    /// finishes the requests it has.
    pub async fn serve_h3(self: Arc<Self>, endpoint: quinn::Endpoint) {
        loop {
            let incoming = tokio::select! {
                _ = self.stop.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            // Handshakes under way are bounded, and past half of them a client must show it
            // owns its address first (a Retry): spoofed Initials cannot fill the table.
            let Ok(handshake) = self.handshakes.clone().try_acquire_owned() else {
                incoming.refuse();
                continue;
            };
            if self.handshakes.available_permits() < MAX_HANDSHAKES / 2
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                let _ = incoming.retry();
                continue;
            }
            let this = self.clone();
            self.tracker.spawn(async move {
                let remote = incoming.remote_address();
                let finishing = tokio::time::timeout(this.http.header_read_timeout, incoming);
                let conn = match tokio::select! {
                    _ = this.force.cancelled() => return,
                    done = finishing => done,
                } {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        return tracing::debug!(%remote, error = %e, "QUIC handshake failed")
                    }
                    Err(_) => return tracing::debug!(%remote, "QUIC handshake timed out"),
                };
                drop(handshake);
                // Counted among the node's connections (and the address's) once the
                // handshake is done: a handshake holds no slot a TCP client could use.
                let slots = this
                    .per_client
                    .take(remote.ip())
                    .zip(this.connections.clone().try_acquire_owned().ok());
                let Some(_slots) = slots else {
                    conn.close(quinn::VarInt::from_u32(H3_EXCESSIVE_LOAD), b"busy");
                    return tracing::debug!(%remote, "QUIC connection past the connection caps");
                };
                this.h3_connection(conn, remote).await
            });
        }
        endpoint.set_server_config(None); // refuse new connections from here on
        let closed = endpoint.clone();
        self.tracker.spawn(async move { closed.wait_idle().await });
    }

    async fn h3_connection(&self, conn: quinn::Connection, remote: SocketAddr) {
        let mut builder = h3::server::builder();
        builder.max_field_section_size(self.http.max_header_size);
        let quic = conn.clone();
        let mut h3 = match builder.build::<_, Bytes>(h3_quinn::Connection::new(conn)).await {
            Ok(h3) => h3,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "HTTP/3 connection setup failed");
                return;
            }
        };
        let mut closing = false;
        loop {
            tokio::select! {
                accepted = h3.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        let app = self.app.clone();
                        let quic = quic.clone();
                        self.tracker.spawn(async move {
                            match resolver.resolve_request().await {
                                Ok((request, stream)) => {
                                    respond(&app, request, stream, &quic, remote).await
                                }
                                Err(e) => tracing::debug!(%remote, error = %e, "bad HTTP/3 request"),
                            }
                        });
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "HTTP/3 connection ended");
                        return;
                    }
                },
                _ = self.stop.cancelled(), if !closing => {
                    closing = true;
                    let _ = h3.shutdown(0).await; // GOAWAY: no new requests, finish the rest
                }
                _ = self.force.cancelled() => return,
            }
        }
    }
}

/// Runs one HTTP/3 request through the shared request path and streams the answer back.
/// When the connection closes before the function answers, the request is dropped, which
/// aborts its `request.signal`. (A client that cancels only the request, with STOP_SENDING,
/// is seen once the answer is written: h3 does not surface STOP_SENDING before a write.)
async fn respond(
    app: &crate::front::http::App,
    request: http::Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    quic: &quinn::Connection,
    remote: SocketAddr,
) {
    let (mut send, mut recv) = stream.split();
    // Find out whether there is a body at all, so a GET looks the same as over HTTP/1.1.
    let first = match recv.recv_data().await {
        Ok(Some(mut chunk)) => Some(chunk.copy_to_bytes(chunk.remaining())),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "HTTP/3 request body failed");
            return;
        }
    };
    let more = first.is_some();
    let body = H3Body { first, recv: more.then_some(recv) };
    let response = tokio::select! {
        response = handle(app, request.map(|()| body), remote, Protocol::tls(None)) => response,
        _ = quic.closed() => return,
    };
    let (parts, mut body) = response.into_parts();
    if let Err(e) = send.send_response(http::Response::from_parts(parts, ())).await {
        tracing::debug!(%remote, error = %e, "HTTP/3 response head not sent");
        return;
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if send.send_data(data).await.is_err() {
                        return; // the client went away
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%remote, error = %e, "response body broke; resetting the stream");
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return;
            }
        }
    }
    let _ = send.finish().await;
}

/// An HTTP/3 request body as an `http_body::Body`; its first chunk was read ahead.
struct H3Body {
    first: Option<Bytes>,
    recv: Option<RequestStream<h3_quinn::RecvStream, Bytes>>,
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(recv) = this.recv.as_mut() else { return Poll::Ready(None) };
        match recv.poll_recv_data(cx) {
            Poll::Ready(Ok(Some(mut chunk))) => {
                Poll::Ready(Some(Ok(Frame::data(chunk.copy_to_bytes(chunk.remaining())))))
            }
            Poll::Ready(Ok(None)) => {
                this.recv = None;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.recv.is_none()
    }
}

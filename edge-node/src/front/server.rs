//! Listeners: accepting TCP (plaintext or TLS) connections under the node's connection cap,
//! serving HTTP/1.1 and HTTP/2 on them with the request limits of `[http]`, closing idle and
//! slow connections, and draining on shutdown.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use config::HttpConfig;
use futures::stream::{FuturesUnordered, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::front::body::OutBody;
use crate::front::http::{handle, is_trusted_proxy, App, Protocol};
use crate::front::pings::PingCount;
use crate::front::proxy_protocol;
use crate::front::tls::TlsConfig;
use crate::front::websocket;

/// What every listener of a node shares.
pub struct Listeners {
    pub app: Arc<App>,
    pub http: HttpConfig,
    /// One permit per open connection, over all listeners.
    pub connections: Arc<Semaphore>,
    /// Connections open per client address, held to `max_connections_per_ip`.
    pub per_client: Arc<PerClient>,
    /// QUIC handshakes under way ([`crate::front::h3::MAX_HANDSHAKES`]).
    pub handshakes: Arc<Semaphore>,
    /// Cancelled when shutdown begins: stop accepting, finish what is in flight.
    pub stop: CancellationToken,
    /// Cancelled when the grace period is over: close every connection now.
    pub force: CancellationToken,
    pub tracker: TaskTracker,
    /// The front threads the connections are served on.
    pub threads: js_runtime::Runtime,
}

impl Listeners {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let http = &self.http;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The head buffer holds the request line and the headers; each has its own limit,
        // checked per request (414, 431).
        let head = (http.max_header_size + http.max_url_length + 1024).max(8192);
        // hyper's own header read timeout arms a timer for every request; the connection loop
        // checks slow heads from counters instead (`HeadSince`).
        builder
            .http1()
            .header_read_timeout(None)
            // A response's head and body in one buffer and one write: for the small bodies
            // most functions answer with, cheaper than a vectored write (measured), and what
            // TLS wants anyway.
            .writev(false)
            .max_buf_size(usize::try_from(head).unwrap_or(usize::MAX))
            .max_headers(http.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(http.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(http.h2_max_pending_reset_streams)
            .max_local_error_reset_streams(1024)
            .max_header_list_size(u32::try_from(http.max_header_size).unwrap_or(u32::MAX))
            // Extended CONNECT (RFC 8441): WebSockets over HTTP/2.
            .enable_connect_protocol();
        builder
    }

    /// Waits for room for one more connection under the node's cap; `None` once shutdown
    /// begins.
    pub async fn connection_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::select! {
            _ = self.stop.cancelled() => None,
            permit = self.connections.clone().acquire_owned() => permit.ok(),
        }
    }

    /// Accepts connections on `listener` until shutdown begins.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsConfig>,
        protocol: Protocol,
    ) {
        let builder = Arc::new(self.builder());
        loop {
            let Some(permit) = self.connection_slot().await else { break };
            let (stream, remote) = tokio::select! {
                _ = self.stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            // A trusted proxy carries many clients: it is not held to the per-client cap.
            let trusted = is_trusted_proxy(&self.http.trusted_proxies, &remote.ip());
            let client = if trusted {
                None
            } else {
                match self.per_client.take(remote.ip()) {
                    Some(client) => Some(client),
                    None => {
                        tracing::debug!(%remote, "closing a connection past max_connections_per_ip");
                        continue;
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            // The connection is served on the front thread serving the fewest; its socket
            // moves to that thread's reactor, so readiness does not go through this one.
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "cannot hand the connection over");
                    continue;
                }
            };
            let (this, builder, tls, protocol) =
                (self.clone(), builder.clone(), tls.clone(), protocol.clone());
            self.threads.spawn_connection(self.tracker.track_future(async move {
                let _permit = (permit, client);
                let mut stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "cannot serve the connection");
                        return;
                    }
                };
                // A trusted proxy may say whose connection this is (PROXY protocol v2).
                let mut remote = remote;
                if trusted {
                    let header = proxy_protocol::read_source(&mut stream);
                    match tokio::time::timeout(this.http.header_read_timeout, header).await {
                        Ok(Ok(Some(source))) => remote = source,
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            return tracing::debug!(%remote, error = %e, "bad PROXY header")
                        }
                        Err(_) => return tracing::debug!(%remote, "PROXY header timed out"),
                    }
                }
                match tls {
                    None => this.connection(&builder, stream, protocol, remote).await,
                    Some(config) => {
                        // The handshake counts against the header read timeout. The
                        // ClientHello names the host: its function's isolate starts while
                        // the handshake goes on (pre-warm).
                        let app = this.app.clone();
                        let handshake = async move {
                            let acceptor = rustls::server::Acceptor::default();
                            let start =
                                tokio_rustls::LazyConfigAcceptor::new(acceptor, stream).await?;
                            if let Some(host) = start.client_hello().server_name() {
                                app.prewarm(host);
                            }
                            start.into_stream(config).await
                        };
                        let handshake =
                            tokio::time::timeout(this.http.header_read_timeout, handshake);
                        let handshake = tokio::select! {
                            _ = this.force.cancelled() => return,
                            done = handshake => done,
                        };
                        match handshake {
                            Ok(Ok(tls)) => this.connection(&builder, tls, protocol, remote).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                        }
                    }
                }
            }));
        }
    }

    /// Serves one connection until it ends, goes idle past `idle_timeout`, or the node
    /// stops.
    async fn connection<IO>(
        &self,
        builder: &auto::Builder<TokioExecutor>,
        io: IO,
        protocol: Protocol,
        remote: std::net::SocketAddr,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let io = IdleIo { inner: io, activity: activity.clone(), first_read: true, pings: None };
        let app = self.app.clone();
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            let activity = service_activity.clone();
            let protocol = protocol.clone();
            activity.dispatched();
            async move {
                let mut response = handle(&app, req, remote, protocol).await;
                // A WebSocket over HTTP/2 keeps its connection in use while it is open.
                if let Some(open) = response.extensions_mut().remove::<websocket::Open>() {
                    activity.in_flight.fetch_add(1, Ordering::Relaxed);
                    let activity = activity.clone();
                    tokio::spawn(async move {
                        open.0.cancelled().await;
                        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Ok::<_, std::convert::Infallible>(response.map(|body| InFlight { body, activity }))
            }
        });
        let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
        let idle = self.http.idle_timeout;
        let head_timeout = self.http.header_read_timeout;
        let write_timeout = self.http.write_timeout;
        let period = (idle.min(head_timeout).min(write_timeout) / 4).max(Duration::from_millis(50));
        let mut stall = WriteStall::default();
        let now = Instant::now();
        let mut idle_since = IdleSince { moved: 0, at: now };
        let mut head_since = HeadSince { since: Some((now, 0)) };
        let mut closing = false;
        // When the connection was asked to close for being idle: a client that does not
        // close it (an HTTP/2 client ignoring GOAWAY) loses it `header_read_timeout` later.
        let mut idle_close: Option<Instant> = None;
        // Shutdown and the idle check wait in a set of their own: it has its own waker, so
        // the connection's many wake-ups (a read, a response) do not poll them again.
        let mut control = FuturesUnordered::new();
        control.push(self.next_control(period, closing));
        loop {
            tokio::select! {
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                Some(event) = control.next() => {
                    match event {
                        Control::Force => return,
                        Control::Stop => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Control::Check => {
                            if head_since.check(&activity) >= head_timeout {
                                tracing::debug!(%remote, "closing a connection whose request head is too slow");
                                return;
                            }
                            // An HTTP/2 client has `header_read_timeout` from the accept to
                            // send its first request (frames alone do not count).
                            if activity.h2.load(Ordering::Relaxed)
                                && activity.requests.load(Ordering::Relaxed) == 0
                                && now.elapsed() >= head_timeout
                            {
                                tracing::debug!(%remote, "closing an HTTP/2 connection that sent no request");
                                return;
                            }
                            if stall.check(&activity) >= write_timeout {
                                tracing::debug!(%remote, "closing a connection whose client stopped reading");
                                return;
                            }
                            if idle_close.is_some_and(|at| at.elapsed() >= head_timeout) {
                                tracing::debug!(%remote, "dropping an idle connection its client keeps open");
                                return;
                            }
                            if idle_close.is_none() && idle_since.check(&activity) >= idle {
                                tracing::debug!(%remote, "closing an idle connection");
                                conn.as_mut().graceful_shutdown();
                                idle_close = Some(Instant::now());
                            }
                        }
                    }
                    control.push(self.next_control(period, closing));
                }
            }
        }
    }

    /// The next thing that happens to a connection besides its traffic: the node stops, the
    /// grace period ends, or it is time to check whether the connection is idle (`period`).
    /// Once `closing`, only the end of the grace period.
    fn next_control(
        &self,
        period: Duration,
        closing: bool,
    ) -> Pin<Box<dyn Future<Output = Control> + Send>> {
        let (stop, force) = (self.stop.clone(), self.force.clone());
        Box::pin(async move {
            tokio::select! {
                _ = force.cancelled() => Control::Force,
                _ = stop.cancelled(), if !closing => Control::Stop,
                _ = tokio::time::sleep(period), if !closing => Control::Check,
            }
        })
    }
}

/// Connections open per client address.
pub struct PerClient {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerClient {
    pub fn new(max: usize) -> PerClient {
        PerClient { max, open: Default::default() }
    }

    /// A slot for one more connection from `ip`, or `None` when it has `max` open already.
    pub fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { of: self.clone(), ip })
    }
}

/// One open connection of a client address; given back when dropped.
pub struct ClientSlot {
    of: Arc<PerClient>,
    ip: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What [`Listeners::next_control`] reports.
enum Control {
    Stop,
    Force,
    Check,
}

/// How often a connection moved bytes, and how many requests it has in flight (until their
/// response bodies are sent, [`InFlight`]): counted, not timed, so reading and writing cost
/// no clock reads; [`IdleSince`] turns it into idle time and [`HeadSince`] into the time a
/// request head has been arriving.
#[derive(Default)]
struct Activity {
    moved: AtomicU64,
    /// Reads that brought bytes.
    reads: AtomicU64,
    /// `reads` when the last request was dispatched.
    reads_at_dispatch: AtomicU64,
    /// Requests dispatched.
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// The client spoke HTTP/2 (whose heads hyper reads on streams, under its own limits).
    h2: AtomicBool,
    /// Writes that wrote bytes.
    written: AtomicU64,
    /// The last write found the socket full (the client is not reading).
    write_blocked: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) {
        self.touch();
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes how a write went: bytes out, or a full socket.
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.touch();
                self.written.fetch_add(1, Ordering::Relaxed);
                self.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }

    /// A request's head has been read whole and goes to its function.
    fn dispatched(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.reads_at_dispatch.store(self.reads.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// An HTTP/1 request head is under way: nothing is in flight, and the connection has sent
    /// no request yet or has sent bytes since its last one.
    fn head_under_way(&self) -> bool {
        !self.h2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && (self.requests.load(Ordering::Relaxed) == 0
                || self.reads.load(Ordering::Relaxed)
                    != self.reads_at_dispatch.load(Ordering::Relaxed))
    }
}

/// A response body that keeps its request counted in flight until it is dropped (sent whole,
/// or its connection gone): while a body streams, its connection is neither idle nor reading
/// a new head, whatever the client sends meanwhile (the rest of an upload, say).
struct InFlight {
    body: OutBody,
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl http_body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = <OutBody as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// When the request head a connection is sending began, as the periodic check samples it:
/// the slowloris defence (`header_read_timeout`). A new connection's first head begins when
/// it is accepted.
struct HeadSince {
    /// The start, and how many requests the connection had dispatched then.
    since: Option<(Instant, u64)>,
}

impl HeadSince {
    /// How long the current head has been arriving, to within one check; zero if none is.
    fn check(&mut self, activity: &Activity) -> Duration {
        if !activity.head_under_way() {
            self.since = None;
            return Duration::ZERO;
        }
        let requests = activity.requests.load(Ordering::Relaxed);
        match self.since {
            Some((at, seen)) if seen == requests => at.elapsed(),
            _ => {
                self.since = Some((Instant::now(), requests));
                Duration::ZERO
            }
        }
    }
}

/// How long a connection's writes have been stuck (the client stopped reading), as the
/// periodic check samples it: the slow-reader defence (`write_timeout`).
#[derive(Default)]
struct WriteStall {
    /// Since when, and how many writes had gone out then.
    since: Option<(Instant, u64)>,
}

impl WriteStall {
    /// How long writes have made no progress, to within one check; zero if they do.
    fn check(&mut self, activity: &Activity) -> Duration {
        let written = activity.written.load(Ordering::Relaxed);
        if !activity.write_blocked.load(Ordering::Relaxed) {
            self.since = None;
            return Duration::ZERO;
        }
        match self.since {
            Some((at, seen)) if seen == written => at.elapsed(),
            _ => {
                self.since = Some((Instant::now(), written));
                Duration::ZERO
            }
        }
    }
}

/// When a connection was last seen active, as the idle check samples it.
struct IdleSince {
    moved: u64,
    at: Instant,
}

impl IdleSince {
    /// How long the connection has been idle, to within one check: zero while a request is
    /// in flight or since the last check bytes moved (HTTP/1) or a request came (HTTP/2,
    /// where PING, SETTINGS and WINDOW_UPDATE frames move bytes without asking anything).
    fn check(&mut self, activity: &Activity) -> Duration {
        let moved = if activity.h2.load(Ordering::Relaxed) {
            activity.requests.load(Ordering::Relaxed)
        } else {
            activity.moved.load(Ordering::Relaxed)
        };
        if moved != self.moved || activity.in_flight.load(Ordering::Relaxed) > 0 {
            self.moved = moved;
            self.at = Instant::now();
        }
        self.at.elapsed()
    }
}

/// An IO stream that counts its reads and writes.
struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Nothing read yet: the first bytes tell HTTP/2's preface apart.
    first_read: bool,
    /// An HTTP/2 connection's PINGs, limited per minute.
    pings: Option<PingCount>,
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if this.first_read {
                this.first_read = false;
                if buf.filled()[before..].starts_with(b"PRI ") {
                    this.activity.h2.store(true, Ordering::Relaxed);
                    this.pings = Some(PingCount::default());
                }
            }
            if let Some(pings) = &mut this.pings {
                if pings.feed(&buf.filled()[before..]) {
                    tracing::debug!("closing an HTTP/2 connection that sent too many PINGs");
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "too many PINGs",
                    )));
                }
            }
            this.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Waits for every connection to finish, at most `grace`; then closes the rest.
pub async fn drain(listeners: &Listeners, grace: Duration) -> bool {
    listeners.tracker.close();
    let drained = tokio::time::timeout(grace, listeners.tracker.wait()).await.is_ok();
    if !drained {
        listeners.force.cancel();
        listeners.tracker.wait().await;
    }
    drained
}

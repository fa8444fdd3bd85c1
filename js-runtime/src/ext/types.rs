//! Data that crosses between the node and an isolate.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// One chunk of a streamed body, or the reason the stream broke.
pub type BodyChunk = Result<Bytes, BodyError>;

/// A body stream that broke before its end (the client went away, the function threw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

/// A request body as it arrives: `None` for a request without a body.
pub type RequestBody = Option<mpsc::Receiver<BodyChunk>>;

/// A function's response.
pub type HttpResponse = http::Response<ResponseBody>;

/// A response body: complete, or streamed chunk by chunk while the function produces it.
#[derive(Debug)]
pub enum ResponseBody {
    Full(Bytes),
    /// Chunks as the function writes them, and their total length when it is known.
    Stream(mpsc::Receiver<BodyChunk>, Option<u64>),
    /// The function accepted a WebSocket (a `101` with `webSocket`): the connection's ends of
    /// the socket, which the node bridges to the client once the upgrade completes.
    WebSocket(SocketEnds),
}

/// A message or close a function sends on an accepted WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketOut {
    Text(String),
    Binary(Bytes),
    /// Close with a code and a reason.
    Close(u16, String),
}

/// What arrives on an accepted WebSocket from its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketIn {
    Text(String),
    Binary(Bytes),
    /// The socket closed: the client's code and reason, or 1006 when it vanished, 1009 for a
    /// message over the size limit, 1001 when it was idle too long.
    Close(u16, String),
}

/// The connection's ends of an accepted WebSocket.
#[derive(Debug)]
pub struct SocketEnds {
    /// What the function sends; ends when the function (or its isolate) is gone.
    pub outgoing: mpsc::Receiver<SocketOut>,
    /// Where the client's messages go; dropping it ends the socket for the function.
    pub incoming: mpsc::Sender<SocketIn>,
}

/// What an invocation asks the function to do.
pub enum Work {
    /// An HTTP request for `fetch`. The URI is absolute (`https://host/path?q`).
    Http(http::Request<RequestBody>),
    /// A trigger's event for one of the other handlers.
    Event(Event),
}

/// An event for `scheduled`, `queue`, `storage` or `record`.
#[derive(Debug, Clone)]
pub struct Event {
    /// The handler to call: `scheduled`, `queue`, `storage` or `record`.
    pub handler: &'static str,
    /// The event as JSON, shaped per handler (see the function contract).
    pub payload: String,
    /// Binary parts the payload refers to by index (queue message bodies).
    pub blobs: Vec<Bytes>,
}

/// A piece of work handed to a function.
pub struct Invocation {
    /// Names this invocation in logs; the node uses the request id.
    pub invocation_id: Arc<str>,
    pub work: Work,
    /// Receives the response head (or the failure) as soon as the function answers.
    pub reply: oneshot::Sender<Reply>,
    /// Called once when the invocation is over (response sent, `waitUntil` work settled, or
    /// ended by a limit), on the isolate's thread. Not called for a request handed back
    /// untouched ([`Reply::Returned`]).
    pub finished: Option<Finished>,
}

/// The observer of one invocation's end; see [`Invocation::finished`].
pub type Finished = Box<dyn FnOnce(InvocationEnd) + Send>;

/// How an invocation ended, as observed when it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationEnd {
    pub outcome: Outcome,
    /// The response status, if the function answered.
    pub status: Option<u16>,
    /// CPU time charged to the invocation.
    pub cpu_time: std::time::Duration,
    /// For an invocation that accepted a WebSocket: the messages received and sent on it
    /// (its end is the socket's).
    pub messages: (u64, u64),
}

/// What a worker answers an invocation with.
pub enum Reply {
    /// The function's response head; a streamed body follows.
    Response(HttpResponse),
    /// An event handler finished; its result as JSON (a queue handler's acks and retries).
    Event(String),
    /// The invocation ended without a response.
    Failed(Failure),
    /// The worker stopped before it took the request, which is handed back untouched so the
    /// caller can run it elsewhere.
    Returned(Work),
}

/// How an invocation that did not produce a response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    /// What went wrong, for the function's log (an exception's stack, a limit).
    pub message: String,
}

/// How an invocation ended. One enum decides the HTTP status, the log record and the metric
/// label; see the table in the design document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The function returned a response.
    Ok,
    /// An uncaught error or a rejected promise.
    Exception,
    /// The CPU budget was spent.
    ExceededCpu,
    /// The heap or ArrayBuffer limit was reached.
    ExceededMemory,
    /// The wall-clock limit was reached.
    ExceededWallTime,
    /// The handler's promise can never settle.
    NoResponse,
    /// No isolate could take it: the pool was full and the wait queue full or timed out, or
    /// the isolates it was handed to stopped before taking it (another invocation of the
    /// function used up their CPU or memory).
    LoadShed,
    /// No route matched.
    NotFound,
    /// The client went away before the response was complete (`client_disconnected`).
    Canceled,
    /// Our fault.
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::Exception,
        Outcome::ExceededCpu,
        Outcome::ExceededMemory,
        Outcome::ExceededWallTime,
        Outcome::NoResponse,
        Outcome::LoadShed,
        Outcome::NotFound,
        Outcome::Canceled,
        Outcome::Internal,
    ];

    /// The label used in logs, metrics and error bodies (`exceeded_cpu`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Exception => "exception",
            Outcome::ExceededCpu => "exceeded_cpu",
            Outcome::ExceededMemory => "exceeded_memory",
            Outcome::ExceededWallTime => "exceeded_wall_time",
            Outcome::NoResponse => "no_response",
            Outcome::LoadShed => "load_shed",
            Outcome::NotFound => "not_found",
            Outcome::Canceled => "client_disconnected",
            Outcome::Internal => "internal",
        }
    }

    /// The outcome named by [`Outcome::as_str`].
    pub fn from_label(label: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == label)
    }

    /// The HTTP status answered for a failed invocation (`None` for `ok` and `canceled`,
    /// where the status is the function's or nobody's).
    pub fn http_status(self) -> Option<u16> {
        match self {
            Outcome::Ok | Outcome::Canceled => None,
            Outcome::Exception | Outcome::NoResponse | Outcome::Internal => Some(500),
            Outcome::ExceededCpu | Outcome::ExceededMemory | Outcome::LoadShed => Some(503),
            Outcome::ExceededWallTime => Some(504),
            Outcome::NotFound => Some(404),
        }
    }
}

/// The level of a function's log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Log,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Log => "log",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line a function logged (`console.*`, an uncaught exception).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub ts: SystemTime,
    pub level: Level,
    pub function: Arc<str>,
    /// The invocation the line belongs to; `None` for module top-level code.
    pub invocation_id: Option<Arc<str>>,
    pub message: String,
}

/// An outbound `fetch` made under a trace: its request carried `traceparent`, a child of the
/// invocation's `parent`. Reported when its response head arrived (or it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSpan {
    pub function: Arc<str>,
    /// The invocation's `traceparent` (its parent id is the node's request span).
    pub parent: String,
    /// The outbound request's `traceparent` (its parent id is this request's own span id).
    pub traceparent: String,
    pub method: String,
    /// The URL without its query, fragment or credentials.
    pub url: String,
    /// The response status; `None` when the request failed.
    pub status: Option<u16>,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// Where a function's log records go. Called on the isolate's thread: keep it quick.
pub trait LogSink: Send + Sync {
    fn log(&self, record: LogRecord);

    /// An outbound request made under a trace, for the node to export as a span.
    fn outbound(&self, _span: OutboundSpan) {}

    /// Whether the node should also log a line per invocation here (what was asked, how it
    /// ended, how long it took): `dev`'s terminal wants them.
    fn wants_invocations(&self) -> bool {
        false
    }
}

/// The node's side of a function's bindings (`env.NAME` for a queue, a bucket or a table):
/// one call per method the function invokes. Calls run on the node, not on the isolate thread.
pub trait Bindings: Send + Sync {
    /// Runs `method` of the binding `binding` with JSON `args` and a binary part; answers JSON
    /// text, or the error the function's call throws.
    fn call(
        &self,
        binding: &str,
        method: &str,
        args: String,
        data: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, BindingError>> + Send>>;
}

/// Why a binding call failed: its message is what the function's call throws.
pub type BindingError = Box<dyn std::error::Error + Send + Sync>;

/// The bindings of the function an isolate runs, kept in its `OpState`.
#[derive(Clone)]
pub struct BindingsService(pub Arc<dyn Bindings>);

/// The node's side of the Cache API (`caches.default`, `caches.open(name)`) for the function
/// an isolate runs: the node keeps the entries and applies HTTP's caching rules. Calls run on
/// the isolate's thread: keep them quick.
pub trait ResponseCache: Send + Sync {
    /// The stored answer to `request` (a GET; its URI absolute, without fragment) in the
    /// cache named `cache` (`""` is `caches.default`): fresh, matching the headers its `Vary`
    /// names, and already answered as a `304` or a `206` when the request's conditional or
    /// `Range` headers ask for that. `None` is a miss.
    fn lookup(&self, cache: &str, request: &http::request::Parts) -> Option<http::Response<Bytes>>;

    /// Keeps `response` as the answer to `request`, unless HTTP's caching rules say it is not
    /// to be kept (then nothing changes and this is still `Ok`). An error is what the
    /// function's `put` throws.
    fn store(
        &self,
        cache: &str,
        request: &http::request::Parts,
        response: http::Response<Bytes>,
    ) -> Result<(), CacheError>;

    /// Removes the answer to `request`; whether there was one.
    fn delete(&self, cache: &str, request: &http::request::Parts) -> bool;
}

/// Why a response was refused by [`ResponseCache::store`]; its message is what `put` throws.
pub type CacheError = Box<dyn std::error::Error + Send + Sync>;

/// The Cache API store of the function an isolate runs, kept in its `OpState`.
#[derive(Clone)]
pub struct CacheService(pub Arc<dyn ResponseCache>);

//! The `isola` extension: the ops and JavaScript that connect a function to the node.
//!
//! This module is compiled twice: into the library, and into `build.rs`, which evaluates the
//! extension's JavaScript into the startup snapshot. It therefore depends only on crates that
//! `build.rs` also has, and of this crate only on `limits::Meter` (which `build.rs` includes).

mod brotli;
mod cache;
mod host;
mod socket;
mod types;

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deno_core::{op2, v8, JsBuffer, OpState, ToV8};
use deno_error::JsErrorBox;
use tokio::sync::mpsc;

pub use host::Host;
use host::Live;
pub(crate) use socket::{INCOMING_BUFFER, OUTGOING_BUFFER};
pub use types::*;

/// Capacity, in chunks, of a streamed response body between the isolate and the connection.
const RESPONSE_CHUNKS_IN_FLIGHT: usize = 8;

deno_core::extension!(
    isola,
    deps = [deno_webidl, deno_web, deno_crypto, deno_fetch],
    ops = [
        op_isola_log,
        op_isola_outbound_span,
        op_isola_next,
        op_isola_take,
        op_isola_read,
        op_isola_header,
        op_isola_respond,
        op_isola_respond_text,
        op_isola_respond_stream,
        op_isola_write,
        op_isola_fail,
        op_isola_done,
        op_isola_event_blob,
        op_isola_event_result,
        op_isola_binding,
        op_isola_set_uncaught,
        op_isola_uncaught,
        op_isola_live,
        op_isola_charge,
        op_isola_mark,
        op_isola_client_gone,
        brotli::op_isola_brotli_open,
        brotli::op_isola_brotli_push,
        brotli::op_isola_brotli_more,
        brotli::op_isola_brotli_ended,
        brotli::op_isola_brotli_close,
        cache::op_isola_cache_match,
        cache::op_isola_cache_put,
        cache::op_isola_cache_delete,
        socket::op_isola_ws_accept,
        socket::op_isola_ws_next,
        socket::op_isola_ws_send_text,
        socket::op_isola_ws_send_binary,
        socket::op_isola_ws_close,
        socket::op_isola_ws_connect,
    ],
    esm_entry_point = "ext:isola/runtime.js",
    esm = [
        dir "src/ext/js",
        "00_base.js",
        "01_invocation.js",
        "02_logging.js",
        "03_global_scope.js",
        "04_webcrypto.js",
        "05_outbound.js",
        "06_contract.js",
        "07_events.js",
        "08_bindings.js",
        "09_entrypoints.js",
        "10_caches.js",
        "11_websocket.js",
        "runtime.js",
    ],
    // deno_core's `op_dispatch_exception` terminates the isolate, and with it every invocation
    // on it; deno_web calls it for an error event nobody prevented. Ours reports the error.
    // deno_web's URL parsing is answered by ada-url (`url_ops`; the snapshot build keeps
    // deno_web's own, whose signatures those keep).
    middleware = |op| match op.name {
        "op_dispatch_exception" => op.with_implementation_from(&op_isola_uncaught()),
        _ => crate::url_ops::replace(op),
    },
);

/// The runtime's handler of uncaught errors (`onDispatchedException` in runtime.js).
struct UncaughtHandler(v8::Global<v8::Function>);

/// Registers the handler `op_isola_uncaught` calls.
#[op2(fast)]
fn op_isola_set_uncaught(
    scope: &mut v8::PinScope,
    state: &mut OpState,
    handler: v8::Local<v8::Function>,
) {
    state.put(UncaughtHandler(v8::Global::new(scope, handler)));
}

/// Stands in for deno_core's `op_dispatch_exception`: hands the error to the runtime's handler,
/// which logs it and ends the invocation it belongs to, instead of terminating the isolate.
/// Before the handler is registered (while the snapshot is made) it does what the original
/// does.
#[op2(fast, reentrant)]
fn op_isola_uncaught<'s, 'i>(
    scope: &mut v8::PinScope<'s, 'i>,
    state: Rc<RefCell<OpState>>,
    exception: v8::Local<'s, v8::Value>,
    promise: bool,
) {
    let handler = state.borrow().try_borrow::<UncaughtHandler>().map(|h| h.0.clone());
    let Some(handler) = handler else {
        deno_core::error::dispatch_exception(scope, exception, promise);
        return;
    };
    let handler = v8::Local::new(scope, handler);
    let receiver = v8::undefined(scope).into();
    let promise = v8::Boolean::new(scope, promise).into();
    v8::tc_scope!(let tc, scope);
    // The handler does not throw; whatever it might is dropped here, never rethrown.
    let _ = handler.call(tc, receiver, &[exception, promise]);
}

// deno_fetch loads `ext:deno_net/02_tls.js` for custom HTTP clients; this stands in for it.
deno_core::extension!(deno_net, lazy_loaded_js = [dir "src/ext/js/deno_net", "02_tls.js"],);

/// A request's HTTP version, numbered as `PROTOCOLS` in `runtime.js` names them.
#[derive(Clone, Copy)]
enum Protocol {
    None = 0,
    Http11 = 1,
    Http2 = 2,
    Http3 = 3,
    Http10 = 4,
    Http09 = 5,
}

/// An invocation as `op_isola_next` hands it to JavaScript: one array, the fields in order
/// and then the request's headers (name, value, name, value, ...), which `runtime.js` reads
/// into an object of one shape (cheaper than building an object here, whose keys V8 would
/// look up as new strings every time, or a second array).
struct NextRequest {
    id: u32,
    invocation_id: std::sync::Arc<str>,
    /// `fetch`, or the event handler's name.
    handler: &'static str,
    /// An event's JSON (empty for HTTP).
    payload: String,
    /// The request's method (none for events).
    method: Option<http::Method>,
    url: String,
    headers: http::HeaderMap,
    has_body: bool,
    /// The whole body, when it had arrived whole (then `has_body` is false): JavaScript gets
    /// it as bytes, with no stream to read it through.
    whole_body: Option<Bytes>,
    /// The request's protocol, for `request.cf.httpProtocol`.
    http_protocol: Protocol,
}

/// The fields before the headers in what `op_isola_next` hands over (`Next` in runtime.js).
const NEXT_FIELDS: usize = 8;

/// Methods sent by their index, as `METHODS` in runtime.js lists them.
const METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::HEAD,
    http::Method::OPTIONS,
    http::Method::PATCH,
    http::Method::CONNECT,
    http::Method::TRACE,
];

impl<'a> ToV8<'a> for NextRequest {
    type Error = std::convert::Infallible;

    fn to_v8<'i>(
        self,
        scope: &mut v8::PinScope<'a, 'i>,
    ) -> Result<v8::Local<'a, v8::Value>, Self::Error> {
        fn text<'a>(scope: &mut v8::PinScope<'a, '_>, s: &str) -> v8::Local<'a, v8::Value> {
            let made = if s.is_ascii() {
                // ASCII is Latin-1 already: no UTF-8 decoding.
                v8::String::new_from_one_byte(scope, s.as_bytes(), v8::NewStringType::Normal)
            } else {
                v8::String::new(scope, s)
            };
            made.unwrap_or_else(|| v8::String::empty(scope)).into()
        }
        fn latin1<'a>(scope: &mut v8::PinScope<'a, '_>, b: &[u8]) -> v8::Local<'a, v8::Value> {
            v8::String::new_from_one_byte(scope, b, v8::NewStringType::Normal)
                .unwrap_or_else(|| v8::String::empty(scope))
                .into()
        }
        // `fetch`, the common methods and the protocol go as small numbers: no string made,
        // none compared.
        let handler = if self.handler == "fetch" {
            v8::Integer::new(scope, 0).into()
        } else {
            text(scope, self.handler)
        };
        let method = match &self.method {
            None => v8::String::empty(scope).into(),
            Some(method) => match METHODS.iter().position(|m| m == method) {
                Some(index) => v8::Integer::new(scope, index as i32).into(),
                None => text(scope, method.as_str()),
            },
        };
        let payload = if self.payload.is_empty() {
            v8::String::empty(scope).into()
        } else {
            text(scope, &self.payload)
        };
        let mut fields: Vec<v8::Local<v8::Value>> =
            Vec::with_capacity(NEXT_FIELDS + self.headers.len() * 2);
        fields.extend([
            v8::Integer::new_from_unsigned(scope, self.id).into(),
            text(scope, &self.invocation_id),
            handler,
            payload,
            method,
            text(scope, &self.url),
            match self.whole_body {
                Some(bytes) => {
                    let len = bytes.len();
                    let store = v8::ArrayBuffer::new_backing_store_from_vec(Vec::from(bytes));
                    let buffer = v8::ArrayBuffer::with_backing_store(scope, &store.make_shared());
                    match v8::Uint8Array::new(scope, buffer, 0, len) {
                        Some(array) => array.into(),
                        None => v8::Boolean::new(scope, false).into(),
                    }
                }
                None => v8::Boolean::new(scope, self.has_body).into(),
            },
            v8::Integer::new(scope, self.http_protocol as i32).into(),
        ]);
        // Name then value: JavaScript pairs them up if the function reads them.
        for (name, value) in &self.headers {
            fields.push(latin1(scope, name.as_str().as_bytes()));
            fields.push(latin1(scope, value.as_bytes()));
        }
        Ok(v8::Array::new_with_elements(scope, &fields).into())
    }
}

/// An outbound `fetch` under a trace ended (its response head came, or it failed:
/// `status` 0); times are milliseconds since the epoch.
#[op2(fast)]
#[allow(clippy::too_many_arguments, reason = "one call per traced fetch, fields as JS has them")]
fn op_isola_outbound_span(
    state: &mut OpState,
    #[string] parent: String,
    #[string] traceparent: String,
    #[string] method: String,
    #[string] url: &str,
    #[smi] status: u32,
    start_ms: f64,
    end_ms: f64,
) {
    let host = state.borrow::<Host>();
    let at =
        |ms: f64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    let url = match deno_core::url::Url::parse(url) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => return,
    };
    host.log_sink.outbound(OutboundSpan {
        function: host.function.clone(),
        parent,
        traceparent,
        method,
        url,
        status: u16::try_from(status).ok().filter(|s| *s != 0),
        start: at(start_ms),
        end: at(end_ms),
    });
}

#[op2(fast)]
fn op_isola_log(
    state: &mut OpState,
    #[smi] level: i32,
    #[string] message: &str,
    #[string] invocation_id: &str,
) {
    let host = state.borrow::<Host>();
    let level = match level {
        0 => Level::Debug,
        2 => Level::Warn,
        3 => Level::Error,
        _ => Level::Log,
    };
    host.log_sink.log(LogRecord {
        ts: SystemTime::now(),
        level,
        function: host.function.clone(),
        invocation_id: (!invocation_id.is_empty()).then(|| invocation_id.into()),
        message: message.to_string(),
    });
}

/// Waits for the next invocation; `null` once the worker is shutting down. The receiver stays
/// in the host while this waits, so that a worker ending meanwhile hands back what is queued.
#[op2]
async fn op_isola_next(state: Rc<RefCell<OpState>>) -> Result<Option<NextRequest>, JsErrorBox> {
    let inbox = state.borrow().borrow::<Host>().inbox.clone();
    // Sent from a front thread, the wake waits for the end of that thread's turn, so the
    // isolate takes every request of the turn at once.
    let next = std::future::poll_fn(|cx| {
        let waker = crate::wakes::deferred(cx.waker());
        inbox.borrow_mut().poll_recv(&mut std::task::Context::from_waker(&waker))
    })
    .await;
    let Some(invocation) = next else {
        state.borrow_mut().borrow_mut::<Host>().inbox_closed = true;
        return Ok(None);
    };
    Ok(Some(begin(state.borrow_mut().borrow_mut::<Host>(), invocation)))
}

/// The next invocation if one is waiting already, without the round trip of an async op;
/// `null` when none is (then `op_isola_next` waits for one).
#[op2]
fn op_isola_take(state: &mut OpState) -> Option<NextRequest> {
    let host = state.borrow_mut::<Host>();
    let invocation = host.inbox.borrow_mut().try_recv().ok()?;
    Some(begin(host, invocation))
}

/// Makes an invocation live and describes it for JavaScript.
fn begin(host: &mut Host, invocation: Box<Invocation>) -> NextRequest {
    let Invocation { invocation_id, work, reply, finished } = *invocation;
    let id = host.next_id;
    host.next_id = host.next_id.wrapping_add(1);
    host.meter.begin(id);
    let mut live = Live::unanswered(finished);
    live.reply = Some(reply);
    let next = match work {
        Work::Event(event) => {
            live.blobs = event.blobs;
            NextRequest {
                id,
                invocation_id,
                handler: event.handler,
                payload: event.payload,
                method: None,
                url: String::new(),
                headers: http::HeaderMap::new(),
                has_body: false,
                whole_body: None,
                http_protocol: Protocol::None,
            }
        }
        Work::Http(request) => {
            let (parts, body) = request.into_parts();
            let (whole_body, body) = match body {
                Some(rx) => take_whole(rx),
                None => (None, None),
            };
            let has_body = body.is_some();
            live.body = body.map(|rx| Rc::new(tokio::sync::Mutex::new(rx)));
            live.head = parts.method == http::Method::HEAD;
            NextRequest {
                id,
                invocation_id,
                handler: "fetch",
                payload: String::new(),
                method: Some(parts.method),
                url: absolute_url(&parts.uri),
                headers: parts.headers,
                has_body,
                whole_body,
                http_protocol: match parts.version {
                    http::Version::HTTP_09 => Protocol::Http09,
                    http::Version::HTTP_10 => Protocol::Http10,
                    http::Version::HTTP_2 => Protocol::Http2,
                    http::Version::HTTP_3 => Protocol::Http3,
                    _ => Protocol::Http11,
                },
            }
        }
    };
    host.live.insert(id, live);
    next
}

/// A request body that has arrived whole (its channel closed, holding at most one chunk), as
/// its bytes; else the channel to stream it from.
fn take_whole(
    mut rx: mpsc::Receiver<BodyChunk>,
) -> (Option<Bytes>, Option<mpsc::Receiver<BodyChunk>>) {
    if !rx.is_closed() || rx.len() > 1 {
        return (None, Some(rx));
    }
    match rx.try_recv() {
        Ok(Ok(bytes)) => (Some(bytes), None),
        Err(_) => (Some(Bytes::new()), None),
        // A body that failed at once: JavaScript reads the failure from the stream.
        Ok(Err(e)) => {
            let (tx, failed) = mpsc::channel(1);
            let _ = tx.try_send(Err(e));
            (None, Some(failed))
        }
    }
}

/// The request's URL as JavaScript sees it (the node hands over absolute URIs).
fn absolute_url(uri: &http::Uri) -> String {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return uri.to_string();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut url = String::with_capacity(scheme.len() + 3 + authority.as_str().len() + path.len());
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(authority.as_str());
    url.push_str(path);
    url
}

/// A binary part of an event (a queue message's body), by index.
#[op2]
#[buffer]
fn op_isola_event_blob(state: &mut OpState, #[smi] id: u32, #[smi] index: u32) -> Vec<u8> {
    let host = state.borrow::<Host>();
    host.live
        .get(&id)
        .and_then(|live| live.blobs.get(index as usize))
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// Calls a binding's method on the node (`env.QUEUE.send(...)`); answers its JSON.
#[op2]
#[string]
async fn op_isola_binding(
    state: Rc<RefCell<OpState>>,
    #[string] binding: String,
    #[string] method: String,
    #[string] args: String,
    #[buffer(copy)] data: Vec<u8>,
) -> Result<String, JsErrorBox> {
    let service = state.borrow().try_borrow::<BindingsService>().cloned();
    let Some(service) = service else {
        return Err(JsErrorBox::type_error(format!("binding {binding} is not available")));
    };
    let answer = service.0.call(&binding, &method, args, data).await;
    answer.map_err(|e| JsErrorBox::generic(e.to_string()))
}

/// An event handler finished: its result (JSON) goes to the caller.
#[op2(fast)]
fn op_isola_event_result(state: &mut OpState, #[smi] id: u32, #[string] result: &str) {
    let host = state.borrow_mut::<Host>();
    host.meter.mark(id);
    if let Some(live) = host.live.get_mut(&id) {
        if let Some(reply) = live.take_reply() {
            let _ = reply.send(Reply::Event(result.to_string()));
        }
    }
}

/// The code of invocation `id` ran up to here (the runtime knows whose from the async
/// context): a timer set or a timer's callback done, a console line. The entry's time since
/// the last mark is its.
#[op2(fast)]
fn op_isola_mark(state: &mut OpState, #[smi] id: u32) {
    state.borrow_mut::<Host>().meter.mark(id);
}

/// Reads the next chunk of a request body; an empty buffer means the body ended.
#[op2]
#[buffer]
async fn op_isola_read(state: Rc<RefCell<OpState>>, #[smi] id: u32) -> Result<Vec<u8>, JsErrorBox> {
    let body = {
        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        host.meter.mark(id);
        host.live.get(&id).and_then(|l| l.body.clone())
    };
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    let mut rx = body.lock().await;
    match rx.recv().await {
        Some(Ok(bytes)) => Ok(Vec::from(bytes)),
        Some(Err(e)) => Err(JsErrorBox::type_error(format!("request body: {}", e.0))),
        None => Ok(Vec::new()),
    }
}

/// Adds a header to the response of invocation `id`, before it is answered (one fast call
/// per header: cheaper than converting an array of pairs).
#[op2(fast)]
fn op_isola_header(
    state: &mut OpState,
    #[smi] id: u32,
    #[string(onebyte)] name: Cow<[u8]>,
    #[string(onebyte)] value: Cow<[u8]>,
) {
    let Some(live) = state.borrow_mut::<Host>().live.get_mut(&id) else { return };
    let Ok(name) = http::HeaderName::from_bytes(&name) else {
        live.bad_header = Some("invalid header name");
        return;
    };
    if HOP_BY_HOP.contains(&name) {
        return;
    }
    match http::HeaderValue::from_bytes(&value) {
        Ok(value) => {
            live.headers.append(name, value);
        }
        Err(_) => live.bad_header = Some("invalid header value"),
    }
}

/// Headers that describe one connection, which the node sets itself.
static HOP_BY_HOP: [http::HeaderName; 6] = [
    http::header::CONNECTION,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
];

/// Builds the response from `status`, the headers added so far and `body`, and hands it to
/// the invocation's caller. A function over its memory limit (counting what V8 holds outside
/// its heap, which no collection may have looked at yet) sends nothing: it is being stopped,
/// and the caller gets `exceeded_memory`.
fn respond(
    isolate: &mut v8::Isolate,
    state: &mut OpState,
    id: u32,
    status: u32,
    body: ResponseBody,
) -> Result<(), JsErrorBox> {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .ok_or_else(|| JsErrorBox::range_error(format!("invalid status {status}")))?;
    if status.is_informational() {
        return Err(JsErrorBox::type_error(format!(
            "status {} is not a final status: a response cannot switch protocols without a WebSocket",
            status.as_u16()
        )));
    }
    let host = state.borrow_mut::<Host>();
    host.meter.mark(id);
    let over = host.memory_check.as_ref().is_some_and(|over| over(isolate));
    let Some(live) = host.live.get_mut(&id) else { return Ok(()) };
    if over {
        live.fail(Outcome::ExceededMemory, "the isolate reached its memory limit");
        return Ok(());
    }
    if let Some(problem) = live.bad_header.take() {
        live.headers.clear();
        return Err(JsErrorBox::type_error(problem));
    }
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = std::mem::take(&mut live.headers);
    live.status = Some(status.as_u16());
    if let Some(reply) = live.take_reply() {
        if reply.send(Reply::Response(response)).is_err() {
            live.failed.get_or_insert(Outcome::Canceled);
        }
    }
    Ok(())
}

/// Answers with a complete body.
#[op2]
fn op_isola_respond(
    isolate: &mut v8::Isolate,
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[buffer] body: JsBuffer,
) -> Result<(), JsErrorBox> {
    respond(isolate, state, id, status, ResponseBody::Full(Bytes::copy_from_slice(&body)))
}

/// Answers with a complete text body (UTF-8), without a round trip through a Uint8Array.
#[op2(fast)]
fn op_isola_respond_text(
    isolate: &mut v8::Isolate,
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[string] body: &str,
) -> Result<(), JsErrorBox> {
    respond(isolate, state, id, status, ResponseBody::Full(Bytes::copy_from_slice(body.as_bytes())))
}

/// Answers with a head now and a body that follows through `op_isola_write`: `length` bytes,
/// or as many as come when `length` is negative.
#[op2(fast)]
fn op_isola_respond_stream(
    isolate: &mut v8::Isolate,
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    length: f64,
) -> Result<(), JsErrorBox> {
    let (tx, rx) = mpsc::channel(RESPONSE_CHUNKS_IN_FLIGHT);
    if let Some(live) = state.borrow_mut::<Host>().live.get_mut(&id) {
        live.stream = Some(tx);
    }
    let length = (length >= 0.0).then_some(length as u64);
    respond(isolate, state, id, status, ResponseBody::Stream(rx, length))
}

/// Sends one chunk of a streamed response; `false` when the client is gone.
#[op2]
async fn op_isola_write(
    state: Rc<RefCell<OpState>>,
    #[smi] id: u32,
    #[buffer] chunk: JsBuffer,
) -> bool {
    let tx = {
        let mut state = state.borrow_mut();
        let host = state.borrow_mut::<Host>();
        host.meter.mark(id);
        host.live.get(&id).and_then(|l| l.stream.clone())
    };
    let Some(tx) = tx else { return false };
    if tx.send(Ok(Bytes::copy_from_slice(&chunk))).await.is_ok() {
        return true;
    }
    // The client went away mid-stream (or, for a HEAD request, the body was not wanted).
    if let Some(live) = state.borrow_mut().borrow_mut::<Host>().live.get_mut(&id) {
        if !live.head {
            live.failed.get_or_insert(Outcome::Canceled);
        }
    }
    false
}

/// Ends an invocation with a failure (`kind` names an [`Outcome`]).
#[op2(fast)]
fn op_isola_fail(
    state: &mut OpState,
    #[smi] id: u32,
    #[string] kind: &str,
    #[string] message: &str,
) {
    let outcome = Outcome::from_label(kind).unwrap_or(Outcome::Internal);
    let host = state.borrow_mut::<Host>();
    host.meter.mark(id);
    if let Some(live) = host.live.get_mut(&id) {
        live.fail(outcome, message);
    }
}

/// Waits until the client of invocation `id` goes away before the response's head is sent
/// (`true`: the node dropped the reply's receiver), or the head is sent or the invocation
/// ends (`false`; a client leaving during a streamed body shows in `op_isola_write`). Called
/// once, when the function first reads `request.signal`; it allocates nothing per request.
#[op2]
async fn op_isola_client_gone(state: Rc<RefCell<OpState>>, #[smi] id: u32) -> bool {
    std::future::poll_fn(|cx| {
        let mut state = state.borrow_mut();
        let Some(live) = state.borrow_mut::<Host>().live.get_mut(&id) else {
            return std::task::Poll::Ready(false);
        };
        let Some(reply) = live.reply.as_mut() else { return std::task::Poll::Ready(false) };
        if reply.poll_closed(cx).is_ready() {
            live.failed.get_or_insert(Outcome::Canceled);
            return std::task::Poll::Ready(true);
        }
        live.gone = Some(cx.waker().clone());
        std::task::Poll::Pending
    })
    .await
}

/// Whether invocation `id` is still in flight.
#[op2(fast)]
fn op_isola_live(state: &mut OpState, #[smi] id: u32) -> bool {
    state.borrow::<Host>().live.contains_key(&id)
}

/// Charges `micros` of CPU time spent for invocation `id` off the isolate thread (WebCrypto
/// on the blocking pool); `id` -1 charges the background budget.
#[op2(fast)]
fn op_isola_charge(state: &mut OpState, #[smi] id: i32, #[smi] micros: i32) {
    let used = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    state.borrow_mut::<Host>().charge_off_thread(u32::try_from(id).ok(), used);
}

/// Marks an invocation finished: its response is sent and its `waitUntil` work settled.
#[op2(fast)]
fn op_isola_done(state: &mut OpState, #[smi] id: u32) {
    state.borrow_mut::<Host>().finish(id);
}

/// Every extension of an isolate, in load order. The snapshot build and the runtime use this
/// one list, so their op tables match; `fetch` carries the runtime's outbound policy.
pub fn extensions(fetch: deno_fetch::Options) -> Vec<deno_core::Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::init(
            std::sync::Arc::new(deno_web::BlobStore::default()),
            None,
            false,
            deno_web::InMemoryBroadcastChannel::default(),
        ),
        deno_crypto::deno_crypto::init(None),
        deno_fetch::deno_fetch::init(fetch),
        deno_net::init(),
        isola::init(),
    ]
}

/// `navigator.userAgent` and the User-Agent of outbound `fetch`.
pub const USER_AGENT: &str = concat!("Isola/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::{take_whole, BodyError};

    #[test]
    fn a_body_that_arrived_whole_is_taken_as_bytes_and_any_other_is_streamed() {
        // Whole: the channel is closed and holds the one chunk.
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Ok(Bytes::from_static(b"{\"a\":1}"))).unwrap();
        drop(tx);
        let (whole, stream) = take_whole(rx);
        assert_eq!(whole.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(stream.is_none());
        // Still arriving: streamed, the chunk left in place.
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"part"))).unwrap();
        let (whole, stream) = take_whole(rx);
        assert!(whole.is_none());
        let mut stream = stream.unwrap();
        assert_eq!(stream.try_recv().unwrap().unwrap(), Bytes::from_static(b"part"));
        drop(tx);
        // Two chunks, the sender gone: streamed, both left in place.
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"a"))).unwrap();
        tx.try_send(Ok(Bytes::from_static(b"b"))).unwrap();
        drop(tx);
        let (whole, stream) = take_whole(rx);
        assert!(whole.is_none());
        assert_eq!(stream.unwrap().len(), 2);
        // Failed at once: streamed, so that reading it throws the failure.
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Err(BodyError("reset".into()))).unwrap();
        drop(tx);
        let (whole, stream) = take_whole(rx);
        assert!(whole.is_none());
        let failure = stream.unwrap().try_recv().unwrap().unwrap_err();
        assert_eq!(failure.0, "reset");
    }
}

//! The ops of accepted WebSockets (`WebSocketPair`, `new Response(null, { status: 101,
//! webSocket })`): the function answers an upgrade with one end of a pair of channels, the
//! node bridges the other to the client. Each message the function receives is an entry of
//! its own, with a fresh CPU budget (as on Workers); one that runs out closes the socket with
//! 1011.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use deno_core::{op2, v8, JsBuffer, OpState, ToV8};
use deno_error::JsErrorBox;
use tokio::sync::mpsc;

use super::host::{Live, Socket};
use super::{Host, Reply, ResponseBody, SocketEnds, SocketIn, SocketOut};

/// Messages buffered towards the client. `send` cannot wait (it is synchronous), so past it
/// the socket closes with 1008 (a function that sends faster than its client reads, without
/// limit, is not served).
pub(crate) const OUTGOING_BUFFER: usize = 1024;
/// Messages from the client not yet taken by the function; a full buffer stops reading.
pub(crate) const INCOMING_BUFFER: usize = 16;

/// Answers invocation `id` (an upgrade request) with a WebSocket: a `101` whose body is the
/// connection's ends of the socket. Returns the socket's id, or -1 when the isolate has as
/// many sockets open as it may (the request is then answered 503).
#[op2(fast)]
#[smi]
pub fn op_isola_ws_accept(state: &mut OpState, #[smi] id: u32) -> i32 {
    let host = state.borrow_mut::<Host>();
    let Some(mut live) = host.live.remove(&id) else { return -1 };
    let Some(reply) = live.take_reply() else {
        host.live.insert(id, live);
        return -1;
    };
    if host.sockets.len() >= host.max_sockets {
        let mut refused = http::Response::new(ResponseBody::Full(Bytes::from_static(
            b"too many WebSockets open on this isolate",
        )));
        *refused.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        live.status = Some(503);
        let _ = reply.send(Reply::Response(refused));
        host.live.insert(id, live);
        return -1;
    }
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_BUFFER);
    let mut response = http::Response::new(ResponseBody::WebSocket(SocketEnds {
        outgoing: outgoing_rx,
        incoming: incoming_tx,
    }));
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = std::mem::take(&mut live.headers);
    live.status = Some(101);
    if reply.send(Reply::Response(response)).is_err() {
        live.failed.get_or_insert(super::Outcome::Canceled);
        host.live.insert(id, live);
        return -1;
    }
    // The accepting invocation now lasts as long as the socket: it leaves the time accounts
    // (its events have their own) and is reported when the socket ends.
    live.cpu_used = host.meter.remove(id);
    let socket = host.next_socket;
    host.next_socket = host.next_socket.wrapping_add(1);
    host.sockets.insert(
        socket,
        Socket {
            outgoing: outgoing_tx,
            incoming: Rc::new(tokio::sync::Mutex::new(incoming_rx)),
            accepted: live,
        },
    );
    socket as i32
}

/// The next event of socket `socket`, as `[entry, kind, data, reason]`: kind 0 a text
/// message, 1 a binary one, 2 the close (data the code). `entry` is the live entry the
/// event runs as; the function calls `op_isola_done(entry)` once it is dispatched. `null`
/// once the socket is over.
#[op2]
pub async fn op_isola_ws_next(
    state: Rc<RefCell<OpState>>,
    #[smi] socket: u32,
) -> Option<SocketEvent> {
    let incoming = {
        let state = state.borrow();
        state.borrow::<Host>().sockets.get(&socket).map(|s| s.incoming.clone())
    };
    let event = match incoming {
        Some(incoming) => incoming.lock().await.recv().await,
        None => None,
    };
    let mut state = state.borrow_mut();
    let host = state.borrow_mut::<Host>();
    let Some(event) = event else {
        // The connection ended: the socket is over for the function too.
        host.sockets.remove(&socket);
        return None;
    };
    if let Some(open) = host.sockets.get_mut(&socket) {
        if !matches!(event, SocketIn::Close(..)) {
            open.accepted.messages.0 += 1;
        }
    }
    let entry = host.next_id;
    host.next_id = host.next_id.wrapping_add(1);
    host.meter.begin(entry);
    let mut live = Live::unanswered(None);
    live.socket = Some(socket);
    host.live.insert(entry, live);
    Some(SocketEvent { entry, event })
}

/// A socket's event as `op_isola_ws_next` hands it over.
pub struct SocketEvent {
    entry: u32,
    event: SocketIn,
}

impl<'a> ToV8<'a> for SocketEvent {
    type Error = std::convert::Infallible;

    fn to_v8<'i>(
        self,
        scope: &mut v8::PinScope<'a, 'i>,
    ) -> Result<v8::Local<'a, v8::Value>, Self::Error> {
        let text = |scope: &mut v8::PinScope<'a, 'i>, s: &str| -> v8::Local<'a, v8::Value> {
            v8::String::new(scope, s).map_or_else(|| v8::String::empty(scope).into(), Into::into)
        };
        let entry = v8::Integer::new_from_unsigned(scope, self.entry).into();
        let fields: [v8::Local<v8::Value>; 4] = match self.event {
            SocketIn::Text(message) => [
                entry,
                v8::Integer::new(scope, 0).into(),
                text(scope, &message),
                v8::undefined(scope).into(),
            ],
            SocketIn::Binary(bytes) => {
                let length = bytes.len();
                let store =
                    v8::ArrayBuffer::new_backing_store_from_vec(bytes.to_vec()).make_shared();
                let buffer = v8::ArrayBuffer::with_backing_store(scope, &store);
                let _ = length;
                [
                    entry,
                    v8::Integer::new(scope, 1).into(),
                    buffer.into(),
                    v8::undefined(scope).into(),
                ]
            }
            SocketIn::Close(code, reason) => [
                entry,
                v8::Integer::new(scope, 2).into(),
                v8::Integer::new(scope, i32::from(code)).into(),
                text(scope, &reason),
            ],
        };
        Ok(v8::Array::new_with_elements(scope, &fields).into())
    }
}

/// Queues `message` on socket `socket`; false when the socket is no longer open.
fn send(state: &mut OpState, socket: u32, message: SocketOut) -> Result<bool, JsErrorBox> {
    let host = state.borrow_mut::<Host>();
    let Some(open) = host.sockets.get_mut(&socket) else { return Ok(false) };
    match open.outgoing.try_send(message) {
        Ok(()) => {
            open.accepted.messages.1 += 1;
            Ok(true)
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            host.close_socket(socket, 1008, "the client reads slower than the function sends");
            Err(JsErrorBox::type_error(
                "WebSocket send buffer is full: the socket is closed (1008)",
            ))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            host.sockets.remove(&socket);
            Ok(false)
        }
    }
}

#[op2(fast)]
pub fn op_isola_ws_send_text(
    state: &mut OpState,
    #[smi] socket: u32,
    #[string] text: String,
) -> Result<bool, JsErrorBox> {
    send(state, socket, SocketOut::Text(text))
}

#[op2]
pub fn op_isola_ws_send_binary(
    state: &mut OpState,
    #[smi] socket: u32,
    #[buffer] data: JsBuffer,
) -> Result<bool, JsErrorBox> {
    send(state, socket, SocketOut::Binary(Bytes::copy_from_slice(&data)))
}

/// Starts the closing handshake of socket `socket` with `code` and `reason`.
#[op2(fast)]
pub fn op_isola_ws_close(
    state: &mut OpState,
    #[smi] socket: u32,
    #[smi] code: u32,
    #[string] reason: String,
) {
    let host = state.borrow_mut::<Host>();
    if let Some(open) = host.sockets.get(&socket) {
        let code = u16::try_from(code).unwrap_or(1000);
        let _ = open.outgoing.try_send(SocketOut::Close(code, reason));
    }
}

/// `new WebSocket(url, protocols)`: opens an outbound socket under the outbound policy (as
/// `fetch`); answers `[socket, protocol]` once it is open, or throws why it is not.
#[op2]
pub async fn op_isola_ws_connect(
    state: Rc<RefCell<OpState>>,
    #[string] url: String,
    #[string] protocols: String,
) -> Result<Connected, JsErrorBox> {
    let (outgoing, incoming, protocol) =
        crate::websocket::open(&url, &protocols).await.map_err(JsErrorBox::type_error)?;
    let mut state = state.borrow_mut();
    let host = state.borrow_mut::<Host>();
    let socket = host.next_socket;
    host.next_socket = host.next_socket.wrapping_add(1);
    host.sockets.insert(
        socket,
        Socket {
            outgoing,
            incoming: Rc::new(tokio::sync::Mutex::new(incoming)),
            accepted: Live::unanswered(None),
        },
    );
    Ok(Connected { socket, protocol })
}

/// An outbound socket, open: its id and the subprotocol the server chose.
pub struct Connected {
    socket: u32,
    protocol: String,
}

impl<'a> ToV8<'a> for Connected {
    type Error = std::convert::Infallible;

    fn to_v8<'i>(
        self,
        scope: &mut v8::PinScope<'a, 'i>,
    ) -> Result<v8::Local<'a, v8::Value>, Self::Error> {
        let socket = v8::Integer::new_from_unsigned(scope, self.socket).into();
        let protocol = v8::String::new(scope, &self.protocol)
            .map_or_else(|| v8::String::empty(scope).into(), Into::into);
        Ok(v8::Array::new_with_elements(scope, &[socket, protocol]).into())
    }
}

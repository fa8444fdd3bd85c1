//! Bodies between hyper and an isolate, streamed both ways through bounded channels.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use js_runtime::{BodyChunk, BodyError, RequestBody, ResponseBody};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Chunks of a request body buffered between the connection and the isolate. A full channel
/// stops reading from the socket, so a large upload is never held whole.
const REQUEST_CHUNKS_IN_FLIGHT: usize = 4;

/// Request body pieces already received are joined into chunks of up to this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;

/// Streams a request body to the isolate; `None` for a request that has no body. Past
/// `limit` bytes the stream breaks and the flag (made only for a body that streams) is set,
/// so the node can answer 413.
pub fn request_body<B>(
    mut incoming: B,
    limit: u64,
    counted: Counter,
) -> (RequestBody, Option<Arc<AtomicBool>>)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + 'static,
{
    if incoming.is_end_stream() {
        return (None, None);
    }
    // A small body usually arrives with the head: then it goes to the isolate whole, in a
    // closed channel holding its one chunk (no larger than a streamed chunk; the isolate
    // hands it to JavaScript as bytes, with no stream), and no task is spawned to read it.
    let mut first = None;
    if let Some(Some(Ok(frame))) = incoming.frame().now_or_never() {
        let chunk = frame.into_data().unwrap_or_default();
        let small = chunk.len() <= COALESCE_BYTES && chunk.len() as u64 <= limit;
        if incoming.is_end_stream() && small {
            counted.inc_by(chunk.len() as u64);
            let (tx, rx) = mpsc::channel::<BodyChunk>(1);
            if !chunk.is_empty() {
                let _ = tx.try_send(Ok(chunk));
            }
            // Whole and within the limit: it cannot overflow, so no flag.
            return (Some(rx), None);
        }
        first = Some(chunk);
    }
    let overflowed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<BodyChunk>(REQUEST_CHUNKS_IN_FLIGHT);
    let flag = overflowed.clone();
    tokio::spawn(async move {
        let mut received = 0u64;
        let mut ended = false;
        while !ended {
            // Wait for one chunk, then take whatever else is already there, up to
            // COALESCE_BYTES: QUIC and small TCP reads deliver many small pieces, and each
            // chunk handed to the isolate costs a trip through JavaScript.
            let next = match first.take() {
                Some(chunk) => Some(Ok(Frame::data(chunk))),
                None => incoming.frame().await,
            };
            let mut chunk = match next {
                None => break,
                Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
                Some(Err(e)) => {
                    let _ = tx.send(Err(BodyError(e.to_string()))).await;
                    break;
                }
            };
            while chunk.len() < COALESCE_BYTES {
                match incoming.frame().now_or_never() {
                    Some(Some(Ok(frame))) => {
                        if let Ok(more) = frame.into_data() {
                            let mut joined = BytesMut::from(chunk);
                            joined.extend_from_slice(&more);
                            chunk = joined.freeze();
                        }
                    }
                    Some(Some(Err(e))) => {
                        let _ = tx.send(Err(BodyError(e.to_string()))).await;
                        return;
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            received += chunk.len() as u64;
            counted.inc_by(chunk.len() as u64);
            if received > limit {
                flag.store(true, Ordering::Relaxed);
                let message = format!("the request body is larger than {limit} bytes");
                let _ = tx.send(Err(BodyError(message))).await;
                break;
            }
            if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                break; // the function stopped reading
            }
        }
    });
    (Some(rx), Some(overflowed))
}

/// A response body: complete, or streamed from the isolate (its bytes counted as they go).
pub enum OutBody {
    Full(Option<Bytes>),
    /// Chunks from the isolate, counted, and their total length when it is known.
    Stream(mpsc::Receiver<BodyChunk>, Counter, Option<u64>),
}

impl OutBody {
    /// A function's response body; its bytes count in `counted`.
    pub fn counted(body: ResponseBody, counted: Counter) -> OutBody {
        match body {
            ResponseBody::Full(bytes) => {
                counted.inc_by(bytes.len() as u64);
                OutBody::Full(Some(bytes))
            }
            ResponseBody::Stream(rx, length) => OutBody::Stream(rx, counted, length),
            // Answered by the WebSocket path before it gets here; dropped, the socket ends.
            ResponseBody::WebSocket(_) => OutBody::Full(None),
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> OutBody {
        OutBody::Full(Some(bytes.into()))
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            OutBody::Full(bytes) => {
                Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
            }
            OutBody::Stream(rx, counted, ..) => rx.poll_recv(cx).map(|chunk| {
                chunk.map(|c| {
                    c.map(|bytes| {
                        counted.inc_by(bytes.len() as u64);
                        Frame::data(bytes)
                    })
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Full(None))
            || matches!(self, OutBody::Full(Some(b)) if b.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            OutBody::Full(None) => SizeHint::with_exact(0),
            OutBody::Stream(_, _, Some(length)) => SizeHint::with_exact(*length),
            OutBody::Stream(..) => SizeHint::default(),
        }
    }
}

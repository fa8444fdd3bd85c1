//! Bodies between hyper and an isolate, streamed both ways through bounded channels.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use js_runtime::{BodyChunk, BodyError, RequestBody, ResponseBody};
use tokio::sync::mpsc;

/// Chunks of a request body buffered between the connection and the isolate. A full channel
/// stops reading from the socket, so a large upload is never held whole.
const REQUEST_CHUNKS_IN_FLIGHT: usize = 4;

/// Streams a request body to the isolate; `None` for a request that has no body. Past
/// `limit` bytes the stream breaks and the flag is set, so the node can answer 413.
pub fn request_body(mut incoming: Incoming, limit: u64) -> (RequestBody, Arc<AtomicBool>) {
    let overflowed = Arc::new(AtomicBool::new(false));
    if incoming.is_end_stream() {
        return (None, overflowed);
    }
    let (tx, rx) = mpsc::channel::<BodyChunk>(REQUEST_CHUNKS_IN_FLIGHT);
    let flag = overflowed.clone();
    tokio::spawn(async move {
        let mut received = 0u64;
        loop {
            match incoming.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        received += data.len() as u64;
                        if received > limit {
                            flag.store(true, Ordering::Relaxed);
                            let message = format!("the request body is larger than {limit} bytes");
                            let _ = tx.send(Err(BodyError(message))).await;
                            break;
                        }
                        if !data.is_empty() && tx.send(Ok(data)).await.is_err() {
                            break; // the function stopped reading
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(BodyError(e.to_string()))).await;
                    break;
                }
            }
        }
    });
    (Some(rx), overflowed)
}

/// A response body: complete, or streamed from the isolate.
pub enum OutBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<BodyChunk>),
}

impl From<ResponseBody> for OutBody {
    fn from(body: ResponseBody) -> OutBody {
        match body {
            ResponseBody::Full(bytes) => OutBody::Full(Some(bytes)),
            ResponseBody::Stream(rx) => OutBody::Stream(rx),
        }
    }
}

impl OutBody {
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
            OutBody::Stream(rx) => rx.poll_recv(cx).map(|chunk| chunk.map(|c| c.map(Frame::data))),
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
            OutBody::Stream(_) => SizeHint::default(),
        }
    }
}

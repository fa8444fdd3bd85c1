//! W3C trace context (`traceparent`): a request that carries one is continued, not restarted.
//! The node's request span becomes a child of the caller's span (and is exported so with
//! OTLP), and the function sees a `traceparent` naming the node's span as its parent, which
//! its outbound `fetch` continues (the runtime gives each outbound request a child span id).

use http::HeaderValue;

/// A parsed `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceParent {
    /// `00-<trace id>-<parent id>-<flags>`, lowercase hex, neither id all zeros; anything else
    /// is ignored, as the W3C recommendation says.
    pub fn parse(value: &HeaderValue) -> Option<TraceParent> {
        let text = value.to_str().ok()?;
        let mut parts = text.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = hex::<16>(trace).filter(|t| t.iter().any(|b| *b != 0))?;
        let parent_id = hex::<8>(parent).filter(|p| p.iter().any(|b| *b != 0))?;
        let [flags] = hex::<1>(flags)?;
        Some(TraceParent { trace_id, parent_id, flags })
    }

    /// The header for what this span calls: the same trace, `span_id` as the parent.
    pub fn child(&self, span_id: [u8; 8]) -> HeaderValue {
        let text = format!(
            "00-{}-{}-{:02x}",
            self.trace_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            span_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            self.flags
        );
        HeaderValue::from_str(&text).expect("hex is a valid header value")
    }
}

/// Makes `span` (the node's request span) a child of the caller's, and answers the id the
/// function's `traceparent` names as its parent: the exported span's own id with OTLP on, a
/// random one otherwise.
pub fn continue_trace(span: &tracing::Span, incoming: &TraceParent) -> [u8; 8] {
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::trace::{SpanId, TraceContextExt};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(remote_parent(incoming));
        let own = span.context().span().span_context().span_id();
        if own != SpanId::INVALID {
            return own.to_bytes();
        }
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (span, incoming);
    let mut id = [0u8; 8];
    id.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    id
}

/// Exports an outbound request of a function as a client span: a child of the node's request
/// span, with the span id its `traceparent` carried (so the callee's spans hang under it).
/// Without the `otlp` feature there is nowhere to export to.
pub fn export_outbound(span: &js_runtime::OutboundSpan) {
    #[cfg(feature = "otlp")]
    export_outbound_otlp(span);
    #[cfg(not(feature = "otlp"))]
    let _ = span;
}

#[cfg(feature = "otlp")]
fn export_outbound_otlp(span: &js_runtime::OutboundSpan) {
    let (Ok(parent), Ok(own)) =
        (HeaderValue::from_str(&span.parent), HeaderValue::from_str(&span.traceparent))
    else {
        return;
    };
    let (Some(parent), Some(own)) = (TraceParent::parse(&parent), TraceParent::parse(&own)) else {
        return;
    };
    // A function that sent a trace of its own is not in this one.
    if parent.trace_id != own.trace_id {
        return;
    }
    use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
    use opentelemetry::KeyValue;
    let tracer = opentelemetry::global::tracer("edge-node");
    let cx = remote_parent(&parent);
    let mut attributes = vec![
        KeyValue::new("http.request.method", span.method.clone()),
        KeyValue::new("url.full", span.url.clone()),
        KeyValue::new("function", span.function.to_string()),
    ];
    if let Some(status) = span.status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    let builder = tracer
        .span_builder(format!("fetch {}", span.method))
        .with_kind(SpanKind::Client)
        .with_start_time(span.start)
        .with_attributes(attributes);
    let mut exported = NEXT_SPAN_ID.with(|next| {
        next.set(Some(own.parent_id));
        let exported = builder.start_with_context(&tracer, &cx);
        next.set(None);
        exported
    });
    if span.status.is_none_or(|s| s >= 500) {
        exported.set_status(Status::error("the request failed"));
    }
    exported.end_with_timestamp(span.end);
}

/// A context whose parent is the remote span `traceparent` names.
#[cfg(feature = "otlp")]
fn remote_parent(traceparent: &TraceParent) -> opentelemetry::Context {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(traceparent.trace_id),
        SpanId::from_bytes(traceparent.parent_id),
        TraceFlags::new(traceparent.flags),
        true,
        TraceState::default(),
    );
    opentelemetry::Context::new().with_remote_span_context(remote)
}

#[cfg(feature = "otlp")]
thread_local! {
    static NEXT_SPAN_ID: std::cell::Cell<Option<[u8; 8]>> = const { std::cell::Cell::new(None) };
}

/// The node's span ids: random, except the id of an outbound request's span, which the
/// function chose when it sent the request's `traceparent`.
#[cfg(feature = "otlp")]
#[derive(Debug, Default)]
pub struct SpanIds(opentelemetry_sdk::trace::RandomIdGenerator);

#[cfg(feature = "otlp")]
impl opentelemetry_sdk::trace::IdGenerator for SpanIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        match NEXT_SPAN_ID.with(std::cell::Cell::take) {
            Some(id) => opentelemetry::trace::SpanId::from_bytes(id),
            None => self.0.new_span_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_00_and_refuses_the_rest() {
        let good =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let parsed = TraceParent::parse(&good).unwrap();
        assert_eq!(parsed.flags, 1);
        assert_eq!(
            parsed.child([1, 2, 3, 4, 5, 6, 7, 8]),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(TraceParent::parse(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }
}

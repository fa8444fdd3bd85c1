//! The node's own log (tracing) and, with the `otlp` feature, OTLP export of its spans.

/// The node's own log: `EDGE_LOG` filter (default `info`), `EDGE_LOG_FORMAT=json|plain` on
/// standard error; with `OTEL_EXPORTER_OTLP_ENDPOINT` set (and the `otlp` feature, on by
/// default), request spans are also exported over OTLP/HTTP. The returned guard flushes them.
pub fn init_tracing() -> Option<otlp::Guard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: none in files, pipes or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if std::env::var("EDGE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let (otlp_layer, guard) = otlp::layer();
    let layers: Vec<otlp::Boxed> = std::iter::once(fmt).chain(otlp_layer).collect();
    tracing_subscriber::registry().with(layers).init();
    guard
}

/// OTLP export of the node's spans, when built with the `otlp` feature and asked for with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard variables of the OTLP exporter apply).
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;

    pub struct Guard(opentelemetry_sdk::trace::SdkTracerProvider);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    pub type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

    pub fn layer() -> (Option<Boxed>, Option<Guard>) {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("warning: OTLP export off: {e}");
                return (None, None);
            }
        };
        let resource =
            opentelemetry_sdk::Resource::builder().with_service_name("edge-node").build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .with_id_generator(edge_node::SpanIds::default())
            .build();
        // Outbound requests' spans are made directly, through the global provider.
        opentelemetry::global::set_tracer_provider(provider.clone());
        let tracer = provider.tracer("edge-node");
        // Spans of requests and admin calls (debug level), whatever EDGE_LOG prints.
        let filter = tracing_subscriber::EnvFilter::new("edge_node=debug");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed();
        (Some(layer), Some(Guard(provider)))
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    pub struct Guard;
    pub type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

    pub fn layer() -> (Option<Boxed>, Option<Guard>) {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            eprintln!("warning: this edge-node was built without the `otlp` feature; no traces are exported");
        }
        (None, None)
    }
}

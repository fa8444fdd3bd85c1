//! Metrics (Prometheus text format, prometheus-client) and the per-function time series the
//! dashboard draws. Every series carries the node id and region; the other labels are the
//! function name, the trigger and the outcome, all bounded sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use js_runtime::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub function: String,
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub function: String,
    pub trigger: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// What happened to a V8 code cache: `hit` (handed to V8), `miss` (compiled with none),
/// `stored` (made here), `corrupt` (failed its checksum), `shipped` (came with a bundle).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeCacheLabels {
    pub event: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// One finished invocation, as metrics and the dashboard count it.
#[derive(Debug, Clone)]
pub struct InvocationStats<'a> {
    pub trigger: &'a str,
    pub outcome: Outcome,
    /// The HTTP status the function answered, if it answered one.
    pub status: Option<u16>,
    pub duration: Duration,
    pub cpu_time: Duration,
    /// The isolate start this invocation waited for, if it was a cold start.
    pub cold_start: Option<Duration>,
    /// When it ended (the same reading stamps its log summary).
    pub ended: SystemTime,
}

/// One function's meters, looked up once: looking a series up in its family builds the
/// label set (allocating) and hashes it, which no invocation should pay for. Families are
/// never cleared of these series, so the handles stay the exported ones.
pub struct FunctionMeters {
    telemetry: Arc<Telemetry>,
    function: Arc<str>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    cpu: Histogram,
    warm_starts: Counter,
    cold_starts: Counter,
    cold_start_duration: Histogram,
    load_shed: Counter,
    /// Records of the function left out of the node's own log.
    pub log_dropped: Counter,
    /// The series of the most common invocation: HTTP, answered.
    http_duration: Histogram,
    http_ok: Counter,
    /// The function's dashboard series (also in [`Telemetry`]'s map, for reading).
    series: Arc<Mutex<Series>>,
}

impl FunctionMeters {
    /// The function's name.
    pub fn function(&self) -> &Arc<str> {
        &self.function
    }

    /// Counts one finished invocation.
    pub fn invocation(&self, s: &InvocationStats) {
        let (t, function) = (&self.telemetry, &*self.function);
        let seconds = s.duration.as_secs_f64();
        if s.trigger == "http" {
            self.http_duration.observe(seconds);
        } else {
            let trigger = TriggerLabels { function: function.into(), trigger: s.trigger.into() };
            t.duration.get_or_create(&trigger).observe(seconds);
        }
        if s.trigger == "http" && s.outcome == Outcome::Ok {
            self.http_ok.inc();
        } else {
            let outcome = OutcomeLabels {
                function: function.into(),
                trigger: s.trigger.into(),
                outcome: s.outcome.as_str().into(),
            };
            t.invocations.get_or_create(&outcome).inc();
        }
        self.cpu.observe(s.cpu_time.as_secs_f64());
        match s.cold_start {
            Some(start) => {
                self.cold_starts.inc();
                self.cold_start_duration.observe(start.as_secs_f64());
            }
            None => {
                self.warm_starts.inc();
            }
        }
        if s.outcome == Outcome::LoadShed {
            self.load_shed.inc();
        }
        self.series.lock().expect("series lock").add(s);
    }
}

/// The node's metrics.
pub struct Telemetry {
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    duration: Histograms<TriggerLabels>,
    cpu: Histograms<FunctionLabels>,
    cold_starts: Family<FunctionLabels, Counter>,
    warm_starts: Family<FunctionLabels, Counter>,
    cold_start_duration: Histograms<FunctionLabels>,
    pub isolates: Family<FunctionLabels, Gauge>,
    pub memory: Family<FunctionLabels, Gauge>,
    pub queued: Family<FunctionLabels, Gauge>,
    load_shed: Family<FunctionLabels, Counter>,
    log_dropped: Family<FunctionLabels, Counter>,
    pub bytes_in: Family<FunctionLabels, Counter>,
    pub bytes_out: Family<FunctionLabels, Counter>,
    unrouted: Counter,
    cron_delay: Histograms<FunctionLabels>,
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub queue_age: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub cache_hits: Family<FunctionLabels, Counter>,
    pub cache_misses: Family<FunctionLabels, Counter>,
    pub cache_bytes: Family<FunctionLabels, Gauge>,
    pub cache_evictions: Family<FunctionLabels, Counter>,
    code_cache: Family<CodeCacheLabels, Counter>,
    websockets: Family<FunctionLabels, Gauge>,
    websocket_messages_in: Family<FunctionLabels, Counter>,
    websocket_messages_out: Family<FunctionLabels, Counter>,
    websocket_bytes_in: Family<FunctionLabels, Counter>,
    websocket_bytes_out: Family<FunctionLabels, Counter>,
    series: Mutex<HashMap<String, Arc<Mutex<Series>>>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn cpu_histogram() -> Histogram {
    // 0.1 ms to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Telemetry {
    pub fn new(node: &str, region: &str) -> Telemetry {
        let labels = [
            ("node".into(), node.to_string().into()),
            ("region".into(), region.to_string().into()),
        ];
        let mut registry = Registry::with_prefix_and_labels("edge", labels.into_iter());
        let t = Telemetry {
            invocations: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            cpu: Family::new_with_constructor(cpu_histogram),
            cold_starts: Family::default(),
            warm_starts: Family::default(),
            cold_start_duration: Family::new_with_constructor(latency_histogram),
            isolates: Family::default(),
            memory: Family::default(),
            queued: Family::default(),
            load_shed: Family::default(),
            log_dropped: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            unrouted: Counter::default(),
            cron_delay: Family::new_with_constructor(latency_histogram),
            queue_depth: Family::default(),
            queue_age: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_bytes: Family::default(),
            cache_evictions: Family::default(),
            code_cache: Family::default(),
            websockets: Family::default(),
            websocket_messages_in: Family::default(),
            websocket_messages_out: Family::default(),
            websocket_bytes_in: Family::default(),
            websocket_bytes_out: Family::default(),
            series: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "invocations",
            "Invocations by function, trigger and outcome",
            t.invocations.clone(),
        );
        registry.register_with_unit(
            "invocation_duration",
            "Wall time of an invocation, until its response and waitUntil work are done",
            Unit::Seconds,
            t.duration.clone(),
        );
        registry.register_with_unit(
            "invocation_cpu",
            "CPU time charged to an invocation",
            Unit::Seconds,
            t.cpu.clone(),
        );
        registry.register(
            "cold_starts",
            "Invocations that started an isolate",
            t.cold_starts.clone(),
        );
        registry.register(
            "warm_starts",
            "Invocations served by a running isolate",
            t.warm_starts.clone(),
        );
        registry.register_with_unit(
            "cold_start_duration",
            "Time to start an isolate for an invocation (snapshot, modules, top-level code)",
            Unit::Seconds,
            t.cold_start_duration.clone(),
        );
        registry.register("isolates", "Isolates alive", t.isolates.clone());
        registry.register_with_unit(
            "isolate_memory",
            "V8 heap and ArrayBuffer bytes held by the function's isolates",
            Unit::Bytes,
            t.memory.clone(),
        );
        registry.register(
            "pool_queued_requests",
            "Requests waiting for an isolate",
            t.queued.clone(),
        );
        registry.register(
            "load_shed",
            "Requests refused because the pool was full",
            t.load_shed.clone(),
        );
        registry.register(
            "function_log_dropped",
            "Function log records left out of the node's own log (over its rate); the function's log keeps them",
            t.log_dropped.clone(),
        );
        registry.register_with_unit(
            "request_body",
            "Request body bytes received",
            Unit::Bytes,
            t.bytes_in.clone(),
        );
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent",
            Unit::Bytes,
            t.bytes_out.clone(),
        );
        registry.register("unrouted_requests", "Requests no route matched", t.unrouted.clone());
        registry.register(
            "queue_depth",
            "Messages in a queue, in flight included",
            t.queue_depth.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_message_age",
            "Age of a queue's oldest message",
            Unit::Seconds,
            t.queue_age.clone(),
        );
        registry.register(
            "cache_hits",
            "Cache API matches answered from the cache",
            t.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cache API matches that found no fresh entry",
            t.cache_misses.clone(),
        );
        registry.register_with_unit(
            "cache",
            "Bytes of Cache API entries kept in memory",
            Unit::Bytes,
            t.cache_bytes.clone(),
        );
        registry.register(
            "cache_evictions",
            "Cache API entries evicted for room (least recently used first)",
            t.cache_evictions.clone(),
        );
        registry.register(
            "code_cache",
            "V8 code caches of function modules, by what happened (hit, miss, stored, corrupt, shipped)",
            t.code_cache.clone(),
        );
        registry.register("websockets", "WebSockets open", t.websockets.clone());
        registry.register(
            "websocket_messages_received",
            "WebSocket messages received from clients",
            t.websocket_messages_in.clone(),
        );
        registry.register(
            "websocket_messages_sent",
            "WebSocket messages sent to clients",
            t.websocket_messages_out.clone(),
        );
        registry.register_with_unit(
            "websocket_received",
            "WebSocket message bytes received from clients",
            Unit::Bytes,
            t.websocket_bytes_in.clone(),
        );
        registry.register_with_unit(
            "websocket_sent",
            "WebSocket message bytes sent to clients",
            Unit::Bytes,
            t.websocket_bytes_out.clone(),
        );
        Telemetry { registry, ..t }
    }

    pub fn function(name: &str) -> FunctionLabels {
        FunctionLabels { function: name.to_string() }
    }

    /// The meters of function `name`, for [`FunctionMeters::invocation`].
    pub fn meters(self: &Arc<Self>, name: &str) -> FunctionMeters {
        let function = Telemetry::function(name);
        let http = TriggerLabels { function: name.into(), trigger: "http".into() };
        let http_ok = OutcomeLabels {
            function: name.into(),
            trigger: "http".into(),
            outcome: Outcome::Ok.as_str().into(),
        };
        FunctionMeters {
            telemetry: self.clone(),
            function: Arc::from(name),
            bytes_in: self.bytes_in.get_or_create_owned(&function),
            bytes_out: self.bytes_out.get_or_create_owned(&function),
            cpu: self.cpu.get_or_create_owned(&function),
            warm_starts: self.warm_starts.get_or_create_owned(&function),
            cold_starts: self.cold_starts.get_or_create_owned(&function),
            cold_start_duration: self.cold_start_duration.get_or_create_owned(&function),
            load_shed: self.load_shed.get_or_create_owned(&function),
            log_dropped: self.log_dropped.get_or_create_owned(&function),
            http_duration: self.duration.get_or_create_owned(&http),
            http_ok: self.invocations.get_or_create_owned(&http_ok),
            series: self
                .series
                .lock()
                .expect("series lock")
                .entry(name.to_string())
                .or_default()
                .clone(),
        }
    }

    /// Function `name`'s WebSocket meters.
    pub fn socket_meters(&self, name: &str) -> crate::front::websocket::SocketMeters {
        let f = Telemetry::function(name);
        crate::front::websocket::SocketMeters {
            open: self.websockets.get_or_create_owned(&f),
            messages_in: self.websocket_messages_in.get_or_create_owned(&f),
            messages_out: self.websocket_messages_out.get_or_create_owned(&f),
            bytes_in: self.websocket_bytes_in.get_or_create_owned(&f),
            bytes_out: self.websocket_bytes_out.get_or_create_owned(&f),
        }
    }

    /// Observes how late a cron run started.
    pub fn cron_delay(&self, function: &str, delay: Duration) {
        self.cron_delay.get_or_create(&Telemetry::function(function)).observe(delay.as_secs_f64());
    }

    /// Brings the code cache counters up to `stats` (the store counts; these only follow),
    /// one scrape at a time so that two never add the same difference.
    pub fn code_cache(&self, stats: &crate::functions::caches::CodeCacheStats) {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        for (event, count) in [
            ("hit", stats.hits),
            ("miss", stats.misses),
            ("stored", stats.stored),
            ("corrupt", stats.corrupt),
            ("shipped", stats.shipped),
        ] {
            let counter = self.code_cache.get_or_create(&CodeCacheLabels { event });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// Counts a request no route matched.
    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    /// Per-function time series over the last hour, for the dashboard.
    pub fn series(&self, functions: &[String]) -> Vec<FunctionSeries> {
        let now = bucket_of(SystemTime::now());
        let series = self.series.lock().expect("series lock");
        functions
            .iter()
            .map(|name| FunctionSeries {
                name: name.clone(),
                points: series
                    .get(name)
                    .map(|s| s.lock().expect("series lock").points(now))
                    .unwrap_or_else(|| Series::default().points(now)),
            })
            .collect()
    }
}

/// Seconds per point of the dashboard's series, and how many points an hour holds.
pub const BUCKET_SECONDS: u64 = 10;
const BUCKETS: usize = 360;
/// Latency classes of a bucket: 0.1 ms × 1.25^i.
const LATENCY_CLASSES: usize = 80;

fn bucket_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / BUCKET_SECONDS
}

fn latency_class(d: Duration) -> usize {
    let ms = d.as_secs_f64() * 1000.0;
    if ms <= 0.1 {
        return 0;
    }
    ((ms / 0.1).ln() / 1.25f64.ln()).ceil().min((LATENCY_CLASSES - 1) as f64) as usize
}

fn class_upper_ms(class: usize) -> f64 {
    0.1 * 1.25f64.powi(class as i32)
}

#[derive(Clone)]
struct Bucket {
    index: u64,
    requests: u64,
    errors: u64,
    cold_starts: u64,
    cpu: Duration,
    latency: [u32; LATENCY_CLASSES],
}

impl Bucket {
    fn empty(index: u64) -> Bucket {
        Bucket {
            index,
            requests: 0,
            errors: 0,
            cold_starts: 0,
            cpu: Duration::ZERO,
            latency: [0; LATENCY_CLASSES],
        }
    }

    fn percentile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (class, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(class_upper_ms(class));
            }
        }
        None
    }
}

/// A function's last hour in buckets of [`BUCKET_SECONDS`].
#[derive(Default)]
struct Series {
    buckets: Vec<Bucket>,
}

impl Series {
    fn add(&mut self, s: &InvocationStats) {
        if self.buckets.is_empty() {
            self.buckets = (0..BUCKETS).map(|_| Bucket::empty(u64::MAX)).collect();
        }
        let index = bucket_of(s.ended);
        let slot = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Bucket::empty(index);
        }
        slot.requests += 1;
        // A function's own 5xx answer is an error too, as on Workers' dashboard.
        if s.outcome != Outcome::Ok || s.status.is_some_and(|status| status >= 500) {
            slot.errors += 1;
        }
        if s.cold_start.is_some() {
            slot.cold_starts += 1;
        }
        slot.cpu += s.cpu_time;
        slot.latency[latency_class(s.duration)] += 1;
    }

    fn points(&self, now: u64) -> Vec<Point> {
        (0..BUCKETS as u64)
            .rev()
            .map(|ago| {
                let index = now - ago;
                let bucket = self
                    .buckets
                    .get((index % BUCKETS as u64) as usize)
                    .filter(|b| b.index == index)
                    .cloned()
                    .unwrap_or_else(|| Bucket::empty(index));
                Point {
                    t: index * BUCKET_SECONDS,
                    requests: bucket.requests,
                    errors: bucket.errors,
                    cold_starts: bucket.cold_starts,
                    cpu_ms: bucket.cpu.as_secs_f64() * 1000.0,
                    p50_ms: bucket.percentile(0.5),
                    p99_ms: bucket.percentile(0.99),
                }
            })
            .collect()
    }
}

/// One point of a function's series.
#[derive(Debug, Serialize)]
pub struct Point {
    /// Start of the bucket, Unix seconds.
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub cpu_ms: f64,
    /// Upper bound of the latency class holding the median (classes grow by 25%).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FunctionSeries {
    pub name: String,
    pub points: Vec<Point>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_in_the_right_class() {
        let mut b = Bucket::empty(0);
        for ms in [1.0, 2.0, 3.0, 4.0, 100.0] {
            b.latency[latency_class(Duration::from_secs_f64(ms / 1000.0))] += 1;
        }
        let p50 = b.percentile(0.5).unwrap();
        assert!((3.0..3.75).contains(&p50), "{p50}");
        let p99 = b.percentile(0.99).unwrap();
        assert!((100.0..125.0).contains(&p99), "{p99}");
    }
}

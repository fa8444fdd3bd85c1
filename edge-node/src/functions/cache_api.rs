//! The Cache API's store (`caches.default`, `caches.open(name)`): every function's entries in
//! one moka cache of the node's memory, weighed by size and evicting the least recently used
//! first (`[cache] memory`). An entry's key starts with the function's name, which the node
//! sets, so no function reaches another's entries. HTTP's rules for a shared cache decide
//! what is kept and for how long (http-cache-semantics: `Cache-Control` `max-age`,
//! `s-maxage`, `no-store`, `private`, `Expires`, `Vary`); on top of them a response with
//! `Set-Cookie` is never kept, as on Workers, and a stored answer is given back as a `304`
//! for a matching `If-None-Match` / `If-Modified-Since` and as a `206` for a `Range`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_cache_semantics::{BeforeRequest, CacheOptions, CachePolicy};
use js_runtime::{CacheError, ResponseCache};
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::observe::telemetry::Telemetry;

/// The clock HTTP freshness is judged by (tests move it by hand).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Bytes an entry is charged besides its body and headers (key, policy, moka's own).
const ENTRY_OVERHEAD: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    function: Arc<str>,
    /// `""` for `caches.default`.
    cache: Box<str>,
    /// The request's URL without its fragment.
    url: Box<str>,
}

struct Entry {
    policy: CachePolicy,
    body: Bytes,
    /// How long HTTP says the entry is fresh, from when it was stored.
    ttl: Duration,
    weight: u32,
}

/// Entries leave moka when they stop being fresh, so their memory goes back at once.
struct Freshness;

impl moka::Expiry<Key, Arc<Entry>> for Freshness {
    fn expire_after_create(&self, _: &Key, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Why `put` refused a response.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("a cached response is at most {max} bytes (this one is {size}); see [cache] memory")]
    TooLarge { size: usize, max: u64 },
}

/// The node's Cache API entries, all functions together.
pub struct ResponseCaches {
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    /// The most one entry may weigh: an eighth of `[cache] memory`.
    max_entry: u64,
    telemetry: Arc<Telemetry>,
    clock: Clock,
}

impl ResponseCaches {
    /// A store of at most `memory` bytes (`0` keeps nothing).
    pub fn new(memory: u64, telemetry: Arc<Telemetry>, clock: Clock) -> Arc<ResponseCaches> {
        let listener_telemetry = telemetry.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(memory)
            .weigher(|_: &Key, entry: &Arc<Entry>| entry.weight)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(Freshness)
            .eviction_listener(move |key: Arc<Key>, entry: Arc<Entry>, cause| {
                let function = Telemetry::function(&key.function);
                let t = &listener_telemetry;
                t.cache_bytes.get_or_create(&function).dec_by(i64::from(entry.weight));
                if cause == RemovalCause::Size {
                    t.cache_evictions.get_or_create(&function).inc();
                }
            })
            .build();
        Arc::new(ResponseCaches { entries, max_entry: memory / 8, telemetry, clock })
    }

    /// Function `name`'s view of the store: only its own entries.
    pub fn of(self: &Arc<Self>, name: &str) -> Arc<dyn ResponseCache> {
        let labels = Telemetry::function(name);
        let t = &self.telemetry;
        Arc::new(FunctionCache {
            caches: self.clone(),
            function: Arc::from(name),
            hits: t.cache_hits.get_or_create_owned(&labels),
            misses: t.cache_misses.get_or_create_owned(&labels),
            bytes: t.cache_bytes.get_or_create_owned(&labels),
        })
    }
}

/// One function's entries (see [`ResponseCaches::of`]).
struct FunctionCache {
    caches: Arc<ResponseCaches>,
    function: Arc<str>,
    hits: Counter,
    misses: Counter,
    bytes: Gauge,
}

impl FunctionCache {
    fn key(&self, cache: &str, request: &http::request::Parts) -> Key {
        Key {
            function: self.function.clone(),
            cache: cache.into(),
            url: request.uri.to_string().into(),
        }
    }
}

impl ResponseCache for FunctionCache {
    fn lookup(&self, cache: &str, request: &http::request::Parts) -> Option<http::Response<Bytes>> {
        let found = self.caches.entries.get(&self.key(cache, request));
        let fresh = found.and_then(|entry| {
            match entry.policy.before_request(request, (self.caches.clock)()) {
                BeforeRequest::Fresh(head) => Some(answer(head, &entry.body, &request.headers)),
                BeforeRequest::Stale { .. } => None,
            }
        });
        match &fresh {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        fresh
    }

    fn store(
        &self,
        cache: &str,
        request: &http::request::Parts,
        response: http::Response<Bytes>,
    ) -> Result<(), CacheError> {
        let caches = &self.caches;
        if caches.max_entry == 0 || response.headers().contains_key(header::SET_COOKIE) {
            return Ok(());
        }
        let now = (caches.clock)();
        let key = self.key(cache, request);
        let size = response.body().len()
            + headers_size(&request.headers)
            + headers_size(response.headers())
            + key.url.len()
            + key.cache.len()
            + ENTRY_OVERHEAD;
        let options = CacheOptions { shared: true, ..CacheOptions::default() };
        let policy = CachePolicy::new_options(request, &response, now, options);
        let ttl = policy.time_to_live(now);
        if !policy.is_storable() || ttl.is_zero() {
            return Ok(());
        }
        if size as u64 > caches.max_entry {
            return Err(Box::new(Refused::TooLarge { size, max: caches.max_entry }));
        }
        let body = response.into_body();
        let weight = u32::try_from(size).unwrap_or(u32::MAX);
        self.bytes.inc_by(i64::from(weight));
        caches.entries.insert(key, Arc::new(Entry { policy, body, ttl, weight }));
        // Evict now, so that the bound holds when `put` returns and eviction order is the
        // order of use (moka otherwise applies both a little later).
        caches.entries.run_pending_tasks();
        Ok(())
    }

    fn delete(&self, cache: &str, request: &http::request::Parts) -> bool {
        self.caches.entries.remove(&self.key(cache, request)).is_some()
    }
}

fn headers_size(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// The stored response `head` + `body` as the answer to a request with `asked` headers: a
/// `304` when its validators match the request's conditions, a `206` (or `416`) for a single
/// byte range of a `200`, else the whole response.
fn answer(
    mut head: http::response::Parts,
    body: &Bytes,
    asked: &HeaderMap,
) -> http::Response<Bytes> {
    if not_modified(&head.headers, asked) {
        head.status = StatusCode::NOT_MODIFIED;
        head.headers.remove(header::CONTENT_LENGTH);
        return http::Response::from_parts(head, Bytes::new());
    }
    let range = asked.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_holds = asked
        .get(header::IF_RANGE)
        .is_none_or(|v| head.headers.get(header::ETAG).is_some_and(|etag| etag == v));
    if let (Some(range), true, StatusCode::OK) = (range, if_range_holds, head.status) {
        let total = body.len() as u64;
        match byte_range(range, total) {
            Some(Ok((first, last))) => {
                head.status = StatusCode::PARTIAL_CONTENT;
                let content_range = format!("bytes {first}-{last}/{total}");
                head.headers.insert(header::CONTENT_RANGE, value(&content_range));
                head.headers.insert(header::CONTENT_LENGTH, value(&(last - first + 1).to_string()));
                let part = body.slice(first as usize..=last as usize);
                return http::Response::from_parts(head, part);
            }
            Some(Err(())) => {
                head.status = StatusCode::RANGE_NOT_SATISFIABLE;
                head.headers.insert(header::CONTENT_RANGE, value(&format!("bytes */{total}")));
                head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                return http::Response::from_parts(head, Bytes::new());
            }
            None => {}
        }
    }
    http::Response::from_parts(head, body.clone())
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("digits, dashes and a slash make a header value")
}

/// Whether the request's `If-None-Match` (or, without one, `If-Modified-Since`) says the
/// client's copy is current (RFC 9110, 13.1.2 and 13.1.3; `If-None-Match` compares weakly).
fn not_modified(stored: &HeaderMap, asked: &HeaderMap) -> bool {
    if let Some(tags) = asked.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
        return tags.split(',').any(|tag| tag.trim() == "*" || weak(tag) == weak(etag));
    }
    let date = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    match (date(asked, header::IF_MODIFIED_SINCE), date(stored, header::LAST_MODIFIED)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The one byte range `Range: bytes=...` asks of a body of `total` bytes, as first and last
/// offsets; `Some(Err)` when it cannot be satisfied, `None` when the header is not one range
/// of bytes (several ranges, another unit), which is answered with the whole body.
fn byte_range(range: &str, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 || total == 0 {
            return Some(Err(()));
        }
        (total.saturating_sub(suffix), total - 1)
    } else {
        let first: u64 = first.parse().ok()?;
        let last = if last.is_empty() { u64::MAX } else { last.parse().ok()? };
        if first > last {
            return None;
        }
        if first >= total {
            return Some(Err(()));
        }
        (first, last.min(total - 1))
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fixture {
        caches: Arc<ResponseCaches>,
        now: Arc<Mutex<SystemTime>>,
    }

    fn fixture(memory: u64) -> Fixture {
        let now = Arc::new(Mutex::new(SystemTime::now()));
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        let telemetry = Arc::new(Telemetry::new("n", "r"));
        Fixture { caches: ResponseCaches::new(memory, telemetry, clock), now }
    }

    fn get(url: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn response(headers: &[(&str, &str)], body: &str) -> http::Response<Bytes> {
        let mut b = http::Response::builder().status(200);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::from(body.to_string())).unwrap()
    }

    fn body(answer: Option<http::Response<Bytes>>) -> Option<String> {
        answer.map(|r| String::from_utf8(r.into_body().to_vec()).unwrap())
    }

    #[test]
    fn max_age_decides_how_long_an_entry_is_fresh() {
        let f = fixture(1 << 20);
        let cache = f.caches.of("a");
        let url = "https://x.test/a";
        cache
            .store("", &get(url, &[]), response(&[("cache-control", "max-age=60")], "one"))
            .unwrap();
        assert_eq!(body(cache.lookup("", &get(url, &[]))).as_deref(), Some("one"));
        *f.now.lock().unwrap() += Duration::from_secs(59);
        let hit = cache.lookup("", &get(url, &[])).unwrap();
        assert_eq!(hit.headers()["age"], "59");
        *f.now.lock().unwrap() += Duration::from_secs(2);
        assert!(cache.lookup("", &get(url, &[])).is_none(), "stale after max-age");
    }

    #[test]
    fn what_http_says_not_to_keep_is_not_kept() {
        let f = fixture(1 << 20);
        let cache = f.caches.of("a");
        for (i, headers) in [
            vec![("cache-control", "no-store, max-age=60")],
            vec![("cache-control", "private, max-age=60")],
            vec![("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            vec![],
            vec![("cache-control", "max-age=0")],
            vec![("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
        ]
        .into_iter()
        .enumerate()
        {
            let url = format!("https://x.test/{i}");
            cache.store("", &get(&url, &[]), response(&headers, "x")).unwrap();
            assert!(cache.lookup("", &get(&url, &[])).is_none(), "{headers:?} was kept");
        }
        // s-maxage wins over max-age in a shared cache.
        let url = "https://x.test/s";
        let headers = [("cache-control", "max-age=0, s-maxage=30")];
        cache.store("", &get(url, &[]), response(&headers, "x")).unwrap();
        assert!(cache.lookup("", &get(url, &[])).is_some());
    }

    #[test]
    fn vary_names_the_headers_that_must_match() {
        let f = fixture(1 << 20);
        let cache = f.caches.of("a");
        let url = "https://x.test/v";
        let headers = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
        cache.store("", &get(url, &[("accept-language", "fr")]), response(&headers, "fr")).unwrap();
        let fr = cache.lookup("", &get(url, &[("accept-language", "fr"), ("x-other", "1")]));
        assert_eq!(body(fr).as_deref(), Some("fr"));
        assert!(cache.lookup("", &get(url, &[("accept-language", "de")])).is_none());
        assert!(cache.lookup("", &get(url, &[])).is_none());
    }

    #[test]
    fn conditional_requests_answer_304() {
        let f = fixture(1 << 20);
        let cache = f.caches.of("a");
        let url = "https://x.test/c";
        let headers = [
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ];
        cache.store("", &get(url, &[]), response(&headers, "body")).unwrap();
        let status = |asked: &[(&str, &str)]| cache.lookup("", &get(url, asked)).unwrap().status();
        assert_eq!(status(&[("if-none-match", "\"v1\"")]), 304);
        assert_eq!(status(&[("if-none-match", "W/\"v1\", \"v0\"")]), 304);
        assert_eq!(status(&[("if-none-match", "\"v2\"")]), 200);
        assert_eq!(status(&[("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT")]), 304);
        assert_eq!(status(&[("if-modified-since", "Mon, 30 Nov 2026 10:00:00 GMT")]), 200);
        let not_modified = cache.lookup("", &get(url, &[("if-none-match", "\"v1\"")])).unwrap();
        assert!(not_modified.body().is_empty());
        assert_eq!(not_modified.headers()["etag"], "\"v1\"");
    }

    #[test]
    fn ranges_are_answered_from_the_whole_body() {
        let f = fixture(1 << 20);
        let cache = f.caches.of("a");
        let url = "https://x.test/r";
        cache
            .store("", &get(url, &[]), response(&[("cache-control", "max-age=60")], "0123456789"))
            .unwrap();
        let ask = |range: &str| cache.lookup("", &get(url, &[("range", range)])).unwrap();
        let part = ask("bytes=2-4");
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], "bytes 2-4/10");
        assert_eq!(part.body().as_ref(), b"234");
        assert_eq!(ask("bytes=7-").body().as_ref(), b"789");
        assert_eq!(ask("bytes=-3").body().as_ref(), b"789");
        assert_eq!(ask("bytes=5-100").body().as_ref(), b"56789");
        let past = ask("bytes=10-");
        assert_eq!(past.status(), 416);
        assert_eq!(past.headers()["content-range"], "bytes */10");
        assert_eq!(ask("bytes=0-1,3-4").status(), 200, "several ranges get the whole body");
    }

    #[test]
    fn functions_and_cache_names_never_share_entries() {
        let f = fixture(1 << 20);
        let (a, b) = (f.caches.of("a"), f.caches.of("b"));
        let url = "https://x.test/shared";
        a.store("", &get(url, &[]), response(&[("cache-control", "max-age=60")], "a's")).unwrap();
        assert!(b.lookup("", &get(url, &[])).is_none());
        assert!(a.lookup("other", &get(url, &[])).is_none());
        assert!(!b.delete("", &get(url, &[])));
        assert_eq!(body(a.lookup("", &get(url, &[]))).as_deref(), Some("a's"));
        assert!(a.delete("", &get(url, &[])));
        assert!(a.lookup("", &get(url, &[])).is_none());
    }

    #[test]
    fn the_memory_bound_evicts_the_least_recently_used() {
        let memory = 16 * 1024;
        let f = fixture(memory);
        let cache = f.caches.of("a");
        let body = "x".repeat(1024);
        let headers = [("cache-control", "max-age=600")];
        let url = |i: u64| format!("https://x.test/{i:03}");
        let put =
            |i: u64, body: &str| cache.store("", &get(&url(i), &[]), response(&headers, body));
        put(0, &body).unwrap();
        let fit = memory / f.caches.entries.weighted_size();
        assert!(fit >= 4, "room for {fit} entries");
        for i in 1..fit {
            put(i, &body).unwrap();
        }
        assert!((0..fit).all(|i| cache.lookup("", &get(&url(i), &[])).is_some()));
        // Entry 0 is used again, so 1 is now the least recently used.
        assert!(cache.lookup("", &get(&url(0), &[])).is_some());
        put(fit, &body).unwrap();
        assert!(cache.lookup("", &get(&url(0), &[])).is_some(), "recently used entry kept");
        assert!(cache.lookup("", &get(&url(1), &[])).is_none(), "least recently used evicted");
        assert!(cache.lookup("", &get(&url(fit), &[])).is_some());
        assert!(f.caches.entries.weighted_size() <= memory);
        let refused = put(99, &"x".repeat(3 * 1024));
        assert!(refused.unwrap_err().to_string().contains("at most"));
    }
}

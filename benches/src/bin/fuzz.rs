//! The parsers that take bytes from outside, fed random and mangled input for a while each:
//! the bundle artifact decoder (uploads), node.toml and edge.toml, durations, sizes and routes.
//! Prints executions per target; any panic fails the run. The same properties run a bounded
//! number of cases in the unit tests (and the router, the queue message decoder and the admin
//! API's message bodies there too).
//!
//! Usage: fuzz [seconds-per-target]  (default 10)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Runs `target` on values of `strategy` for `seconds`; answers how many ran.
fn run<S: Strategy>(seconds: u64, strategy: S, target: impl Fn(S::Value)) -> u64 {
    let mut runner = TestRunner::deterministic();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut count = 0;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let value = strategy.new_tree(&mut runner).expect("a value").current();
            target(value);
            count += 1;
        }
    }
    count
}

fn sample_bundle() -> Vec<u8> {
    let mut sources = BTreeMap::new();
    sources.insert("src/index.js".to_string(), Arc::from("export default { fetch() {} }"));
    sources.insert("src/data.json".to_string(), Arc::from("{\"a\": 1}"));
    bundler::Bundle::from_sources("f", "src/index.js", sources).expect("a bundle").encode()
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let base = Path::new("/base");
    let bundle = sample_bundle();
    let targets: Vec<(&str, u64)> = vec![
        (
            "bundle artifact, random bytes",
            run(seconds, proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
                let _ = bundler::Bundle::decode(&bytes);
            }),
        ),
        (
            "bundle artifact, a real one mangled",
            run(
                seconds,
                (any::<prop::sample::Index>(), any::<u8>(), any::<prop::sample::Index>()),
                |(at, value, cut)| {
                    let mut bytes = bundle.clone();
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                    bytes.truncate(cut.index(bytes.len() + 1).max(1));
                    let _ = bundler::Bundle::decode(&bytes);
                },
            ),
        ),
        (
            "node.toml",
            run(seconds, "(\\[[a-z.]{1,10}\\]\n|[a-z_]{1,10} = (\"[0-9a-z:./ ]{0,10}\"|-?[0-9]{1,12}|\\[\\])\n){0,12}", |text| {
                let _ = config::NodeConfig::parse(&text, base);
            }),
        ),
        (
            "edge.toml",
            run(seconds, "(\\[[a-z.]{1,10}\\]\n|\\[\\[triggers\\.[a-z]{1,6}\\]\\]\n|[a-z_]{1,10} = (\"[0-9a-z:./* ]{0,10}\"|-?[0-9]{1,12}|\\[\"/[a-z*]{0,5}\"\\]|\\{ [a-z]{1,6} = \"[a-z]{1,5}\" \\})\n){0,12}", |text| {
                let _ = config::EdgeConfig::parse(&text, base);
            }),
        ),
        (
            "durations, sizes, routes",
            run(seconds, any::<String>(), |text| {
                let _ = config::parse_duration(&text);
                let _ = config::parse_size(&text);
                let _ = config::Route::parse(&text);
            }),
        ),
    ];
    println!("| target | executions in {seconds} s | per second |");
    println!("|---|---:|---:|");
    for (name, count) in targets {
        println!("| {name} | {count} | {:.0} |", count as f64 / seconds as f64);
    }
}

//! Bundles: a TypeScript function with an npm package (hono, installed by `scripts/test`) built,
//! served and traced back to its .ts lines; the `bundle` command; the V8 code cache kept,
//! reused and never trusted when damaged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bundler::Bundle;
use config::NodeConfig;
use edge_node::{CodeCacheStats, CodeCacheStore};
use js_runtime::CodeCache;
use tests::{copy_dir, curl, function_dir, run_edge_node, write_file, TestNode};

/// The TypeScript + hono fixture, with its npm packages installed.
fn ts_hono() -> PathBuf {
    let dir = function_dir("ts-hono");
    assert!(
        dir.join("node_modules/hono/package.json").is_file(),
        "the fixture's npm packages are missing: run scripts/test (it runs npm ci)"
    );
    dir
}

#[tokio::test]
async fn typescript_with_an_npm_package_serves_and_maps_stacks_to_the_ts_lines() {
    let node = TestNode::start(&[ts_hono()]).await;

    let hello = curl("GET", &node.url("/hello/world"), &[], None).await;
    assert_eq!(hello.status, 200, "{}", hello.text());
    let json: serde_json::Value = serde_json::from_slice(&hello.body).unwrap();
    assert_eq!(json["message"], "hello, world!", "env var through hono's c.env");
    assert_eq!(json["length"], 13);
    assert_eq!(json["banner"], "Isola TypeScript fixture", "text import");
    assert_eq!(json["settings"]["retries"], 3, "JSON import");

    let lazy = curl("GET", &node.url("/lazy"), &[], None).await;
    assert_eq!((lazy.status, lazy.text().as_str()), (200, "42"), "dynamic import of a .ts module");

    let boom = curl("GET", &node.url("/boom"), &[], None).await;
    assert_eq!(boom.status, 500);
    let record = node
        .logs
        .wait_for(Duration::from_secs(10), |r| r.message.contains("exploded from a route"))
        .expect("hono logs the error");
    assert!(
        record.message.contains("file:///src/fail.ts:9:"),
        "the stack points at the throw in the .ts source: {}",
        record.message
    );
    assert!(record.message.contains("file:///src/index.ts:16:"), "{}", record.message);
    assert!(!record.message.contains('\u{1b}'), "no terminal colours in logs: {}", record.message);
    node.shutdown().await;
}

fn hash_line(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.lines().find_map(|l| l.strip_prefix("hash ")).expect("the hash is printed").to_string()
}

#[tokio::test]
async fn bundle_command_is_deterministic_and_each_byte_counts() {
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("fn");
    copy_dir(&ts_hono(), &copy);
    let out_a = work.path().join("a.bundle");
    let out_b = work.path().join("b.bundle");
    let a = run_edge_node(&["bundle", copy.to_str().unwrap(), "-o", out_a.to_str().unwrap()]).await;
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = run_edge_node(&["bundle", copy.to_str().unwrap(), "-o", out_b.to_str().unwrap()]).await;
    assert_eq!(hash_line(&a.stdout), hash_line(&b.stdout));

    let bundle = Bundle::decode(&std::fs::read(&out_a).unwrap()).unwrap();
    assert_eq!(bundle.hash(), hash_line(&a.stdout));
    assert_eq!(bundle.manifest().entry, "src/index.ts");
    let entry = bundle.module("src/index.ts").unwrap();
    assert!(entry.info.imports["hono"].starts_with("node_modules/hono/dist/"), "{:?}", entry.info);

    // One byte of a module deep in node_modules.
    let file = copy.join("node_modules/hono/dist/compose.js");
    let mut text = std::fs::read(&file).unwrap();
    let last = text.len() - 1;
    text[last] = if text[last] == b'\n' { b' ' } else { b'\n' };
    std::fs::write(&file, text).unwrap();
    let c = run_edge_node(&["bundle", copy.to_str().unwrap(), "-o", out_b.to_str().unwrap()]).await;
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert_ne!(hash_line(&a.stdout), hash_line(&c.stdout));
}

#[tokio::test]
async fn bundle_command_names_what_it_cannot_bundle() {
    let cases = [
        ("import { x } from './missing'; console.log(x);", "cannot resolve `./missing` imported from src/index.ts"),
        // A built-in we do not have, named with the chain of imports that reached it.
        ("import w from 'node:wasi'; console.log(w);", "imported from src/index.ts: the Node.js built-in `node:wasi` is not available in functions"),
        ("import c from 'old-cjs'; console.log(c);", "cannot resolve `./gone` imported from src/index.ts → node_modules/old-cjs/index.js"),
        ("const a: number = ;", "src/index.ts:1:"),
    ];
    for (source, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "edge.toml", "name = \"bad\"\nentry = \"src/index.ts\"\n");
        write_file(dir.path(), "src/index.ts", &format!("{source}\nexport default {{}};\n"));
        write_file(dir.path(), "node_modules/old-cjs/package.json", r#"{"name":"old-cjs"}"#);
        write_file(
            dir.path(),
            "node_modules/old-cjs/index.js",
            "module.exports = require('./gone');\n",
        );
        let out_file = dir.path().join("out.bundle");
        let out = run_edge_node(&[
            "bundle",
            dir.path().to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{source}: {stderr}");
        assert!(stderr.contains(expected), "{source}: expected `{expected}` in: {stderr}");
        assert!(!out_file.exists(), "nothing is written for a bundle that failed");
    }
}

/// Starts a node on `data`, answers one request, waits (up to a deadline) until the code
/// cache's use satisfies `settled`, and returns it.
async fn one_cold_start(data: &Path, settled: impl Fn(&CodeCacheStats) -> bool) -> CodeCacheStats {
    let mut config = NodeConfig::default();
    config.node.data_dir = data.to_path_buf();
    config.pool.spare_isolates = 0;
    let node = TestNode::start_with(config, &[ts_hono()]).await;
    let hello = curl("GET", &node.url("/hello/cache"), &[], None).await;
    assert_eq!(hello.status, 200, "{}", hello.text());
    // Caches are handed over after compiling, while the isolate runs on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = node.node().code_cache_stats();
    while !settled(&stats) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = node.node().code_cache_stats();
    }
    node.shutdown().await;
    stats
}

#[tokio::test]
async fn code_cache_is_kept_reused_and_never_trusted_when_damaged() {
    let data = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_dir(&ts_hono(), "ts-hono", Path::new("src/index.ts")).unwrap();
    // Every script but the one imported dynamically by /lazy loads on /hello.
    let loaded = bundle.modules().filter(|m| m.info.kind == bundler::ModuleKind::Js).count() - 1;
    let entry_hash = bundle.module("src/index.ts").unwrap().info.hash.clone();
    let store = CodeCacheStore::open(&data.path().join("code-cache"), 1 << 20).unwrap();
    let entry_file = store.path(&entry_hash);

    let first = one_cold_start(data.path(), |s| s.stored >= loaded as u64).await;
    assert_eq!(first.hits, 0, "{first:?}");
    assert_eq!(first.misses, loaded as u64, "every module loaded compiles: {first:?}");
    assert_eq!(first.stored, first.misses, "and leaves a cache: {first:?}");
    assert!(entry_file.is_file(), "caches are kept on disk");

    let second = one_cold_start(data.path(), |s| s.hits > 0).await;
    assert_eq!(second.misses, 0, "a restarted node finds every cache: {second:?}");
    assert_eq!(second.hits, first.misses, "{second:?}");
    assert_eq!(second.stored, 0, "V8 accepted every cache: {second:?}");

    // A damaged file: its checksum fails, it is ignored and made again.
    let mut bytes = std::fs::read(&entry_file).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&entry_file, &bytes).unwrap();
    let third = one_cold_start(data.path(), |s| s.stored > 0).await;
    assert_eq!(third.corrupt, 1, "{third:?}");
    assert_eq!((third.misses, third.stored), (1, 1), "{third:?}");
    assert_ne!(std::fs::read(&entry_file).unwrap(), bytes, "rewritten");

    // A whole file V8 refuses (not a V8 cache at all): compiled from source and replaced.
    store.put(&entry_hash, b"not a V8 code cache, but an intact file holding one");
    let refused = std::fs::read(&entry_file).unwrap();
    let fourth = one_cold_start(data.path(), |s| s.stored > 0).await;
    assert_eq!((fourth.corrupt, fourth.misses), (0, 0), "{fourth:?}");
    assert_eq!(fourth.stored, 1, "V8 refused one cache and made a new one: {fourth:?}");
    assert_ne!(std::fs::read(&entry_file).unwrap(), refused);
}

/// Deploys `file` to a new node through the admin API, asks for `/hello/warm`, and answers
/// the node's code cache figures once the start's caches are settled.
async fn deploy_file_to_a_new_node(file: &Path) -> CodeCacheStats {
    let data = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.node.data_dir = data.path().to_path_buf();
    config.pool.spare_isolates = 0;
    let node = TestNode::start_with(config, &[]).await;
    let url = format!("http://{}/v1/functions/ts-hono", node.admin.unwrap());
    let auth = vec![("authorization".to_string(), format!("Bearer {}", tests::ADMIN_TOKEN))];
    let deployed = curl("PUT", &url, &auth, Some(&std::fs::read(file).unwrap())).await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    let hello = curl("GET", &node.url("/hello/warm"), &[], None).await;
    assert_eq!(hello.status, 200, "{}", hello.text());
    let stats = node.node().code_cache_stats();
    node.shutdown().await;
    stats
}

#[tokio::test]
async fn a_bundle_made_with_its_code_cache_starts_warm_on_a_new_node() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ts-hono");
    copy_dir(&ts_hono(), &dir);
    let bundle = Bundle::from_dir(&dir, "ts-hono", Path::new("src/index.ts")).unwrap();
    // Every script but the one imported dynamically by /lazy is compiled at bundle time.
    let loaded = bundle.modules().filter(|m| m.info.kind == bundler::ModuleKind::Js).count() - 1;
    let (plain, cached) = (root.path().join("plain.bundle"), root.path().join("cached.bundle"));
    for (file, flag) in [(&plain, None), (&cached, Some("--code-cache"))] {
        let mut args = vec!["bundle", dir.to_str().unwrap(), "-o", file.to_str().unwrap()];
        args.extend(flag);
        let out = run_edge_node(&args).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let cold = deploy_file_to_a_new_node(&plain).await;
    assert_eq!((cold.shipped, cold.hits), (0, 0), "{cold:?}");
    assert_eq!(cold.misses, loaded as u64, "{cold:?}");

    let warm = deploy_file_to_a_new_node(&cached).await;
    assert_eq!(warm.shipped, loaded as u64, "every module's cache came with the bundle: {warm:?}");
    assert_eq!(warm.misses, 0, "nothing compiled from source: {warm:?}");
    assert!(warm.hits >= loaded as u64, "{warm:?}");
    assert_eq!(warm.stored, 0, "V8 took every shipped cache: {warm:?}");

    // A damaged cache in the pack (the last bytes are the last module's cache): that one is
    // dropped and compiled from source, the rest are used.
    let mut bytes = std::fs::read(&cached).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0xff;
    let damaged = root.path().join("damaged.bundle");
    std::fs::write(&damaged, &bytes).unwrap();
    let partly = deploy_file_to_a_new_node(&damaged).await;
    assert_eq!((partly.corrupt, partly.shipped), (1, loaded as u64 - 1), "{partly:?}");
    assert_eq!((partly.misses, partly.stored), (1, 1), "{partly:?}");
}

/// A module's code cache is made after the module has run, so it holds the functions the
/// module called as it loaded and a later start compiles none of them again; a function the
/// module only defines stays out of it, as it does at compile time.
#[tokio::test]
async fn a_modules_cache_holds_the_functions_it_ran_as_it_loaded() {
    // Two functions of the same size: `table` runs as the module loads, `unused` never does.
    let body: String = (0..200).map(|i| format!("  out.push(seed * {i} + {i});\n")).collect();
    let code = format!(
        "function table(seed) {{\n  const out = [];\n{body}  return out;\n}}\n\
         function unused(seed) {{\n  const out = [];\n{body}  return out;\n}}\n\
         const TABLE = table(3);\n\
         export default {{ fetch() {{ return new Response(String(TABLE.length)); }} }};\n"
    );
    let root = tempfile::tempdir().unwrap();
    let dir = tests::function_folder(root.path(), "warm", "/*", "", &code);
    let bundle =
        std::sync::Arc::new(Bundle::from_dir(&dir, "warm", Path::new("index.js")).unwrap());
    let hash = bundle.module("index.js").unwrap().info.hash.clone();

    // Compiled without running (as `edge-node bundle --code-cache` does): the top level only.
    let compiled = std::sync::Arc::new(edge_node::MemoryCodeCache::default());
    js_runtime::compile_modules(bundle.clone(), compiled.clone()).unwrap();
    let at_compile = compiled.get(&hash).expect("a cache made at compile time").len();

    let data = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.node.data_dir = data.path().to_path_buf();
    config.pool.spare_isolates = 0;
    let node = TestNode::start_with(config, &[dir]).await;
    let answer = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!((answer.status, answer.text()), (200, "200".to_string()));
    let stats = node.node().code_cache_stats();
    assert_eq!((stats.misses, stats.stored), (1, 1), "one cache stored for the start: {stats:?}");
    node.shutdown().await;
    let store = CodeCacheStore::open(&data.path().join("code-cache"), 1 << 20).unwrap();
    let after_run = store.get(&hash).expect("the start's cache is kept").len();

    // `table`'s bytecode is about as large as the rest of the module's: the cache made after
    // the run holds it; one made at compile time does not.
    assert!(
        after_run > at_compile + at_compile / 2,
        "the cache after the run ({after_run} bytes) holds `table`, the one at compile time \
         ({at_compile} bytes) does not"
    );

    // A second node starts from that cache, and V8 takes it.
    let mut config = NodeConfig::default();
    config.node.data_dir = data.path().to_path_buf();
    config.pool.spare_isolates = 0;
    let node = TestNode::start_with(config, &[root.path().join("warm")]).await;
    let answer = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let stats = node.node().code_cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.stored), (1, 0, 0), "{stats:?}");
    node.shutdown().await;
}

//! The npm ecosystem: popular packages (CommonJS and ES modules) and Node's built-ins, each
//! called in a function and in Node itself; the answers must be the same.

use std::collections::BTreeMap;

use tests::{curl, function_dir, TestNode};

/// What `oracle.mjs` of a fixture prints when Node runs it, as a deployed function sees the
/// world (`NODE_ENV=production`, which the bundler defines).
fn node_answers(fixture: &str) -> BTreeMap<String, serde_json::Value> {
    let dir = function_dir(fixture);
    let out = std::process::Command::new("node")
        .arg(dir.join("oracle.mjs"))
        .env("NODE_ENV", "production")
        .current_dir(&dir)
        .output()
        .expect("node runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn function_answers(fixture: &str) -> BTreeMap<String, serde_json::Value> {
    let node = TestNode::start(&[function_dir(fixture)]).await;
    let res = curl("GET", &node.url("/"), &[], None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let answers = serde_json::from_slice(&res.body).unwrap();
    node.shutdown().await;
    answers
}

/// The cases whose answer differs from Node's, with both answers.
fn differences(
    ours: &BTreeMap<String, serde_json::Value>,
    node: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    node.iter()
        .filter(|(name, expected)| ours.get(*name) != Some(*expected))
        .map(|(name, expected)| {
            let got = ours.get(name).map(|v| v.to_string()).unwrap_or_default();
            format!("{name}: got {:.400}, Node {:.200}", got, expected.to_string())
        })
        .collect()
}

/// 46 popular packages. One is expected to differ: handlebars compiles its templates with
/// `new Function`, which functions refuse (as Workers does) unless the node sets
/// `[runtime] allow_eval`.
#[tokio::test]
async fn popular_npm_packages_answer_as_they_do_in_node() {
    let node = node_answers("npm-corpus");
    let ours = function_answers("npm-corpus").await;
    assert_eq!(node.len(), 46);
    let differ = differences(&ours, &node);
    // 45 of 46 answer as in Node.
    assert_eq!(differ.len(), 1, "{differ:#?}");
    assert!(
        differ[0].starts_with("handlebars: ")
            && differ[0].contains("Code generation from strings disallowed"),
        "{differ:#?}"
    );
}

/// Node's behaviour for the built-ins (Buffer encodings, EventEmitter ordering, once and
/// error events, path, util, querystring, url, crypto hashes and HMACs, string_decoder,
/// assert, timers) and for CommonJS (circular requires, `this`, JSON, computed requires,
/// built-ins by bare name).
#[tokio::test]
async fn node_builtins_and_commonjs_behave_as_in_node() {
    let node = node_answers("node-compat");
    let ours = function_answers("node-compat").await;
    assert!(node.len() >= 17);
    assert_eq!(differences(&ours, &node), Vec::<String>::new());
}

/// Importing Node's modules adds nothing to the global scope: `process`, `Buffer` and
/// `require` stay absent; a module we cannot offer imports fine and throws, naming the call,
/// when used.
#[tokio::test]
async fn node_modules_leave_the_global_scope_alone() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"import { Buffer } from "node:buffer";
import process from "node:process";
import { readFileSync } from "node:fs";
import net from "node:net";
export default {
  fetch() {
    const globals = [typeof globalThis.process, typeof globalThis.Buffer, typeof globalThis.require, typeof globalThis.global];
    const calls = [];
    for (const call of [() => readFileSync("/etc/passwd"), () => net.connect(80)]) {
      try { call(); calls.push("no throw"); } catch (e) { calls.push(e.message); }
    }
    return Response.json({ globals, calls, buffer: Buffer.from("ok").toString("base64"), platform: process.platform });
  },
};"#;
    let dir = tests::function_folder(root.path(), "globals", "/*", "", code);
    let node = TestNode::start(&[dir]).await;
    let res = curl("GET", &node.url("/"), &[], None).await;
    let json: serde_json::Value =
        serde_json::from_slice(&res.body).unwrap_or_else(|_| panic!("{}", res.text()));
    assert_eq!(
        json["globals"],
        serde_json::json!(["undefined", "undefined", "undefined", "undefined"])
    );
    assert_eq!(
        json["calls"],
        serde_json::json!([
            "node:fs: readFileSync() is not available in an edge function",
            "node:net: connect() is not available in an edge function"
        ])
    );
    assert_eq!((json["buffer"].as_str(), json["platform"].as_str()), (Some("b2s="), Some("linux")));
    node.shutdown().await;
}

/// `compatibility_flags = ["nodejs_compat"]` puts Node's globals in the global scope before
/// the function's modules run (a package reading `Buffer` at load time works); an unknown
/// flag is refused, naming it.
#[tokio::test]
async fn nodejs_compat_adds_nodes_globals() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"const atLoad = typeof Buffer;
export default {
  fetch() {
    const kinds = [atLoad, typeof process, typeof global, typeof setImmediate, typeof require];
    return Response.json({ kinds, b64: Buffer.from("hi").toString("base64"), same: global === globalThis, tick: typeof process.nextTick });
  },
};"#;
    let flag = "compatibility_flags = [\"nodejs_compat\"]\n";
    let dir = tests::function_folder(root.path(), "compat", "/*", flag, code);
    let node = TestNode::start(&[dir]).await;
    let res = curl("GET", &node.url("/"), &[], None).await;
    let json: serde_json::Value =
        serde_json::from_slice(&res.body).unwrap_or_else(|_| panic!("{}", res.text()));
    assert_eq!(
        json,
        serde_json::json!({
            "kinds": ["function", "object", "object", "function", "undefined"],
            "b64": "aGk=", "same": true, "tick": "function",
        })
    );
    node.shutdown().await;

    let dir = tests::function_folder(
        root.path(),
        "typo",
        "/*",
        "compatibility_flags = [\"nodejs_compt\"]\n",
        code,
    );
    let out = tests::run_edge_node(&["bundle", dir.to_str().unwrap(), "-o", "/dev/null"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains("compatibility_flags[0]: unknown flag `nodejs_compt` (known: nodejs_compat)"),
        "{said}"
    );
}

/// Two requests in flight at once on one isolate, each in its own AsyncLocalStorage store:
/// the first waits (across an await, a timer and `ctx.waitUntil` work) until the second has
/// set its store, and neither sees the other's.
#[tokio::test]
async fn async_local_storage_keeps_concurrent_requests_apart() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"import { AsyncLocalStorage } from "node:async_hooks";
const als = new AsyncLocalStorage();
let secondArrived = false;
// The first waits on a timer (an invocation waiting on nothing of its own would be ended as
// never answering) until the second is in flight too.
const arrived = async () => {
  while (!secondArrived) await new Promise((resolve) => setTimeout(resolve, 1));
};
export default {
  fetch(request, env, ctx) {
    const id = new URL(request.url).searchParams.get("id");
    return als.run(id, async () => {
      if (id === "second") secondArrived = true;
      else await arrived();
      await new Promise((resolve) => setTimeout(resolve, 1));
      let later;
      ctx.waitUntil(Promise.resolve().then(() => { later = als.getStore(); }));
      await null;
      console.log(`inside ${id}`);
      return Response.json({ id, store: als.getStore(), later });
    });
  },
};"#;
    let dir = tests::function_folder(root.path(), "als", "/*", "", code);
    // One isolate, so both requests are in flight on it at once.
    let mut config = config::NodeConfig::default();
    config.pool.max_isolates_per_function = 1;
    let node = TestNode::start_with(config, &[dir]).await;
    let (first_url, second_url) = (node.url("/?id=first"), node.url("/?id=second"));
    let first = curl("GET", &first_url, &[], None);
    let second = curl("GET", &second_url, &[], None);
    let (first, second) = tokio::join!(first, second);
    for (res, id) in [(first, "first"), (second, "second")] {
        let json: serde_json::Value =
            serde_json::from_slice(&res.body).unwrap_or_else(|_| panic!("{}", res.text()));
        let expected = serde_json::json!({ "id": id, "store": id, "later": id });
        assert_eq!(json, expected, "{}", res.text());
        // Inside a store the code still belongs to its invocation: its log line says so.
        let request_id = res.header("x-request-id").unwrap().to_string();
        let line = format!("inside {id}");
        let logged = node.logs.records().into_iter().find(|r| r.message == line);
        let logged = logged.unwrap_or_else(|| panic!("no {line:?} in {:?}", node.logs.records()));
        assert_eq!(logged.invocation_id.as_deref(), Some(request_id.as_str()), "{line}");
    }
    node.shutdown().await;
}

/// The async-context hooks AsyncLocalStorage is built on hand a function nothing of the
/// runtime's: a captured context is an empty token, a forged one is refused, and the node
/// keeps serving.
#[tokio::test]
async fn the_async_context_hooks_expose_nothing_of_the_runtime() {
    let root = tempfile::tempdir().unwrap();
    let code = r#"export default {
  fetch() {
    const hooks = globalThis[Symbol.for("isola.asyncContext")];
    const token = hooks.captureContext();
    const seen = [Object.getPrototypeOf(token), Reflect.ownKeys(token).length, Object.isFrozen(token)];
    for (const forged of [{}, null, token.constructor]) {
      try { hooks.runInContext(forged, () => "ran", undefined, []); seen.push("ran"); }
      catch (e) { seen.push(e.message); }
    }
    seen.push(hooks.runInContext(token, () => "ran in its own", undefined, []));
    return Response.json(seen);
  },
};"#;
    let dir = tests::function_folder(root.path(), "forger", "/*", "", code);
    let node = TestNode::start(&[dir]).await;
    let res = curl("GET", &node.url("/"), &[], None).await;
    let refused = "not an async context captured by the runtime";
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&res.body).unwrap_or_default(),
        serde_json::json!([null, 0, true, refused, refused, refused, "ran in its own"]),
        "{}",
        res.text()
    );
    assert_eq!(curl("GET", &node.url("/"), &[], None).await.status, 200, "still serving");
    node.shutdown().await;
}

//! `edge-node init`: each template is a function that type-checks against the types it
//! writes, bundles, and runs under `dev`.

use std::path::Path;

use tests::run_edge_node as run;

use crate::cli::dev_process;

/// Runs TypeScript's compiler (installed by scripts/test) over a folder's tsconfig.json.
fn type_check(dir: &Path) -> std::process::Output {
    let tsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/node_modules/typescript/bin/tsc");
    std::process::Command::new("node")
        .arg(tsc)
        .args(["--noEmit", "-p"])
        .arg(dir)
        .output()
        .expect("node runs tsc")
}

/// What `npm install` would put in a Hono app's folder: the copy scripts/test installed for
/// the ts-hono fixture (a link out of the folder is refused by the bundler).
fn install_hono(dir: &Path) {
    let modules = tests::function_dir("ts-hono").join("node_modules");
    tests::copy_dir(&modules, &dir.join("node_modules"));
}

async fn init(dir: &Path, template: &str) {
    let out = run(&["init", dir.to_str().unwrap(), "--template", template]).await;
    assert!(out.status.success(), "{template}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn every_template_type_checks_and_bundles() {
    let root = tempfile::tempdir().unwrap();
    for template in ["hello", "typescript", "cron", "queue", "hono"] {
        let dir = root.path().join(format!("my-{template}"));
        init(&dir, template).await;
        if template == "hono" {
            install_hono(&dir);
        }
        let checked = type_check(&dir);
        assert!(
            checked.status.success(),
            "{template} does not type-check: {}",
            String::from_utf8_lossy(&checked.stdout)
        );
        let edge = std::fs::read_to_string(dir.join("edge.toml")).unwrap();
        assert!(edge.starts_with(&format!("name = \"my-{template}\"")), "{edge}");
        let out = root.path().join(format!("{template}.bundle"));
        let bundled = run(&["bundle", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]).await;
        assert!(
            bundled.status.success(),
            "{template}: {}",
            String::from_utf8_lossy(&bundled.stderr)
        );
    }
    // A mistake against the bindings' types is caught: what an editor would underline.
    let queue = root.path().join("my-queue/src/index.ts");
    let code = std::fs::read_to_string(&queue).unwrap();
    std::fs::write(&queue, code.replace("env.JOBS.send(job)", "env.JOBS.sned(job)")).unwrap();
    let checked = type_check(&root.path().join("my-queue"));
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("Property 'sned' does not exist on type 'Queue<Job>'"), "{said}");
}

#[tokio::test]
async fn init_refuses_to_overwrite_a_function() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("taken");
    init(&dir, "hello").await;
    std::fs::write(dir.join("src/index.js"), "// mine").unwrap();
    let out = run(&["init", dir.to_str().unwrap(), "--template", "typescript"]).await;
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not overwriting") && stderr.contains("edge.toml"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("src/index.js")).unwrap(), "// mine");
    assert!(!dir.join("src/index.ts").exists(), "nothing was written");
}

/// The queue template under `dev`: a POST is queued and the consumer logs it.
#[tokio::test]
async fn the_queue_template_runs_under_dev() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("jobs");
    init(&dir, "queue").await;
    let (_child, url, mut lines) = dev_process(&dir).await;
    let res = tests::curl("POST", &url, &[], Some(br#"{"task": "wash"}"#)).await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(res.text(), r#"{"queued":"wash"}"#);
    let logged = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("job wash (attempt 1)") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(logged, Ok(true), "the consumer did not log the job");
}

/// The typescript and hono templates answer under `dev` as their comments say.
#[tokio::test]
async fn the_typescript_and_hono_templates_answer_under_dev() {
    let root = tempfile::tempdir().unwrap();
    let ts = root.path().join("greeter");
    init(&ts, "typescript").await;
    let (_ts_child, url, _) = dev_process(&ts).await;
    let res = tests::curl("POST", &url, &[], Some(br#"{"name": "Ada"}"#)).await;
    assert_eq!(res.text(), r#"{"message":"hello, Ada"}"#);

    let hono = root.path().join("app");
    init(&hono, "hono").await;
    install_hono(&hono);
    let (_hono_child, url, _) = dev_process(&hono).await;
    let res = tests::curl("GET", &format!("{url}hello/Ada"), &[], None).await;
    assert_eq!(res.text(), r#"{"message":"hello, Ada"}"#);
}

/// The examples of docs/javascript.md type-check against the types `init` writes: the docs
/// and the declarations say the same.
#[tokio::test]
async fn the_javascript_docs_examples_type_check() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("docs");
    init(&dir, "typescript").await;
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/javascript.md");
    let text = std::fs::read_to_string(docs).unwrap();
    let blocks: Vec<&str> = text
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|b| b.strip_prefix("ts\n").or_else(|| b.strip_prefix("js\n")))
        .collect();
    assert!(blocks.len() >= 3, "{blocks:?}");
    for (i, block) in blocks.iter().enumerate() {
        // A fragment runs inside a handler, with the bindings the docs declare.
        let code = if block.contains("export default") {
            block.to_string()
        } else {
            format!(
                "import type {{ Bucket, Queue, Table }} from \"../isola.d.ts\";\n\
                 declare const env: {{ JOBS: Queue; UPLOADS: Bucket; USERS: Table<{{ name: string; admin: boolean }}> }};\n\
                 declare const bytes: Uint8Array;\n\
                 export async function example{i}(): Promise<Response | void> {{\n{block}}}\n"
            )
        };
        std::fs::write(dir.join(format!("src/example{i}.ts")), code).unwrap();
    }
    let checked = type_check(&dir);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
}

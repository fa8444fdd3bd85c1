//! node.toml: reading, overrides and every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::Limits;

#[test]
fn defaults_and_relative_paths() {
    let c = NodeConfig::parse("version = 1\n[functions]\ndir = \"fns\"", Path::new("/etc/edge"))
        .unwrap();
    assert_eq!(c.http.listen, HttpConfig::default().listen);
    assert_eq!(c.node.data_dir, PathBuf::from("/etc/edge/data"));
    assert_eq!(c.functions.unwrap().dir, PathBuf::from("/etc/edge/fns"));
}

#[test]
fn cluster_tls_paths_resolve_and_cert_needs_its_key() {
    let c = NodeConfig::parse(
        "version = 1\n[cluster]\nnats_url = \"tls://nats:4222\"\ntls_ca = \"ca.pem\"\ntls_cert = \"/pki/me.pem\"\ntls_key = \"me.key\"",
        Path::new("/etc/edge"),
    )
    .unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.tls_ca, Some(PathBuf::from("/etc/edge/ca.pem")));
    assert_eq!(cluster.tls_cert, Some(PathBuf::from("/pki/me.pem")));
    assert_eq!(cluster.tls_key, Some(PathBuf::from("/etc/edge/me.key")));
    let problems = NodeConfig::parse(
        "version = 1\n[cluster]\nnats_url = \"http://nats\"\ntls_cert = \"me.pem\"",
        Path::new("/"),
    )
    .unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["cluster.nats_url", "cluster.tls_key"], "{problems:?}");
}

#[test]
fn limits_defaults_and_maximums() {
    let c = NodeConfig::parse(
        "version = 1\n[limits]\ncpu_time = \"100ms\"\n[limits.max]\nmemory = \"1GiB\"",
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(c.limits.defaults.cpu_time, std::time::Duration::from_millis(100));
    assert_eq!(c.limits.defaults.memory, Limits::default().memory);
    assert_eq!(c.limits.max.memory, 1024 * 1024 * 1024);
    let problems = NodeConfig::parse(
        "version = 1\n[limits]\nmemory = \"2GiB\"\nwall_time = \"0s\"\ncolour = 1\n[limits.max]\nmemory = \"1GiB\"",
        Path::new("/"),
    )
    .unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["limits.memory", "limits.wall_time", "limits.colour"], "{problems:?}");
}

#[test]
fn environment_overrides_the_file() {
    let env = vec![
        ("EDGE__HTTP__LISTEN".to_string(), "127.0.0.1:9999".to_string()),
        ("EDGE__LIMITS__MAX__MEMORY".to_string(), "1GiB".to_string()),
        ("EDGE__RUNTIME__ALLOW_EVAL".to_string(), "true".to_string()),
        ("EDGE_LOG".to_string(), "debug".to_string()),
    ];
    let c = NodeConfig::parse_with_env(
        "version = 1\n[http]\nlisten = [\"0.0.0.0:1\"]",
        Path::new("/"),
        &env,
    )
    .unwrap();
    assert_eq!(c.http.listen, vec!["127.0.0.1:9999".parse::<SocketAddr>().unwrap()]);
    assert_eq!(c.limits.max.memory, 1024 * 1024 * 1024);
    assert!(c.runtime.allow_eval);

    let bad = vec![
        ("EDGE__HTTP__LISEN".to_string(), "x".to_string()),
        ("EDGE__HTTP".to_string(), "x".to_string()),
    ];
    let problems = NodeConfig::parse_with_env("version = 1", Path::new("/"), &bad).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].path, "EDGE__HTTP");
    assert!(problems[1].message.ends_with("(set by EDGE__HTTP__LISEN)"), "{problems:?}");
}

#[test]
fn three_mistakes_three_problems() {
    let problems = NodeConfig::parse(
        "version = 1\n[http]\nmax_headers = 0\nidle_timeout = \"forever\"\n[https]\nlisten = [\"0.0.0.0:8443\"]\ncert = \"c.pem\"",
        Path::new("/"),
    )
    .unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["http.max_headers", "http.idle_timeout", "https.key"], "{problems:?}");
}

#[test]
fn every_problem_with_its_path() {
    let problems = NodeConfig::parse(
        "version = 2\n[http]\nlisten = [\"nope\", \"127.0.0.1:1\"]\nport = 3\n[runtime]\nallow_eval = \"yes\"",
        Path::new("/"),
    )
    .unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["version", "http.listen[0]", "http.port", "runtime.allow_eval"]);
}

#[test]
fn messages_in_the_words_of_the_file() {
    let problems = NodeConfig::parse(
        "version = 1\ncolour = 1\n[http]\nlisten = [3, \"127.0.0.1:1\", \"x\"]\nmax_headers = 0\nidle_timeout = \"soon\"\nmax_connections = -1\n[limits]\nmemory = \"lots\"\nspeed = 1\n",
        Path::new("/"),
    )
    .unwrap_err();
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "colour: unknown key (expected one of: node, http, https, runtime, cache, fetch, pool, functions, admin, logs, cluster, secrets, version, limits)",
            "http.listen[0]: expected a string, found an integer",
            "http.listen[2]: `x` is not an address like \"0.0.0.0:8080\"",
            "http.max_headers: must be at least 1",
            "http.idle_timeout: `soon` is not a duration: write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\" or \"1h 30m\"",
            "http.max_connections: -1 is out of range",
            "limits.memory: `lots` is not a size: write a number and a unit, e.g. \"512KiB\", \"128MiB\" or \"1GiB\"",
            "limits.speed: unknown key (expected one of: memory, cpu_time, wall_time, startup_time, subrequests, max)",
        ],
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// TOML-ish text: the keys and values node.toml uses, in any order and shape.
    fn tomlish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("version = 1\n".to_string()),
            Just("[http]\n".to_string()),
            Just("[limits]\n".to_string()),
            Just("[limits.max]\n".to_string()),
            Just("[pool]\n".to_string()),
            Just("[cluster]\n".to_string()),
            "[a-z_.]{1,12} = \"[0-9a-zA-Z:./ ]{0,12}\"\n",
            "[a-z_]{1,10} = -?[0-9]{1,20}\n",
            "[a-z_]{1,10} = \\[\"[0-9.:]{0,20}\"\\]\n",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any text: a config or a list of problems, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(text in tomlish()) {
            let _ = NodeConfig::parse(&text, Path::new("/base"));
            let _ = NodeConfig::parse_with_env(&text, Path::new("/base"), &[("EDGE__HTTP__LISTEN".into(), text.clone())]);
            let _ = crate::EdgeConfig::parse(&text, Path::new("/base"));
        }

        /// Durations, sizes and routes as a user may write them.
        #[test]
        fn units_and_routes_parse_or_are_refused(text in any::<String>()) {
            let _ = crate::units::parse_duration(&text);
            let _ = crate::units::parse_size(&text);
            let _ = crate::Route::parse(&text);
        }
    }
}

//! Cold start over a new TLS connection, with and without pre-warm.
//!
//! Usage: prewarm [N] [--no-spare]  (default 100 per mode; `--no-spare` turns the node's
//! spare isolates off, so each cold start creates its isolate). A node (in-process, spare isolates on, its
//! default) serves one function routed by host `app.test`; before each sample the function is
//! scaled to zero (idle timeout 50 ms, then a wait until it holds no isolate). A sample is a
//! new TCP connection, a TLS handshake and a GET, until the response head. With pre-warm the
//! ClientHello's server name is `app.test`, so the node starts the isolate during the
//! handshake; without, the server name is `other.test` (no route) and the `Host` header alone
//! routes the request, so the isolate starts when the request arrives.

// The node's allocator, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::{CertSource, FunctionSpec, Node, NodeOptions};
use js_runtime::{LogRecord, LogSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Discard;
impl LogSink for Discard {
    fn log(&self, _: LogRecord) {}
}

async fn sample(node: &Node, tls: &Arc<rustls::ClientConfig>, sni: &str) -> Duration {
    // Scaled to zero first.
    while node.isolates_of("app") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = node.https_addrs()[0];
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let mut stream = connector.connect(name, tcp).await.expect("handshake");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("response");
    let elapsed = started.elapsed();
    assert_eq!(&head[9..12], b"200", "{}", String::from_utf8_lossy(&head));
    elapsed
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let spares = if std::env::args().any(|a| a == "--no-spare") { 0 } else { 1 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("app");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("edge.toml"),
            "name = \"app\"\nentry = \"index.js\"\nroutes = [\"app.test/*\"]\n",
        )
        .expect("toml");
        std::fs::write(
            dir.join("index.js"),
            "export default { fetch() { return new Response('hi') } }",
        )
        .expect("js");
        let spec = FunctionSpec::load(&dir, &config::LimitsConfig::default()).expect("function");
        let mut config = config::NodeConfig::default();
        config.http.listen = Vec::new();
        config.admin.listen = Vec::new();
        config.https = Some(config::HttpsConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            cert: Default::default(),
            key: Default::default(),
            http3: false,
        });
        config.pool.idle_timeout = Duration::from_millis(50);
        config.pool.spare_isolates = spares;
        config.node.data_dir = root.path().join("data");
        let node = Node::start(NodeOptions {
            config,
            functions: vec![spec],
            log_sink: Arc::new(Discard),
            tls: Some(CertSource::SelfSigned),
            deployments: false,
            admin_token: None,
        })
        .await
        .expect("node");
        // The node's self-signed certificate names localhost; this client measures, it does
        // not authenticate, so it takes the node's certificate for any name.
        let mut tls = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = Arc::new(tls);
        let (mut warm, mut cold) = (Vec::new(), Vec::new());
        for i in 0..n + 5 {
            let w = sample(&node, &tls, "app.test").await;
            let c = sample(&node, &tls, "other.test").await;
            if i >= 5 {
                warm.push(w);
                cold.push(c);
            }
        }
        let report = |name: &str, samples: &mut Vec<Duration>| {
            samples.sort();
            let at = |q: f64| {
                samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64()
                    * 1000.0
            };
            println!(
                "{name}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} samples)",
                at(0.5),
                at(0.9),
                at(0.99),
                samples.len()
            );
            at(0.5)
        };
        let w = report("with pre-warm (SNI app.test)   ", &mut warm);
        let c = report("without pre-warm (SNI other.test)", &mut cold);
        println!("ratio (p50 with / without): {:.2}", w / c);
        node.shutdown().await;
    });
}

/// Accepts any certificate: a benchmark client on loopback, not an authenticating one.
#[derive(Debug)]
struct AnyName;

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

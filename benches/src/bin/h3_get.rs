//! A minimal native HTTP/3 client for benchmarks (quinn + h3): GETs a URL and reports the
//! status, the body length and the wall time. It does not verify the server's certificate:
//! it is for loopback measurements against `edge-node dev --tls`, never for real traffic.
//!
//! Usage: h3-get https://127.0.0.1:8444/big [times]

use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let url: http::Uri = std::env::args().nth(1).expect("a URL").parse().expect("a valid URL");
    let times: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS config");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let host = url.host().expect("a host");
        let addr = format!("{host}:{}", url.port_u16().unwrap_or(443))
            .parse()
            .expect("an IP address and port");
        let conn = endpoint.connect(addr, host).expect("connect").await.expect("handshake");
        let (mut driver, mut send) =
            h3::client::new(h3_quinn::Connection::new(conn)).await.expect("h3");
        tokio::spawn(async move { driver.wait_idle().await });
        for _ in 0..times {
            let started = Instant::now();
            let request = http::Request::get(url.clone()).body(()).expect("request");
            let mut stream = send.send_request(request).await.expect("send");
            stream.finish().await.expect("finish");
            let response = stream.recv_response().await.expect("response");
            let mut length = 0usize;
            while let Some(chunk) = stream.recv_data().await.expect("data") {
                length += chunk.remaining();
            }
            println!(
                "{} {} bytes in {:.3} s",
                response.status(),
                length,
                started.elapsed().as_secs_f64()
            );
        }
    });
}

//! A client of the admin API, for the CLI (`deploy`, `functions`, `secrets`) and tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not an `http://host:port` URL.
    #[error("`{0}` is not a node URL like http://127.0.0.1:9090")]
    Url(String),
    /// The node could not be reached or the connection broke.
    #[error("cannot reach {node}: {message}")]
    Unreachable { node: String, message: String },
    /// The trusted certificates could not be read.
    #[error("{node}: {message}")]
    Tls { node: String, message: String },
    /// The node answered with an error.
    #[error("{node} refused: {message} ({code}, HTTP {status})")]
    Api { node: String, status: u16, code: String, message: String },
    /// The node ran what was asked, and it failed (a function's handler threw).
    #[error("{message}")]
    Invocation { node: String, message: String },
}

/// One node's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, BoxBody<Bytes, std::io::Error>>,
}

/// An error with its causes, `outer: inner: ...` (hyper's own message is only "client error
/// (Connect)"; the cause says a certificate was refused or a connection was reset).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The TLS settings of admin clients: the system's roots and those of `ca`.
fn client_tls(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no CERTIFICATE block", ca.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// How much of an upload has been handed to the connection: (sent, total) bytes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl AdminClient {
    /// A client of the node at `node` (`http://` or `https://`); an HTTPS node's certificate
    /// is checked against the system's roots.
    pub fn new(node: &str, token: Option<String>) -> Result<AdminClient, ClientError> {
        AdminClient::with_ca(node, token, None)
    }

    /// [`AdminClient::new`], also trusting the PEM certificates in `ca` (a private CA, or a
    /// node's self-signed certificate).
    pub fn with_ca(
        node: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<AdminClient, ClientError> {
        let base = node.trim_end_matches('/').to_string();
        let uri: http::Uri = base.parse().map_err(|_| ClientError::Url(node.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ClientError::Url(node.to_string()));
        }
        let tls =
            client_tls(ca).map_err(|message| ClientError::Tls { node: base.clone(), message })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(AdminClient { base, token, http })
    }

    pub fn node(&self) -> &str {
        &self.base
    }

    /// Calls `method path` with an optional JSON body; returns the JSON answer of a 2xx.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let bytes = body.map(|b| Bytes::from(serde_json::to_vec(&b).expect("JSON serialises")));
        let body = Full::new(bytes.unwrap_or_default()).map_err(|never| match never {}).boxed();
        self.send(method, path, body, "application/json").await
    }

    /// Uploads `data` with `PUT path`, reporting progress as it goes.
    pub async fn upload(
        &self,
        path: &str,
        data: Bytes,
        progress: Option<Progress>,
    ) -> Result<serde_json::Value, ClientError> {
        let total = data.len() as u64;
        let sent = Arc::new(AtomicU64::new(0));
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(64 * 1024)
            .map(|at| data.slice(at..(at + 64 * 1024).min(data.len())))
            .collect();
        let stream = futures::stream::iter(chunks.into_iter().map(move |chunk| {
            let now = sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if let Some(progress) = &progress {
                progress(now, total);
            }
            Ok::<_, std::io::Error>(Frame::data(chunk))
        }));
        let body = BoxBody::new(StreamBody::new(stream));
        self.send(Method::PUT, path, body, "application/octet-stream").await
    }

    /// Follows an event stream (`GET path`), calling `on_event` with each event's JSON data
    /// until the node ends the stream.
    pub async fn follow(
        &self,
        path: &str,
        mut on_event: impl FnMut(serde_json::Value),
    ) -> Result<(), ClientError> {
        let mut request =
            Request::builder().method(Method::GET).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = Full::new(Bytes::new()).map_err(|never| match never {}).boxed();
        let request = request.body(body).map_err(|_| ClientError::Url(self.base.clone()))?;
        let unreachable = |e: &dyn std::error::Error| ClientError::Unreachable {
            node: self.base.clone(),
            message: causes(e),
        };
        let response = self.http.request(request).await.map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| unreachable(&e))?;
            let json: serde_json::Value =
                serde_json::from_slice(&bytes.to_bytes()).unwrap_or_default();
            let field = |name: &str| json["error"][name].as_str().unwrap_or_default().to_string();
            return Err(ClientError::Api {
                node: self.base.clone(),
                status,
                code: field("code"),
                message: field("message"),
            });
        }
        let mut body = response.into_body();
        let mut buffer = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| unreachable(&e))?;
            let Ok(data) = frame.into_data() else { continue };
            buffer.push_str(&String::from_utf8_lossy(&data));
            while let Some(at) = buffer.find("\n\n") {
                let event: String = buffer.drain(..at + 2).collect();
                let data: Vec<&str> =
                    event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if let Ok(json) = serde_json::from_str(&data.join("\n")) {
                    on_event(json);
                }
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: BoxBody<Bytes, std::io::Error>,
        content_type: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, content_type)
            .header("x-isola-deployer", deployer());
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(body).map_err(|_| ClientError::Url(self.base.clone()))?;
        let unreachable = |e: &dyn std::error::Error| ClientError::Unreachable {
            node: self.base.clone(),
            message: causes(e),
        };
        let response = self.http.request(request).await.map_err(|e| unreachable(&e))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::json!({ "error": { "code": "not_json", "message": String::from_utf8_lossy(&bytes) } })
        });
        if status.is_success() {
            return Ok(json);
        }
        let field = |name: &str| json["error"][name].as_str().unwrap_or_default().to_string();
        Err(ClientError::Api {
            node: self.base.clone(),
            status: status.as_u16(),
            code: field("code"),
            message: if status == StatusCode::UNAUTHORIZED && field("message").is_empty() {
                "unauthorized".into()
            } else {
                field("message")
            },
        })
    }
}

/// Who is deploying, as recorded with each version: `$USER@host`.
fn deployer() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

//! The Isola node: HTTP listeners in front of one V8 isolate per function.
//!
//! The folders follow the node's jobs:
//! - `front/`: listeners, TLS, HTTP/1.1, HTTP/2 and HTTP/3, bodies, routing, the request path;
//! - `functions/`: function folders, their isolate pools, bindings and bundle caches;
//! - `triggers/`: cron, queue, storage and record triggers;
//! - `control/`: deploys, rollbacks, secrets, the admin API and its client;
//! - `observe/`: metrics, the function log store and log sinks;
//! - `backend/`: durable state, the node's own redb store or the cluster's NATS JetStream;
//! - `node.rs`: [`Node::start`] puts them together.
//!
//! `main.rs` parses flags and calls into here; tests start a node in-process with
//! [`Node::start`] on port 0.

mod backend;
mod control;
mod front;
mod functions;
mod node;
mod observe;
mod triggers;

pub use backend::local::queues::Encoding;
pub use control::client::{AdminClient, ClientError, Progress};
pub use control::rotate::{rotate_secrets_key, Rotated};
pub use front::tls::{CertSource, TlsError};
pub use functions::caches::{pack_code_caches, CodeCacheStats, CodeCacheStore, MemoryCodeCache};
pub use functions::{FunctionSpec, FunctionsError};
pub use node::{Allocator, Node, NodeError, NodeOptions, ALLOCATOR};
pub use observe::logs::{TerminalSink, TracingSink};
#[cfg(feature = "otlp")]
pub use observe::trace::SpanIds;

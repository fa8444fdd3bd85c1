//! End-to-end tests: real nodes on port 0, real clients. One test binary, so V8 links once.

mod bundles;
mod cache;
mod cli;
mod cluster;
mod dashboard;
mod deploy;
mod examples;
mod fetch;
mod fleet;
mod h3;
mod hostile;
mod init;
mod isolation;
mod limits;
mod npm;
mod observe;
mod ownership;
mod pool;
mod secrets;
mod server;
mod specs;
mod streaming;
mod triggers;
mod url;
mod websocket;

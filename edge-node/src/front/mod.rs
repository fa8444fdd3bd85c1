//! The request path in front of the functions: listeners (TCP, TLS, QUIC), HTTP/1.1, HTTP/2
//! and HTTP/3, request limits, bodies, routing, and turning an invocation's outcome into a
//! response.

pub mod body;
pub mod h3;
pub mod http;
mod pings;
mod proxy_protocol;
pub mod router;
pub mod server;
pub mod tls;
pub mod websocket;

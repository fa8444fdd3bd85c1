//! What the node tells about itself and its functions: metrics and the dashboard's series,
//! the function log store, and where function log records go.

pub mod logs;
pub mod logstore;
pub mod telemetry;
pub mod trace;

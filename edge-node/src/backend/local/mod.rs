//! The node's own backend: its redb store (deployments, secrets, queues, buckets and tables),
//! used when the node is not in a cluster.

pub mod queues;
pub mod store;

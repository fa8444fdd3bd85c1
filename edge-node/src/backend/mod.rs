//! Where the node's durable state lives: its own redb store when standalone (`local`), the
//! cluster's NATS JetStream once it is in one (`nats`).

pub mod local;
pub mod nats;
pub mod objects;

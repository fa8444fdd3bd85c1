//! Where a standalone node's change events go: the internal queue of each served function
//! whose storage or record trigger matches the change.

use std::sync::RwLock;

use config::{RecordTrigger, StorageTrigger};

use crate::backend::Subscriber;

/// A served function's name, storage triggers and record triggers.
type Route = (String, Vec<StorageTrigger>, Vec<RecordTrigger>);

/// The served functions' storage and record triggers.
#[derive(Default)]
pub struct EventRoutes {
    routes: RwLock<Vec<Route>>,
}

/// The internal queue of a function's storage events.
pub fn storage_queue(function: &str) -> String {
    format!("__storage.{function}")
}

/// The internal queue of a function's record events.
pub fn record_queue(function: &str) -> String {
    format!("__record.{function}")
}

impl EventRoutes {
    /// From now on events go to the triggers of exactly `served`.
    pub fn set(&self, served: &[Subscriber<'_>]) {
        *self.routes.write().expect("routes lock") = served
            .iter()
            .map(|f| (f.name.to_string(), f.triggers.storage.clone(), f.triggers.record.clone()))
            .collect();
    }

    /// The event queues for a change to `key` in bucket `bucket`.
    pub fn storage(&self, bucket: &str, key: &str) -> Vec<String> {
        let routes = self.routes.read().expect("routes lock");
        routes
            .iter()
            .filter(|(_, storage, _)| {
                storage.iter().any(|t| t.bucket == bucket && key.starts_with(&t.prefix))
            })
            .map(|(name, _, _)| storage_queue(name))
            .collect()
    }

    /// The event queues for a change in table `table`.
    pub fn record(&self, table: &str) -> Vec<String> {
        let routes = self.routes.read().expect("routes lock");
        routes
            .iter()
            .filter(|(_, _, record)| record.iter().any(|t| t.table == table))
            .map(|(name, _, _)| record_queue(name))
            .collect()
    }
}

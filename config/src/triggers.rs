//! `[[triggers.*]]` of edge.toml: the event sources a function consumes.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::de::{self, join};
use crate::Problem;

/// A function's triggers beyond HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Triggers {
    pub cron: Vec<CronTrigger>,
    pub queue: Vec<QueueTrigger>,
    pub storage: Vec<StorageTrigger>,
    pub record: Vec<RecordTrigger>,
}

/// `[[triggers.storage]]`: call `storage(event, env, ctx)` when an object whose key starts
/// with `prefix` is put into or deleted from `bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageTrigger {
    pub bucket: String,
    pub prefix: String,
}

/// `[[triggers.record]]`: call `record(event, env, ctx)` when a record of `table` changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordTrigger {
    pub table: String,
}

/// `[[triggers.cron]]`: call `scheduled(event, env, ctx)` on a schedule (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CronTrigger {
    /// Five fields (minute hour day month weekday), six with seconds first, or an alias
    /// (`@hourly`, `@daily`, ...).
    pub schedule: String,
    /// Further attempts after a failed run, with doubling delays from 1 s. Default: 2.
    pub retries: u32,
    /// When the node starts after missing runs, run once for the latest missed one (they
    /// are recorded as missed either way). Default: false.
    pub catch_up: bool,
}

impl Default for CronTrigger {
    fn default() -> Self {
        CronTrigger { schedule: String::new(), retries: 2, catch_up: false }
    }
}

/// `[[triggers.queue]]`: consume a queue in batches with `queue(batch, env, ctx)`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueTrigger {
    pub queue: String,
    /// Most messages per batch. Default: 10.
    pub max_batch_size: usize,
    /// Longest a message waits for a batch to fill. Default: 5 s.
    #[serde(with = "de::duration")]
    pub max_batch_timeout: Duration,
    /// Attempts before a message is dead-lettered (or dropped). Default: 3.
    pub max_retries: u32,
    /// A delivered message not acked or retried by then is delivered again. Default: 30 s.
    #[serde(with = "de::duration")]
    pub visibility_timeout: Duration,
    /// First delay before a retry; it doubles with each attempt (at most 5 min). Default: 1 s.
    #[serde(with = "de::duration")]
    pub retry_delay: Duration,
    /// Where messages go after `max_retries` attempts; without one they are dropped (logged).
    pub dead_letter_queue: Option<String>,
}

impl Default for QueueTrigger {
    fn default() -> Self {
        QueueTrigger {
            queue: String::new(),
            max_batch_size: 10,
            max_batch_timeout: Duration::from_secs(5),
            max_retries: 3,
            visibility_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            dead_letter_queue: None,
        }
    }
}

/// Queue, bucket and table names: letters, digits, `-`, `_` and `.`, at most 128; names
/// starting with `__` are the node's own.
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with("__")
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(crate) fn not_a_name(name: &str) -> String {
    format!("`{name}` is not a valid queue name (letters, digits, `-`, `_`, `.`)")
}

impl Triggers {
    /// The checks a key's type cannot make, each problem with its key path.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        let mut name = |path: String, name: &str, missing: &str| {
            if name.is_empty() {
                problem(path, format!("missing ({missing})"));
            } else if !valid_queue_name(name) {
                problem(path, not_a_name(name));
            }
        };
        for (i, t) in self.storage.iter().enumerate() {
            name(format!("triggers.storage[{i}].bucket"), &t.bucket, "the bucket to watch");
        }
        for (i, t) in self.record.iter().enumerate() {
            name(format!("triggers.record[{i}].table"), &t.table, "the table to watch");
        }
        for (i, t) in self.queue.iter().enumerate() {
            let path = format!("triggers.queue[{i}]");
            name(join(&path, "queue"), &t.queue, "the queue to consume");
            if let Some(dead) = &t.dead_letter_queue {
                name(join(&path, "dead_letter_queue"), dead, "a queue name");
            }
        }
        for (i, t) in self.cron.iter().enumerate() {
            let path = format!("triggers.cron[{i}].schedule");
            if t.schedule.is_empty() {
                problem(path, "missing (e.g. \"*/5 * * * *\")".into());
            } else if let Err(e) = croner::Cron::from_str(&t.schedule) {
                problem(path, format!("`{}` is not a cron schedule: {e}", t.schedule));
            }
        }
        for (i, t) in self.queue.iter().enumerate() {
            let path = format!("triggers.queue[{i}]");
            if t.dead_letter_queue.as_ref() == Some(&t.queue) {
                problem(
                    join(&path, "dead_letter_queue"),
                    "must differ from the consumed queue".into(),
                );
            }
            for (key, value) in
                [("max_batch_size", t.max_batch_size), ("max_retries", t.max_retries as usize)]
            {
                if value < 1 {
                    problem(join(&path, key), "must be at least 1".into());
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::{Binding, EdgeConfig, Kind};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn reads_triggers_and_bindings() {
        let c = EdgeConfig::parse(
            r#"
name = "f"
entry = "index.js"
[[triggers.cron]]
schedule = "*/5 * * * *"
catch_up = true
[[triggers.queue]]
queue = "emails"
max_batch_size = 20
visibility_timeout = "10s"
dead_letter_queue = "emails-dlq"
[[triggers.storage]]
bucket = "uploads"
prefix = "images/"
[[triggers.record]]
table = "users"
[bindings]
OUTBOX = { queue = "emails" }
FILES = { bucket = "uploads" }
USERS = { table = "users" }
"#,
            Path::new("/fn"),
        )
        .unwrap();
        let t = &c.triggers;
        assert_eq!(
            (t.cron[0].schedule.as_str(), t.cron[0].retries, t.cron[0].catch_up),
            ("*/5 * * * *", 2, true)
        );
        let q = &t.queue[0];
        assert_eq!((q.max_batch_size, q.max_retries), (20, 3));
        assert_eq!(q.visibility_timeout, Duration::from_secs(10));
        assert_eq!(q.dead_letter_queue.as_deref(), Some("emails-dlq"));
        assert_eq!(
            (t.storage[0].bucket.as_str(), t.storage[0].prefix.as_str()),
            ("uploads", "images/")
        );
        assert_eq!(t.record[0].table, "users");
        assert_eq!(c.bindings["OUTBOX"], Binding::new(Kind::Queue, "emails"));
        assert_eq!(c.bindings["FILES"], Binding::new(Kind::Bucket, "uploads"));
        assert_eq!(c.bindings["USERS"], Binding::new(Kind::Table, "users"));
    }

    #[test]
    fn lists_every_trigger_problem() {
        let problems = EdgeConfig::parse(
            r#"
name = "f"
entry = "index.js"
[[triggers.cron]]
schedule = "every tuesday"
[[triggers.queue]]
max_batch_size = 0
dead_letter_queue = "__mine"
[bindings]
A = { queue = "q", table = "t" }
"#,
            Path::new("/fn"),
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "triggers.cron[0].schedule",
                "triggers.queue[0].max_batch_size",
                "triggers.queue[0].dead_letter_queue",
                "triggers.queue[0].queue",
                "bindings.A"
            ]
        );
    }
}

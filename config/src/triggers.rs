//! `[[triggers.*]]` and `[bindings]` of edge.toml: the event sources a function consumes and
//! the queues it may send to.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use toml::{Table, Value};

use crate::reader::{join, Reader};

/// A function's triggers beyond HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Triggers {
    pub cron: Vec<CronTrigger>,
    pub queue: Vec<QueueTrigger>,
    pub storage: Vec<StorageTrigger>,
    pub record: Vec<RecordTrigger>,
}

/// `[[triggers.storage]]`: call `storage(event, env, ctx)` when an object whose key starts
/// with `prefix` is put into or deleted from `bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageTrigger {
    pub bucket: String,
    pub prefix: String,
}

/// `[[triggers.record]]`: call `record(event, env, ctx)` when a record of `table` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTrigger {
    pub table: String,
}

/// `[[triggers.cron]]`: call `scheduled(event, env, ctx)` on a schedule (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// `[[triggers.queue]]`: consume a queue in batches with `queue(batch, env, ctx)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTrigger {
    pub queue: String,
    /// Most messages per batch. Default: 10.
    pub max_batch_size: usize,
    /// Longest a message waits for a batch to fill. Default: 5 s.
    pub max_batch_timeout: Duration,
    /// Attempts before a message is dead-lettered (or dropped). Default: 3.
    pub max_retries: u32,
    /// A delivered message not acked or retried by then is delivered again. Default: 30 s.
    pub visibility_timeout: Duration,
    /// First delay before a retry; it doubles with each attempt (at most 5 min). Default: 1 s.
    pub retry_delay: Duration,
    /// Where messages go after `max_retries` attempts; without one they are dropped (logged).
    pub dead_letter_queue: Option<String>,
}

/// `[bindings]`: `env.NAME` of the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `NAME = { queue = "emails" }`: `send` and `sendBatch` to the queue.
    Queue(String),
    /// `NAME = { bucket = "uploads" }`: `put`, `get`, `delete`, `list` objects.
    Bucket(String),
    /// `NAME = { table = "users" }`: `get`, `put`, `delete`, `list` records.
    Table(String),
}

/// Queue, bucket and table names: letters, digits, `-`, `_` and `.`, at most 128; names
/// starting with `__` are the node's own.
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with("__")
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(crate) fn read_triggers(r: &mut Reader, t: &Table) -> Triggers {
    let mut out = Triggers::default();
    let Some(triggers) = r.table(t, "", "triggers") else { return out };
    r.deny_unknown(triggers, "triggers", &["cron", "queue", "storage", "record"]);
    for (i, table) in entries(r, triggers, "storage") {
        let path = format!("triggers.storage[{i}]");
        r.deny_unknown(table, &path, &["bucket", "prefix"]);
        let bucket = queue_name(r, table, &path, "bucket");
        if bucket.is_none() && !table.contains_key("bucket") {
            r.problem(join(&path, "bucket"), "missing (the bucket to watch)");
        }
        let prefix = r.string(table, &path, "prefix").unwrap_or_default();
        if let Some(bucket) = bucket {
            out.storage.push(StorageTrigger { bucket, prefix });
        }
    }
    for (i, t) in entries(r, triggers, "record") {
        let path = format!("triggers.record[{i}]");
        r.deny_unknown(t, &path, &["table"]);
        let table = queue_name(r, t, &path, "table");
        if table.is_none() && !t.contains_key("table") {
            r.problem(join(&path, "table"), "missing (the table to watch)");
        }
        if let Some(table) = table {
            out.record.push(RecordTrigger { table });
        }
    }
    for (i, table) in entries(r, triggers, "cron") {
        let path = format!("triggers.cron[{i}]");
        r.deny_unknown(table, &path, &["schedule", "retries", "catch_up"]);
        let schedule = r.string(table, &path, "schedule");
        if schedule.is_none() && !table.contains_key("schedule") {
            r.problem(join(&path, "schedule"), "missing (e.g. \"*/5 * * * *\")");
        }
        let retries = count(r, table, &path, "retries", 0).unwrap_or(2);
        let catch_up = r.bool(table, &path, "catch_up").unwrap_or(false);
        if let Some(schedule) = schedule {
            if let Err(e) = croner::Cron::from_str(&schedule) {
                r.problem(
                    join(&path, "schedule"),
                    format!("`{schedule}` is not a cron schedule: {e}"),
                );
            } else {
                out.cron.push(CronTrigger { schedule, retries: retries as u32, catch_up });
            }
        }
    }
    for (i, table) in entries(r, triggers, "queue") {
        let path = format!("triggers.queue[{i}]");
        r.deny_unknown(
            table,
            &path,
            &[
                "queue",
                "max_batch_size",
                "max_batch_timeout",
                "max_retries",
                "visibility_timeout",
                "retry_delay",
                "dead_letter_queue",
            ],
        );
        let queue = queue_name(r, table, &path, "queue");
        if queue.is_none() && !table.contains_key("queue") {
            r.problem(join(&path, "queue"), "missing (the queue to consume)");
        }
        let dead_letter_queue = queue_name(r, table, &path, "dead_letter_queue");
        let trigger = QueueTrigger {
            queue: queue.clone().unwrap_or_default(),
            max_batch_size: count(r, table, &path, "max_batch_size", 1).unwrap_or(10) as usize,
            max_batch_timeout: r
                .duration(table, &path, "max_batch_timeout")
                .unwrap_or(Duration::from_secs(5)),
            max_retries: count(r, table, &path, "max_retries", 1).unwrap_or(3) as u32,
            visibility_timeout: r
                .duration(table, &path, "visibility_timeout")
                .unwrap_or(Duration::from_secs(30)),
            retry_delay: r.duration(table, &path, "retry_delay").unwrap_or(Duration::from_secs(1)),
            dead_letter_queue,
        };
        if trigger.dead_letter_queue.is_some() && trigger.dead_letter_queue == queue {
            r.problem(join(&path, "dead_letter_queue"), "must differ from the consumed queue");
        }
        if queue.is_some() {
            out.queue.push(trigger);
        }
    }
    out
}

pub(crate) fn read_bindings(r: &mut Reader, t: &Table) -> BTreeMap<String, Binding> {
    let mut out = BTreeMap::new();
    let Some(bindings) = r.table(t, "", "bindings") else { return out };
    for (name, value) in bindings {
        let path = join("bindings", name);
        if !crate::edge::valid_var_name(name) {
            r.problem(&path, "a binding name uses letters, digits and `_`");
            continue;
        }
        let Some(table) = value.as_table() else {
            r.problem(&path, "expected a table like { queue = \"emails\" }");
            continue;
        };
        r.deny_unknown(table, &path, &["queue", "bucket", "table"]);
        let kinds: Vec<&str> =
            ["queue", "bucket", "table"].into_iter().filter(|k| table.contains_key(*k)).collect();
        if kinds.len() != 1 {
            r.problem(
                &path,
                "names one thing to bind: queue = \"...\", bucket = \"...\" or table = \"...\"",
            );
            continue;
        }
        let Some(target) = queue_name(r, table, &path, kinds[0]) else { continue };
        let binding = match kinds[0] {
            "queue" => Binding::Queue(target),
            "bucket" => Binding::Bucket(target),
            _ => Binding::Table(target),
        };
        out.insert(name.clone(), binding);
    }
    out
}

/// The tables of an array of tables, with their indexes.
fn entries<'t>(r: &mut Reader, t: &'t Table, key: &str) -> Vec<(usize, &'t Table)> {
    match t.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v.as_table() {
                Some(table) => Some((i, table)),
                None => {
                    r.problem(format!("triggers.{key}[{i}]"), "expected a table");
                    None
                }
            })
            .collect(),
        Some(_) => {
            r.problem(format!("triggers.{key}"), format!("expected [[triggers.{key}]] tables"));
            Vec::new()
        }
    }
}

fn count(r: &mut Reader, t: &Table, path: &str, key: &str, min: i64) -> Option<i64> {
    let n = r.integer(t, path, key)?;
    if n < min {
        r.problem(join(path, key), format!("must be at least {min}"));
        return None;
    }
    Some(n)
}

fn queue_name(r: &mut Reader, t: &Table, path: &str, key: &str) -> Option<String> {
    let name = r.string(t, path, key)?;
    if !valid_queue_name(&name) {
        r.problem(
            join(path, key),
            format!("`{name}` is not a valid queue name (letters, digits, `-`, `_`, `.`)"),
        );
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use crate::{Binding, EdgeConfig};
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
        assert_eq!(c.bindings["OUTBOX"], Binding::Queue("emails".into()));
        assert_eq!(c.bindings["FILES"], Binding::Bucket("uploads".into()));
        assert_eq!(c.bindings["USERS"], Binding::Table("users".into()));
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
                "triggers.queue[0].queue",
                "triggers.queue[0].dead_letter_queue",
                "triggers.queue[0].max_batch_size",
                "bindings.A"
            ]
        );
    }
}

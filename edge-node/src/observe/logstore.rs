//! Function logs kept on disk: every console record and every invocation summary, per
//! function, in JSON-lines segment files under `data_dir/logs/<function>/`, bounded by size
//! and age (`[logs]`), queryable by time and invocation id, and broadcast live for tails.
//!
//! Records reach the store synchronously from isolate threads (nothing is sampled): they are
//! broadcast to tails at once and handed to one writer thread that appends them in batches.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Longest message kept whole; longer ones are cut and marked.
pub const MAX_MESSAGE_CHARS: usize = 10_000;

/// One record of a function's log. The fields an invocation summary repeats are shared
/// (`Arc`) or static (`Cow`), so a summary costs few allocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// `log` (a console line, or a node message about the function) or `invocation` (a summary).
    pub kind: Cow<'static, str>,
    pub function: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Cow<'static, str>>,
    /// An HTTP invocation's method and path (summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Arc<str>>,
    /// `debug`, `log` (console.log and console.info), `warn` or `error` (log records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How the invocation ended (summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<bool>,
    /// For an invocation that accepted a WebSocket (its duration is the socket's lifetime):
    /// the messages received from the client and sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_out: Option<u64>,
}

impl Record {
    /// A log line; the caller has cut the message to [`MAX_MESSAGE_CHARS`].
    pub fn log(
        function: impl Into<Arc<str>>,
        ts: SystemTime,
        level: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Record {
        Record {
            ts: millis(ts),
            kind: Cow::Borrowed("log"),
            function: function.into(),
            version: None,
            invocation_id: None,
            trigger: None,
            method: None,
            path: None,
            level: Some(level.into()),
            message: Some(message.into()),
            outcome: None,
            status: None,
            duration_ms: None,
            cpu_ms: None,
            cold: None,
            messages_in: None,
            messages_out: None,
        }
    }

    /// The summary of an invocation that ended at `ended`.
    pub fn invocation(function: Arc<str>, ended: SystemTime, outcome: &'static str) -> Record {
        Record {
            kind: Cow::Borrowed("invocation"),
            level: None,
            message: None,
            outcome: Some(Cow::Borrowed(outcome)),
            ..Record::log(function, ended, "", "")
        }
    }
}

impl Record {
    /// Appends the record as one line of JSON, the same object serde writes, without the
    /// newline. Written by hand because the writer thread does this for every invocation:
    /// the keys are fixed, and most values need no escaping.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut ints = itoa::Buffer::new();
        out.extend_from_slice(b"{\"ts\":");
        out.extend_from_slice(ints.format(self.ts).as_bytes());
        out.extend_from_slice(b",\"kind\":");
        write_str(out, &self.kind);
        out.extend_from_slice(b",\"function\":");
        write_str(out, &self.function);
        if let Some(version) = self.version {
            out.extend_from_slice(b",\"version\":");
            out.extend_from_slice(ints.format(version).as_bytes());
        }
        let texts = [
            (&b",\"invocation_id\":"[..], self.invocation_id.as_deref()),
            (b",\"trigger\":", self.trigger.as_deref()),
            (b",\"method\":", self.method.as_deref()),
            (b",\"path\":", self.path.as_deref()),
            (b",\"level\":", self.level.as_deref()),
            (b",\"message\":", self.message.as_deref()),
            (b",\"outcome\":", self.outcome.as_deref()),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                out.extend_from_slice(key);
                write_str(out, value);
            }
        }
        if let Some(status) = self.status {
            out.extend_from_slice(b",\"status\":");
            out.extend_from_slice(ints.format(status).as_bytes());
        }
        for (key, value) in
            [(&b",\"duration_ms\":"[..], self.duration_ms), (b",\"cpu_ms\":", self.cpu_ms)]
        {
            if let Some(value) = value {
                out.extend_from_slice(key);
                write_f64(out, value);
            }
        }
        if let Some(cold) = self.cold {
            out.extend_from_slice(if cold { b",\"cold\":true" } else { b",\"cold\":false" });
        }
        for (key, value) in [
            (&b",\"messages_in\":"[..], self.messages_in),
            (b",\"messages_out\":", self.messages_out),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(key);
                out.extend_from_slice(ints.format(value).as_bytes());
            }
        }
        out.push(b'}');
    }
}

/// A JSON string: copied as it is unless something in it needs escaping.
fn write_str(out: &mut Vec<u8>, value: &str) {
    if value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *out, value).expect("a string serialises");
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

fn write_f64(out: &mut Vec<u8>, value: f64) {
    serde_json::to_writer(&mut *out, &value).expect("a number serialises");
}

pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Cuts a message over [`MAX_MESSAGE_CHARS`] characters, saying how much was cut.
pub fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message.to_string(),
        Some((at, _)) => {
            let cut = message[at..].chars().count();
            format!("{}… [truncated {cut} characters]", &message[..at])
        }
    }
}

/// What a query asks for.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Records at or after this time (ms since the epoch).
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub invocation_id: Option<String>,
    pub kind: Option<String>,
    /// The newest this many, oldest first. Default 100, at most 10,000.
    pub limit: Option<usize>,
}

/// The log store of a node.
pub struct LogStore {
    dir: PathBuf,
    live: broadcast::Sender<Arc<Record>>,
    writer: Option<mpsc::Sender<Arc<Record>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Size and age bounds per function.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_size: u64,
    pub max_age: Duration,
}

impl LogStore {
    pub fn open(dir: PathBuf, bounds: Bounds) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(&dir)?;
        let (live, _) = broadcast::channel(16 * 1024);
        let (tx, rx) = mpsc::channel();
        let writer_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("function-logs".into())
            .spawn(move || write_loop(&writer_dir, bounds, rx))?;
        Ok(LogStore { dir, live, writer: Some(tx), thread: Some(thread) })
    }

    /// Keeps a record and shows it to every tail.
    pub fn append(&self, record: Record) {
        let record = Arc::new(record);
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(record.clone());
        }
        if let Some(writer) = &self.writer {
            let _ = writer.send(record);
        }
    }

    /// Records as they come.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.live.subscribe()
    }

    /// A function's records matching `query`, oldest first. Reads what the writer has
    /// flushed (it flushes after every batch, within milliseconds).
    pub fn query(&self, function: &str, query: &Query) -> std::io::Result<Vec<Record>> {
        let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
        let dir = self.dir.join(function);
        let mut segments = segments(&dir);
        segments.reverse();
        let mut out: Vec<Record> = Vec::new();
        for (_, path) in segments {
            let Ok(file) = std::fs::File::open(&path) else { continue };
            let mut found: Vec<Record> = std::io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| serde_json::from_str::<Record>(&line).ok())
                .filter(|r| matches(r, query))
                .collect();
            found.append(&mut out);
            out = found;
            if out.len() >= limit {
                break;
            }
        }
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn matches(r: &Record, q: &Query) -> bool {
    q.since.is_none_or(|t| r.ts >= t)
        && q.until.is_none_or(|t| r.ts <= t)
        && q.invocation_id.as_deref().is_none_or(|id| r.invocation_id.as_deref() == Some(id))
        && q.kind.as_deref().is_none_or(|k| r.kind == k)
}

/// A function folder's segments, oldest first: `<first ms>.jsonl`.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let start = name.to_str()?.strip_suffix(".jsonl")?.parse().ok()?;
            Some((start, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// How long the writer waits after a record for more to write with it.
const LINGER: Duration = Duration::from_millis(5);

struct Open {
    file: std::io::BufWriter<std::fs::File>,
    size: u64,
    /// Written to since the last flush.
    unflushed: bool,
}

fn write_loop(dir: &Path, bounds: Bounds, rx: mpsc::Receiver<Arc<Record>>) {
    let segment_size = (bounds.max_size / 8).max(64 * 1024);
    let mut open: HashMap<String, Open> = HashMap::new();
    let mut last_sweep = SystemTime::now();
    let mut line = Vec::new();
    while let Ok(first) = rx.recv() {
        // Let a busy node's records gather for a moment: one wake-up and one write per
        // function for many records (tails get records at once, not from here).
        std::thread::sleep(LINGER);
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for record in batch {
            line.clear();
            record.write_json(&mut line);
            line.push(b'\n');
            let function = &*record.function;
            if !is_safe_name(function) {
                continue;
            }
            let rotate = open.get(function).is_none_or(|o| o.size >= segment_size);
            if rotate {
                open.remove(function);
                let folder = dir.join(function);
                let path = folder.join(format!("{}.jsonl", record.ts));
                let file = std::fs::create_dir_all(&folder).and_then(|()| {
                    std::fs::OpenOptions::new().create(true).append(true).open(&path)
                });
                match file {
                    Ok(file) => {
                        open.insert(
                            function.to_string(),
                            Open { file: std::io::BufWriter::new(file), size: 0, unflushed: false },
                        );
                        enforce(&folder, bounds);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, function, "cannot write the function's log");
                        continue;
                    }
                }
            }
            if let Some(o) = open.get_mut(function) {
                if o.file.write_all(&line).is_ok() {
                    o.size += line.len() as u64;
                }
                o.unflushed = true;
            }
        }
        for o in open.values_mut().filter(|o| o.unflushed) {
            let _ = o.file.flush();
            o.unflushed = false;
        }
        if last_sweep.elapsed().unwrap_or_default() > Duration::from_secs(60) {
            last_sweep = SystemTime::now();
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    enforce(&entry.path(), bounds);
                }
            }
        }
    }
}

/// Deletes a function's oldest segments while they exceed the size bound, and those older
/// than the age bound; the newest segment stays.
fn enforce(folder: &Path, bounds: Bounds) {
    let segments = segments(folder);
    let Some((_, newest)) = segments.last().cloned() else { return };
    let mut total: u64 =
        segments.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let oldest_kept = millis(SystemTime::now()).saturating_sub(bounds.max_age.as_millis() as u64);
    for (i, (_, path)) in segments.iter().enumerate() {
        if *path == newest {
            break;
        }
        // A segment is as new as the next one's start.
        let ends = segments.get(i + 1).map_or(u64::MAX, |(start, _)| *start);
        if total > bounds.max_size || ends < oldest_kept {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// Function names are checked by config; this keeps a bad one from escaping the folder.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_messages_with_a_marker() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = truncate(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… [truncated 5 characters]"), "{}", &cut[cut.len() - 40..]);
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn records_are_written_as_serde_writes_them() {
        let mut summary = Record::invocation("fn-1".into(), SystemTime::now(), "exceeded_cpu");
        summary.version = Some(7);
        summary.invocation_id = Some("0190a1b2c3d4".into());
        summary.trigger = Some("http".into());
        summary.status = Some(503);
        summary.duration_ms = Some(12.345678);
        summary.cpu_ms = Some(0.0001);
        summary.cold = Some(false);
        let awkward = "quote \" backslash \\ newline \n tab \t nul \u{0} é ✓ \u{1F600}";
        let console = Record::log("f", SystemTime::now(), "warn", awkward);
        let bare = Record::log("g", UNIX_EPOCH, "log", "");
        for record in [summary, console, bare] {
            let mut line = Vec::new();
            record.write_json(&mut line);
            assert_eq!(
                String::from_utf8(line).unwrap(),
                serde_json::to_string(&record).unwrap(),
                "{record:?}"
            );
        }
    }

    #[test]
    fn keeps_queries_and_bounds_records() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = Bounds { max_size: 512 * 1024, max_age: Duration::from_secs(3600) };
        let store = LogStore::open(dir.path().to_path_buf(), bounds).unwrap();
        for i in 0..20_000u64 {
            let mut r =
                Record::log("f", SystemTime::now(), "info", format!("line {i} {}", "x".repeat(40)));
            r.invocation_id = Some(format!("inv-{}", i % 100).into());
            store.append(r);
        }
        store.append(Record::log("g", SystemTime::now(), "info", "other"));
        drop(store);
        let store = LogStore::open(dir.path().to_path_buf(), bounds).unwrap();
        let last = store.query("f", &Query { limit: Some(3), ..Query::default() }).unwrap();
        let lines: Vec<_> =
            last.iter().map(|r| r.message.clone().unwrap()[..10].to_string()).collect();
        assert_eq!(lines, ["line 19997", "line 19998", "line 19999"]);
        let one = store
            .query(
                "f",
                &Query {
                    invocation_id: Some("inv-7".into()),
                    limit: Some(10_000),
                    ..Query::default()
                },
            )
            .unwrap();
        assert!(one.iter().all(|r| r.invocation_id.as_deref() == Some("inv-7")));
        assert!(!one.is_empty());
        let total: u64 = segments(&dir.path().join("f"))
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        let segment = 64 * 1024; // max_size / 8, at least 64 KiB
        assert!(total <= 512 * 1024 + segment, "bounded: {total} bytes");
        assert_eq!(store.query("g", &Query::default()).unwrap().len(), 1);
    }
}

//! Where function log records go: the terminal in `dev`, the node's log in `serve`.

use std::io::Write;
use std::sync::Arc;

use js_runtime::{Level, LogRecord, LogSink};

/// Writes each record whole, as one block, to standard error: readable for a developer in
/// `dev`. Records from different isolates never interleave within a line.
pub struct TerminalSink;

impl LogSink for TerminalSink {
    fn log(&self, record: LogRecord) {
        let level = match record.level {
            Level::Debug => "debug",
            Level::Log => "log  ",
            Level::Warn => "warn ",
            Level::Error => "error",
        };
        let ts = humantime::format_rfc3339_millis(record.ts);
        let id = record
            .invocation_id
            .as_deref()
            .map(|id| &id[id.len().saturating_sub(8)..])
            .unwrap_or("-");
        let mut text = String::new();
        for (i, line) in record.message.lines().enumerate() {
            if i == 0 {
                text.push_str(&format!("{ts} {level} [{}] {id} {line}\n", record.function));
            } else {
                text.push_str(&format!("    {line}\n"));
            }
        }
        if record.message.is_empty() {
            text.push_str(&format!("{ts} {level} [{}] {id}\n", record.function));
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// Hands records to the node's own log (`tracing`), as structured events under the
/// `function` target.
pub struct TracingSink;

/// `text` on one line: line breaks and other control characters (terminal escapes among
/// them) escaped as `\n`, `\r`, `\u{1b}`, so what a function logs is one record of the node's
/// log and cannot pass for another.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

impl LogSink for TracingSink {
    fn log(&self, record: LogRecord) {
        let id = record.invocation_id.as_deref().unwrap_or("");
        let function = record.function.as_ref();
        let message = one_line(&record.message);
        match record.level {
            Level::Debug => {
                tracing::debug!(target: "function", function, invocation_id = id, "{message}")
            }
            Level::Log => {
                tracing::info!(target: "function", function, invocation_id = id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "function", function, invocation_id = id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "function", function, invocation_id = id, "{message}")
            }
        }
    }
}

/// A function's sink: each record, its message cut to [`logstore::MAX_MESSAGE_CHARS`], goes to
/// the node's log store (with the function's version) and on to the node's own sink.
pub struct FunctionSink {
    pub store: std::sync::Arc<crate::observe::logstore::LogStore>,
    pub next: std::sync::Arc<dyn LogSink>,
    pub version: Option<u64>,
}

impl LogSink for FunctionSink {
    fn log(&self, mut record: LogRecord) {
        record.message = crate::observe::logstore::truncate(&record.message);
        let mut kept = crate::observe::logstore::Record::log(
            record.function.clone(),
            record.ts,
            record.level.as_str(),
            record.message.as_str(),
        );
        kept.version = self.version;
        kept.invocation_id = record.invocation_id.as_deref().map(Arc::from);
        kept.trigger = record.invocation_id.is_some().then_some(std::borrow::Cow::Borrowed("http"));
        self.store.append(kept);
        self.next.log(record);
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_are_escaped_onto_one_line() {
        assert_eq!(one_line("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            one_line("ok\nFORGED function=\"victim\"\r\u{1b}[31mred\u{7f}"),
            "ok\\nFORGED function=\"victim\"\\r\\u{1b}[31mred\\u{7f}"
        );
    }
}

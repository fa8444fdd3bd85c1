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

    fn wants_invocations(&self) -> bool {
        true
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
    /// How much of the function's output the node's own log takes.
    pub budget: std::sync::Arc<NodeLogBudget>,
}

/// Bytes of one function's output per second the node's own log takes, after a burst of
/// [`NODE_LOG_BURST`]; the function's log (the store) keeps everything within its own bounds.
pub const NODE_LOG_RATE: f64 = 64.0 * 1024.0;
pub const NODE_LOG_BURST: f64 = 1024.0 * 1024.0;
/// How often at most the node's log says that it left records out.
const DROP_NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One function's share of the node's own log: a token bucket of bytes. A function that logs
/// more than its share cannot flood the node's log (or its disk, or journald); what is left
/// out is counted (`edge_function_log_dropped_total`) and said, at most every 10 s.
pub struct NodeLogBudget {
    state: std::sync::Mutex<BudgetState>,
    dropped: prometheus_client::metrics::counter::Counter,
}

struct BudgetState {
    tokens: f64,
    at: std::time::Instant,
    /// Records left out since the last notice, and when that was.
    unsaid: u64,
    said: Option<std::time::Instant>,
}

impl NodeLogBudget {
    pub fn new(dropped: prometheus_client::metrics::counter::Counter) -> NodeLogBudget {
        let state = BudgetState {
            tokens: NODE_LOG_BURST,
            at: std::time::Instant::now(),
            unsaid: 0,
            said: None,
        };
        NodeLogBudget { state: std::sync::Mutex::new(state), dropped }
    }

    /// Whether a record of `bytes` goes to the node's log; `Some(n)` alongside when the node
    /// should now say that `n` records were left out.
    fn take(&self, bytes: usize) -> (bool, Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(s.at).as_secs_f64() * NODE_LOG_RATE;
        s.tokens = (s.tokens + refill).min(NODE_LOG_BURST);
        s.at = now;
        let cost = bytes as f64;
        let kept = s.tokens >= cost;
        if kept {
            s.tokens -= cost;
        } else {
            self.dropped.inc();
            s.unsaid += 1;
        }
        let due = s.said.is_none_or(|at| now.duration_since(at) >= DROP_NOTICE_EVERY);
        let notice = (s.unsaid > 0 && due).then(|| {
            s.said = Some(now);
            std::mem::take(&mut s.unsaid)
        });
        (kept, notice)
    }
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
        let (goes, notice) = self.budget.take(record.message.len());
        if let Some(dropped) = notice {
            tracing::warn!(function = %record.function, dropped, "the function logs more than the node's log takes; records were left out of it (the function's log keeps them)");
        }
        if goes {
            self.next.log(record);
        }
    }

    fn outbound(&self, span: js_runtime::OutboundSpan) {
        crate::observe::trace::export_outbound(&span);
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

//! The files an operator and a function author write: `node.toml` and `edge.toml`.
//!
//! Parsing never stops at the first problem: every problem found in a file is collected with
//! the key path it belongs to, so a user fixes a file in one go. Nothing here knows tokio,
//! V8 or sockets.

mod access;
mod de;
mod edge;
mod limits;
mod node;
mod triggers;
mod units;

use std::fmt;
use std::path::PathBuf;

pub use access::{Access, Binding, Grant, Kind, Resource, Use};
pub use edge::{valid_var_name, EdgeConfig, Route, EDGE_FILE};
pub use limits::{over_max, Limits, LimitsRequest};
pub use node::{
    AdminConfig, ClusterConfig, CronWhenPartitioned, FetchConfig, FunctionsConfig, HttpConfig,
    HttpsConfig, LimitsConfig, LogsConfig, NodeConfig, NodeSection, RuntimeConfig,
};
pub use triggers::{
    valid_queue_name, CronTrigger, QueueTrigger, RecordTrigger, StorageTrigger, Triggers,
};
pub use units::{format_duration, parse_duration, parse_size};

/// One thing wrong with a config file, at a key path such as `http.listen[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path; empty for a problem with the file as a whole (a syntax error).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but holds one or more problems; all of them are listed.
    #[error("{} has {} problem{}:\n{}", file.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" }, list(problems))]
    Invalid { file: PathBuf, problems: Vec<Problem> },
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

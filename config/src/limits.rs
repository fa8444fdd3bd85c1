//! Resource limits of a function: node defaults, a function's own asks, and the node maximums
//! that cap them.

use std::time::Duration;

use toml::Table;

use crate::reader::{join, Reader};
use crate::units::format_duration;
use crate::Problem;

/// The limits one invocation of a function runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// V8 heap plus ArrayBuffer memory of an isolate, in bytes.
    pub memory: u64,
    /// CPU time one invocation may use; time waiting on I/O does not count.
    pub cpu_time: Duration,
    /// Wall-clock time one invocation may take, `waitUntil` work included.
    pub wall_time: Duration,
    /// CPU time the module's top-level code may use when an isolate starts.
    pub startup_time: Duration,
    /// Outbound `fetch` calls one invocation may make.
    pub subrequests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 * 1024 * 1024,
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            startup_time: Duration::from_secs(1),
            subrequests: 50,
        }
    }
}

impl Limits {
    /// The default `[limits.max]`: the most a function may ask for.
    pub fn default_max() -> Limits {
        Limits {
            memory: 512 * 1024 * 1024,
            cpu_time: Duration::from_secs(30),
            wall_time: Duration::from_secs(15 * 60),
            startup_time: Duration::from_secs(10),
            subrequests: 1000,
        }
    }
}

/// A function's `[limits]`: each key it sets replaces the node default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitsRequest {
    pub memory: Option<u64>,
    pub cpu_time: Option<Duration>,
    pub wall_time: Option<Duration>,
    pub startup_time: Option<Duration>,
    pub subrequests: Option<u32>,
}

const LIMIT_KEYS: &[&str] = &["memory", "cpu_time", "wall_time", "startup_time", "subrequests"];

/// Reads the keys of a `[limits]`-shaped table at `path`; `also_known` are keys the caller
/// reads itself.
pub(crate) fn read_request(
    r: &mut Reader,
    t: &Table,
    path: &str,
    also_known: &[&str],
) -> LimitsRequest {
    let known: Vec<&str> = LIMIT_KEYS.iter().chain(also_known).copied().collect();
    r.deny_unknown(t, path, &known);
    let subrequests = r.integer(t, path, "subrequests").and_then(|n| match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            r.problem(join(path, "subrequests"), format!("{n} is out of range"));
            None
        }
    });
    let request = LimitsRequest {
        memory: r.size(t, path, "memory"),
        cpu_time: r.duration(t, path, "cpu_time"),
        wall_time: r.duration(t, path, "wall_time"),
        startup_time: r.duration(t, path, "startup_time"),
        subrequests,
    };
    let zero = |r: &mut Reader, key: &str| r.problem(join(path, key), "must be more than zero");
    if request.memory == Some(0) {
        zero(r, "memory");
    }
    for (key, value) in [
        ("cpu_time", request.cpu_time),
        ("wall_time", request.wall_time),
        ("startup_time", request.startup_time),
    ] {
        if value == Some(Duration::ZERO) {
            zero(r, key);
        }
    }
    request
}

impl LimitsRequest {
    /// `base` with every key this request sets replaced.
    pub fn over(&self, base: &Limits) -> Limits {
        Limits {
            memory: self.memory.unwrap_or(base.memory),
            cpu_time: self.cpu_time.unwrap_or(base.cpu_time),
            wall_time: self.wall_time.unwrap_or(base.wall_time),
            startup_time: self.startup_time.unwrap_or(base.startup_time),
            subrequests: self.subrequests.unwrap_or(base.subrequests),
        }
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{}MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// Every limit of `wanted` above `max`, as a problem at `limits.<key>`.
pub fn over_max(wanted: &Limits, max: &Limits) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut check = |key: &str, over: bool, asked: String, allowed: String| {
        if over {
            problems.push(Problem {
                path: join("limits", key),
                message: format!("{asked} is more than this node allows ({allowed})"),
            });
        }
    };
    check("memory", wanted.memory > max.memory, mib(wanted.memory), mib(max.memory));
    for (key, w, m) in [
        ("cpu_time", wanted.cpu_time, max.cpu_time),
        ("wall_time", wanted.wall_time, max.wall_time),
        ("startup_time", wanted.startup_time, max.startup_time),
    ] {
        check(key, w > m, format_duration(w), format_duration(m));
    }
    check(
        "subrequests",
        wanted.subrequests > max.subrequests,
        wanted.subrequests.to_string(),
        max.subrequests.to_string(),
    );
    problems
}

//! Resource limits of a function: node defaults, a function's own asks, and the node maximums
//! that cap them.

use std::time::Duration;

use serde::Deserialize;

use crate::de::{self, join};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsRequest {
    #[serde(with = "de::size_opt")]
    pub memory: Option<u64>,
    #[serde(with = "de::duration_opt")]
    pub cpu_time: Option<Duration>,
    #[serde(with = "de::duration_opt")]
    pub wall_time: Option<Duration>,
    #[serde(with = "de::duration_opt")]
    pub startup_time: Option<Duration>,
    pub subrequests: Option<u32>,
}

impl LimitsRequest {
    /// Every limit set to zero, as a problem under `path`.
    pub(crate) fn validate(&self, path: &str) -> Vec<Problem> {
        let zero = [
            ("memory", self.memory == Some(0)),
            ("cpu_time", self.cpu_time == Some(Duration::ZERO)),
            ("wall_time", self.wall_time == Some(Duration::ZERO)),
            ("startup_time", self.startup_time == Some(Duration::ZERO)),
        ];
        zero.into_iter()
            .filter(|(_, zero)| *zero)
            .map(|(key, _)| Problem {
                path: join(path, key),
                message: "must be more than zero".into(),
            })
            .collect()
    }

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

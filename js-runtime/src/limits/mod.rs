//! Every limit a worker runs under is enforced here:
//!
//! - CPU time: [`watchdog`] stops an isolate whose current entry has spent what the most
//!   spent live invocation has left; [`Meter`] charges each entry's CPU time to the
//!   invocations live during it and ends those over `cpu_time` with `exceeded_cpu`.
//! - Wall time: [`Meter`] ends invocations past their deadline with `exceeded_wall_time`.
//! - Background work (timers, continuations after the response): [`Meter`] gives it one
//!   `cpu_time` per invocation; past it the isolate stops.
//! - Memory: V8's heap limit, and [`memory`]'s allocator and checks for what lies outside it.
//!
//! [`drive`] runs an isolate's event loop with all of them; the clock [`Meter`] reads is
//! injected, so its tests move time by hand.

use std::time::Duration;

mod drive;
mod memory;
mod meter;
mod watchdog;

pub(crate) use drive::{drive, drive_without_time_limits, BACKGROUND_STOPPED};
pub(crate) use memory::ArrayBufferBudget;
pub(crate) use meter::{Charged, Meter};
pub(crate) use watchdog::{Guard, Tripped};

/// The limits a worker runs under (plain data; the node maps its config onto this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// V8 heap plus ArrayBuffer bytes of the isolate.
    pub memory: u64,
    /// CPU time per invocation.
    pub cpu_time: Duration,
    /// Wall-clock time per invocation, `waitUntil` included.
    pub wall_time: Duration,
    /// CPU time for the module's top-level code.
    pub startup_time: Duration,
    /// Outbound `fetch` calls per invocation.
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

//! Every limit a worker runs under is enforced here:
//!
//! - CPU time: [`watchdog`] stops an isolate whose current entry has spent what the most
//!   spent live invocation has left; [`Meter`] charges each entry's CPU time to the
//!   invocations that took part in it (or, when none did, to every one live during it) and
//!   ends those over `cpu_time` with `exceeded_cpu`.
//! - Wall time: [`Meter`] ends invocations past their deadline with `exceeded_wall_time`.
//! - Background work (timers, continuations after the response): [`Meter`] gives it one
//!   `cpu_time` per invocation; past it the isolate stops.
//! - Memory: V8's heap limit, and [`memory`]'s allocator and checks for what lies outside it.
//!
//! [`drive`] runs an isolate's event loop with all of them; the clock [`Meter`] reads is
//! injected, so its tests move time by hand.

mod drive;
pub(crate) mod gc_time;
mod memory;
mod meter;
mod watchdog;

pub(crate) use drive::{drive, drive_without_time_limits, enter, leave, BACKGROUND_STOPPED};
pub(crate) use memory::{ArrayBufferBudget, CountedBlobStore};
pub(crate) use meter::{Charged, Meter};
pub(crate) use watchdog::{Guard, Tripped};

/// The limits a worker runs under: the config's type, the one the node resolved for the
/// function (its asks over the node's defaults, under the node's maximums).
pub use config::Limits;

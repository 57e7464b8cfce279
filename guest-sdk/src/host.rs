//! What the host gives a plugin: its clock, seeded randomness, logging and
//! the means to hold a reply (a slow or hung runtime) without blocking anything.

use crate::LogLevel;
use crate::bindings::labkubelet::runtime::host as imports;
use std::time::Duration;

/// Host-clock wall time in nanoseconds since the Unix epoch. Use this rather than
/// `std::time`: in tests the host clock is virtual and shared with the kubelet logic.
pub fn now() -> i64 {
    imports::now()
}

/// A seeded pseudo-random number.
pub fn random_u64() -> u64 {
    imports::random_u64()
}

/// Logs into the host's tracing output.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message)
}

/// Holds the reply of the current call for `delay` of host-clock time.
pub fn delay_reply(delay: Duration) {
    imports::delay_reply(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

/// Holds the reply of the current call until [`release_replies`] is called.
pub fn hang_reply() {
    imports::hang_reply()
}

/// Releases every held reply.
pub fn release_replies() {
    imports::release_replies()
}

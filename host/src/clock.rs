//! The one clock that the kubelet logic and the plugins read.
//!
//! Wall time is derived from tokio's monotonic clock, so a test that pauses tokio time
//! (`#[tokio::test(start_paused = true)]`) runs a five-minute back-off in milliseconds and
//! every plugin sees the same virtual time as the host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Wall-clock time that advances with tokio's clock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = labkubelet::clock::Clock::new();
/// let before = clock.now_nanos();
/// clock.sleep(std::time::Duration::from_millis(1)).await;
/// assert!(clock.now_nanos() > before);
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: Duration,
    mono_at_start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock that starts at the real wall time now.
    pub fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { wall_at_start: wall, mono_at_start: Instant::now() }
    }

    /// Wall time since the Unix epoch.
    pub fn since_epoch(&self) -> Duration {
        self.wall_at_start + self.mono_at_start.elapsed()
    }

    /// Wall time in nanoseconds since the Unix epoch, as plugins see it.
    pub fn now_nanos(&self) -> i64 {
        i64::try_from(self.since_epoch().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Waits for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }

    /// Waits for `d` plus up to `factor` × `d` more, as the kubelet's `wait.JitterUntil`
    /// spreads periodic work so many nodes do not act in step.
    pub async fn sleep_jittered(&self, d: Duration, factor: f64) {
        let extra = rand::random::<f64>() * factor;
        self.sleep(d.mul_f64(1.0 + extra)).await
    }
}

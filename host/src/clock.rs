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

/// A duration as Go prints it (`time.Duration.String`): `0s`, `1.5ms`, `10s`, `3m0.5s`,
/// `1h2m3s`. The kubelet puts such durations in messages users read, such as
/// `pleg was last seen active 3m0.5s ago` and `back-off 40s restarting failed container`.
///
/// ```
/// use std::time::Duration;
/// use labkubelet::clock::go_duration;
/// assert_eq!(go_duration(Duration::from_secs(180)), "3m0s");
/// assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
/// ```
pub fn go_duration(d: Duration) -> String {
    /// `n / unit` with the fraction's trailing zeros dropped, as Go prints it.
    fn decimal(n: u128, unit: u128, digits: usize) -> String {
        let (whole, rest) = (n / unit, n % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let fraction = format!("{rest:0digits$}");
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".into(),
        1..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{}µs", decimal(nanos, 1_000, 3)),
        1_000_000..1_000_000_000 => format!("{}ms", decimal(nanos, 1_000_000, 6)),
        _ => {
            const MINUTE: u128 = 60_000_000_000;
            let (hours, minutes, rest) = (nanos / (60 * MINUTE), nanos / MINUTE % 60, nanos % MINUTE);
            let seconds = format!("{}s", decimal(rest, 1_000_000_000, 9));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(250), "250ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(2_500), "2.5µs"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_millis(180_512), "3m0.512s"),
            (Duration::from_secs(3723), "1h2m3s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text, "{d:?}");
        }
    }
}

//! The back-off of a plugin instance that traps again and again (a scenario that panics on
//! every relist, say). The first two traps in a row restart it at once, as a single bad call
//! deserves; from the third, calls are refused without running for 1 s, doubling to
//! [`MAX_DELAY`], so a broken plugin costs a restart and a log line per back-off step, not
//! one a second. A call that answers ends the run.

use crate::runtime::RuntimeError;
use std::time::Duration;

/// Traps in a row restarted at once.
const FREE: u32 = 2;
const FIRST_DELAY: Duration = Duration::from_secs(1);
pub(super) const MAX_DELAY: Duration = Duration::from_secs(60);

/// A plugin instance's traps in a row, on the host clock (ns since the epoch).
#[derive(Debug, Default)]
pub(super) struct Traps {
    in_a_row: u32,
    /// Calls are refused until then.
    until: i64,
    last: String,
}

impl Traps {
    /// The refusal of a call at `now` while the instance backs off.
    pub(super) fn refusal(&self, plugin: &str, method: &'static str, now: i64) -> Option<RuntimeError> {
        (now < self.until).then(|| RuntimeError::Trap {
            plugin: plugin.into(),
            method,
            detail: format!(
                "not called: the plugin failed {} times in a row, last with \"{}\"; it is tried again in {:.0?}",
                self.in_a_row,
                self.last,
                Duration::from_nanos(u64::try_from(self.until - now).unwrap_or(0))
            ),
        })
    }

    /// A call answered.
    pub(super) fn answered(&mut self) {
        self.in_a_row = 0;
        self.until = 0;
    }

    /// A call trapped with `e` at `now`: how long the instance backs off (zero for the
    /// first traps in a row).
    pub(super) fn trapped(&mut self, e: &RuntimeError, now: i64) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.last = e.to_string();
        let delay = match self.in_a_row.checked_sub(FREE + 1) {
            None => Duration::ZERO,
            Some(doublings) => FIRST_DELAY.saturating_mul(1 << doublings.min(6)).min(MAX_DELAY),
        };
        self.until = now.saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX));
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn trap() -> RuntimeError {
        RuntimeError::Trap { plugin: "flaky".into(), method: "list-containers", detail: "panicked at src/lib.rs:3:5".into() }
    }

    #[test]
    fn traps_in_a_row_back_off_from_the_third_doubling_to_a_minute() {
        let mut traps = Traps::default();
        let delays: Vec<u64> = (0..10).map(|i| traps.trapped(&trap(), i * 100 * S).as_secs()).collect();
        assert_eq!(delays, [0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        let refused = traps.refusal("flaky", "status", 900 * S + 30 * S).expect("backing off");
        assert_eq!(
            refused.to_string(),
            "plugin flaky failed in status: not called: the plugin failed 10 times in a row, last with \"plugin flaky failed in list-containers: \
             panicked at src/lib.rs:3:5\"; it is tried again in 30s"
        );
        assert!(traps.refusal("flaky", "status", 960 * S).is_none(), "the back-off ends");
        traps.answered();
        assert_eq!(traps.trapped(&trap(), 1000 * S), Duration::ZERO, "an answer ends the run");
        assert!(traps.refusal("flaky", "status", 1000 * S).is_none());
    }
}

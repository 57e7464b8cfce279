//! Per-key back-off with client-go's `flowcontrol.Backoff` semantics, which the kubelet uses
//! for container restarts and image pulls: the first failure is retried at once and starts
//! a 10 s back-off; each later one doubles it up to 300 s; an entry untouched for twice the
//! maximum (10 min) starts over. Retry crates model one retry loop, not this per-container
//! memory that outlives every sync, hence this small type.

use std::collections::HashMap;
use std::time::Duration;

/// What a pod's back-off is kept for: client-go keys it by string, the kubelet's keys name
/// these three things.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackoffKey {
    /// A container's restarts, by name and spec hash (kuberuntime's `getStableKey`): a changed
    /// container starts over.
    Restart { container: String, spec_hash: String },
    /// An image's pulls (the image puller's back-off, keyed by image).
    Pull { image: String },
    /// The pod's sandbox creation.
    Sandbox,
}

/// The kubelet's container restart and image pull back-off: 10 s doubling to 300 s.
pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    /// Host-clock ns of the last [`Backoff::next`].
    last_update: i64,
}

/// Back-off state per key; times are host-clock nanoseconds since the epoch.
///
/// ```
/// use labkubelet::{clock::Clock, pods::backoff::{Backoff, BackoffKey, INITIAL, MAX}};
/// let clock = Clock::new();
/// let mut b = Backoff::new(INITIAL, MAX, clock);
/// let died = clock.now_nanos();
/// let ctr = BackoffKey::Restart { container: "app".into(), spec_hash: "0a1b2c3d".into() };
/// assert_eq!(b.expiry_since(&ctr, died), None); // never restarted: no back-off
/// b.next(&ctr, died);
/// assert_eq!(b.expiry_since(&ctr, clock.now_nanos()).map(|end| end > died), Some(true));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<BackoffKey, Entry>,
    clock: crate::clock::Clock,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, clock: crate::clock::Clock) -> Self {
        Backoff { initial, max, entries: HashMap::new(), clock }
    }

    fn expired(&self, event_time: i64, entry: &Entry) -> bool {
        event_time.saturating_sub(entry.last_update) > nanos(self.max) * 2
    }

    /// Records a retry: starts the back-off, or doubles it.
    pub fn next(&mut self, key: &BackoffKey, event_time: i64) {
        let now = self.clock.now_nanos();
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(event_time, e) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        // client-go's GC: an entry untouched for twice the maximum is forgotten (a container's
        // old definitions leave theirs behind).
        let max = self.max;
        self.entries.retain(|_, e| now.saturating_sub(e.last_update) <= nanos(max) * 2);
        self.entries.insert(key.clone(), Entry { backoff, last_update: now });
    }

    /// The current back-off of a key (zero when it has none).
    pub fn get(&self, key: &BackoffKey) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// When the back-off that started with a failure at `event_time` ends, if it has not yet
    /// (client-go's `IsInBackOffSince`): the container restart check, from its finishedAt.
    pub fn expiry_since(&self, key: &BackoffKey, event_time: i64) -> Option<i64> {
        let entry = self.entries.get(key)?;
        if self.expired(event_time, entry) {
            return None;
        }
        let end = event_time.saturating_add(nanos(entry.backoff));
        (self.clock.now_nanos() < end).then_some(end)
    }

    /// When the back-off that started at the last [`Backoff::next`] ends, if it has not yet
    /// (`IsInBackOffSinceUpdate`): the image pull check.
    pub fn expiry_since_update(&self, key: &BackoffKey) -> Option<i64> {
        let entry = self.entries.get(key)?;
        let end = entry.last_update.saturating_add(nanos(entry.backoff));
        (self.clock.now_nanos() < end).then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    const S: i64 = 1_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn restarts_back_off_10_20_40_and_start_over_after_ten_quiet_minutes() {
        let clock = Clock::new();
        let mut b = Backoff::new(INITIAL, MAX, clock);
        let c = &BackoffKey::Sandbox;
        let t0 = clock.now_nanos();
        b.next(c, t0);
        let mut seen = vec![b.get(c)];
        for _ in 0..6 {
            b.next(c, clock.now_nanos());
            seen.push(b.get(c));
        }
        let secs: Vec<u64> = seen.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);

        clock.sleep(Duration::from_secs(601)).await;
        assert_eq!(b.expiry_since(c, clock.now_nanos()), None, "a container that ran 10 min is not held back");
        b.next(c, clock.now_nanos());
        assert_eq!(b.get(c), INITIAL);
        let died = clock.now_nanos();
        assert_eq!(b.expiry_since(c, died), Some(died + 10 * S));
        assert_eq!(b.expiry_since_update(c), Some(died + 10 * S));
        clock.sleep(Duration::from_secs(10)).await;
        assert_eq!(b.expiry_since(c, died), None);
    }
}

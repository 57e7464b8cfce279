//! Eviction signals and hard thresholds, as a KubeletConfiguration's `evictionHard` names
//! them (`memory.available: 100Mi`, `nodefs.available: 10%`). Upstream:
//! pkg/kubelet/eviction/api/types.go and `ParseThresholdConfig`.

pub use crate::node::pressure::Condition;
use crate::pods::resources::Quantity;
use std::collections::BTreeMap;

/// What the eviction manager observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    PidAvailable,
}

impl Signal {
    pub const ALL: [Signal; 5] = [Signal::MemoryAvailable, Signal::NodeFsAvailable, Signal::NodeFsInodesFree, Signal::ImageFsAvailable, Signal::PidAvailable];

    /// The signal's name in `evictionHard`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The node condition a met threshold of this signal sets.
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::Memory,
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree | Signal::ImageFsAvailable => Condition::Disk,
            Signal::PidAvailable => Condition::Pid,
        }
    }

    /// The resource the kubelet reclaims, as its messages name it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }
}

/// How much of a signal must stay available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Quantity(i64),
    /// A fraction of the capacity, 0 to 1.
    Percentage(f64),
}

impl Amount {
    /// The amount in the signal's units, for a capacity.
    pub fn of(self, capacity: i64) -> i64 {
        match self {
            Amount::Quantity(q) => q,
            Amount::Percentage(p) => (capacity as f64 * p).round() as i64,
        }
    }
}

/// A hard eviction threshold: evict as soon as `signal` falls below `amount`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub amount: Amount,
}

/// An `evictionHard` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("evictionHard: unknown signal {0:?}; the signals are memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, pid.available")]
    UnknownSignal(String),
    #[error("evictionHard: {signal}: {value:?} is neither a quantity (100Mi) nor a percentage (10%)")]
    BadAmount { signal: String, value: String },
}

/// The kubelet's default hard thresholds on Linux.
pub fn defaults() -> Vec<Threshold> {
    vec![
        Threshold { signal: Signal::MemoryAvailable, amount: Amount::Quantity(100 * 1024 * 1024) },
        Threshold { signal: Signal::NodeFsAvailable, amount: Amount::Percentage(0.10) },
        Threshold { signal: Signal::NodeFsInodesFree, amount: Amount::Percentage(0.05) },
        Threshold { signal: Signal::ImageFsAvailable, amount: Amount::Percentage(0.15) },
    ]
}

/// `evictionHard` as the kubelet reads it: the map replaces the defaults; a value of 0 or
/// 0% turns the signal off.
///
/// ```
/// use labkubelet::eviction::thresholds::{Amount, Signal, parse};
/// let hard = parse(&[("memory.available".to_string(), "500Mi".to_string())].into()).unwrap();
/// assert_eq!((hard[0].signal, hard[0].amount), (Signal::MemoryAvailable, Amount::Quantity(500 * 1024 * 1024)));
/// assert!(parse(&[("memory.free".to_string(), "1Gi".to_string())].into()).is_err());
/// ```
pub fn parse(hard: &BTreeMap<String, String>) -> Result<Vec<Threshold>, ThresholdError> {
    let mut thresholds = Vec::new();
    for (name, value) in hard {
        let signal = Signal::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| ThresholdError::UnknownSignal(name.clone()))?;
        let bad = || ThresholdError::BadAmount { signal: name.clone(), value: value.clone() };
        let amount = match value.trim().strip_suffix('%') {
            Some(p) => Amount::Percentage(p.trim().parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).ok_or_else(bad)? / 100.0),
            None => Amount::Quantity(Quantity::parse(value.trim()).map_err(|_| bad())?.value()),
        };
        if !matches!(amount, Amount::Quantity(0)) && amount != Amount::Percentage(0.0) {
            thresholds.push(Threshold { signal, amount });
        }
    }
    Ok(thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_quantities_parse_and_zero_turns_a_signal_off() {
        let hard: BTreeMap<String, String> =
            [("nodefs.available", "10%"), ("pid.available", "5%"), ("imagefs.available", "0%")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let parsed = parse(&hard).unwrap();
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert_eq!(parsed[0].amount.of(1000), 100);
        assert!(matches!(parse(&[("memory.available".to_string(), "lots".to_string())].into()), Err(ThresholdError::BadAmount { .. })));
    }
}

//! The node's pressure conditions (`MemoryPressure`, `DiskPressure`, `PIDPressure`) as flags
//! shared by who sets them (the eviction manager; a lab's squeeze) and who reads them (the
//! node status, pod admission).

use std::sync::atomic::{AtomicBool, Ordering};

/// The pressure conditions of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    Memory,
    Disk,
    Pid,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Condition::Memory, Condition::Disk, Condition::Pid];

    /// The node condition's type, as `kubectl describe node` shows it.
    pub fn type_name(self) -> &'static str {
        match self {
            Condition::Memory => "MemoryPressure",
            Condition::Disk => "DiskPressure",
            Condition::Pid => "PIDPressure",
        }
    }
}

/// One flag per pressure condition.
///
/// ```
/// use labkubelet::node::pressure::{Condition, Conditions};
/// let pressure = Conditions::default();
/// assert!(!pressure.set(Condition::Memory, true));
/// assert_eq!(pressure.held(), [Condition::Memory]);
/// ```
#[derive(Debug, Default)]
pub struct Conditions {
    memory: AtomicBool,
    disk: AtomicBool,
    pid: AtomicBool,
}

impl Conditions {
    fn flag(&self, condition: Condition) -> &AtomicBool {
        match condition {
            Condition::Memory => &self.memory,
            Condition::Disk => &self.disk,
            Condition::Pid => &self.pid,
        }
    }

    /// Whether the condition holds.
    pub fn get(&self, condition: Condition) -> bool {
        self.flag(condition).load(Ordering::SeqCst)
    }

    /// Sets the condition; returns whether it held before.
    pub fn set(&self, condition: Condition, on: bool) -> bool {
        self.flag(condition).swap(on, Ordering::SeqCst)
    }

    /// The conditions that hold, in the order the node status lists them.
    pub fn held(&self) -> Vec<Condition> {
        Condition::ALL.into_iter().filter(|c| self.get(*c)).collect()
    }
}

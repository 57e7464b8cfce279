//! Lab actions on a whole node (`labkubelet node <action>`, `POST /node/{action}`): cut it
//! off the API server and reconnect it, restart its kubelet, reboot it, take its runtime or
//! its pod network down, make memory, disk or PIDs short. What the cluster then does (the node turns `Unknown`, is tainted,
//! its pods are evicted) is the control plane's own doing.

use super::pressure::{Condition, Conditions};
use crate::api_client::connections::Link;
use crate::plugin::AskedAction;
use crate::runtime::outage::Outage;
use crate::timeline::Journal;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// What a lab can do to a node: the WIT contract's `node-action`, so a plugin asks for the
/// same actions as the command line.
pub use crate::plugin::bindings::labkubelet::runtime::lab::NodeAction;

impl NodeAction {
    pub const ALL: [NodeAction; 9] = [
        NodeAction::Partition,
        NodeAction::Heal,
        NodeAction::KubeletRestart,
        NodeAction::Reboot,
        NodeAction::RuntimeDown,
        NodeAction::NetworkDown,
        NodeAction::MemoryPressure,
        NodeAction::DiskPressure,
        NodeAction::PidPressure,
    ];

    /// The action's name on the command line and in the API.
    pub fn name(self) -> &'static str {
        match self {
            NodeAction::Partition => "partition",
            NodeAction::Heal => "heal",
            NodeAction::KubeletRestart => "kubelet-restart",
            NodeAction::Reboot => "reboot",
            NodeAction::RuntimeDown => "runtime-down",
            NodeAction::NetworkDown => "network-down",
            NodeAction::MemoryPressure => "memory-pressure",
            NodeAction::DiskPressure => "disk-pressure",
            NodeAction::PidPressure => "pid-pressure",
        }
    }
}

/// A name that is no node action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no node action {0:?}; the actions are: {names}", names = NodeAction::ALL.map(NodeAction::name).join(", "))]
pub struct UnknownAction(pub String);

impl std::str::FromStr for NodeAction {
    type Err = UnknownAction;

    /// ```
    /// use labkubelet::node::actions::NodeAction;
    /// assert_eq!("kubelet-restart".parse(), Ok(NodeAction::KubeletRestart));
    /// assert!("reset".parse::<NodeAction>().unwrap_err().to_string().contains("partition, heal"));
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeAction::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| UnknownAction(s.to_string()))
    }
}

/// A start of the node's kubelet logic that a lab asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The kubelet process restarts: the runtime keeps its state.
    Kubelet,
    /// The machine reboots: every container ends, every sandbox is not ready, the boot id is new.
    Reboot,
}

/// The faults a node has, and the restarts asked of it: made once per node and kept across
/// the restarts of its kubelet logic (a partition outlives a kubelet restart).
///
/// ```
/// use labkubelet::node::actions::{NodeAction, NodeControl};
/// let control = NodeControl::default();
/// assert_eq!(control.apply(NodeAction::Partition), "the node is cut off from the API server; its containers keep running");
/// assert!(control.link().is_cut());
/// assert_eq!(control.apply(NodeAction::Heal), "healed: the node is connected to the API server again");
/// ```
pub struct NodeControl {
    link: Link,
    outage: Arc<Outage>,
    squeezed: Arc<Conditions>,
    restarts: mpsc::UnboundedSender<Restart>,
    asked: Mutex<mpsc::UnboundedReceiver<Restart>>,
}

impl Default for NodeControl {
    fn default() -> Self {
        let (restarts, asked) = mpsc::unbounded_channel();
        NodeControl { link: Link::default(), outage: Arc::default(), squeezed: Arc::default(), restarts, asked: Mutex::new(asked) }
    }
}

impl NodeControl {
    /// The link the node's kubelet clients use.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// What takes the node's runtime and network down.
    pub fn outage(&self) -> &Arc<Outage> {
        &self.outage
    }

    /// The resources a lab made short, for the eviction manager.
    pub fn squeezed(&self) -> &Arc<Conditions> {
        &self.squeezed
    }

    /// Does what the action says; returns what was done, for the user.
    pub fn apply(&self, action: NodeAction) -> String {
        match action {
            NodeAction::Partition if self.link.cut() => "the node is cut off from the API server; its containers keep running".into(),
            NodeAction::Partition => "the node is partitioned already".into(),
            NodeAction::Heal => {
                let mut healed: Vec<&str> = Vec::new();
                if self.link.restore() {
                    healed.push("the node is connected to the API server again");
                }
                for part in self.outage.restore() {
                    healed.push(if part == "runtime" { "the container runtime is back" } else { "the pod network is back" });
                }
                for (condition, freed) in
                    [(Condition::Memory, "memory is free again"), (Condition::Disk, "disk space is free again"), (Condition::Pid, "PIDs are free again")]
                {
                    if self.squeezed.set(condition, false) {
                        healed.push(freed);
                    }
                }
                if healed.is_empty() { "nothing to heal: the node has no fault".into() } else { format!("healed: {}", healed.join(", ")) }
            }
            NodeAction::KubeletRestart => {
                self.ask(Restart::Kubelet);
                "the kubelet restarts; its containers keep running".into()
            }
            NodeAction::Reboot => {
                self.ask(Restart::Reboot);
                "the node reboots: every container stops, and its pods start again after the boot".into()
            }
            NodeAction::RuntimeDown if self.outage.runtime_down() => "the container runtime is down".into(),
            NodeAction::RuntimeDown => "the container runtime is down already".into(),
            NodeAction::NetworkDown if self.outage.network_down() => "the pod network is down".into(),
            NodeAction::NetworkDown => "the pod network is down already".into(),
            NodeAction::MemoryPressure => self.squeeze(Condition::Memory, "memory"),
            NodeAction::DiskPressure => self.squeeze(Condition::Disk, "disk space"),
            NodeAction::PidPressure => self.squeeze(Condition::Pid, "PIDs"),
        }
    }

    fn squeeze(&self, condition: Condition, what: &str) -> String {
        match self.squeezed.set(condition, true) {
            false => format!("the node runs short of {what}: the eviction manager reclaims it within 10 s"),
            true => format!("the node is short of {what} already"),
        }
    }

    fn ask(&self, restart: Restart) {
        // The receiver lives as long as `self`.
        let _ = self.restarts.send(restart);
    }

    /// Waits for the next restart a lab asks for.
    pub async fn restart_asked(&self) -> Restart {
        match self.asked.lock().await.recv().await {
            Some(restart) => restart,
            None => std::future::pending().await,
        }
    }
}

/// Does the node actions the node's plugins ask for, until the plugins are gone, putting
/// each on the timeline as asked by its plugin.
pub async fn do_asked(control: &NodeControl, mut asked: mpsc::Receiver<AskedAction>, journal: &Journal, clock: crate::clock::Clock, node: &str) {
    while let Some(AskedAction { plugin, action }) = asked.recv().await {
        let done = control.apply(action);
        tracing::info!(node, plugin = %plugin, action = action.name(), "{done}");
        journal.lab_action(clock.now_nanos(), None, "node", action.name(), "accepted", &format!("{done} (asked by plugin {plugin})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::What;

    #[test]
    fn every_action_has_a_name_that_parses_back() {
        for action in NodeAction::ALL {
            assert_eq!(action.name().parse(), Ok(action));
        }
    }

    #[tokio::test]
    async fn heal_ends_every_fault_and_restarts_are_handed_over_in_order() {
        let control = NodeControl::default();
        assert_eq!(control.apply(NodeAction::Heal), "nothing to heal: the node has no fault");
        control.apply(NodeAction::RuntimeDown);
        control.apply(NodeAction::Partition);
        assert_eq!(control.apply(NodeAction::Partition), "the node is partitioned already");
        assert_eq!(control.apply(NodeAction::Heal), "healed: the node is connected to the API server again, the container runtime is back");
        assert!(!control.link().is_cut());
        control.apply(NodeAction::Reboot);
        control.apply(NodeAction::KubeletRestart);
        assert_eq!(control.restart_asked().await, Restart::Reboot);
        assert_eq!(control.restart_asked().await, Restart::Kubelet);
    }

    #[tokio::test]
    async fn actions_asked_by_a_plugin_are_done_and_put_on_the_timeline_with_its_name() {
        let control = NodeControl::default();
        let journal = Journal::new("lab-node-1");
        let (asks, asked) = mpsc::channel(4);
        asks.send(AskedAction { plugin: "node-partition".into(), action: NodeAction::Partition }).await.unwrap();
        drop(asks);
        do_asked(&control, asked, &journal, crate::clock::Clock::new(), "lab-node-1").await;
        assert!(control.link().is_cut());
        let entries = journal.export().entries;
        let [entry] = entries.as_slice() else { panic!("one entry: {entries:?}") };
        assert_eq!(
            entry.what,
            What::Trigger {
                plugin: "node".into(),
                action: "partition".into(),
                result: "accepted: the node is cut off from the API server; its containers keep running (asked by plugin node-partition)".into(),
                accepted: true,
            }
        );
    }
}

//! What the host gives a plugin: its clock, seeded randomness, logging, the means to hold
//! a reply (a slow or hung runtime) without blocking anything, its node's lab actions, and
//! the cluster's DNS.

use crate::bindings::labkubelet::runtime::host as imports;
use crate::{LogLevel, NodeAction};
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

/// Asks the host for a node action on this plugin's node (a partition, a reboot, memory
/// pressure, `heal`), done once the call in progress returns: how a scenario scripts what
/// `labkubelet node <action>` does.
///
/// ```no_run
/// use labkubelet_guest::{NodeAction, host};
/// host::node_action(NodeAction::Partition);
/// ```
pub fn node_action(action: NodeAction) {
    imports::act_on_node(action)
}

/// The addresses the cluster's DNS gives fully qualified `name` (a Service's cluster IP for
/// `SERVICE.NAMESPACE.svc.cluster.local`), none when it does not know it: what a container's
/// `nslookup` asks after applying its search domains.
pub fn resolve(name: &str) -> Vec<String> {
    imports::resolve_name(name)
}

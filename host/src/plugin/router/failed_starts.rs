//! Starts a plugin trapped in (a panic, a call past its deadline, a call refused while the
//! instance backs off). The instance comes back with the state it last exported, where the
//! container was created and never started; containerd shows a start that failed as an
//! exited container, exit code 128, reason `StartError`, with the error as its message, and
//! the kubelet counts it as a crash (restart count up, `lastState`, back-off). The router
//! shows such a container so until it is removed.

use crate::runtime::{Container, ContainerState, ContainerStatus};
use std::collections::HashMap;
use std::sync::Mutex;

/// The most failed starts remembered; an older one is shown as the plugin has it.
const KEPT: usize = 10_000;

/// The failed starts of one node's containers, by container id: the error and when.
#[derive(Default)]
pub(super) struct FailedStarts(Mutex<HashMap<String, (String, i64)>>);

impl FailedStarts {
    pub(super) fn record(&self, id: &str, error: String, at: i64) {
        let mut failed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if failed.len() < KEPT {
            failed.insert(id.to_string(), (error, at));
        }
    }

    pub(super) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// A created container whose start failed, as containerd shows it.
    pub(super) fn status(&self, mut status: ContainerStatus) -> ContainerStatus {
        if status.state == ContainerState::Created
            && let Some((error, at)) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&status.id)
        {
            status.state = ContainerState::Exited;
            (status.exit_code, status.reason, status.message, status.finished_at) = (128, "StartError".into(), error.clone(), *at);
        }
        status
    }

    /// The same in a list.
    pub(super) fn listed(&self, mut containers: Vec<Container>) -> Vec<Container> {
        let failed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for c in containers.iter_mut().filter(|c| c.state == ContainerState::Created && failed.contains_key(&c.id)) {
            c.state = ContainerState::Exited;
        }
        containers
    }
}

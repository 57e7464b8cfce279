//! One pod as the runtime has it: its sandboxes and containers in detail, every instance
//! (a restarted container leaves its dead predecessor behind, which gives `lastState`).

use crate::runtime::pleg::POD_UID_LABEL;
use crate::runtime::{ContainerRuntime, ContainerState, ContainerStatus, PodSandboxState, PodSandboxStatus, RuntimeError};
use std::collections::HashSet;

#[derive(Debug, Clone, Default)]
pub struct RuntimePod {
    pub sandboxes: Vec<PodSandboxStatus>,
    pub containers: Vec<ContainerStatus>,
}

impl RuntimePod {
    /// The newest sandbox.
    pub fn latest_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.sandboxes.iter().max_by_key(|s| (s.metadata.attempt, s.created_at))
    }

    /// The newest sandbox, when it is ready.
    pub fn ready_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.latest_sandbox().filter(|s| s.state == PodSandboxState::Ready)
    }

    /// The instances of one container, newest first.
    pub fn instances(&self, name: &str) -> Vec<&ContainerStatus> {
        let mut all: Vec<&ContainerStatus> = self.containers.iter().filter(|c| c.metadata.name == name).collect();
        all.sort_by_key(|c| std::cmp::Reverse((c.metadata.attempt, c.created_at)));
        all
    }

    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.instances(name).first().copied()
    }

    /// The instance before the newest one.
    pub fn previous(&self, name: &str) -> Option<&ContainerStatus> {
        self.instances(name).get(1).copied()
    }

    pub fn running(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers.iter().filter(|c| c.state == ContainerState::Running)
    }
}

/// Reads one pod's sandboxes and containers from the runtime. Sandboxes without the
/// kubelet's pod label were not made by this agent and are left out.
pub async fn inspect_pod(runtime: &dyn ContainerRuntime, uid: &str) -> Result<RuntimePod, RuntimeError> {
    let sandboxes: Vec<String> = runtime
        .list_pod_sandboxes()
        .await?
        .into_iter()
        .filter(|s| s.metadata.uid == uid && s.labels.iter().any(|l| l.key == POD_UID_LABEL))
        .map(|s| s.id)
        .collect();
    let ours: HashSet<&str> = sandboxes.iter().map(String::as_str).collect();
    let containers: Vec<String> = runtime.list_containers().await?.into_iter().filter(|c| ours.contains(c.pod_sandbox_id.as_str())).map(|c| c.id).collect();
    let mut pod = RuntimePod::default();
    // Something may be removed between the list and the inspection: it is simply gone.
    for id in &sandboxes {
        match runtime.pod_sandbox_status(id).await {
            Ok(s) => pod.sandboxes.push(s),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for id in &containers {
        match runtime.container_status(id).await {
            Ok(c) => pod.containers.push(c),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pod)
}

//! The volume manager's part in a sync: the wait before the sandbox starts (without
//! blocking: the sync comes back at the next retry), and new files for running containers
//! when a ConfigMap or Secret changed.

use super::{PodSync, digest, pod_name};
use crate::events::EventType;
use crate::pods::downward::Addresses;
use crate::pods::volumes::MountInputs;
use crate::runtime::pod_cache::RuntimePod;
use k8s_openapi::api::core::v1::{Container, Pod};

impl PodSync {
    /// Waits (without blocking) for the pod's volumes: true once all are set up; otherwise
    /// records the volume manager's events and comes back at its next retry.
    pub(super) async fn mount(&mut self, pod: &Pod) -> bool {
        let ctx = self.ctx.clone();
        let inputs =
            MountInputs { objects: &ctx.objects, node: &ctx.node, addresses: Addresses { pod_ip: "", host_ip: &ctx.node_ip }, allocatable: &ctx.allocatable };
        match self.mounts.wait_for_attach_and_mount(pod, inputs, self.now()).await {
            Ok(()) => true,
            Err(not) => {
                for message in &not.events {
                    self.event(pod, None, EventType::Warning, "FailedMount", message);
                }
                self.wake_at(not.retry_at);
                false
            }
        }
    }

    /// Hands running containers their volumes' files when these changed (a ConfigMap or
    /// Secret was updated), as the kubelet's periodic remount does; never through `subPath`.
    pub(super) async fn update_files(&mut self, pod: &Pod, rt: &RuntimePod) {
        let Some(spec) = &pod.spec else { return };
        let running: Vec<(String, &Container)> = rt
            .running()
            .filter_map(|r| spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == r.metadata.name).map(|c| (r.id.clone(), c)))
            .collect();
        self.sent_files.retain(|id, _| running.iter().any(|(r, _)| r == id));
        for (id, c) in running {
            let files = self.mounts.updatable_files(c);
            let now = digest(&files);
            if self.sent_files.get(&id).is_some_and(|sent| *sent == now) {
                continue;
            }
            match self.ctx.runtime.update_container_files(&id, &files).await {
                Ok(()) => {
                    self.sent_files.insert(id, now);
                }
                Err(e) => tracing::debug!(pod = %pod_name(pod), container = %c.name, "updating a container's files: {e}"),
            }
        }
    }
}

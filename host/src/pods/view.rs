//! The node's pods as the kubelet's API shows them (`/pods`): each with the status the kubelet
//! logic generated last. The HTTP API, the streaming server, the Summary and the eviction
//! manager read the pods through this, without the pod workers' handles.

use super::manager::{self, PodManager, is_static};
use super::status::StatusWriter;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

#[derive(Clone)]
pub struct PodView {
    manager: Arc<PodManager>,
    status: Arc<StatusWriter>,
}

impl PodView {
    pub(super) fn new(manager: Arc<PodManager>, status: Arc<StatusWriter>) -> Self {
        PodView { manager, status }
    }

    /// The pod as the API shows it: a static pod's own spec with its mirror's status.
    pub fn api_view(&self, pod: &Arc<Pod>) -> Arc<Pod> {
        if !is_static(pod) {
            return pod.clone();
        }
        let mut view = (**pod).clone();
        view.status = self.manager.current_mirror(pod).and_then(|m| m.status.clone());
        Arc::new(view)
    }

    /// The node's pods as the kubelet's `/pods` shows them: each with the status the
    /// kubelet logic generated last (the API's copy until it generated one).
    pub fn pods(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self.manager.all().iter().map(|pod| self.served(pod)).collect();
        pods.sort_by_key(manager::full_name);
        pods
    }

    /// The pod named so, from any source, as `/pods` shows it.
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<Pod> {
        let wanted = format!("{namespace}/{name}");
        self.manager.all().iter().find(|p| manager::full_name(p) == wanted).map(|p| self.served(p))
    }

    /// A pod with the status the kubelet logic generated last (the API's copy until then).
    fn served(&self, pod: &Arc<Pod>) -> Pod {
        let mut pod = (*self.api_view(pod)).clone();
        if let Some(status) = pod.metadata.uid.as_deref().and_then(|uid| self.status.cached(uid)) {
            pod.status = Some(status);
        }
        pod
    }
}

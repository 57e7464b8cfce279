//! The status manager's writing half: the last status generated for each pod (what `/pods`
//! shows, and the timeline's source of container changes), and the patch that puts it in
//! the API with the pod's uid as a precondition, skipped when it would change nothing.

use crate::pods::manager::PodManager;
use crate::timeline::{Journal, What};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Top-level status fields the kubelet sets only sometimes: removed when it no longer does.
const OPTIONAL_FIELDS: [&str; 2] = ["reason", "message"];

/// True when writing `new` over the server's `old` would change nothing the kubelet owns
/// (both as JSON).
fn unchanged(old: &serde_json::Value, new: &serde_json::Value) -> bool {
    let Some(new) = new.as_object() else { return false };
    new.iter().all(|(k, v)| old.get(k) == Some(v)) && OPTIONAL_FIELDS.iter().all(|k| new.contains_key(*k) || old.get(*k).is_none())
}

/// A container's state in a few words, for the timeline: state, reason, exit code.
fn state_summary(c: &ContainerStatus) -> (String, String, Option<i32>) {
    let state = c.state.clone().unwrap_or_default();
    if let Some(w) = state.waiting {
        ("Waiting".into(), w.reason.unwrap_or_default(), None)
    } else if state.running.is_some() {
        ("Running".into(), String::new(), None)
    } else if let Some(t) = state.terminated {
        ("Terminated".into(), t.reason.unwrap_or_default(), Some(t.exit_code))
    } else {
        ("Waiting".into(), String::new(), None)
    }
}

fn all_containers(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten())
}

/// The status manager of one node: the last status generated for each pod (what `/pods`
/// shows, and the timeline's source of container changes), and the writer that puts it in
/// the API.
pub struct StatusWriter {
    /// None for a standalone node.
    client: Option<kube::Client>,
    manager: Arc<PodManager>,
    journal: Arc<Journal>,
    cache: Mutex<HashMap<String, PodStatus>>,
}

impl StatusWriter {
    pub fn new(client: Option<kube::Client>, manager: Arc<PodManager>, journal: Arc<Journal>) -> Self {
        StatusWriter { client, manager, journal, cache: Mutex::new(HashMap::new()) }
    }

    /// Keeps the status generated for a pod; each container whose state, restart count or
    /// readiness changed since the last one goes to the timeline.
    pub fn remember(&self, pod: &Pod, status: &PodStatus, now: i64) {
        let Some(uid) = pod.metadata.uid.as_deref() else { return };
        let name = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let before = cache.get(uid);
        for c in all_containers(status) {
            let previous = before.and_then(|b| all_containers(b).find(|p| p.name == c.name));
            let summary = state_summary(c);
            if previous.is_some_and(|p| state_summary(p) == summary && p.restart_count == c.restart_count && p.ready == c.ready) {
                continue;
            }
            if previous.is_some_and(|p| c.restart_count > p.restart_count) {
                crate::metrics::METRICS.container_restarts.with_label_values(&[pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")]).inc();
            }
            let (state, reason, exit_code) = summary;
            let what = What::Container { container: c.name.clone(), state, reason, exit_code, restart_count: c.restart_count, ready: c.ready };
            self.journal.record(now, Some(&name), what);
        }
        cache.insert(uid.to_string(), status.clone());
    }

    /// The status last generated for a pod.
    pub fn cached(&self, uid: &str) -> Option<PodStatus> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    /// Forgets the pods `keep` says no.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|uid, _| keep(uid));
    }

    /// Writes `status` to the pod unless the server has it already. The patch is a JSON
    /// merge patch of the whole status (lists replaced, dropped fields set to null) carrying
    /// the pod's uid, so a pod deleted and re-created under the same name is never written
    /// to (the server answers 409). It has the effect of the kubelet's two-way strategic
    /// merge patch. Returns whether it wrote.
    pub async fn write(&self, pod: &Pod, status: &PodStatus) -> Result<bool, kube::Error> {
        let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        let new = serde_json::to_value(status).unwrap_or_default();
        if unchanged(&old, &new) {
            return Ok(false);
        }
        let Some(client) = &self.client else { return Ok(false) };
        let (Some(name), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.uid.as_deref()) else { return Ok(false) };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut body = serde_json::json!({"metadata": {"uid": uid}, "status": new});
        for key in OPTIONAL_FIELDS {
            if body["status"].get(key).is_none() && old.get(key).is_some() {
                body["status"][key] = serde_json::Value::Null;
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let written = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(body)).await?;
        self.manager.observe(written);
        Ok(true)
    }
}

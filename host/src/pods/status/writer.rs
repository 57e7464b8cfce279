//! The status manager (upstream pkg/kubelet/status): the last status generated for each pod
//! (what `/pods` shows, and the timeline's source of container changes), and a task of its
//! own that puts it in the API, so a slow API server delays status writes, never the pod
//! workers. A write is the kubelet's strategic merge patch against the server's copy, with
//! the pod's uid as a precondition, skipped when it would change nothing, leaving the
//! conditions other writers own as the server has them; a pod that finished terminating is
//! deleted once its final status is written. A static pod's status waits while its mirror
//! pod does not exist yet, and is written once it does (upstream's periodic reconcile).

use crate::pods::manager::{PodManager, is_static};
use crate::timeline::{Journal, What};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How soon a write that failed is tried again, and how often a static pod's status that
/// waits for its mirror pod looks for it.
const RETRY: Duration = Duration::from_secs(1);
/// The most statuses of one pod waiting at once, as upstream's status manager keeps them:
/// one, the newest, in the place of the first that waited. While the server keeps up each
/// state is written; while it does not, a state it never saw because the pod moved on is
/// not written at all (a stale write costs a request the client-side limit makes wait).
const QUEUED_PER_POD: usize = 1;

/// Top-level status fields the kubelet sets only sometimes: removed when it no longer does.
const OPTIONAL_FIELDS: [&str; 2] = ["reason", "message"];

/// The pod conditions the kubelet owns (upstream's `PodConditionsByKubelet`, with
/// `PodReadyToStartContainers` of 1.29); the others belong to other writers.
const KUBELET_CONDITIONS: [&str; 5] = ["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers"];

fn kubelets(c: &PodCondition) -> bool {
    KUBELET_CONDITIONS.contains(&c.type_.as_str())
}

/// One of the kubelet's conditions as the patch carries it: merged by type into the server's,
/// so what the server's has and this one no longer has (the reason and message of a
/// condition that turned true) is set to null, as a two-way strategic merge patch does.
fn condition_patch(condition: &PodCondition, old_status: &serde_json::Value) -> serde_json::Value {
    let mut patch = serde_json::to_value(condition).unwrap_or_default();
    let server = old_status["conditions"].as_array().into_iter().flatten().find(|c| c["type"].as_str() == Some(condition.type_.as_str()));
    if let (Some(server), Some(fields)) = (server.and_then(|c| c.as_object()), patch.as_object_mut()) {
        for key in server.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

/// The status generated with the conditions of other writers the server's copy has, all in
/// the server's order, as upstream's `mergePodStatus` makes it.
pub fn with_others_conditions(server: Option<&PodStatus>, generated: &PodStatus) -> PodStatus {
    let ours: Vec<&PodCondition> = generated.conditions.iter().flatten().collect();
    let theirs = server.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    let mut conditions: Vec<PodCondition> =
        theirs.filter_map(|c| if kubelets(c) { ours.iter().find(|o| o.type_ == c.type_).map(|o| (*o).clone()) } else { Some(c.clone()) }).collect();
    for c in ours {
        if !conditions.iter().any(|m| m.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    PodStatus { conditions: (generated.conditions.is_some() || !conditions.is_empty()).then_some(conditions), ..generated.clone() }
}

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

/// A status the server took: digests of what was sent and of what it kept. An older server
/// drops fields it does not know (a 1.20 one, `hostIPs`), so what it keeps never equals
/// what was sent. Digests, not the statuses: ten thousand pods' statuses twice over are
/// tens of MiB.
#[derive(PartialEq)]
struct Written {
    sent: u64,
    kept: u64,
}

/// A pod's status as JSON (none: an empty one), as the patch is made from it.
fn status_json(pod: &Pod) -> serde_json::Value {
    pod.status.as_ref().map_or_else(|| serde_json::to_value(PodStatus::default()), serde_json::to_value).unwrap_or_default()
}

fn digest(status: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    status.to_string().hash(&mut hasher);
    hasher.finish()
}

/// A status waiting to be written.
#[derive(Clone)]
struct Pending {
    uid: String,
    /// The pod as the kubelet has it (a static pod's own copy: its status goes to its mirror).
    pod: Arc<Pod>,
    status: PodStatus,
    /// The pod finished terminating: once this status is written, the pod is deleted.
    delete: bool,
}

/// The status manager of one node: the last status generated for each pod, and the
/// statuses waiting for [`StatusWriter::run`] to write them.
pub struct StatusWriter {
    /// None for a standalone node: nothing is written.
    client: Option<kube::Client>,
    manager: Arc<PodManager>,
    journal: Arc<Journal>,
    cache: Mutex<HashMap<String, PodStatus>>,
    /// Each pod's last write (a static pod's to its mirror): the status sent, and the status
    /// the server answered with.
    written: Mutex<HashMap<String, Written>>,
    /// In the order they were set.
    pending: Mutex<VecDeque<Pending>>,
    /// The newest status of each static pod whose mirror pod does not exist yet, by uid.
    parked: Mutex<HashMap<String, Pending>>,
    queued: Notify,
}

impl StatusWriter {
    pub fn new(client: Option<kube::Client>, manager: Arc<PodManager>, journal: Arc<Journal>) -> Self {
        StatusWriter {
            client,
            manager,
            journal,
            cache: Mutex::default(),
            written: Mutex::default(),
            pending: Mutex::default(),
            parked: Mutex::default(),
            queued: Notify::new(),
        }
    }

    /// Takes the status the kubelet generated for a pod: kept for `/pods` and the timeline
    /// at once, written to the API (a static pod's to its mirror) by the writer task. With
    /// `delete`, the pod finished terminating and is deleted once this is written.
    pub fn set(&self, pod: &Arc<Pod>, status: &PodStatus, now: i64, delete: bool) {
        let target = self.target(pod);
        let status = with_others_conditions(target.as_ref().and_then(|t| t.status.as_ref()), status);
        self.remember(pod, &status, now);
        let Some(uid) = pod.metadata.uid.clone() else { return };
        if self.client.is_none() {
            return;
        }
        // A newer status supersedes one parked for the mirror, and keeps its `delete`.
        let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
        let delete = delete || parked.is_some_and(|p| p.delete);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let newest = Pending { uid, pod: pod.clone(), status, delete };
        let queued: Vec<usize> = pending.iter().enumerate().filter(|(_, p)| p.uid == newest.uid).map(|(i, _)| i).collect();
        match queued.last() {
            Some(&last) if queued.len() >= QUEUED_PER_POD => {
                let delete = pending[last].delete || newest.delete;
                pending[last] = Pending { delete, ..newest };
            }
            _ => pending.push_back(newest),
        }
        drop(pending);
        self.queued.notify_one();
    }

    /// Writes what [`StatusWriter::set`] queued, in order. A write the server could not take
    /// is tried again a second later, before the ones after it; one it refused (a 4xx answer
    /// other than 429) is dropped, since sending it again would not help, and the pod's next
    /// sync sets a status again.
    pub async fn run(&self) {
        let Some(client) = self.client.clone() else { return };
        loop {
            self.unpark();
            let next = self.pending.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(pending) = next else {
                if self.parked.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                    self.queued.notified().await;
                } else {
                    let _ = tokio::time::timeout(RETRY, self.queued.notified()).await;
                }
                continue;
            };
            // On the heap while it runs: an idle writer keeps only its wait.
            match Box::pin(self.write_pending(&client, &pending)).await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
                    tracing::warn!(pod = %crate::pods::manager::full_name(&pending.pod), "the API server refused the pod status: {}", s.message);
                }
                Err(e) => {
                    tracing::warn!(pod = %crate::pods::manager::full_name(&pending.pod), "writing the pod status: {e}");
                    self.pending.lock().unwrap_or_else(|p| p.into_inner()).push_front(pending);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Where a pod's status goes, as the server has it now: the pod, or a static pod's
    /// current mirror (none until the mirror exists).
    fn target(&self, pod: &Pod) -> Option<Arc<Pod>> {
        if is_static(pod) {
            return self.manager.current_mirror(pod);
        }
        pod.metadata.uid.as_deref().and_then(|uid| self.manager.get(uid))
    }

    /// Queues again the parked statuses whose mirror pod exists now, and forgets those of
    /// pods the node no longer runs.
    fn unpark(&self) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.is_empty() {
            return;
        }
        parked.retain(|uid, _| self.manager.get(uid).is_some());
        let ready: Vec<String> = parked.iter().filter(|(_, p)| self.target(&p.pod).is_some()).map(|(uid, _)| uid.clone()).collect();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for uid in ready {
            if let Some(p) = parked.remove(&uid) {
                pending.push_back(p);
            }
        }
    }

    async fn write_pending(&self, client: &kube::Client, pending: &Pending) -> Result<(), kube::Error> {
        // The server's copy may have moved on since the status was set: the patch is made
        // against the newest one.
        let Some(target) = self.target(&pending.pod) else {
            if is_static(&pending.pod) && self.manager.get(&pending.uid).is_some() {
                self.parked.lock().unwrap_or_else(|p| p.into_inner()).insert(pending.uid.clone(), pending.clone());
            }
            return Ok(());
        };
        let status = with_others_conditions(target.status.as_ref(), &pending.status);
        self.write(client, &pending.uid, &target, &status).await?;
        if pending.delete {
            delete_pod(client, &target).await?;
        }
        Ok(())
    }

    /// Keeps the status generated for a pod; each container whose state, restart count or
    /// readiness changed since the last one goes to the timeline.
    fn remember(&self, pod: &Pod, status: &PodStatus, now: i64) {
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
        self.written.lock().unwrap_or_else(|p| p.into_inner()).retain(|uid, _| keep(uid));
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).retain(|uid, _| keep(uid));
    }

    /// Writes `status` to the pod (the kubelet's pod `kubelet_uid`, or its mirror) unless the
    /// server has it already: its copy holds what it is sent, or it is the copy the server
    /// kept of this very status when it was last sent (upstream compares with its own last
    /// write the same way). The patch is the
    /// kubelet's strategic merge patch: the kubelet's conditions merged by type (other
    /// writers' untouched), addresses merged by ip with the ones gone deleted, the container
    /// statuses replaced, dropped fields set to null; it carries the pod's uid, so a pod
    /// deleted and re-created under the same name is never written to (the server answers
    /// 409).
    async fn write(&self, client: &kube::Client, kubelet_uid: &str, pod: &Pod, status: &PodStatus) -> Result<(), kube::Error> {
        let old = status_json(pod);
        let new = serde_json::to_value(status).unwrap_or_default();
        let (Some(name), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.uid.as_deref()) else { return Ok(()) };
        if unchanged(&old, &new) {
            return Ok(());
        }
        let sent = digest(&new);
        if self.written.lock().unwrap_or_else(|p| p.into_inner()).get(kubelet_uid) == Some(&Written { sent, kept: digest(&old) }) {
            return Ok(());
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut body = serde_json::json!({"metadata": {"uid": uid}, "status": new});
        body["status"]["conditions"] =
            serde_json::Value::Array(status.conditions.iter().flatten().filter(|c| kubelets(c)).map(|c| condition_patch(c, &old)).collect());
        for key in OPTIONAL_FIELDS {
            if body["status"].get(key).is_none() && old.get(key).is_some() {
                body["status"][key] = serde_json::Value::Null;
            }
        }
        for list in ["podIPs", "hostIPs"] {
            let gone: Vec<serde_json::Value> = old[list]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|ip| !new[list].as_array().is_some_and(|now| now.contains(ip)))
                .map(|ip| serde_json::json!({"ip": ip["ip"], "$patch": "delete"}))
                .collect();
            if gone.is_empty() {
                continue;
            }
            match body["status"][list].as_array_mut() {
                Some(items) => items.extend(gone),
                None => body["status"][list] = serde_json::Value::Array(gone),
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        match pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(body)).await {
            Ok(written) => {
                let kept = digest(&status_json(&written));
                self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(kubelet_uid.to_string(), Written { sent, kept });
                self.manager.observe(written);
                Ok(())
            }
            // Gone, or a new pod under the same name: there is nothing of ours to write to.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Deletes a pod for good, as the kubelet does once it stopped: grace 0, uid precondition.
pub async fn delete_pod(client: &kube::Client, pod: &Pod) -> Result<(), kube::Error> {
    let (Some(name), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.uid.clone()) else { return Ok(()) };
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::default()
    };
    match pods.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or a new pod under the same name: ours is deleted.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;

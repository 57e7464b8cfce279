//! The pod manager: the pods this node should run, merged from every source, keyed by uid,
//! and a stream of "this pod changed" for the workers. The API copy of each pod is kept
//! here too, so the status manager compares with what the server has.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// The desired pods of one node.
pub struct PodManager {
    pods: RwLock<HashMap<String, Arc<Pod>>>,
    /// Mirror pods in the API, by `namespace/name`: what a static pod's status is written to.
    mirrors: RwLock<HashMap<String, Arc<Pod>>>,
    /// The API source has listed once: a pod it does not have is not this node's.
    synced: std::sync::atomic::AtomicBool,
    changed: mpsc::UnboundedSender<String>,
}

pub fn uid_of(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref()
}

/// The annotation a non-API source puts on its pods, as the kubelet's config sources do.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// The annotation on a mirror pod: the config hash (uid) of the static pod it mirrors.
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The static pod a mirror pod stands for, when it is one.
pub fn mirror_of(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get(CONFIG_MIRROR_ANNOTATION).map(String::as_str)
}

/// `namespace/name`.
pub fn full_name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}

/// Where a pod comes from: `api`, or the `kubernetes.io/config.source` of a static pod.
pub fn source_of(pod: &Pod) -> &str {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_SOURCE_ANNOTATION)).map_or("api", String::as_str)
}

/// A static pod (from a manifest file or URL), or its mirror: not the API server's.
pub fn is_static(pod: &Pod) -> bool {
    source_of(pod) != "api"
}

/// Static and mirror pods, and pods at system-critical priority: admitted under pressure and
/// never evicted (upstream's `IsCriticalPod`).
pub fn is_critical(pod: &Pod) -> bool {
    const SYSTEM_CRITICAL: i32 = 2_000_000_000;
    is_static(pod) || pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= SYSTEM_CRITICAL)
}

/// What a watch event says about a pod the manager may hold already.
#[derive(Debug, PartialEq)]
enum Change {
    /// A version older than the one held: the server's answer to a status write can come
    /// before the watch event of an earlier write.
    Stale,
    /// The status alone changed (the kubelet's own writes, another writer's conditions):
    /// kept, with nothing for the worker to do, as upstream's `HandlePodReconcile`.
    StatusOnly,
    /// New, or its spec or metadata changed: the worker syncs it.
    Changed,
}

fn resource_version(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

/// How `new` differs from `known`. resourceVersions are compared as numbers where both are
/// (etcd's are), and are otherwise taken as newer.
fn change(known: Option<&Pod>, new: &Pod) -> Change {
    let Some(known) = known.filter(|k| k.metadata.uid == new.metadata.uid) else { return Change::Changed };
    if let (Some(held), Some(seen)) = (resource_version(known), resource_version(new))
        && seen < held
    {
        return Change::Stale;
    }
    if known.spec == new.spec && same_but_version(&known.metadata, &new.metadata) { Change::StatusOnly } else { Change::Changed }
}

/// Whether two ObjectMetas are equal but for resourceVersion and managedFields, which every
/// write changes. Field by field rather than on copies: this runs for every watch event,
/// and the destructuring fails to compile when ObjectMeta gains a field.
fn same_but_version(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    let ObjectMeta {
        annotations,
        creation_timestamp,
        deletion_grace_period_seconds,
        deletion_timestamp,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields: _,
        name,
        namespace,
        owner_references,
        resource_version: _,
        self_link,
        uid,
    } = a;
    *annotations == b.annotations
        && *creation_timestamp == b.creation_timestamp
        && *deletion_grace_period_seconds == b.deletion_grace_period_seconds
        && *deletion_timestamp == b.deletion_timestamp
        && *finalizers == b.finalizers
        && *generate_name == b.generate_name
        && *generation == b.generation
        && *labels == b.labels
        && *name == b.name
        && *namespace == b.namespace
        && *owner_references == b.owner_references
        && *self_link == b.self_link
        && *uid == b.uid
}

/// A pod as the manager holds it: without its managedFields, which the kubelet never reads
/// and which take more memory than the rest of a small pod (a tree of maps per writer).
fn held(mut pod: Pod) -> Arc<Pod> {
    pod.metadata.managed_fields = None;
    Arc::new(pod)
}

/// Puts `pod` under `key` unless it is older than the copy held there; says how it differs.
fn store(pods: &mut HashMap<String, Arc<Pod>>, key: String, pod: Pod) -> Change {
    let change = change(pods.get(&key).map(|p| &**p), &pod);
    if change != Change::Stale {
        pods.insert(key, held(pod));
    }
    change
}

impl PodManager {
    /// A manager and the receiver of the uids of pods that changed.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (changed, rx) = mpsc::unbounded_channel();
        (Arc::new(PodManager { pods: RwLock::new(HashMap::new()), mirrors: RwLock::new(HashMap::new()), synced: Default::default(), changed }), rx)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Pod>>> {
        self.pods.write().unwrap_or_else(|p| p.into_inner())
    }

    fn mirrors_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Pod>>> {
        self.mirrors.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A pod was added or changed; its worker is woken unless only its status changed. A
    /// mirror pod wakes the static pod it mirrors.
    pub fn apply(&self, pod: Pod) {
        let (woken, change) = if let Some(hash) = mirror_of(&pod).map(str::to_string) {
            let name = full_name(&pod);
            (hash, store(&mut self.mirrors_mut(), name, pod))
        } else {
            let Some(uid) = uid_of(&pod).map(str::to_string) else { return };
            (uid.clone(), store(&mut self.write(), uid, pod))
        };
        if change == Change::Changed {
            let _ = self.changed.send(woken);
        }
    }

    /// A pod is gone from its source.
    pub fn delete(&self, pod: &Pod) {
        if let Some(hash) = mirror_of(pod) {
            let name = full_name(pod);
            let mut mirrors = self.mirrors_mut();
            // Only the copy that was deleted: a new mirror may already stand in its place.
            if mirrors.get(&name).is_some_and(|m| m.metadata.uid == pod.metadata.uid) {
                mirrors.remove(&name);
            }
            let _ = self.changed.send(hash.to_string());
            return;
        }
        if let Some(uid) = uid_of(pod)
            && self.write().remove(uid).is_some()
        {
            let _ = self.changed.send(uid.to_string());
        }
    }

    /// The full set of one source's pods (`api`, `file`, `http`): its pods not in it are gone.
    pub fn replace(&self, source: &str, pods: Vec<Pod>) {
        let (mirrors, pods): (Vec<Pod>, Vec<Pod>) = pods.into_iter().partition(|p| mirror_of(p).is_some());
        if source == "api" {
            let mut changed: Vec<String> = mirrors.iter().filter_map(mirror_of).map(str::to_string).collect();
            let mut known = self.mirrors_mut();
            changed.extend(known.values().filter_map(|m| mirror_of(m)).map(str::to_string));
            *known = mirrors.into_iter().map(|m| (full_name(&m), held(m))).collect();
            drop(known);
            for hash in changed {
                let _ = self.changed.send(hash);
            }
        }
        let fresh: HashMap<String, Arc<Pod>> = pods.into_iter().filter_map(|p| Some((uid_of(&p)?.to_string(), held(p)))).collect();
        let mut changed: Vec<String> = fresh.keys().cloned().collect();
        {
            let mut pods = self.write();
            changed.extend(pods.iter().filter(|(uid, p)| source_of(p) == source && !fresh.contains_key(*uid)).map(|(uid, _)| uid.clone()));
            pods.retain(|_, p| source_of(p) != source);
            pods.extend(fresh);
        }
        if source == "api" {
            self.synced.store(true, std::sync::atomic::Ordering::Release);
        }
        for uid in changed {
            let _ = self.changed.send(uid);
        }
    }

    /// Takes the server's answer to a status write, without waking the pod's worker: the
    /// worker wrote it.
    pub fn observe(&self, pod: Pod) {
        if mirror_of(&pod).is_some() {
            let name = full_name(&pod);
            store(&mut self.mirrors_mut(), name, pod);
            return;
        }
        let Some(uid) = uid_of(&pod).map(str::to_string) else { return };
        let mut pods = self.write();
        if pods.contains_key(&uid) {
            store(&mut pods, uid, pod);
        }
    }

    /// Whether the API source has listed the node's pods at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every pod the node should run, from every source (mirror pods aside).
    pub fn all(&self) -> Vec<Arc<Pod>> {
        self.pods.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.read().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    /// The mirror pod in the API named like this static pod.
    pub fn mirror(&self, pod: &Pod) -> Option<Arc<Pod>> {
        self.mirrors.read().unwrap_or_else(|p| p.into_inner()).get(&full_name(pod)).cloned()
    }

    /// The mirror pod that stands for this static pod now, if there is one: of this version
    /// of the manifest, and not being deleted.
    pub fn current_mirror(&self, pod: &Pod) -> Option<Arc<Pod>> {
        self.mirror(pod).filter(|m| mirror_of(m) == pod.metadata.uid.as_deref() && m.metadata.deletion_timestamp.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resource_version: &str, image: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": resource_version},
            "spec": {"containers": [{"name": "web", "image": image}]},
            "status": {"phase": phase},
        }))
        .expect("a pod")
    }

    fn phase(manager: &PodManager) -> Option<String> {
        manager.get("u1")?.status.as_ref()?.phase.clone()
    }

    #[test]
    fn a_status_change_is_kept_without_waking_the_worker_and_a_spec_change_wakes_it() {
        let (manager, mut woken) = PodManager::new();
        manager.apply(pod("10", "nginx:1.25", "Pending"));
        assert_eq!(woken.try_recv().ok().as_deref(), Some("u1"), "a new pod is synced");
        manager.apply(pod("11", "nginx:1.25", "Running"));
        assert_eq!(phase(&manager).as_deref(), Some("Running"));
        assert!(woken.try_recv().is_err(), "a change of status alone is nothing to sync");
        manager.apply(pod("12", "nginx:1.26", "Running"));
        assert_eq!(woken.try_recv().ok().as_deref(), Some("u1"), "a new image is");
    }

    #[test]
    fn pods_are_held_without_their_managed_fields_from_every_way_in() {
        let (manager, _woken) = PodManager::new();
        let with_fields = |rv: &str| {
            let mut p = pod(rv, "nginx:1.25", "Pending");
            let fields = serde_json::json!([{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
            p.metadata.managed_fields = serde_json::from_value(fields).ok();
            assert!(p.metadata.managed_fields.is_some());
            p
        };
        let fields = |m: &PodManager| m.get("u1").map(|p| p.metadata.managed_fields.is_some());
        manager.replace("api", vec![with_fields("9")]);
        assert_eq!(fields(&manager), Some(false), "listed");
        manager.apply(with_fields("10"));
        assert_eq!(fields(&manager), Some(false), "watched");
        manager.observe(with_fields("11"));
        assert_eq!(fields(&manager), Some(false), "answered to a write");
    }

    #[test]
    fn a_watch_event_older_than_the_answer_to_a_write_is_ignored() {
        let (manager, mut woken) = PodManager::new();
        manager.apply(pod("10", "nginx:1.25", "Pending"));
        let _ = woken.try_recv();
        manager.observe(pod("12", "nginx:1.25", "Running"));
        manager.apply(pod("11", "nginx:1.25", "Pending"));
        assert_eq!(phase(&manager).as_deref(), Some("Running"), "the watch's older copy replaced the newer one");
        manager.apply(pod("13", "nginx:1.25", "Running"));
        assert_eq!(manager.get("u1").and_then(|p| p.metadata.resource_version.clone()).as_deref(), Some("13"));
        assert!(woken.try_recv().is_err());
    }
}

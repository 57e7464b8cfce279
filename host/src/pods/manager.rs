//! The pod manager: the pods this node should run, merged from every source, keyed by uid,
//! and a stream of "this pod changed" for the workers. The API copy of each pod is kept
//! here too, so the status manager compares with what the server has.

use k8s_openapi::api::core::v1::Pod;
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

    /// A pod was added or changed. A mirror pod wakes the static pod it mirrors.
    pub fn apply(&self, pod: Pod) {
        if let Some(hash) = mirror_of(&pod).map(str::to_string) {
            self.mirrors_mut().insert(full_name(&pod), Arc::new(pod));
            let _ = self.changed.send(hash);
            return;
        }
        let Some(uid) = uid_of(&pod).map(str::to_string) else { return };
        self.write().insert(uid.clone(), Arc::new(pod));
        let _ = self.changed.send(uid);
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
            *known = mirrors.into_iter().map(|m| (full_name(&m), Arc::new(m))).collect();
            drop(known);
            for hash in changed {
                let _ = self.changed.send(hash);
            }
        }
        let fresh: HashMap<String, Arc<Pod>> = pods.into_iter().filter_map(|p| Some((uid_of(&p)?.to_string(), Arc::new(p)))).collect();
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
            self.mirrors_mut().insert(full_name(&pod), Arc::new(pod));
            return;
        }
        let Some(uid) = uid_of(&pod).map(str::to_string) else { return };
        if let Some(known) = self.write().get_mut(&uid) {
            *known = Arc::new(pod);
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

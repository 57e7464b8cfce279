//! The pod cache (upstream pkg/kubelet/container/cache.go): what the runtime had of each
//! pod at PLEG's last relist, in detail. PLEG fills it; the pod workers read it rather than
//! list the runtime themselves, so a node lists its runtime once a relist however many pods
//! sync. A worker reads a view from a relist that began after its last sync ended, so it
//! never acts on a view older than what it did.

use super::{ContainerRuntime, ContainerState, ContainerStatus, PodSandboxState, PodSandboxStatus, RuntimeError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One pod as the runtime has it: its sandboxes and containers in detail, every instance
/// (a restarted container leaves its dead predecessor behind, which gives `lastState`).
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

    /// The pod as the runtime has it now: each sandbox and container of this view, and
    /// those `made` has (what the caller created since, less what it removed), inspected
    /// by id without listing the runtime. What was removed meanwhile is gone.
    pub async fn refreshed(&self, runtime: &dyn ContainerRuntime, made: &Made) -> Result<RuntimePod, RuntimeError> {
        let kept = |id: &&str| !made.removed.iter().any(|r| r == id);
        let sandboxes: Vec<&str> = self.sandboxes.iter().map(|s| s.id.as_str()).chain(made.sandboxes.iter().map(String::as_str)).filter(kept).collect();
        let containers: Vec<&str> = self.containers.iter().map(|c| c.id.as_str()).chain(made.containers.iter().map(String::as_str)).filter(kept).collect();
        inspect(runtime, &sandboxes, &containers).await
    }
}

/// What a pod worker changed in one sync that the view it started from does not show: the
/// sandboxes and containers it created, and the ones it removed.
#[derive(Debug, Clone, Default)]
pub struct Made {
    pub sandboxes: Vec<String>,
    pub containers: Vec<String>,
    pub removed: Vec<String>,
}

/// Reads the sandboxes and containers with these ids in detail. Something removed between
/// the list the ids came from and the inspection is simply gone.
pub async fn inspect(runtime: &dyn ContainerRuntime, sandboxes: &[&str], containers: &[&str]) -> Result<RuntimePod, RuntimeError> {
    let mut pod = RuntimePod::default();
    for id in dedup(sandboxes) {
        match runtime.pod_sandbox_status(id).await {
            Ok(s) => pod.sandboxes.push(s),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for id in dedup(containers) {
        match runtime.container_status(id).await {
            Ok(c) => pod.containers.push(c),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pod)
}

fn dedup<'a>(ids: &[&'a str]) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// A point in PLEG's sequence of relists: a worker waits for a view from a relist that
/// began at or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Relist(u64);

impl Relist {
    /// The first relist: a worker's first sync waits for it, so a pod the runtime has from
    /// before an agent restart is seen, not started twice.
    pub const FIRST: Relist = Relist(1);
}

/// What PLEG's relists found of each pod of one node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use labkubelet::runtime::pod_cache::{PodCache, Relist, RuntimePod};
/// let cache = PodCache::default();
/// let relist = cache.begin();
/// cache.set("uid-1", Ok(RuntimePod::default()));
/// cache.relisted(relist);
/// let pod = cache.newer_than("uid-1", Relist::FIRST).await.expect("no runtime error");
/// assert!(pod.sandboxes.is_empty());
/// // After a sync, a worker waits for the next relist to begin and end.
/// let after = cache.after_now();
/// let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), cache.newer_than("uid-1", after));
/// assert!(waiting.await.is_err());
/// # }
/// ```
#[derive(Debug)]
pub struct PodCache {
    pods: Mutex<HashMap<String, Result<Arc<RuntimePod>, RuntimeError>>>,
    /// How many relists have begun.
    begun: AtomicU64,
    /// The newest relist whose findings are in `pods`.
    relisted: watch::Sender<u64>,
}

impl Default for PodCache {
    fn default() -> Self {
        PodCache { pods: Mutex::default(), begun: AtomicU64::new(0), relisted: watch::Sender::new(0) }
    }
}

impl PodCache {
    /// The relist that begins next: what a worker that just acted waits for.
    pub fn after_now(&self) -> Relist {
        Relist(self.begun.load(Ordering::SeqCst) + 1)
    }

    /// The pod as a relist at or after `since` found it: empty when the runtime has nothing
    /// of it, the runtime's error when inspecting it failed. Waits for that relist.
    pub async fn newer_than(&self, uid: &str, since: Relist) -> Result<Arc<RuntimePod>, RuntimeError> {
        let mut relisted = self.relisted.subscribe();
        // The sender lives as long as the cache, which the caller borrows.
        let _ = relisted.wait_for(|done| *done >= since.0).await;
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned().unwrap_or_else(|| Ok(Arc::default()))
    }

    /// Every pod the last relist found something of, with what it found.
    pub fn pods(&self) -> Vec<(String, Arc<RuntimePod>)> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.iter().filter_map(|(uid, found)| Some((uid.clone(), found.as_ref().ok()?.clone()))).collect()
    }

    /// A relist begins (before it lists): its number.
    pub fn begin(&self) -> Relist {
        Relist(self.begun.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// What the relist found of one pod.
    pub fn set(&self, uid: &str, found: Result<RuntimePod, RuntimeError>) {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), found.map(Arc::new));
    }

    /// The runtime has nothing of the pod any more.
    pub fn remove(&self, uid: &str) {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    /// The relist's findings are all in: the pods it found no change in are as they were.
    pub fn relisted(&self, relist: Relist) {
        self.relisted.send_modify(|done| *done = (*done).max(relist.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn ready_within(cache: &PodCache, since: Relist) -> bool {
        tokio::time::timeout(Duration::from_secs(1), cache.newer_than("p", since)).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_reads_only_a_view_from_a_relist_begun_after_its_last_sync() {
        let cache = PodCache::default();
        assert!(!ready_within(&cache, Relist::FIRST).await, "nothing before the first relist");
        // A relist begins, the worker acts and ends its sync, then the relist ends: its view
        // may predate what the worker did.
        let during = cache.begin();
        let after = cache.after_now();
        cache.relisted(during);
        assert!(ready_within(&cache, Relist::FIRST).await);
        assert!(!ready_within(&cache, after).await, "a relist begun before the sync ended is not enough");
        let next = cache.begin();
        assert_eq!(next, after);
        cache.set("p", Err(RuntimeError::not_found("gone".into())));
        cache.relisted(next);
        let found = cache.newer_than("p", after).await;
        assert!(found.is_err_and(|e| e.is_not_found()), "the relist's error reaches the worker");
        cache.remove("p");
        assert!(cache.newer_than("p", after).await.is_ok_and(|p| p.containers.is_empty()), "a pod the runtime lost is empty");
        assert!(cache.pods().is_empty());
    }
}

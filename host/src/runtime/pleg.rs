//! PLEG, the pod lifecycle event generator (upstream pkg/kubelet/pleg/generic.go): relists
//! the runtime every second, compares each container's state with the previous relist,
//! inspects the pods that changed into the [`PodCache`], and then tells the pod workers
//! which pods changed. Its health feeds the node's Ready condition: a
//! relist that has not completed for 3 minutes (a hung runtime) makes the node NotReady
//! with `PLEG is not healthy: pleg was last seen active <d> ago; threshold is 3m0s`.

use super::pod_cache::{PodCache, inspect};
use super::{ContainerRuntime, ContainerState, PodSandboxState};
use crate::clock::{Clock, go_duration};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The label the kubelet puts on every sandbox and container it creates: what it runs and
/// what it ignores (containers some other client made).
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// How often PLEG relists.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// How long a relist may take before PLEG is unhealthy.
pub const RELIST_THRESHOLD: Duration = Duration::from_secs(180);
/// Events beyond this many waiting are dropped for the cycle, as upstream does.
const CHANNEL_CAPACITY: usize = 1000;

/// What changed in a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlegEventKind {
    ContainerStarted,
    ContainerDied,
    ContainerRemoved,
    /// Something else about the pod changed (its sandbox).
    PodSync,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlegEvent {
    pub pod_uid: String,
    pub kind: PlegEventKind,
    /// The container or sandbox the event is about.
    pub id: String,
}

/// When PLEG last completed a relist; shared with the node status loop.
#[derive(Debug)]
pub struct PlegHealth {
    last_relist: Mutex<Option<Instant>>,
    threshold: Duration,
}

impl PlegHealth {
    /// `Ok` while the last relist started less than the threshold ago; otherwise the
    /// kubelet's words for it.
    pub fn check(&self) -> Result<(), String> {
        let last = *self.last_relist.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = last else { return Err("pleg has yet to be successful".into()) };
        let elapsed = last.elapsed();
        if elapsed > self.threshold {
            return Err(format!("pleg was last seen active {} ago; threshold is {}", go_duration(elapsed), go_duration(self.threshold)));
        }
        Ok(())
    }
}

/// A container's pod and state at the last relist.
type Seen = HashMap<String, (String, SeenState)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeenState {
    Container(ContainerState),
    Sandbox(PodSandboxState),
}

/// Relists one node's runtime.
pub struct Pleg {
    /// The node, for metrics.
    node: String,
    runtime: Arc<dyn ContainerRuntime>,
    clock: Clock,
    period: Duration,
    health: Arc<PlegHealth>,
    events: mpsc::Sender<PlegEvent>,
    seen: Seen,
    cache: Arc<PodCache>,
    /// Pods whose inspection failed: inspected again at the next relist.
    reinspect: HashSet<String>,
}

impl Pleg {
    /// A PLEG with the kubelet's period and threshold, and the receiver of its events.
    pub fn new(node: &str, runtime: Arc<dyn ContainerRuntime>, clock: Clock) -> (Self, mpsc::Receiver<PlegEvent>) {
        let (events, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let health = Arc::new(PlegHealth { last_relist: Mutex::new(None), threshold: RELIST_THRESHOLD });
        let cache = Arc::new(PodCache::default());
        let pleg =
            Pleg { node: node.to_string(), runtime, clock, period: RELIST_PERIOD, health, events, seen: HashMap::new(), cache, reinspect: HashSet::new() };
        (pleg, rx)
    }

    pub fn health(&self) -> Arc<PlegHealth> {
        self.health.clone()
    }

    /// The pod cache this PLEG fills, which the pod workers read.
    pub fn cache(&self) -> Arc<PodCache> {
        self.cache.clone()
    }

    /// Relists every period until the receiver is dropped.
    pub async fn run(mut self) {
        loop {
            // On the heap while it runs: between relists the task keeps only its sleep.
            if let Err(e) = Box::pin(self.relist()).await {
                tracing::warn!("PLEG relist failed: {e}");
            }
            if self.events.is_closed() {
                return;
            }
            self.clock.sleep(self.period).await;
        }
    }

    /// One relist: lists sandboxes and containers, inspects the pods that changed into the
    /// cache, and sends an event per change.
    pub async fn relist(&mut self) -> Result<(), super::RuntimeError> {
        let started = Instant::now();
        let relist = self.cache.begin();
        let sandboxes = self.runtime.list_pod_sandboxes().await?;
        let containers = self.runtime.list_containers().await?;
        *self.health.last_relist.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
        let metrics = &crate::metrics::METRICS;
        metrics.pleg_relist_duration.with_label_values(&[&self.node]).observe(started.elapsed().as_secs_f64());
        metrics.pleg_last_seen.with_label_values(&[&self.node]).set(self.clock.now_nanos() as f64 / 1e9);

        let mut now: Seen = HashMap::with_capacity(sandboxes.len() + containers.len());
        let mut pod_of_sandbox = HashMap::with_capacity(sandboxes.len());
        for s in sandboxes {
            if !s.labels.iter().any(|l| l.key == POD_UID_LABEL) {
                continue;
            }
            pod_of_sandbox.insert(s.id.clone(), s.metadata.uid.clone());
            now.insert(s.id, (s.metadata.uid, SeenState::Sandbox(s.state)));
        }
        for c in containers {
            if let Some(uid) = pod_of_sandbox.get(&c.pod_sandbox_id) {
                now.insert(c.id, (uid.clone(), SeenState::Container(c.state)));
            }
        }
        let mut events = Vec::new();
        for (id, (uid, state)) in &now {
            let before = self.seen.get(id).map(|(_, s)| *s);
            if before == Some(*state) {
                continue;
            }
            let kind = match state {
                SeenState::Container(ContainerState::Running) => PlegEventKind::ContainerStarted,
                SeenState::Container(ContainerState::Exited) => PlegEventKind::ContainerDied,
                _ => PlegEventKind::PodSync,
            };
            events.push(PlegEvent { pod_uid: uid.clone(), kind, id: id.clone() });
        }
        for (id, (uid, state)) in &self.seen {
            if !now.contains_key(id) {
                if *state == SeenState::Container(ContainerState::Running) {
                    events.push(PlegEvent { pod_uid: uid.clone(), kind: PlegEventKind::ContainerDied, id: id.clone() });
                }
                events.push(PlegEvent { pod_uid: uid.clone(), kind: PlegEventKind::ContainerRemoved, id: id.clone() });
            }
        }
        let mut changed: HashSet<String> = std::mem::take(&mut self.reinspect);
        changed.extend(events.iter().map(|e| e.pod_uid.clone()));
        self.update_cache(changed, &now).await;
        self.cache.relisted(relist);
        self.seen = now;
        for event in events {
            if self.events.try_send(event).is_err() {
                tracing::warn!("PLEG event channel is full; the rest of this relist's events are dropped");
                break;
            }
        }
        Ok(())
    }

    /// Inspects the pods that changed, by the ids this relist found of them, into the cache.
    async fn update_cache(&mut self, changed: HashSet<String>, now: &Seen) {
        let mut ids: HashMap<&str, (Vec<&str>, Vec<&str>)> = changed.iter().map(|uid| (uid.as_str(), Default::default())).collect();
        for (id, (uid, state)) in now {
            if let Some((sandboxes, containers)) = ids.get_mut(uid.as_str()) {
                match state {
                    SeenState::Sandbox(_) => sandboxes.push(id),
                    SeenState::Container(_) => containers.push(id),
                }
            }
        }
        for (uid, (sandboxes, containers)) in ids {
            if sandboxes.is_empty() && containers.is_empty() {
                self.cache.remove(uid);
                continue;
            }
            let found = inspect(&*self.runtime, &sandboxes, &containers).await;
            if let Err(e) = &found {
                tracing::warn!(node = %self.node, pod = uid, "PLEG could not inspect a pod: {e}");
                self.reinspect.insert(uid.to_string());
            }
            self.cache.set(uid, found);
        }
    }
}

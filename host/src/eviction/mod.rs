//! The kubelet's eviction manager, on hard thresholds: every 10 s it observes what the node
//! has left (memory, filesystem, PIDs), sets the pressure conditions the node status shows
//! (`MemoryPressure`, `DiskPressure`, `PIDPressure`, held for the pressure transition
//! period after the threshold is no longer met), and while a threshold is met evicts one pod
//! a round in upstream's order: phase `Failed`, reason `Evicted`, the kubelet's message.
//! Upstream: pkg/kubelet/eviction/eviction_manager.go.
//!
//! What the node uses: each running container uses what [`crate::stats`] says of its memory
//! and disk (its plugin's figure, its pod's annotation, or the model), and one process. A lab makes a
//! resource short with `labkubelet node memory-pressure` (`disk-pressure`, `pid-pressure`):
//! something outside the pods then takes all but half the threshold, until `heal`.
//!
//! - [`thresholds`]: signals and `evictionHard`.
//! - [`rank`]: the order of eviction and the message.

pub mod rank;
pub mod thresholds;

use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::events::EventType;
use crate::node::pressure::Conditions;
use crate::pods::evictions::Evictions;
use crate::pods::manager::is_critical;
use crate::pods::resources::Quantity;
use crate::pods::view::PodView;
use crate::runtime::ContainerRuntime;
use crate::runtime::ContainerStats;
use crate::stats::Measured;
use k8s_openapi::api::core::v1::{Container, Pod};
use rank::{Candidate, ContainerUsage};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use thresholds::{Condition, Signal, Threshold};

/// The reason of an evicted pod's status and event.
pub const REASON: &str = "Evicted";
/// How often the manager observes the node (upstream's `monitoringInterval`).
const MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// The node's inodes and PIDs (the kernel's `pid_max` on 64-bit Linux).
const INODES: i64 = 1_000_000;
const PIDS: i64 = 4_194_304;

/// `evictionHard` and `evictionPressureTransitionPeriod`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    pub hard: Vec<Threshold>,
    pub pressure_transition_period: Duration,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        EvictionConfig { hard: thresholds::defaults(), pressure_transition_period: Duration::from_secs(300) }
    }
}

/// What the eviction manager reads and acts on: the node's pods as its API shows them, the
/// runtime's figures, where evictions are recorded and announced, and the pressure conditions
/// it sets.
pub struct NodeHandles {
    pub node: String,
    pub pods: PodView,
    pub evictions: Arc<Evictions>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub clock: Clock,
    pub events: Arc<EventRecorder>,
    pub pressure: Arc<Conditions>,
}

/// The pods of one node, observed and evicted under pressure.
pub struct EvictionManager {
    ctx: NodeHandles,
    config: EvictionConfig,
    capacity: BTreeMap<String, String>,
    /// The resources a lab made short.
    squeezed: Arc<Conditions>,
    /// What a squeeze takes outside the pods, per signal, fixed when the squeeze began.
    taken: HashMap<Signal, i64>,
    /// When each condition's threshold was last met.
    last_met: HashMap<Condition, std::time::Instant>,
}

impl EvictionManager {
    pub fn new(ctx: NodeHandles, config: EvictionConfig, capacity: BTreeMap<String, String>, squeezed: Arc<Conditions>) -> Self {
        EvictionManager { ctx, config, capacity, squeezed, taken: HashMap::new(), last_met: HashMap::new() }
    }

    /// The node's pressure conditions, for its status (admission reads them too).
    pub fn pressure(&self) -> Arc<Conditions> {
        self.ctx.pressure.clone()
    }

    /// Runs until dropped.
    pub async fn run(mut self) {
        loop {
            self.synchronize().await;
            self.ctx.clock.sleep(MONITORING_INTERVAL).await;
        }
    }

    /// What the node has of the signal's resource; none when its capacity does not say, and
    /// then the signal is not observed, as a kubelet skips a signal its stats lack.
    fn capacity_of(&self, signal: Signal) -> Option<i64> {
        let capacity = |resource: &str| self.capacity.get(resource).and_then(|q| Quantity::parse(q).ok()).map(|q| q.value());
        match signal {
            Signal::MemoryAvailable => capacity("memory"),
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => capacity("ephemeral-storage"),
            Signal::NodeFsInodesFree => Some(INODES),
            Signal::PidAvailable => Some(PIDS),
        }
    }

    /// One round: observe, set the conditions, evict at most one pod.
    pub async fn synchronize(&mut self) {
        // An evicted pod frees what it used, also before its worker has stopped it.
        let pods: Vec<Pod> = self
            .ctx
            .pods
            .pods()
            .into_iter()
            .filter(|p| is_active(p) && !self.ctx.evictions.is_evicted(p.metadata.uid.as_deref().unwrap_or_default()))
            .collect();
        let stats: HashMap<String, ContainerStats> = match self.ctx.runtime.list_container_stats().await {
            Ok(listed) => listed.into_iter().map(|s| (s.id.clone(), s)).collect(),
            Err(e) => {
                tracing::debug!(node = %self.ctx.node, "the runtime's container stats: {e}; what the containers use is modelled");
                HashMap::new()
            }
        };
        let now = std::time::Instant::now();
        let mut met = Vec::new();
        for &threshold in &self.config.hard {
            let signal = threshold.signal;
            let Some(capacity) = self.capacity_of(signal) else { continue };
            let used: i64 = pods.iter().map(|p| candidate(p, signal, &stats).containers.iter().map(|c| c.usage).sum::<i64>()).sum();
            let floor = threshold.amount.of(capacity);
            let taken = if self.squeezed.get(signal.condition()) {
                *self.taken.entry(signal).or_insert_with(|| (capacity - used - floor / 2).max(0))
            } else {
                self.taken.remove(&signal);
                0
            };
            if capacity - used - taken < floor {
                met.push(signal);
                self.last_met.insert(signal.condition(), now);
            }
        }
        for condition in Condition::ALL {
            let within = self.last_met.get(&condition).is_some_and(|t| now.duration_since(*t) < self.config.pressure_transition_period);
            self.ctx.pressure.set(condition, within);
        }
        let Some(&signal) = met.first() else { return };
        let node = crate::events::EventRecorder::node_ref(&self.ctx.node);
        self.ctx.events.record(&node, EventType::Warning, "EvictionThresholdMet", &format!("Attempting to reclaim {}", signal.resource()));
        let mut candidates: Vec<Candidate> = pods.iter().filter(|p| !is_critical(p)).map(|p| candidate(p, signal, &stats)).collect();
        rank::rank(signal, &mut candidates);
        let Some(first) = candidates.first() else { return };
        let Some(pod) = pods.iter().find(|p| p.metadata.uid.as_deref() == Some(&first.uid)) else { return };
        let message = rank::message(signal, first);
        tracing::info!(node = %self.ctx.node, pod = %first.name, "evicting: {message}");
        self.ctx.events.record(&crate::pods::sync::pod_ref(pod, None), EventType::Warning, REASON, &message);
        self.ctx.evictions.evict(&first.uid, message);
    }
}

/// A pod that runs and may be evicted: neither finished nor being deleted.
fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !crate::pods::status::is_terminal(pod.status.as_ref())
}

/// What the pod's running containers use of the signal's resource.
fn candidate(pod: &Pod, signal: Signal, stats: &HashMap<String, ContainerStats>) -> Candidate {
    // By container name: the runtime's stats of it, if it has them.
    let running: HashMap<&str, Option<&ContainerStats>> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .map(|c| {
            let id = c.container_id.as_deref().and_then(|id| id.split_once("://")).map(|(_, id)| id);
            (c.name.as_str(), id.and_then(|id| stats.get(id)))
        })
        .collect();
    // Inodes and PIDs are counted, one a container; memory and disk are measured.
    let measured = match signal {
        Signal::MemoryAvailable => Some(Measured::Memory),
        Signal::NodeFsAvailable | Signal::ImageFsAvailable => Some(Measured::Disk),
        Signal::NodeFsInodesFree | Signal::PidAvailable => None,
    };
    let spec = pod.spec.as_ref();
    let containers = spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| running.get(c.name.as_str()).map(|stats| (c, stats)))
        .map(|(c, stats)| {
            let request = declared(c, signal.resource());
            let usage = measured.map_or(1, |what| crate::stats::usage(pod, c, what, *stats));
            ContainerUsage { name: c.name.clone(), usage, request: request.unwrap_or(0) }
        })
        .collect();
    let name = crate::pods::manager::full_name(pod);
    Candidate { uid: pod.metadata.uid.clone().unwrap_or_default(), name, priority: spec.and_then(|s| s.priority).unwrap_or(0), containers }
}

/// What a container requests of a resource, if it says.
fn declared(c: &Container, resource: &str) -> Option<i64> {
    let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
    Quantity::parse(&q.0).ok().map(|q| q.value())
}

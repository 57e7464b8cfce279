//! What the node's containers use: the kubelet's stats provider (pkg/kubelet/stats), read by
//! the eviction manager, the Summary API (`/stats/summary`, pkg/kubelet/server/stats) and
//! `/metrics/resource` (pkg/kubelet/metrics/collectors), which metrics-server, `kubectl top`
//! and a HorizontalPodAutoscaler read.
//!
//! A running container uses what its plugin reports (`list-container-stats`, as the kubelet
//! reads CRI stats), else what its pod's `labkubelet.io/cpu-usage` (`memory-usage`,
//! `disk-usage`) annotation says, else a model: memory and disk what it requests, else its
//! limit, else a little (64Mi, 10Mi); CPU a tenth of its request, else of its limit, else 1m.
//! CPU time is the rate added up between reads, as cAdvisor's counters grow.
//!
//! - [`summary`]: the Summary API's types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`).
//! - [`resource_metrics`]: the Summary's CPU and memory as Prometheus series.

pub mod resource_metrics;
pub mod summary;

use crate::pods::resources::Quantity;
use crate::runtime::ContainerRuntime;
use crate::runtime::ContainerStats;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use summary::{CpuStats, FsStats, MemoryStats, NodeStats, PodReference, PodStats, Summary};

/// The annotations that say what each container of a pod uses.
pub const CPU_USAGE_ANNOTATION: &str = "labkubelet.io/cpu-usage";
pub const MEMORY_USAGE_ANNOTATION: &str = "labkubelet.io/memory-usage";
pub const DISK_USAGE_ANNOTATION: &str = "labkubelet.io/disk-usage";

/// A resource a container uses, as reported or modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// Billionths of a core, now.
    Cpu,
    /// Bytes of working set.
    Memory,
    /// Bytes of writable layer and logs.
    Disk,
}

impl Measured {
    fn annotation(self) -> &'static str {
        match self {
            Measured::Cpu => CPU_USAGE_ANNOTATION,
            Measured::Memory => MEMORY_USAGE_ANNOTATION,
            Measured::Disk => DISK_USAGE_ANNOTATION,
        }
    }

    fn resource(self) -> &'static str {
        match self {
            Measured::Cpu => "cpu",
            Measured::Memory => "memory",
            Measured::Disk => "ephemeral-storage",
        }
    }

    fn reported(self, s: &ContainerStats) -> Option<u64> {
        match self {
            Measured::Cpu => s.cpu_usage_nano_cores,
            Measured::Memory => s.memory_working_set_bytes,
            Measured::Disk => s.writable_layer_bytes,
        }
    }

    /// A quantity in this figure's unit: nano-cores for CPU, bytes for the rest.
    fn amount(self, q: &Quantity) -> i64 {
        match self {
            Measured::Cpu => q.milli_value().saturating_mul(1_000_000),
            Measured::Memory | Measured::Disk => q.value(),
        }
    }

    /// What a container that says nothing uses of what it requests or limits, and of nothing.
    fn model(self, declared: Option<i64>) -> i64 {
        match (self, declared) {
            (Measured::Cpu, Some(amount)) => amount / 10,
            (Measured::Cpu, None) => 1_000_000,
            (_, Some(amount)) => amount,
            (Measured::Memory, None) => 64 << 20,
            (Measured::Disk, None) => 10 << 20,
        }
    }
}

/// What container `c` of `pod` uses of `what`: the runtime's figure, else the pod's
/// annotation, else the model.
pub fn usage(pod: &Pod, c: &Container, what: Measured, reported: Option<&ContainerStats>) -> i64 {
    if let Some(figure) = reported.and_then(|s| what.reported(s)) {
        return i64::try_from(figure).unwrap_or(i64::MAX);
    }
    let annotated = pod.metadata.annotations.as_ref().and_then(|a| a.get(what.annotation())).and_then(|q| Quantity::parse(q).ok());
    if let Some(q) = annotated {
        return what.amount(&q).max(0);
    }
    let declared = |limits: bool| {
        let resources = c.resources.as_ref()?;
        let q = if limits { resources.limits.as_ref() } else { resources.requests.as_ref() }?.get(what.resource())?;
        Quantity::parse(&q.0).ok().map(|q| what.amount(&q))
    };
    what.model(declared(false).or_else(|| declared(true)))
}

/// The running containers of a pod, by name, with their runtime ids and start times.
pub fn running(pod: &Pod) -> impl Iterator<Item = (&str, &str, Option<&Time>)> {
    pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).filter_map(|c| {
        let running = c.state.as_ref()?.running.as_ref()?;
        let id = c.container_id.as_deref()?.split_once("://").map(|(_, id)| id)?;
        Some((c.name.as_str(), id, running.started_at.as_ref()))
    })
}

/// CPU time a container has used: the rate added up since `at`, in nanoseconds of a core.
#[derive(Debug, Clone, Copy)]
struct CpuCounter {
    at: i64,
    total: u128,
}

impl CpuCounter {
    /// The counter at `now` after running at `nano_cores` since it was last read.
    fn advance(&mut self, now: i64, nano_cores: i64) -> u64 {
        let seconds_ns = u128::try_from(now.saturating_sub(self.at)).unwrap_or(0);
        self.total += seconds_ns * u128::try_from(nano_cores).unwrap_or(0) / 1_000_000_000;
        self.at = self.at.max(now);
        u64::try_from(self.total).unwrap_or(u64::MAX)
    }
}

/// The node's stats: what it has, and the CPU counters it keeps between reads.
pub struct StatsProvider {
    node: String,
    capacity: BTreeMap<String, String>,
    started: Time,
    /// By container id, and the node's own under the empty id.
    counters: Mutex<HashMap<String, CpuCounter>>,
}

impl StatsProvider {
    /// Stats of node `node` with `capacity`, started at `started_nanos` since the epoch.
    pub fn new(node: &str, capacity: BTreeMap<String, String>, started_nanos: i64) -> Self {
        StatsProvider { node: node.to_string(), capacity, started: time(started_nanos), counters: Mutex::new(HashMap::new()) }
    }

    fn capacity_of(&self, resource: &str) -> Option<u64> {
        let q = Quantity::parse(self.capacity.get(resource)?).ok()?;
        u64::try_from(q.value()).ok()
    }

    /// The Summary API's answer now: the node, and each pod with a running container.
    pub async fn summary(&self, runtime: &dyn ContainerRuntime, node_pods: Vec<Pod>, now_nanos: i64) -> Summary {
        let stats: HashMap<String, ContainerStats> = match runtime.list_container_stats().await {
            Ok(listed) => listed.into_iter().map(|s| (s.id.clone(), s)).collect(),
            Err(e) => {
                tracing::debug!(node = %self.node, "the runtime's container stats: {e}; what the containers use is modelled");
                HashMap::new()
            }
        };
        let now = time(now_nanos);
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        let mut pods = Vec::new();
        for pod in node_pods {
            let Some(spec) = pod.spec.as_ref() else { continue };
            let mut containers = Vec::new();
            for (name, id, started) in running(&pod) {
                let Some(c) = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name) else { continue };
                let reported = stats.get(id);
                let rate = usage(&pod, c, Measured::Cpu, reported);
                let started_nanos = started.map_or(now_nanos, |t| i64::try_from(t.0.as_nanosecond()).unwrap_or(now_nanos));
                let counter = counters.entry(id.to_string()).or_insert(CpuCounter { at: started_nanos, total: 0 });
                let cpu = counter.advance(now_nanos, rate);
                seen.push(id.to_string());
                let memory = u64::try_from(usage(&pod, c, Measured::Memory, reported)).unwrap_or(0);
                let disk = u64::try_from(usage(&pod, c, Measured::Disk, reported)).unwrap_or(0);
                containers.push(summary::ContainerStats {
                    name: name.to_string(),
                    start_time: started.cloned().unwrap_or_else(|| now.clone()),
                    cpu: Some(CpuStats { time: now.clone(), usage_nano_cores: Some(u64::try_from(rate).unwrap_or(0)), usage_core_nano_seconds: Some(cpu) }),
                    memory: Some(MemoryStats::working_set(now.clone(), memory, None)),
                    rootfs: Some(FsStats::used(now.clone(), disk, self.capacity_of("ephemeral-storage"))),
                });
            }
            if containers.is_empty() {
                continue;
            }
            let sum = |f: fn(&summary::ContainerStats) -> Option<u64>| containers.iter().filter_map(f).fold(0u64, u64::saturating_add);
            let (nano_cores, core_ns, memory) =
                (sum(|c| c.cpu.as_ref()?.usage_nano_cores), sum(|c| c.cpu.as_ref()?.usage_core_nano_seconds), sum(|c| c.memory.as_ref()?.working_set_bytes));
            let meta = &pod.metadata;
            pods.push(PodStats {
                pod_ref: PodReference {
                    name: meta.name.clone().unwrap_or_default(),
                    namespace: meta.namespace.clone().unwrap_or_default(),
                    uid: meta.uid.clone().unwrap_or_default(),
                },
                start_time: pod.status.as_ref().and_then(|s| s.start_time.clone()).unwrap_or_else(|| now.clone()),
                cpu: Some(CpuStats { time: now.clone(), usage_nano_cores: Some(nano_cores), usage_core_nano_seconds: Some(core_ns) }),
                memory: Some(MemoryStats::working_set(now.clone(), memory, None)),
                containers,
            });
        }
        counters.retain(|id, _| id.is_empty() || seen.contains(id));
        let nano_cores = pods.iter().filter_map(|p| p.cpu.as_ref()?.usage_nano_cores).fold(0u64, u64::saturating_add);
        let memory = pods.iter().filter_map(|p| p.memory.as_ref()?.working_set_bytes).fold(0u64, u64::saturating_add);
        let disk = pods.iter().flat_map(|p| &p.containers).filter_map(|c| c.rootfs.as_ref()?.used_bytes).fold(0u64, u64::saturating_add);
        let node_counter = counters.entry(String::new()).or_insert(CpuCounter { at: now_nanos, total: 0 });
        let node_cpu = node_counter.advance(now_nanos, i64::try_from(nano_cores).unwrap_or(i64::MAX));
        Summary {
            node: NodeStats {
                node_name: self.node.clone(),
                start_time: self.started.clone(),
                cpu: Some(CpuStats { time: now.clone(), usage_nano_cores: Some(nano_cores), usage_core_nano_seconds: Some(node_cpu) }),
                memory: Some(MemoryStats::working_set(now.clone(), memory, self.capacity_of("memory"))),
                fs: Some(FsStats::used(now, disk, self.capacity_of("ephemeral-storage"))),
            },
            pods,
        }
    }
}

fn time(nanos: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| Some(kv.iter().map(|(k, v)| (k.to_string(), Q(v.to_string()))).collect());
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { requests: map(requests), limits: map(limits), ..Default::default() }),
            ..Default::default()
        }
    }

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta { annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), ..Default::default() },
            spec: Some(PodSpec::default()),
            ..Default::default()
        }
    }

    #[test]
    fn the_runtime_figure_comes_first_then_the_annotation_then_the_model() {
        let c = container(&[("cpu", "500m"), ("memory", "100Mi")], &[("cpu", "2")]);
        let reported = ContainerStats { id: "x".into(), cpu_usage_nano_cores: Some(7), memory_working_set_bytes: None, writable_layer_bytes: None };
        let quiet = pod(&[]);
        assert_eq!(usage(&quiet, &c, Measured::Cpu, Some(&reported)), 7);
        assert_eq!(usage(&quiet, &c, Measured::Cpu, None), 50_000_000, "a tenth of the request");
        assert_eq!(usage(&quiet, &c, Measured::Memory, Some(&reported)), 100 << 20, "the request");
        assert_eq!(usage(&pod(&[(CPU_USAGE_ANNOTATION, "1500m")]), &c, Measured::Cpu, None), 1_500_000_000);
        let limited = container(&[], &[("cpu", "2")]);
        assert_eq!(usage(&quiet, &limited, Measured::Cpu, None), 200_000_000, "a tenth of the limit");
        let bare = container(&[], &[]);
        assert_eq!(usage(&quiet, &bare, Measured::Cpu, None), 1_000_000);
        assert_eq!(usage(&quiet, &bare, Measured::Memory, None), 64 << 20);
        assert_eq!(usage(&quiet, &bare, Measured::Disk, None), 10 << 20);
    }

    #[test]
    fn cpu_time_adds_up_the_rate_between_reads() {
        let mut counter = CpuCounter { at: 0, total: 0 };
        assert_eq!(counter.advance(2_000_000_000, 250_000_000), 500_000_000, "a quarter core for 2 s");
        assert_eq!(counter.advance(3_000_000_000, 1_000_000_000), 1_500_000_000, "then a core for 1 s");
        assert_eq!(counter.advance(2_000_000_000, 1_000_000_000), 1_500_000_000, "time going back adds nothing");
    }
}

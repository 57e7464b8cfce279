//! The agent's Prometheus metrics, served by each node's `/metrics`.
//!
//! One registry per process; every series carries a `node` label, and a node's `/metrics`
//! shows the series of that node (and the process-wide ones, which have no `node` label).
//! Names follow the kubelet's where the kubelet has the metric (`kubelet_pleg_relist_duration_seconds`,
//! `kubelet_runtime_operations_duration_seconds`, `kubelet_working_pods`, ...); what only
//! labkubelet has is named `labkubelet_...`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::LazyLock;

/// The metrics of this process.
pub struct Metrics {
    registry: Registry,
    /// Time to renew the node's Lease, by result.
    pub lease_renew_duration: HistogramVec,
    /// Node status writes (`PATCH nodes/status`), by result.
    pub node_status_writes: IntCounterVec,
    /// How long one PLEG relist took.
    pub pleg_relist_duration: HistogramVec,
    /// Seconds since the Unix epoch of PLEG's last completed relist.
    pub pleg_last_seen: prometheus::GaugeVec,
    /// 1 while PLEG is healthy.
    pub pleg_healthy: IntGaugeVec,
    /// Runtime (plugin) call latency by plugin and method, as `kubelet_runtime_operations_duration_seconds`.
    pub runtime_operations_duration: HistogramVec,
    /// Runtime calls that failed, by plugin and method.
    pub runtime_operations_errors: IntCounterVec,
    /// Plugin folder changes by outcome: loaded, replaced, refused, unloaded.
    pub plugin_reloads: IntCounterVec,
    /// Pod workers alive.
    pub working_pods: IntGaugeVec,
    /// Container restarts the kubelet logic made.
    pub container_restarts: IntCounterVec,
    /// Lab triggers sent to plugins, by plugin, action and result.
    pub triggers: IntCounterVec,
    /// API requests sent again after the server throttled them or could not serve them, by status.
    pub api_retries: IntCounterVec,
    /// Nodes started again after the API server failed them, by node.
    pub node_restarts: IntCounterVec,
    /// API requests answered (each attempt of a retried one), by method, resource and status
    /// code (`error`: no answer), as client-go's `rest_client_requests_total` with the
    /// resource added: what a node costs the API server.
    pub api_requests: IntCounterVec,
}

/// The metrics of this process.
///
/// ```
/// labkubelet::metrics::METRICS.working_pods.with_label_values(&["node-1"]).set(3);
/// let text = labkubelet::metrics::METRICS.render(Some("node-1"));
/// assert!(text.contains("kubelet_working_pods{node=\"node-1\"} 3"));
/// ```
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels).expect("a valid histogram definition");
    registry.register(Box::new(h.clone())).expect("each metric is registered once");
    h
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter definition");
    registry.register(Box::new(c.clone())).expect("each metric is registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge definition");
    registry.register(Box::new(g.clone())).expect("each metric is registered once");
    g
}

impl Metrics {
    // The definitions are constants: a failure here is a programming error, caught by the first test.
    fn new() -> Self {
        let registry = Registry::new();
        let pleg_last_seen =
            prometheus::GaugeVec::new(Opts::new("kubelet_pleg_last_seen_seconds", "Timestamp in seconds when PLEG was last seen active."), &["node"])
                .expect("a valid gauge definition");
        registry.register(Box::new(pleg_last_seen.clone())).expect("each metric is registered once");
        Metrics {
            lease_renew_duration: histogram(&registry, "labkubelet_node_lease_renew_duration_seconds", "Time to renew the node's Lease.", &["node", "result"]),
            node_status_writes: counter(&registry, "labkubelet_node_status_writes_total", "Node status writes, by result.", &["node", "result"]),
            pleg_relist_duration: histogram(&registry, "kubelet_pleg_relist_duration_seconds", "Duration in seconds for relisting pods in PLEG.", &["node"]),
            pleg_last_seen,
            pleg_healthy: gauge(&registry, "labkubelet_pleg_healthy", "1 while PLEG relisted within its 3-minute threshold.", &["node"]),
            runtime_operations_duration: histogram(
                &registry,
                "kubelet_runtime_operations_duration_seconds",
                "Duration in seconds of runtime operations, by the plugin that served them.",
                &["node", "plugin", "operation_type"],
            ),
            runtime_operations_errors: counter(
                &registry,
                "kubelet_runtime_operations_errors_total",
                "Runtime operations that failed.",
                &["node", "plugin", "operation_type"],
            ),
            plugin_reloads: counter(&registry, "labkubelet_plugin_reloads_total", "Plugin folder changes, by outcome.", &["outcome"]),
            working_pods: gauge(&registry, "kubelet_working_pods", "Pods the pod workers are handling.", &["node"]),
            container_restarts: counter(&registry, "labkubelet_container_restarts_total", "Containers restarted by the kubelet logic.", &["node"]),
            triggers: counter(&registry, "labkubelet_triggers_total", "Lab triggers sent to plugins.", &["node", "plugin", "action", "result"]),
            api_retries: counter(&registry, "labkubelet_api_retries_total", "API requests sent again after a 429, 502, 503 or 504 answer.", &["status"]),
            node_restarts: counter(&registry, "labkubelet_node_restarts_total", "Nodes started again after the API server failed them.", &["node"]),
            api_requests: counter(
                &registry,
                "labkubelet_api_requests_total",
                "API requests answered, by method, resource and status code.",
                &["method", "resource", "code"],
            ),
            registry,
        }
    }

    /// The metrics in Prometheus' text format: a node's series when `node` is given, and
    /// those without a node label.
    pub fn render(&self, node: Option<&str>) -> String {
        let mut families = self.registry.gather();
        if let Some(node) = node {
            for family in &mut families {
                let kept: Vec<_> = family.take_metric().into_iter().filter(|m| m.get_label().iter().all(|l| l.name() != "node" || l.value() == node)).collect();
                family.set_metric(kept);
            }
            families.retain(|f| !f.get_metric().is_empty());
        }
        let mut out = String::new();
        match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            Ok(()) => out,
            Err(e) => format!("# error encoding metrics: {e}\n"),
        }
    }
}

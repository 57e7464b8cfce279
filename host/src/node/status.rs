//! Node status: what the runtime's health makes of the Ready condition, and the loop that
//! writes the Node's status. Upstream: pkg/kubelet/runtime.go (runtimeState),
//! kubelet_node_status.go (updateNodeStatus) and nodestatus/setters.go.
//!
//! The runtime is asked for its status every 5 s. Ready is False with the kubelet's
//! messages while the first check has not succeeded, when the last good check is older
//! than 30 s ("container runtime is down"), or when the runtime or its network says it is
//! not ready. Every 10 s (jitter 0.04) the status is computed and patched, but only when
//! it changed or 5 minutes passed since the last report: the Lease is the heartbeat.

use super::conditions::{node_conditions, transition_events};
use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::events::EventType;
use crate::runtime::ipam::PodAddresses;
use crate::runtime::pleg::PlegHealth;
use crate::runtime::{ContainerRuntime, RuntimeCondition};
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The kubelet's timings for node status; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusTimings {
    /// nodeStatusUpdateFrequency: how often the status is computed.
    pub update: Duration,
    /// nodeStatusReportFrequency: the longest time between two writes.
    pub report: Duration,
    /// How often the runtime is asked for its status.
    pub runtime_check: Duration,
    /// How old the last good runtime check may be before the runtime counts as down.
    pub runtime_down_after: Duration,
}

impl Default for StatusTimings {
    fn default() -> Self {
        StatusTimings {
            update: Duration::from_secs(10),
            report: Duration::from_secs(300),
            runtime_check: Duration::from_secs(5),
            runtime_down_after: Duration::from_secs(30),
        }
    }
}

/// What the kubelet knows of the runtime's health.
#[derive(Debug, Default, Clone)]
pub struct RuntimeHealth {
    last_good: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
}

fn describe(c: &RuntimeCondition) -> String {
    format!("{}={} reason:{} message:{}", c.condition_type, c.status, c.reason, c.message)
}

impl RuntimeHealth {
    /// Takes the result of one runtime status check.
    pub fn observe(&mut self, result: Result<Vec<RuntimeCondition>, String>, now: Instant) {
        let Ok(conditions) = result else { return };
        let find = |t: &str| conditions.iter().find(|c| c.condition_type == t);
        self.runtime_error = match find("RuntimeReady") {
            Some(c) if c.status => None,
            Some(c) => Some(format!("container runtime not ready: {}", describe(c))),
            None => Some("container runtime not ready: RuntimeReady condition is missing".into()),
        };
        self.network_error = match find("NetworkReady") {
            Some(c) if c.status => None,
            Some(c) => Some(format!("container runtime network not ready: {}", describe(c))),
            None => Some("container runtime network not ready: NetworkReady condition is missing".into()),
        };
        if self.runtime_error.is_none() {
            self.last_good = Some(now);
        }
    }

    /// The errors Ready's message is made of, in the kubelet's order: the runtime check,
    /// the failing health checks (`PLEG is not healthy: ...`), the runtime's own conditions.
    pub fn errors(&self, now: Instant, down_after: Duration, failing_checks: Vec<String>) -> Vec<String> {
        let mut errors = Vec::new();
        match self.last_good {
            None => errors.push("container runtime status check may not have completed yet".to_string()),
            Some(t) if now.duration_since(t) >= down_after => errors.push("container runtime is down".to_string()),
            Some(_) => {}
        }
        errors.extend(failing_checks);
        errors.extend(self.runtime_error.clone());
        errors.extend(self.network_error.clone());
        errors
    }
}

/// Keeps one Node's status.
pub struct NodeStatusLoop {
    nodes: Api<Node>,
    node: String,
    runtime: Arc<dyn ContainerRuntime>,
    clock: Clock,
    timings: StatusTimings,
    health: Arc<tokio::sync::Mutex<RuntimeHealth>>,
    last_report: Option<Instant>,
    events: Arc<EventRecorder>,
    pleg: Option<Arc<PlegHealth>>,
    addresses: Option<Arc<PodAddresses>>,
    pressure: Arc<super::pressure::Conditions>,
}

/// Conditions compared without their heartbeat, which changes at every computation.
fn without_heartbeats(conditions: &[NodeCondition]) -> Vec<NodeCondition> {
    conditions.iter().map(|c| NodeCondition { last_heartbeat_time: None, ..c.clone() }).collect()
}

impl NodeStatusLoop {
    pub fn new(nodes: Api<Node>, node: &str, runtime: Arc<dyn ContainerRuntime>, clock: Clock, timings: StatusTimings, events: Arc<EventRecorder>) -> Self {
        NodeStatusLoop {
            nodes,
            node: node.to_string(),
            runtime,
            clock,
            timings,
            health: Default::default(),
            last_report: None,
            events,
            pleg: None,
            addresses: None,
            pressure: Arc::default(),
        }
    }

    /// Makes PLEG's health part of Ready, as the kubelet's runtime state does.
    pub fn with_pleg(mut self, pleg: Arc<PlegHealth>) -> Self {
        self.pleg = Some(pleg);
        self
    }

    /// Shows the eviction manager's pressure conditions.
    pub fn with_pressure(mut self, pressure: Arc<super::pressure::Conditions>) -> Self {
        self.pressure = pressure;
        self
    }

    /// Hands pod addresses out of the Node's `spec.podCIDR` once the controller manager
    /// assigns one (`--allocate-node-cidrs`, as kind runs it).
    pub fn with_pod_addresses(mut self, addresses: Arc<PodAddresses>) -> Self {
        self.addresses = Some(addresses);
        self
    }

    /// Checks the runtime every `runtime_check`, without blocking the status loop: a hung
    /// runtime call only means no good check is recorded.
    fn spawn_runtime_checks(&self) -> tokio::task::JoinHandle<()> {
        let (runtime, health, clock, every) = (self.runtime.clone(), self.health.clone(), self.clock, self.timings.runtime_check);
        tokio::spawn(async move {
            loop {
                let result = runtime.status().await.map_err(|e| e.to_string());
                health.lock().await.observe(result, Instant::now());
                clock.sleep(every).await;
            }
        })
    }

    /// Runs until dropped.
    pub async fn run(mut self) {
        let checks = self.spawn_runtime_checks();
        let _stop_checks = AbortOnDrop(checks);
        loop {
            // On the heap while it runs: between updates the task keeps only its sleep.
            if let Err(e) = Box::pin(self.sync()).await {
                tracing::warn!(node = %self.node, "updating node status: {e}");
            }
            self.clock.sleep_jittered(self.timings.update, 0.04).await;
        }
    }

    /// One status computation; writes the status when it differs from the Node the server
    /// has (heartbeats aside) or a report is due. Returns whether it wrote.
    pub async fn sync(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let failing = self.pleg.iter().filter_map(|p| p.check().err()).map(|e| format!("PLEG is not healthy: {e}")).collect();
        let errors = self.health.lock().await.errors(now, self.timings.runtime_down_after, failing);
        // A node may read its Node but not `nodes/<name>/status` (the Node authorizer
        // grants only update and patch on the status subresource), so it reads the Node.
        let current = self.nodes.get(&self.node).await?;
        if let (Some(addresses), Some(cidr)) = (&self.addresses, current.spec.as_ref().and_then(|s| s.pod_cidr.as_deref())) {
            addresses.set_range(cidr);
        }
        let previous = current.status.and_then(|s| s.conditions).unwrap_or_default();
        // The API keeps times at second precision: so does the comparison.
        let seconds = self.clock.now_nanos().div_euclid(1_000_000_000);
        let time = Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default());
        let conditions = node_conditions(time, &errors, &self.pressure, &previous);
        let changed = without_heartbeats(&previous) != without_heartbeats(&conditions);
        let due = self.last_report.is_none_or(|at| now.duration_since(at) >= self.timings.report);
        if !changed && !due {
            return Ok(false);
        }
        let order: Vec<serde_json::Value> = conditions.iter().map(|c| serde_json::json!({"type": c.type_})).collect();
        let patch = serde_json::json!({"status": {"$setElementOrder/conditions": order, "conditions": conditions}});
        let written = self.nodes.patch_status(&self.node, &PatchParams::default(), &Patch::Strategic(patch)).await;
        let result = if written.is_ok() { "success" } else { "error" };
        crate::metrics::METRICS.node_status_writes.with_label_values(&[&self.node, result]).inc();
        written?;
        self.last_report = Some(now);
        let node = EventRecorder::node_ref(&self.node);
        for reason in transition_events(&previous, &conditions) {
            self.events.record(&node, EventType::Normal, reason, &format!("Node {} status is now: {reason}", self.node));
        }
        Ok(true)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(t: &str, ok: bool, reason: &str) -> RuntimeCondition {
        RuntimeCondition {
            condition_type: t.into(),
            status: ok,
            reason: reason.into(),
            message: if ok { String::new() } else { "cni config uninitialized".into() },
        }
    }

    #[test]
    fn ready_errors_follow_the_kubelets_runtime_state() {
        let mut h = RuntimeHealth::default();
        let t0 = Instant::now();
        assert_eq!(h.errors(t0, Duration::from_secs(30), vec![]), ["container runtime status check may not have completed yet"]);
        h.observe(Ok(vec![condition("RuntimeReady", true, ""), condition("NetworkReady", false, "NetworkPluginNotReady")]), t0);
        assert_eq!(
            h.errors(t0, Duration::from_secs(30), vec![]),
            ["container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni config uninitialized"]
        );
        h.observe(Ok(vec![condition("RuntimeReady", true, ""), condition("NetworkReady", true, "")]), t0);
        assert!(h.errors(t0 + Duration::from_secs(29), Duration::from_secs(30), vec![]).is_empty());
        h.observe(Err("deadline exceeded".into()), t0 + Duration::from_secs(29));
        assert_eq!(h.errors(t0 + Duration::from_secs(30), Duration::from_secs(30), vec![]), ["container runtime is down"]);
        let pleg = "PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s".to_string();
        assert_eq!(h.errors(t0 + Duration::from_secs(30), Duration::from_secs(30), vec![pleg.clone()]), ["container runtime is down".to_string(), pleg]);
    }
}

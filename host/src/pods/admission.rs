//! Pod admission, as the kubelet's admit handlers decide it before a pod runs: first the
//! eviction manager's (a node under pressure takes no new pod, or under memory pressure
//! alone no new BestEffort pod; critical pods always), then the predicates (the node
//! selector must match the node's labels, and the pod must fit in what is left of the
//! node's allocatable pods, cpu and memory). A refused pod is Failed with the kubelet's
//! reason (`Evicted`, `NodeAffinity`, `OutOfpods`, `OutOfcpu`, `OutOfmemory`, `NodePorts`) and message.

use super::manager::is_critical;
use super::resources::{QosClass, Quantity, qos_class};
use crate::node::pressure::{Condition, Conditions};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a pod takes from the node: cpu in millicores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millis: i64,
    pub memory: i64,
}

fn requests(c: &Container) -> Usage {
    let get = |r: &str| {
        c.resources
            .as_ref()
            .and_then(|res| res.requests.as_ref().and_then(|m| m.get(r)).or_else(|| res.limits.as_ref().and_then(|m| m.get(r))))
            .and_then(|q| Quantity::parse(&q.0).ok())
            .unwrap_or_default()
    };
    Usage { cpu_millis: get("cpu").milli_value(), memory: get("memory").value() }
}

/// A pod's effective requests: its containers' sum, or its largest init container's
/// request when that is more.
pub fn pod_usage(pod: &Pod) -> Usage {
    let Some(spec) = &pod.spec else { return Usage::default() };
    let sum =
        spec.containers.iter().map(requests).fold(Usage::default(), |a, b| Usage { cpu_millis: a.cpu_millis + b.cpu_millis, memory: a.memory + b.memory });
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(requests)
        .fold(Usage::default(), |a, b| Usage { cpu_millis: a.cpu_millis.max(b.cpu_millis), memory: a.memory.max(b.memory) });
    Usage { cpu_millis: sum.cpu_millis.max(init.cpu_millis), memory: sum.memory.max(init.memory) }
}

/// The node's side of admission: its labels, what it can hold, its pressure conditions, and
/// the pods it admitted.
#[derive(Debug, Default)]
pub struct Admission {
    pub labels: BTreeMap<String, String>,
    pub allocatable: BTreeMap<String, String>,
    pressure: Arc<Conditions>,
    admitted: HashMap<String, Usage>,
    /// The host ports each admitted pod holds.
    ports: HashMap<String, Vec<HostPort>>,
}

/// A host port a container asks for: (host IP, protocol, port).
type HostPort = (String, String, i32);

/// The host ports a pod's containers ask for (upstream's `getContainerPorts`).
fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| (p.host_ip.clone().unwrap_or_default(), p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.host_port.unwrap_or(0)))
        .collect()
}

/// Whether two host ports collide, as upstream's `HostPortInfo.CheckConflict`: the same
/// protocol and port on the same address, or on any address where either is `0.0.0.0`.
fn conflict(a: &HostPort, b: &HostPort) -> bool {
    let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
    a.1 == b.1 && a.2 == b.2 && (a.0 == b.0 || any(&a.0) || any(&b.0))
}

/// Why a pod was refused: the kubelet's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Admission {
    pub fn new(labels: BTreeMap<String, String>, allocatable: BTreeMap<String, String>, pressure: Arc<Conditions>) -> Self {
        Admission { labels, allocatable, pressure, admitted: HashMap::new(), ports: HashMap::new() }
    }

    /// Admits the pod (remembering what it takes) or says why not.
    pub fn admit(&mut self, uid: &str, pod: &Pod) -> Result<(), Rejection> {
        if self.admitted.contains_key(uid) {
            return Ok(());
        }
        if let Some(rejection) = self.under_pressure(pod) {
            return Err(rejection);
        }
        let selector = pod.spec.as_ref().and_then(|s| s.node_selector.clone()).unwrap_or_default();
        if selector.iter().any(|(k, v)| self.labels.get(k) != Some(v)) {
            return Err(Rejection { reason: "NodeAffinity".into(), message: "Predicate NodeAffinity failed".into() });
        }
        let usage = pod_usage(pod);
        let used = self.admitted.values().fold(Usage::default(), |a, b| Usage { cpu_millis: a.cpu_millis + b.cpu_millis, memory: a.memory + b.memory });
        let capacity = |r: &str| self.allocatable.get(r).and_then(|q| Quantity::parse(q).ok());
        let checks = [
            ("pods", 1, self.admitted.len() as i64, capacity("pods").map(|q| q.value())),
            ("cpu", usage.cpu_millis, used.cpu_millis, capacity("cpu").map(|q| q.milli_value())),
            ("memory", usage.memory, used.memory, capacity("memory").map(|q| q.value())),
        ];
        for (resource, requested, used, capacity) in checks {
            if let Some(capacity) = capacity.filter(|c| requested > 0 && used + requested > *c) {
                return Err(Rejection {
                    reason: format!("OutOf{resource}"),
                    message: format!("Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"),
                });
            }
        }
        let wanted = host_ports(pod);
        if wanted.iter().any(|w| self.ports.values().flatten().any(|held| conflict(w, held))) {
            return Err(Rejection { reason: "NodePorts".into(), message: "Predicate NodePorts failed".into() });
        }
        self.admitted.insert(uid.to_string(), usage);
        if !wanted.is_empty() {
            self.ports.insert(uid.to_string(), wanted);
        }
        Ok(())
    }

    /// The eviction manager's answer (upstream's `managerImpl.Admit`).
    fn under_pressure(&self, pod: &Pod) -> Option<Rejection> {
        let held = self.pressure.held();
        if held.is_empty() || is_critical(pod) {
            return None;
        }
        if held == [Condition::Memory] {
            let spec = pod.spec.as_ref()?;
            if qos_class(spec) != QosClass::BestEffort || tolerates_memory_pressure(spec) {
                return None;
            }
        }
        let types: Vec<&str> = held.into_iter().map(Condition::type_name).collect();
        Some(Rejection { reason: crate::eviction::REASON.into(), message: format!("The node had condition: [{}]. ", types.join(" ")) })
    }

    /// The pod no longer takes anything: it finished or is gone.
    pub fn release(&mut self, uid: &str) {
        self.admitted.remove(uid);
        self.ports.remove(uid);
    }
}

/// Whether a toleration of the pod tolerates `node.kubernetes.io/memory-pressure:NoSchedule`.
fn tolerates_memory_pressure(spec: &PodSpec) -> bool {
    const KEY: &str = "node.kubernetes.io/memory-pressure";
    spec.tolerations.iter().flatten().any(|t| {
        let effect = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoSchedule");
        let exists = t.operator.as_deref() == Some("Exists");
        let key = match t.key.as_deref() {
            None | Some("") => exists,
            Some(k) => k == KEY,
        };
        effect && key && (exists || t.value.as_deref().is_none_or(str::is_empty))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: &str, selector: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": {"nodeSelector": selector, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap()
    }

    #[test]
    fn a_host_port_is_held_by_one_pod_at_a_time() {
        let with_port = |ip: &str, protocol: &str| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": protocol}]}]}}))
                .unwrap()
        };
        let mut a = Admission::new(BTreeMap::new(), BTreeMap::new(), Arc::default());
        assert_eq!(a.admit("a", &with_port("", "TCP")), Ok(()));
        let e = a.admit("b", &with_port("10.0.0.1", "TCP")).unwrap_err();
        assert_eq!((e.reason.as_str(), e.message.as_str()), ("NodePorts", "Predicate NodePorts failed"));
        assert_eq!(a.admit("c", &with_port("", "UDP")), Ok(()), "another protocol");
        a.release("a");
        assert_eq!(a.admit("b", &with_port("10.0.0.1", "TCP")), Ok(()), "free once the first pod is gone");
        assert!(a.admit("d", &with_port("10.0.0.1", "TCP")).is_err());
        assert_eq!(a.admit("e", &with_port("10.0.0.2", "TCP")), Ok(()), "another address");
    }

    #[test]
    fn pods_that_do_not_fit_are_refused_with_the_kubelets_words() {
        let allocatable = [("cpu", "1"), ("memory", "1Gi"), ("pods", "2")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut a = Admission::new([("disk".to_string(), "ssd".to_string())].into(), allocatable, Arc::default());
        assert_eq!(a.admit("a", &pod("600m", serde_json::json!({"disk": "ssd"}))), Ok(()));
        let e = a.admit("b", &pod("600m", serde_json::json!({}))).unwrap_err();
        assert_eq!((e.reason.as_str(), e.message.as_str()), ("OutOfcpu", "Node didn't have enough resource: cpu, requested: 600, used: 600, capacity: 1000"));
        let e = a.admit("c", &pod("1m", serde_json::json!({"disk": "hdd"}))).unwrap_err();
        assert_eq!((e.reason.as_str(), e.message.as_str()), ("NodeAffinity", "Predicate NodeAffinity failed"));
        assert_eq!(a.admit("d", &pod("1m", serde_json::json!({}))), Ok(()));
        let e = a.admit("e", &pod("1m", serde_json::json!({}))).unwrap_err();
        assert_eq!(e.message, "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2");
        a.release("a");
        assert_eq!(a.admit("e", &pod("1m", serde_json::json!({}))), Ok(()));
    }

    fn best_effort(tolerations: serde_json::Value, priority: Option<i32>) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": {"tolerations": tolerations, "priority": priority, "containers": [{"name": "c"}]}})).unwrap()
    }

    #[test]
    fn a_node_under_pressure_refuses_new_pods_as_the_eviction_manager_does() {
        let pressure = Arc::new(Conditions::default());
        let mut a = Admission::new(BTreeMap::new(), BTreeMap::new(), pressure.clone());
        assert_eq!(a.admit("before", &best_effort(serde_json::json!([]), None)), Ok(()));
        pressure.set(Condition::Memory, true);
        let e = a.admit("best-effort", &best_effort(serde_json::json!([]), None)).unwrap_err();
        assert_eq!((e.reason.as_str(), e.message.as_str()), ("Evicted", "The node had condition: [MemoryPressure]. "));
        assert_eq!(a.admit("before", &best_effort(serde_json::json!([]), None)), Ok(()), "an admitted pod stays admitted");
        assert_eq!(a.admit("burstable", &pod("100m", serde_json::json!({}))), Ok(()));
        let tolerating = serde_json::json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]);
        assert_eq!(a.admit("tolerating", &best_effort(tolerating, None)), Ok(()));
        let other = serde_json::json!([{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists"}]);
        assert!(a.admit("other-toleration", &best_effort(other, None)).is_err());
        assert_eq!(a.admit("critical", &best_effort(serde_json::json!([]), Some(2_000_001_000))), Ok(()));
        // Any other pressure refuses every pod but a critical one.
        pressure.set(Condition::Disk, true);
        let e = a.admit("burstable-too", &pod("100m", serde_json::json!({}))).unwrap_err();
        assert_eq!(e.message, "The node had condition: [MemoryPressure DiskPressure]. ");
    }
}

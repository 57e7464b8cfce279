//! Pod admission, as the kubelet's predicate admit handler decides it before a pod runs:
//! the node selector must match the node's labels, and the pod must fit in what is left of
//! the node's allocatable pods, cpu and memory. A refused pod is Failed with the kubelet's
//! reason (`NodeAffinity`, `OutOfpods`, `OutOfcpu`, `OutOfmemory`) and message.

use super::resources::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::{BTreeMap, HashMap};

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

/// The node's side of admission: its labels, what it can hold, and the pods it admitted.
#[derive(Debug, Default)]
pub struct Admission {
    pub labels: BTreeMap<String, String>,
    pub allocatable: BTreeMap<String, String>,
    admitted: HashMap<String, Usage>,
}

/// Why a pod was refused: the kubelet's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Admission {
    pub fn new(labels: BTreeMap<String, String>, allocatable: BTreeMap<String, String>) -> Self {
        Admission { labels, allocatable, admitted: HashMap::new() }
    }

    /// Admits the pod (remembering what it takes) or says why not.
    pub fn admit(&mut self, uid: &str, pod: &Pod) -> Result<(), Rejection> {
        if self.admitted.contains_key(uid) {
            return Ok(());
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
        self.admitted.insert(uid.to_string(), usage);
        Ok(())
    }

    /// The pod no longer takes anything: it finished or is gone.
    pub fn release(&mut self, uid: &str) {
        self.admitted.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: &str, selector: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": {"nodeSelector": selector, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap()
    }

    #[test]
    fn pods_that_do_not_fit_are_refused_with_the_kubelets_words() {
        let allocatable = [("cpu", "1"), ("memory", "1Gi"), ("pods", "2")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut a = Admission::new([("disk".to_string(), "ssd".to_string())].into(), allocatable);
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
}

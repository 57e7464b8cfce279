//! The pod's API status as the kubelet computes it (upstream generateAPIPodStatus, getPhase
//! and the condition generators of pkg/kubelet/status), and the status manager that writes
//! it to `pods/<name>/status` with the pod's uid as a precondition, skipping writes that
//! would change nothing.

use super::inspect::RuntimePod;
use super::manager::PodManager;
use crate::runtime::{ContainerState as RuntimeState, ContainerStatus as RuntimeContainer};
use crate::timeline::{Journal, What};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pod conditions the kubelet owns; it keeps every other condition as it finds it.
const OWNED_CONDITIONS: [&str; 4] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];

/// Why a container that does not run is waiting: the last start error or back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What a pod's status is computed from.
pub struct StatusInputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    /// Shown in container ids: `<runtime>://<id>`.
    pub runtime_name: &'a str,
    pub node_ip: &'a str,
    /// By container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// Readiness and startup results by container id.
    pub ready: &'a dyn Fn(&Container, &str) -> bool,
    pub started: &'a dyn Fn(&Container, &str) -> bool,
    /// Host-clock ns.
    pub now: i64,
    /// The pod is being terminated: once all containers stopped, its phase is terminal.
    pub terminal: bool,
}

/// API time at second precision, as the server keeps it; `None` for 0 (not yet).
pub fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(k8s_openapi::jiff::Timestamp::from_second(nanos.div_euclid(1_000_000_000)).unwrap_or_default()))
}

fn terminated(i: &StatusInputs, c: &RuntimeContainer) -> ContainerState {
    // An instance that was created but never started failed to start: containerd reports
    // it as exit code 128, reason StartError, and so does the kubelet.
    let never_started = c.state == RuntimeState::Created;
    let exit_code = if never_started { 128 } else { c.exit_code };
    let reason = match (c.reason.as_str(), exit_code) {
        _ if never_started => "StartError".to_string(),
        ("", 0) => "Completed".to_string(),
        ("", _) => "Error".to_string(),
        (r, _) => r.to_string(),
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            container_id: Some(format!("{}://{}", i.runtime_name, c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: (!message.is_empty()).then(|| message.into()) }),
        ..Default::default()
    }
}

fn container_status(i: &StatusInputs, spec: &Container, default_reason: &str) -> ContainerStatus {
    let recorded = i.waiting.get(&spec.name);
    let mut s = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        last_state: Some(ContainerState::default()),
        started: Some(false),
        ..Default::default()
    };
    let Some(latest) = i.runtime.latest(&spec.name) else {
        s.state = Some(recorded.map_or_else(|| waiting(default_reason, ""), |w| waiting(&w.reason, &w.message)));
        return s;
    };
    s.restart_count = i32::try_from(latest.metadata.attempt).unwrap_or(i32::MAX);
    s.container_id = Some(format!("{}://{}", i.runtime_name, latest.id));
    if !latest.image.is_empty() {
        s.image = latest.image.clone();
    }
    s.image_id = latest.image_ref.clone();
    let previous = i.runtime.previous(&spec.name).map(|p| terminated(i, p));
    match latest.state {
        RuntimeState::Running => {
            s.state = Some(ContainerState { running: Some(ContainerStateRunning { started_at: time(latest.started_at) }), ..Default::default() });
            s.last_state = previous.or(s.last_state);
            let started = (i.started)(spec, &latest.id);
            s.started = Some(started);
            s.ready = started && (i.ready)(spec, &latest.id);
        }
        RuntimeState::Created => {
            s.state = Some(recorded.map_or_else(|| waiting(default_reason, ""), |w| waiting(&w.reason, &w.message)));
            s.last_state = previous.or(s.last_state);
        }
        RuntimeState::Exited | RuntimeState::Unknown => match recorded {
            // Waiting to be started again: the dead instance is the last state.
            Some(w) => {
                s.state = Some(waiting(&w.reason, &w.message));
                s.last_state = Some(terminated(i, latest));
            }
            None => {
                s.state = Some(terminated(i, latest));
                s.last_state = previous.or(s.last_state);
            }
        },
    }
    s
}

pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// The pod phase from its container statuses (upstream getPhase).
pub fn phase(spec: &PodSpec, init: &[ContainerStatus], containers: &[ContainerStatus], terminal: bool) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for s in init {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if let Some(last) = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            if last.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let policy = restart_policy(spec);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// `[a b]`, as Go prints a list of names.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>, old: &[PodCondition], now: i64) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = old.iter().find(|c| c.type_ == type_ && c.status == status).and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        message,
        last_transition_time: since.or_else(|| time(now)),
        ..Default::default()
    }
}

/// The pod's QoS class from its requests and limits (upstream GetPodQOS, for cpu and memory).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let of = |c: &Container, limits: bool, r: &str| {
        c.resources.as_ref().and_then(|res| if limits { res.limits.as_ref() } else { res.requests.as_ref() }).and_then(|m| m.get(r)).map(|q| q.0.clone())
    };
    let any = all.iter().any(|c| ["cpu", "memory"].iter().any(|r| of(c, true, r).is_some() || of(c, false, r).is_some()));
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| match (of(c, true, r), of(c, false, r)) {
            (Some(limit), Some(request)) => limit == request,
            (Some(_), None) => true,
            _ => false,
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// The conditions the kubelet does not own, as the server has them.
fn foreign_conditions(pod: &Pod) -> Vec<PodCondition> {
    let old = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    old.into_iter().filter(|c| !OWNED_CONDITIONS.contains(&c.type_.as_str())).collect()
}

/// The pod's status as the kubelet would write it now.
pub fn api_status(i: &StatusInputs) -> PodStatus {
    let spec = i.pod.spec.clone().unwrap_or_default();
    let old = i.pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let default_reason = if inits.is_empty() { "ContainerCreating" } else { "PodInitializing" };
    let init_statuses: Vec<ContainerStatus> = inits.iter().map(|c| container_status(i, c, default_reason)).collect();
    let statuses: Vec<ContainerStatus> = spec.containers.iter().map(|c| container_status(i, c, default_reason)).collect();
    // A terminal phase never goes back.
    let phase = match old.phase.as_deref() {
        Some(p @ ("Succeeded" | "Failed")) => p.to_string(),
        _ => phase(&spec, &init_statuses, &statuses, i.terminal).to_string(),
    };

    let mut conditions = foreign_conditions(i.pod);
    conditions.push(condition("PodReadyToStartContainers", i.runtime.ready_sandbox().is_some(), None, None, &old_conditions, i.now));
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_none_or(|t| t.exit_code != 0))
        .map(|s| s.name.as_str())
        .collect();
    let any_started = statuses.iter().any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()) || s.restart_count > 0);
    conditions.push(if phase == "Succeeded" {
        condition("Initialized", true, Some("PodCompleted"), None, &old_conditions, i.now)
    } else if incomplete.is_empty() || any_started {
        condition("Initialized", true, None, None, &old_conditions, i.now)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: {}", go_list(&incomplete))),
            &old_conditions,
            i.now,
        )
    });
    let unready: Vec<&str> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let (ready, reason, message) = match phase.as_str() {
        "Succeeded" => (false, Some("PodCompleted"), None),
        "Failed" => (false, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, None, None),
        _ => (false, Some("ContainersNotReady"), Some(format!("containers with unready status: {}", go_list(&unready)))),
    };
    conditions.push(condition("Ready", ready, reason, message.clone(), &old_conditions, i.now));
    conditions.push(condition("ContainersReady", ready, reason, message, &old_conditions, i.now));

    // A pod in the host's network namespace has the node's address.
    let ip = if spec.host_network == Some(true) {
        Some(i.node_ip.to_string())
    } else {
        i.runtime.latest_sandbox().map(|s| s.ip.clone()).filter(|ip| !ip.is_empty()).or_else(|| old.pod_ip.clone())
    };
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(i.node_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: i.node_ip.to_string() }]),
        pod_ips: ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip: ip,
        start_time: old.start_time.clone().or_else(|| time(i.now)),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        // The API server sets the class at creation and refuses to change it.
        qos_class: old.qos_class.clone().or_else(|| Some(qos_class(&spec).to_string())),
        ..Default::default()
    }
}

/// The status of a pod the kubelet refused to run: Failed, with the reason and message of
/// the admission check that refused it.
pub fn rejected_status(pod: &Pod, reason: &str, message: &str) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.into()),
        message: Some(format!("Pod was rejected: {message}")),
        conditions: Some(foreign_conditions(pod)),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()).or_else(|| Some(qos_class(&spec).into())),
        ..Default::default()
    }
}

/// Top-level status fields the kubelet sets only sometimes: removed when it no longer does.
const OPTIONAL_FIELDS: [&str; 2] = ["reason", "message"];

/// True when writing `new` over the server's `old` would change nothing the kubelet owns
/// (both as JSON).
fn unchanged(old: &serde_json::Value, new: &serde_json::Value) -> bool {
    let Some(new) = new.as_object() else { return false };
    new.iter().all(|(k, v)| old.get(k) == Some(v)) && OPTIONAL_FIELDS.iter().all(|k| new.contains_key(*k) || old.get(*k).is_none())
}

/// A container's state in a few words, for the timeline: state, reason, exit code.
fn state_summary(c: &ContainerStatus) -> (String, String, Option<i32>) {
    let state = c.state.clone().unwrap_or_default();
    if let Some(w) = state.waiting {
        ("Waiting".into(), w.reason.unwrap_or_default(), None)
    } else if state.running.is_some() {
        ("Running".into(), String::new(), None)
    } else if let Some(t) = state.terminated {
        ("Terminated".into(), t.reason.unwrap_or_default(), Some(t.exit_code))
    } else {
        ("Waiting".into(), String::new(), None)
    }
}

fn all_containers(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten())
}

/// The status manager of one node: the last status generated for each pod (what `/pods`
/// shows, and the timeline's source of container changes), and the writer that puts it in
/// the API.
pub struct StatusWriter {
    /// None for a standalone node.
    client: Option<kube::Client>,
    manager: Arc<PodManager>,
    journal: Arc<Journal>,
    cache: Mutex<HashMap<String, PodStatus>>,
}

impl StatusWriter {
    pub fn new(client: Option<kube::Client>, manager: Arc<PodManager>, journal: Arc<Journal>) -> Self {
        StatusWriter { client, manager, journal, cache: Mutex::new(HashMap::new()) }
    }

    /// Keeps the status generated for a pod; each container whose state, restart count or
    /// readiness changed since the last one goes to the timeline.
    pub fn remember(&self, pod: &Pod, status: &PodStatus, now: i64) {
        let Some(uid) = pod.metadata.uid.as_deref() else { return };
        let name = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let before = cache.get(uid);
        for c in all_containers(status) {
            let previous = before.and_then(|b| all_containers(b).find(|p| p.name == c.name));
            let summary = state_summary(c);
            if previous.is_some_and(|p| state_summary(p) == summary && p.restart_count == c.restart_count && p.ready == c.ready) {
                continue;
            }
            if previous.is_some_and(|p| c.restart_count > p.restart_count) {
                crate::metrics::METRICS.container_restarts.with_label_values(&[pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")]).inc();
            }
            let (state, reason, exit_code) = summary;
            let what = What::Container { container: c.name.clone(), state, reason, exit_code, restart_count: c.restart_count, ready: c.ready };
            self.journal.record(now, Some(&name), what);
        }
        cache.insert(uid.to_string(), status.clone());
    }

    /// The status last generated for a pod.
    pub fn cached(&self, uid: &str) -> Option<PodStatus> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    /// Forgets the pods `keep` says no.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|uid, _| keep(uid));
    }

    /// Writes `status` to the pod unless the server has it already. The patch is a JSON
    /// merge patch of the whole status (lists replaced, dropped fields set to null) carrying
    /// the pod's uid, so a pod deleted and re-created under the same name is never written
    /// to (the server answers 409). It has the effect of the kubelet's two-way strategic
    /// merge patch. Returns whether it wrote.
    pub async fn write(&self, pod: &Pod, status: &PodStatus) -> Result<bool, kube::Error> {
        let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        let new = serde_json::to_value(status).unwrap_or_default();
        if unchanged(&old, &new) {
            return Ok(false);
        }
        let Some(client) = &self.client else { return Ok(false) };
        let (Some(name), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.uid.as_deref()) else { return Ok(false) };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut body = serde_json::json!({"metadata": {"uid": uid}, "status": new});
        for key in OPTIONAL_FIELDS {
            if body["status"].get(key).is_none() && old.get(key).is_some() {
                body["status"][key] = serde_json::Value::Null;
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let written = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(body)).await?;
        self.manager.observe(written);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: serde_json::Value, last: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(
            serde_json::json!({"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": state, "lastState": last}),
        )
        .unwrap()
    }

    fn spec(policy: &str) -> PodSpec {
        serde_json::from_value(serde_json::json!({"restartPolicy": policy, "containers": [{"name": "c"}]})).unwrap()
    }

    #[test]
    fn phases_follow_the_kubelets_get_phase() {
        let running = status(serde_json::json!({"running": {}}), serde_json::json!({}));
        let ok = status(serde_json::json!({"terminated": {"exitCode": 0}}), serde_json::json!({}));
        let failed = status(serde_json::json!({"terminated": {"exitCode": 1}}), serde_json::json!({}));
        let crashloop = status(serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}), serde_json::json!({"terminated": {"exitCode": 1}}));
        let creating = status(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}), serde_json::json!({}));
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&running), false), "Running");
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&creating), false), "Pending");
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&crashloop), false), "Running");
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&failed), false), "Running");
        assert_eq!(phase(&spec("Never"), &[], std::slice::from_ref(&failed), false), "Failed");
        assert_eq!(phase(&spec("Never"), &[], std::slice::from_ref(&ok), false), "Succeeded");
        assert_eq!(phase(&spec("OnFailure"), &[], std::slice::from_ref(&ok), false), "Succeeded");
        assert_eq!(phase(&spec("OnFailure"), &[], std::slice::from_ref(&failed), false), "Running");
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&ok), true), "Succeeded");
        assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&failed), true), "Failed");
        // A failed init container fails the pod only when nothing restarts it.
        assert_eq!(phase(&spec("Never"), std::slice::from_ref(&failed), std::slice::from_ref(&creating), false), "Failed");
        assert_eq!(phase(&spec("Always"), std::slice::from_ref(&crashloop), std::slice::from_ref(&creating), false), "Pending");
    }

    #[test]
    fn host_network_pods_have_the_nodes_address() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"hostNetwork": true, "containers": [{"name": "c"}]}})).unwrap();
        let (runtime, waiting) = (RuntimePod::default(), HashMap::new());
        let status = api_status(&StatusInputs {
            pod: &pod,
            runtime: &runtime,
            runtime_name: "labkubelet",
            node_ip: "10.1.0.5",
            waiting: &waiting,
            ready: &|_, _| true,
            started: &|_, _| true,
            now: 1_700_000_000_000_000_000,
            terminal: false,
        });
        assert_eq!((status.pod_ip.as_deref(), status.host_ip.as_deref()), (Some("10.1.0.5"), Some("10.1.0.5")));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn qos_classes() {
        let pod = |resources: serde_json::Value| -> PodSpec {
            serde_json::from_value(serde_json::json!({"containers": [{"name": "c", "resources": resources}]})).unwrap()
        };
        assert_eq!(qos_class(&pod(serde_json::json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(serde_json::json!({"requests": {"cpu": "100m"}}))), "Burstable");
    }
}

//! The pod's API status as the kubelet computes it: upstream's generateAPIPodStatus,
//! getPhase, the condition generators of pkg/kubelet/status/generate.go and what the prober
//! manager's UpdatePodStatus sets (`ready`, `started`).

use super::phase::{PodPhase, phase};
use super::time;
use crate::pods::resources::qos_class;
use crate::runtime::pod_cache::RuntimePod;
use crate::runtime::{ContainerState as RuntimeState, ContainerStatus as RuntimeContainer};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use std::collections::HashMap;

/// The pod conditions the kubelet owns (upstream PodConditionByKubelet); it keeps every
/// other condition as it finds it.
const OWNED_CONDITIONS: [&str; 5] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

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

/// An init container that is not a sidecar (`restartPolicy: Always`) runs to completion:
/// it is ready once it exited 0, never while it runs.
fn runs_to_completion(spec: &Container, init: bool) -> bool {
    init && spec.restart_policy.as_deref() != Some("Always")
}

fn container_status(i: &StatusInputs, spec: &Container, init: bool, default_reason: &str) -> ContainerStatus {
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
        return vanished(i, s, init, recorded.is_none());
    };
    s.restart_count = i32::try_from(latest.metadata.attempt).unwrap_or(i32::MAX);
    s.container_id = Some(format!("{}://{}", i.runtime_name, latest.id));
    if !latest.image.is_empty() {
        s.image = latest.image.clone();
    }
    s.image_id = latest.image_ref.clone();
    let previous = i.runtime.previous(&spec.name).map(|p| terminated(i, p)).or_else(|| lost_previous(i, &spec.name, init, &latest.id));
    match latest.state {
        RuntimeState::Running => {
            s.state = Some(ContainerState { running: Some(ContainerStateRunning { started_at: time(latest.started_at) }), ..Default::default() });
            s.last_state = previous.or(s.last_state);
            let started = (i.started)(spec, &latest.id);
            s.started = Some(started);
            s.ready = started && !runs_to_completion(spec, init) && (i.ready)(spec, &latest.id);
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
                s.ready = runs_to_completion(spec, init) && latest.state == RuntimeState::Exited && latest.exit_code == 0;
            }
        },
    }
    s
}

/// A container's status as the server has it (the pod's last written status).
pub fn server_container_status<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let list = if init { status.init_container_statuses.as_ref() } else { status.container_statuses.as_ref() };
    list?.iter().find(|c| c.name == name)
}

/// How the instance before `latest` ended, when the runtime no longer has it (it lost its
/// state): what the server last showed of it. Upstream leaves `lastState` empty here once
/// the new instance runs; labkubelet keeps it, so a replaced container always says how the
/// old one ended.
fn lost_previous(i: &StatusInputs, name: &str, init: bool, latest: &str) -> Option<ContainerState> {
    let old = server_container_status(i.pod, name, init)?;
    let id = format!("{}://{latest}", i.runtime_name);
    if old.container_id.as_deref() == Some(id.as_str()) {
        return old.last_state.clone().filter(|l| l.terminated.is_some());
    }
    let state = old.state.clone().unwrap_or_default();
    if state.terminated.is_some() {
        return Some(state);
    }
    if old.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
        return old.last_state.clone();
    }
    state.running.map(|_| unknown_termination())
}

/// A container that was running and is gone without a trace (upstream's words and code).
fn unknown_termination() -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("The container could not be located when the pod was deleted.  The container used to be Running".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status of a container the runtime has no record of, from what the server last had
/// (upstream convertToAPIContainerStatuses): a terminated one stays as it was; one that was
/// running died unseen (the runtime lost it): `lastState` says so, and unless the pod is
/// being deleted the restart count goes up, as it will when the container is created again.
fn vanished(i: &StatusInputs, mut s: ContainerStatus, init: bool, default_waiting: bool) -> ContainerStatus {
    let Some(old) = server_container_status(i.pod, &s.name, init) else { return s };
    let old_state = old.state.clone().unwrap_or_default();
    if old_state.terminated.is_some() {
        return old.clone();
    }
    s.restart_count = old.restart_count;
    s.last_state = old.last_state.clone().or(s.last_state);
    let had_termination = s.last_state.as_ref().is_some_and(|l| l.terminated.is_some());
    if old_state.running.is_some() && default_waiting && !had_termination {
        s.last_state = Some(unknown_termination());
        if i.pod.metadata.deletion_timestamp.is_none() {
            s.restart_count += 1;
        }
    }
    s
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

/// The conditions in the order the server keeps them after the kubelet's strategic merge
/// patch (merge key `type`): those it has stay where they are, new ones go at the end. So
/// the scheduler's `PodScheduled` stays first, as `kubectl describe` shows it.
fn in_server_order(old: &[PodCondition], mut new: Vec<PodCondition>) -> Vec<PodCondition> {
    let mut ordered: Vec<PodCondition> = old.iter().filter_map(|o| new.iter().position(|n| n.type_ == o.type_).map(|i| new.remove(i))).collect();
    ordered.append(&mut new);
    ordered
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
    // Init containers in the spec's order, the others by name (upstream convertToAPIContainerStatuses).
    let init_statuses: Vec<ContainerStatus> = inits.iter().map(|c| container_status(i, c, true, default_reason)).collect();
    let mut statuses: Vec<ContainerStatus> = spec.containers.iter().map(|c| container_status(i, c, false, default_reason)).collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    // A terminal phase never goes back.
    let phase = match PodPhase::of(Some(&old)) {
        Some(p) if p.is_terminal() => p,
        _ => phase(&spec, &init_statuses, &statuses, i.terminal),
    };

    let mut conditions = foreign_conditions(i.pod);
    conditions.push(condition("PodReadyToStartContainers", i.runtime.ready_sandbox().is_some(), None, None, &old_conditions, i.now));
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_none_or(|t| t.exit_code != 0))
        .map(|s| s.name.as_str())
        .collect();
    let any_started = statuses.iter().any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()) || s.restart_count > 0);
    conditions.push(if phase == PodPhase::Succeeded {
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
    let (ready, reason, message) = match phase {
        PodPhase::Succeeded => (false, Some("PodCompleted"), None),
        PodPhase::Failed => (false, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, None, None),
        _ => (false, Some("ContainersNotReady"), Some(format!("containers with unready status: {}", go_list(&unready)))),
    };
    conditions.push(condition("Ready", ready, reason, message.clone(), &old_conditions, i.now));
    conditions.push(condition("ContainersReady", ready, reason, message, &old_conditions, i.now));
    // The pod is on this node, so it was scheduled: the kubelet says so even when the
    // scheduler never saw the pod (`spec.nodeName`, static pods).
    conditions.push(condition("PodScheduled", true, None, None, &old_conditions, i.now));

    let conditions = in_server_order(&old_conditions, conditions);

    // A pod in the host's network namespace has the node's address.
    let ip = if spec.host_network == Some(true) {
        Some(i.node_ip.to_string())
    } else {
        i.runtime.latest_sandbox().map(|s| s.ip.clone()).filter(|ip| !ip.is_empty()).or_else(|| old.pod_ip.clone())
    };
    PodStatus {
        phase: Some(phase.as_str().to_string()),
        conditions: Some(conditions),
        host_ip: Some(i.node_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: i.node_ip.to_string() }]),
        pod_ips: ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip: ip,
        start_time: old.start_time.clone().or_else(|| time(i.now)),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        // The API server sets the class at creation and refuses to change it.
        qos_class: old.qos_class.clone().or_else(|| Some(qos_class(&spec).as_str().to_string())),
        ..Default::default()
    }
}

/// The status of a pod the kubelet refused to run (upstream rejectPod): Failed, with the
/// reason and message of the admission check that refused it, its QoS class, and the start
/// time the status manager gives every status it writes.
pub fn rejected_status(pod: &Pod, reason: &str, message: &str, now: i64) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    PodStatus {
        start_time: old.start_time.or_else(|| time(now)),
        phase: Some(PodPhase::Failed.as_str().into()),
        reason: Some(reason.into()),
        message: Some(format!("Pod was rejected: {message}")),
        conditions: Some(foreign_conditions(pod)),
        qos_class: old.qos_class.or_else(|| Some(qos_class(&spec).as_str().into())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

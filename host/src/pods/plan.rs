//! What one sync of a pod should do to the runtime (upstream kuberuntime's
//! `computePodActions`), decided from the pod's spec, the runtime's view of the pod and the
//! probes' verdicts, and nothing else: a pure function that unit tests drive. The sync
//! carries the plan out, and the restart back-off there decides when a restart may start.

use crate::runtime::ContainerState;
use crate::runtime::pod_cache::RuntimePod;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// The annotation that tells whether a running container still matches its spec.
pub const HASH_ANNOTATION: &str = "io.kubernetes.container.hash";

/// A pod's restart policy: the WIT's, which the runtime is told in each container's config.
pub use crate::runtime::RestartPolicy;

impl RestartPolicy {
    /// The spec's policy, `Always` when unset, as the API server defaults it.
    pub fn of(spec: &PodSpec) -> Self {
        match spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// The policy as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }

    /// Whether a container that exited with this code is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// A short, stable hash of what a change to restarts the container: image, command, args, env.
pub fn spec_hash(c: &Container) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::json!([c.image, c.command, c.args, c.env]).to_string();
    Sha256::digest(text.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A sandbox to make: the newest is gone or not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSandbox {
    /// How many sandboxes the pod had before.
    pub attempt: u32,
    /// The pod had a sandbox: what runs in it is stopped first (`SandboxChanged`).
    pub changed: bool,
}

/// A running container to stop, with the `Killing` event's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub name: String,
    pub id: String,
    pub message: String,
}

/// A container to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub name: String,
    pub init: bool,
    /// It ran, or its start failed, before: it waits out the restart back-off
    /// (CrashLoopBackOff) first.
    pub after_backoff: bool,
}

/// What one sync does, in this order: make a sandbox, stop containers, start containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    pub sandbox: Option<NewSandbox>,
    pub kill: Vec<Kill>,
    pub start: Vec<Start>,
}

/// Plans a sync of a pod that should run. `failed_probe` names the probe (`liveness`,
/// `startup`) a running container failed, by container id.
///
/// ```
/// use labkubelet::pods::plan::{compute_pod_actions, NewSandbox, Start};
/// use labkubelet::runtime::pod_cache::RuntimePod;
/// let spec: k8s_openapi::api::core::v1::PodSpec =
///     serde_json::from_value(serde_json::json!({"containers": [{"name": "web", "image": "nginx"}]})).unwrap();
/// let plan = compute_pod_actions(&spec, &RuntimePod::default(), &|_| None);
/// assert_eq!(plan.sandbox, Some(NewSandbox { attempt: 0, changed: false }));
/// assert_eq!(plan.start, [Start { name: "web".into(), init: false, after_backoff: false }]);
/// ```
pub fn compute_pod_actions(spec: &PodSpec, rt: &RuntimePod, failed_probe: &dyn Fn(&str) -> Option<&'static str>) -> PodActions {
    let policy = RestartPolicy::of(spec);
    let mut plan = PodActions::default();
    let fresh = rt.ready_sandbox().is_none();
    if fresh {
        plan.sandbox = Some(NewSandbox { attempt: u32::try_from(rt.sandboxes.len()).unwrap_or(u32::MAX), changed: !rt.sandboxes.is_empty() });
    }
    // In a new sandbox every container starts afresh; restart counts carry on.
    let latest = |name: &str| if fresh { None } else { rt.latest(name) };
    let start = |name: &str, init: bool, after_backoff: bool| Start { name: name.to_string(), init, after_backoff };

    // Init containers run one at a time, in order, each to success, before any container.
    for c in spec.init_containers.iter().flatten() {
        match latest(&c.name).map(|l| (l.state, l.exit_code)) {
            Some((ContainerState::Exited, 0)) => continue,
            // A failed init container runs again unless the policy is Never.
            Some((ContainerState::Exited | ContainerState::Unknown, _)) if policy != RestartPolicy::Never => plan.start.push(start(&c.name, true, true)),
            Some(_) => {}
            None => plan.start.push(start(&c.name, true, false)),
        }
        return plan;
    }

    for c in &spec.containers {
        let Some(l) = latest(&c.name) else {
            plan.start.push(start(&c.name, false, false));
            continue;
        };
        match l.state {
            ContainerState::Running => {
                let changed = l.annotations.iter().find(|a| a.key == HASH_ANNOTATION).is_some_and(|a| a.value != spec_hash(c));
                let message = if changed {
                    format!("Container {} definition changed, will be restarted", c.name)
                } else if let Some(probe) = failed_probe(&l.id) {
                    format!("Container {} failed {probe} probe, will be restarted", c.name)
                } else {
                    continue;
                };
                plan.kill.push(Kill { name: c.name.clone(), id: l.id.clone(), message });
                // A new definition runs whatever the policy; a failed probe's restart follows it.
                if changed || policy != RestartPolicy::Never {
                    plan.start.push(start(&c.name, false, false));
                }
            }
            ContainerState::Exited | ContainerState::Unknown if policy.restarts(l.exit_code) => plan.start.push(start(&c.name, false, true)),
            ContainerState::Exited | ContainerState::Unknown => {}
            // Created but never started: its start failed. It is retried like a crash, with
            // a new container and the restart back-off.
            _ if policy != RestartPolicy::Never => plan.start.push(start(&c.name, false, true)),
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerMetadata, ContainerStatus, KeyValue, PodSandboxMetadata, PodSandboxState, PodSandboxStatus};

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).expect("a pod spec")
    }

    fn sandbox(id: &str, attempt: u32, state: PodSandboxState) -> PodSandboxStatus {
        PodSandboxStatus {
            id: id.into(),
            metadata: PodSandboxMetadata { name: "p".into(), namespace: "default".into(), uid: "u".into(), attempt },
            state,
            created_at: i64::from(attempt),
            ip: String::new(),
            labels: Vec::new(),
            annotations: Vec::new(),
        }
    }

    fn container(id: &str, name: &str, state: ContainerState, exit_code: i32, hash: &str) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            pod_sandbox_id: "s1".into(),
            metadata: ContainerMetadata { name: name.into(), attempt: 0 },
            state,
            created_at: 1,
            started_at: 1,
            finished_at: 0,
            exit_code,
            image: String::new(),
            image_ref: String::new(),
            reason: String::new(),
            message: String::new(),
            labels: Vec::new(),
            annotations: vec![KeyValue { key: HASH_ANNOTATION.into(), value: hash.into() }],
        }
    }

    fn start(name: &str, init: bool, after_backoff: bool) -> Start {
        Start { name: name.into(), init, after_backoff }
    }

    fn web() -> Container {
        serde_json::from_value(serde_json::json!({"name": "web", "image": "nginx:1.25"})).expect("a container")
    }

    #[test]
    fn a_lost_sandbox_is_made_again_and_every_container_starts_afresh_in_it() {
        let s = spec(serde_json::json!({"containers": [{"name": "web", "image": "nginx:1.25"}]}));
        let rt = RuntimePod {
            sandboxes: vec![sandbox("s1", 0, PodSandboxState::NotReady)],
            containers: vec![container("c1", "web", ContainerState::Exited, 255, &spec_hash(&web()))],
        };
        let plan = compute_pod_actions(&s, &rt, &|_| None);
        assert_eq!(plan.sandbox, Some(NewSandbox { attempt: 1, changed: true }));
        assert_eq!(plan.start, [start("web", false, false)], "a new sandbox's container is no restart: no back-off");
    }

    #[test]
    fn init_containers_run_one_at_a_time_and_a_failed_one_again_unless_the_policy_is_never() {
        let value = |policy: &str| serde_json::json!({"restartPolicy": policy, "initContainers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}], "containers": [{"name": "web", "image": "nginx:1.25"}]});
        let ready = || vec![sandbox("s1", 0, PodSandboxState::Ready)];
        let done_a = RuntimePod { sandboxes: ready(), containers: vec![container("c1", "a", ContainerState::Exited, 0, "")] };
        assert_eq!(compute_pod_actions(&spec(value("Always")), &done_a, &|_| None).start, [start("b", true, false)]);
        let failed_b = RuntimePod { containers: vec![done_a.containers[0].clone(), container("c2", "b", ContainerState::Exited, 1, "")], ..done_a.clone() };
        assert_eq!(compute_pod_actions(&spec(value("OnFailure")), &failed_b, &|_| None).start, [start("b", true, true)]);
        assert_eq!(compute_pod_actions(&spec(value("Never")), &failed_b, &|_| None), PodActions::default(), "the pod fails instead");
        let running_b = RuntimePod { containers: vec![done_a.containers[0].clone(), container("c2", "b", ContainerState::Running, 0, "")], ..done_a };
        assert_eq!(compute_pod_actions(&spec(value("Always")), &running_b, &|_| None), PodActions::default(), "no container before b succeeds");
    }

    #[test]
    fn a_changed_definition_or_a_failed_probe_restarts_a_running_container_and_exits_follow_the_policy() {
        let value = |policy: &str| serde_json::json!({"restartPolicy": policy, "containers": [{"name": "web", "image": "nginx:1.25"}]});
        let with = |c: ContainerStatus| RuntimePod { sandboxes: vec![sandbox("s1", 0, PodSandboxState::Ready)], containers: vec![c] };
        let hash = spec_hash(&web());
        let running = with(container("c1", "web", ContainerState::Running, 0, &hash));
        assert_eq!(compute_pod_actions(&spec(value("Always")), &running, &|_| None), PodActions::default(), "all is as the spec says");

        let old = with(container("c1", "web", ContainerState::Running, 0, "0ld"));
        let plan = compute_pod_actions(&spec(value("Never")), &old, &|_| None);
        assert_eq!(plan.kill, [Kill { name: "web".into(), id: "c1".into(), message: "Container web definition changed, will be restarted".into() }]);
        assert_eq!(plan.start, [start("web", false, false)], "a new definition runs even under Never");

        let liveness = |id: &str| (id == "c1").then_some("liveness");
        let plan = compute_pod_actions(&spec(value("Always")), &running, &liveness);
        assert_eq!(plan.kill[0].message, "Container web failed liveness probe, will be restarted");
        assert_eq!(plan.start, [start("web", false, false)]);
        assert!(compute_pod_actions(&spec(value("Never")), &running, &liveness).start.is_empty(), "killed, not restarted, under Never");

        let exited = |code| with(container("c1", "web", ContainerState::Exited, code, &hash));
        assert_eq!(compute_pod_actions(&spec(value("OnFailure")), &exited(1), &|_| None).start, [start("web", false, true)]);
        assert!(compute_pod_actions(&spec(value("OnFailure")), &exited(0), &|_| None).start.is_empty());
        assert_eq!(compute_pod_actions(&spec(value("Always")), &exited(0), &|_| None).start, [start("web", false, true)]);
        let never_started = with(container("c1", "web", ContainerState::Created, 0, &hash));
        assert_eq!(compute_pod_actions(&spec(value("Always")), &never_started, &|_| None).start, [start("web", false, true)], "a failed start backs off");
    }
}

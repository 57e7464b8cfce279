//! The pod phase (upstream `getPhase`): computed from the container statuses, and final once
//! it is `Succeeded` or `Failed`.

use crate::pods::plan::RestartPolicy;
use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};

/// The phases the kubelet gives a pod (it never reports `Unknown` itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
        }
    }

    /// The phase a status shows, if it is one the kubelet gives.
    pub fn of(status: Option<&PodStatus>) -> Option<PodPhase> {
        match status?.phase.as_deref()? {
            "Pending" => Some(PodPhase::Pending),
            "Running" => Some(PodPhase::Running),
            "Succeeded" => Some(PodPhase::Succeeded),
            "Failed" => Some(PodPhase::Failed),
            _ => None,
        }
    }

    /// `Succeeded` or `Failed`: the pod's containers will not run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// Whether a status shows a terminal phase.
pub fn is_terminal(status: Option<&PodStatus>) -> bool {
    PodPhase::of(status).is_some_and(PodPhase::is_terminal)
}

/// The pod phase from its container statuses (upstream getPhase).
pub fn phase(spec: &PodSpec, init: &[ContainerStatus], containers: &[ContainerStatus], terminal: bool) -> PodPhase {
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
    let policy = RestartPolicy::of(spec);
    if failed_init > 0 && policy == RestartPolicy::Never {
        return PodPhase::Failed;
    }
    if pending_init > 0 || waiting > 0 {
        return PodPhase::Pending;
    }
    if running > 0 {
        return PodPhase::Running;
    }
    if stopped > 0 {
        if terminal {
            return if stopped == succeeded { PodPhase::Succeeded } else { PodPhase::Failed };
        }
        if policy == RestartPolicy::Always {
            return PodPhase::Running;
        }
        if stopped == succeeded {
            return PodPhase::Succeeded;
        }
        if policy == RestartPolicy::Never {
            return PodPhase::Failed;
        }
        return PodPhase::Running;
    }
    PodPhase::Pending
}

//! The node conditions the kubelet sets, with its exact types, reasons and messages.
//! Upstream: pkg/kubelet/nodestatus/setters.go.

use super::pressure::{Condition, Conditions};
use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the runtime side says about readiness: empty when ready, else the errors the
/// kubelet aggregates into Ready's message.
pub fn ready_message(errors: &[String]) -> Option<String> {
    match errors {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

/// The four conditions, updating `previous`: lastHeartbeatTime is now, lastTransitionTime
/// changes only when a status flips. The pressure conditions are the eviction manager's.
pub fn node_conditions(now: Time, runtime_errors: &[String], pressure: &Conditions, previous: &[NodeCondition]) -> Vec<NodeCondition> {
    let ready = ready_message(runtime_errors);
    let wanted: [(&str, &str, &str, String); 4] = [
        match pressure.get(Condition::Memory) {
            false => ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available".into()),
            true => ("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available".into()),
        },
        match pressure.get(Condition::Disk) {
            false => ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure".into()),
            true => ("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure".into()),
        },
        match pressure.get(Condition::Pid) {
            false => ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available".into()),
            true => ("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available".into()),
        },
        match ready {
            None => ("Ready", "True", "KubeletReady", "kubelet is posting ready status".into()),
            Some(message) => ("Ready", "False", "KubeletNotReady", message),
        },
    ];
    wanted
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let before = previous.iter().find(|c| c.type_ == type_);
            let transition = match before {
                Some(b) if b.status == status => b.last_transition_time.clone().unwrap_or_else(|| now.clone()),
                _ => now.clone(),
            };
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// The node events a status change records, as the kubelet's setters do: a pressure
/// condition records its new state whenever it changes (so at the first status too); Ready
/// records NodeReady or NodeNotReady only when an existing Ready condition flips.
pub fn transition_events(previous: &[NodeCondition], next: &[NodeCondition]) -> Vec<&'static str> {
    let mut events = Vec::new();
    for c in next {
        let before = previous.iter().find(|p| p.type_ == c.type_);
        let flipped = before.is_none_or(|b| b.status != c.status);
        let healthy = c.status == if c.type_ == "Ready" { "True" } else { "False" };
        let event = match (c.type_.as_str(), healthy) {
            ("MemoryPressure", true) => "NodeHasSufficientMemory",
            ("MemoryPressure", false) => "NodeHasInsufficientMemory",
            ("DiskPressure", true) => "NodeHasNoDiskPressure",
            ("DiskPressure", false) => "NodeHasDiskPressure",
            ("PIDPressure", true) => "NodeHasSufficientPID",
            ("PIDPressure", false) => "NodeHasInsufficientPID",
            ("Ready", true) if before.is_some() => "NodeReady",
            ("Ready", false) if before.is_some() => "NodeNotReady",
            _ => continue,
        };
        if flipped {
            events.push(event);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn ready_follows_the_runtime_and_transitions_only_on_a_flip() {
        let none = Conditions::default();
        let first = node_conditions(at(100), &["container runtime status check may not have completed yet".into()], &none, &[]);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("KubeletNotReady")));
        assert_eq!(ready.message.as_deref(), Some("container runtime status check may not have completed yet"));

        let second = node_conditions(at(110), &[], &none, &first);
        let ready = second.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.message.as_deref()), ("True", Some("kubelet is posting ready status")));
        assert_eq!(ready.last_transition_time, Some(at(110)));
        let memory = second.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!((memory.last_transition_time.clone(), memory.last_heartbeat_time.clone()), (Some(at(100)), Some(at(110))));

        let errors = ["container runtime is down".to_string(), "PLEG is not healthy: pleg was last seen active 3m5s ago; threshold is 3m0s".to_string()];
        assert_eq!(transition_events(&[], &first), ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID"]);
        assert_eq!(transition_events(&first, &second), ["NodeReady"]);
        let third = node_conditions(at(120), &errors, &none, &second);
        assert_eq!(transition_events(&second, &third), ["NodeNotReady"]);
        let ready = third.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.message.as_deref(), Some("[container runtime is down, PLEG is not healthy: pleg was last seen active 3m5s ago; threshold is 3m0s]"));
    }

    #[test]
    fn pressure_shows_with_the_kubelets_reasons_and_events() {
        let pressure = Conditions::default();
        let calm = node_conditions(at(100), &[], &pressure, &[]);
        pressure.set(Condition::Memory, true);
        let short = node_conditions(at(110), &[], &pressure, &calm);
        let memory = short.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(
            (memory.status.as_str(), memory.reason.as_deref(), memory.message.as_deref()),
            ("True", Some("KubeletHasInsufficientMemory"), Some("kubelet has insufficient memory available"))
        );
        assert_eq!(memory.last_transition_time, Some(at(110)));
        assert_eq!(transition_events(&calm, &short), ["NodeHasInsufficientMemory"]);
    }
}

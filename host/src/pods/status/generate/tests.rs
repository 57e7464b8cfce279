use super::*;
use k8s_openapi::api::core::v1::PodSpec;

fn status(state: serde_json::Value, last: serde_json::Value) -> ContainerStatus {
    serde_json::from_value(serde_json::json!({"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": state, "lastState": last}))
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
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&running), false), PodPhase::Running);
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&creating), false), PodPhase::Pending);
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&crashloop), false), PodPhase::Running);
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&failed), false), PodPhase::Running);
    assert_eq!(phase(&spec("Never"), &[], std::slice::from_ref(&failed), false), PodPhase::Failed);
    assert_eq!(phase(&spec("Never"), &[], std::slice::from_ref(&ok), false), PodPhase::Succeeded);
    assert_eq!(phase(&spec("OnFailure"), &[], std::slice::from_ref(&ok), false), PodPhase::Succeeded);
    assert_eq!(phase(&spec("OnFailure"), &[], std::slice::from_ref(&failed), false), PodPhase::Running);
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&ok), true), PodPhase::Succeeded);
    assert_eq!(phase(&spec("Always"), &[], std::slice::from_ref(&failed), true), PodPhase::Failed);
    // A failed init container fails the pod only when nothing restarts it.
    assert_eq!(phase(&spec("Never"), std::slice::from_ref(&failed), std::slice::from_ref(&creating), false), PodPhase::Failed);
    assert_eq!(phase(&spec("Always"), std::slice::from_ref(&crashloop), std::slice::from_ref(&creating), false), PodPhase::Pending);
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

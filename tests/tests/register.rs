//! Node registration against the API-server double: what the Node looks like in
//! `kubectl describe node`, reconcile of an existing Node, retries while the API is away.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use labkubelet::clock::Clock;
use labkubelet::node::register::{NodeIdentity, reconcile_node_info, register};
use labkubelet_tests::apiserver::{ApiServer, Failures, Faults};
use serde_json::json;
use std::time::Duration;

fn identity() -> NodeIdentity {
    NodeIdentity {
        name: "lab-node-1".into(),
        hostname: "lab-node-1".into(),
        node_ip: "10.1.0.5".into(),
        labels: [("lab".to_string(), "yes".to_string())].into(),
        taints: vec![],
        register_schedulable: true,
        capacity: [("cpu", "100"), ("memory", "32Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        container_runtime_version: "labkubelet://0.1.0".into(),
        kubelet_version: "v1.33.0-labkubelet".into(),
        port: 10250,
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        boot_id: "b0071d00-0000-4000-a000-000000000001".into(),
    }
}

#[tokio::test]
async fn a_new_node_is_posted_with_labels_annotation_addresses_capacity_and_conditions() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    register(&nodes, &identity(), &Clock::new(), &["container runtime status check may not have completed yet".into()]).await;
    let node = nodes.get("lab-node-1").await.unwrap();
    let labels = node.metadata.labels.unwrap();
    for (k, v) in [("kubernetes.io/hostname", "lab-node-1"), ("kubernetes.io/os", "linux"), ("beta.kubernetes.io/os", "linux"), ("lab", "yes")] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert!(labels.contains_key("kubernetes.io/arch") && labels.contains_key("beta.kubernetes.io/arch"));
    assert!(!labels.keys().any(|k| k.starts_with("node-role.kubernetes.io/")), "the kubelet does not set roles");
    assert_eq!(node.metadata.annotations.unwrap()["volumes.kubernetes.io/controller-managed-attach-detach"], "true");
    let status = node.status.unwrap();
    let addresses: Vec<(String, String)> = status.addresses.unwrap().into_iter().map(|a| (a.type_, a.address)).collect();
    assert_eq!(addresses, [("InternalIP".to_string(), "10.1.0.5".to_string()), ("Hostname".to_string(), "lab-node-1".to_string())]);
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    assert_eq!(status.allocatable.unwrap()["memory"].0, "32Gi");
    assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
    let info = status.node_info.unwrap();
    assert_eq!(
        (info.container_runtime_version.as_str(), info.kubelet_version.as_str(), info.operating_system.as_str()),
        ("labkubelet://0.1.0", "v1.33.0-labkubelet", "linux")
    );
    let conditions: Vec<(String, String, String)> = status.conditions.unwrap().into_iter().map(|c| (c.type_, c.status, c.reason.unwrap())).collect();
    assert_eq!(
        conditions,
        [
            ("MemoryPressure".to_string(), "False".to_string(), "KubeletHasSufficientMemory".to_string()),
            ("DiskPressure".to_string(), "False".to_string(), "KubeletHasNoDiskPressure".to_string()),
            ("PIDPressure".to_string(), "False".to_string(), "KubeletHasSufficientPID".to_string()),
            ("Ready".to_string(), "False".to_string(), "KubeletNotReady".to_string()),
        ]
    );
}

#[tokio::test]
async fn an_existing_node_gets_its_default_labels_back_and_keeps_the_rest() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    let stale: Node =
        serde_json::from_value(json!({"metadata": {"name": "lab-node-1", "labels": {"kubernetes.io/hostname": "old-name", "team": "blue"}}})).unwrap();
    nodes.create(&PostParams::default(), &stale).await.unwrap();
    register(&nodes, &identity(), &Clock::new(), &[]).await;
    let node = nodes.get("lab-node-1").await.unwrap();
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "lab-node-1");
    assert_eq!(labels["team"], "blue", "labels the kubelet does not own are kept");
    assert_eq!(node.metadata.annotations.unwrap()["volumes.kubernetes.io/controller-managed-attach-detach"], "true");
    assert!(server.requests().iter().any(|r| r.starts_with("PATCH /api/v1/nodes/lab-node-1")));
}

#[tokio::test]
async fn registration_retries_until_the_api_server_answers() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    server.set_faults(Faults { failing: vec![Failures::next(3, 503)], ..Faults::default() });
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), register(&nodes, &identity(), &Clock::new(), &[])).await.expect("registered");
    // 100 + 200 + 400 ms of back-off before the fourth try.
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    assert_eq!(server.requests().iter().filter(|r| r.starts_with("POST /api/v1/nodes")).count(), 4);
    nodes.get("lab-node-1").await.unwrap();
}

#[tokio::test]
async fn an_existing_node_gets_its_boot_id_and_versions_and_a_new_boot_id_is_a_reboot() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    let first = register(&nodes, &identity(), &Clock::new(), &[]).await;
    assert_eq!(reconcile_node_info(&nodes, &identity(), &first).await.unwrap(), None, "the same boot: nothing to say");

    // The agent restarted on a rebooted machine, with a newer runtime.
    let rebooted =
        NodeIdentity { boot_id: "b0071d00-0000-4000-a000-000000000002".into(), container_runtime_version: "labkubelet://0.2.0".into(), ..identity() };
    let existing = register(&nodes, &rebooted, &Clock::new(), &[]).await;
    let previous = reconcile_node_info(&nodes, &rebooted, &existing).await.unwrap();
    assert_eq!(previous.as_deref(), Some("b0071d00-0000-4000-a000-000000000001"));
    let info = nodes.get("lab-node-1").await.unwrap().status.unwrap().node_info.unwrap();
    assert_eq!((info.boot_id.as_str(), info.container_runtime_version.as_str()), ("b0071d00-0000-4000-a000-000000000002", "labkubelet://0.2.0"));
    assert_eq!(info.machine_id, "0123456789abcdef0123456789abcdef", "the rest of nodeInfo is kept");
}

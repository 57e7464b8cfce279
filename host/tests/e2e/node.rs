//! A node joins: TLS bootstrap, Ready with the kubelet's conditions and labels, its Lease,
//! `Unknown` when the agent stops, Ready again with the same credentials when it starts.

use crate::support::{Agent, cluster, condition, eventually, eventually_with};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::time::Duration;

async fn csrs_of(csrs: &Api<CertificateSigningRequest>, user: &str) -> Vec<CertificateSigningRequest> {
    csrs.list(&ListParams::default()).await.expect("list CSRs").items.into_iter().filter(|c| c.spec.username.as_deref() == Some(user)).collect()
}

#[tokio::test]
async fn a_node_joins_turns_ready_keeps_its_lease_and_comes_back_after_a_restart() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-join").await;
    agent.start();

    // kubectl get csr: node-csr-…  kubernetes.io/kube-apiserver-client-kubelet  system:bootstrap:<id>  Approved,Issued
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let user = agent.token.user.clone();
    let csr = eventually_with(&mut agent, "the node's CSR Approved,Issued", Duration::from_secs(60), async || {
        let csr = csrs_of(&csrs, &user).await.into_iter().next()?;
        let status = csr.status.as_ref()?;
        let approved = status.conditions.iter().flatten().any(|c| c.type_ == "Approved" && c.status == "True");
        (approved && status.certificate.is_some()).then_some(csr)
    })
    .await;
    assert!(csr.metadata.name.as_deref().is_some_and(|n| n.starts_with("node-csr-")), "{:?}", csr.metadata.name);
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kube-apiserver-client-kubelet");
    let conditions: Vec<String> = csr.status.iter().flat_map(|s| s.conditions.iter().flatten()).map(|c| c.type_.clone()).collect();
    assert_eq!(conditions, ["Approved"], "the CSR failed: {:?}", csr.status);

    // kubectl get nodes: Ready, with the kubelet's conditions, labels, addresses and port.
    let nodes: Api<Node> = Api::all(admin.clone());
    let node = agent.wait_ready(&nodes).await;
    for (type_, status, reason, message) in [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ] {
        let c = condition(&node, type_).unwrap_or_else(|| panic!("no {type_} condition: {:?}", node.status));
        assert_eq!((c.status.as_str(), c.reason.as_deref(), c.message.as_deref()), (status, Some(reason), Some(message)), "{type_}");
    }
    // The version-skew policy: no newer than the API server (1.20.2 here).
    let info = node.status.as_ref().and_then(|s| s.node_info.clone()).expect("nodeInfo");
    assert_eq!(info.kubelet_version, "v1.20.2", "kubectl get nodes: VERSION");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    for (key, value) in [("kubernetes.io/hostname", "e2e-join"), ("kubernetes.io/os", "linux"), ("beta.kubernetes.io/os", "linux"), ("e2e", "e2e-join")] {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "label {key}: {labels:?}");
    }
    assert!(labels.contains_key("kubernetes.io/arch"), "{labels:?}");
    let status = node.status.clone().unwrap_or_default();
    let addresses: Vec<(String, String)> = status.addresses.iter().flatten().map(|a| (a.type_.clone(), a.address.clone())).collect();
    assert_eq!(addresses, [("InternalIP".to_string(), "127.0.0.1".to_string()), ("Hostname".to_string(), "e2e-join".to_string())]);
    let port = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map_or(0, |e| e.port);
    assert!(port > 0, "daemonEndpoints names the API port");

    // kubectl -n kube-node-lease get lease: held by the node, owned by the Node, renewed every ~10 s.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let lease = leases.get("e2e-join").await.expect("the node's Lease");
    let spec = lease.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("e2e-join"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = lease.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.len(), 1, "{owner:?}");
    assert_eq!((owner[0].kind.as_str(), owner[0].name.as_str(), owner[0].api_version.as_str()), ("Node", "e2e-join", "v1"));
    assert_eq!(Some(&owner[0].uid), node.metadata.uid.as_ref(), "the owner is this Node");
    let mut renewals = vec![spec.renew_time.expect("renewTime").0];
    while renewals.len() < 3 {
        let last = *renewals.last().expect("one renewal");
        let next = eventually_with(&mut agent, "the Lease renewed", Duration::from_secs(20), async || {
            let t = leases.get("e2e-join").await.ok()?.spec?.renew_time?.0;
            (t > last).then_some(t)
        })
        .await;
        renewals.push(next);
    }
    let interval = renewals[2].duration_since(renewals[1]);
    assert!((8..=12).contains(&interval.as_secs()), "renewals {renewals:?}: every ~10 s (a quarter of the lease duration)");

    // Ctrl-C: after the node monitor grace period the conditions turn Unknown.
    agent.stop();
    let grace = cluster().settings.node_monitor_grace_period;
    let unknown = eventually("Ready Unknown after the agent stopped", grace + Duration::from_secs(30), async || {
        let node = nodes.get("e2e-join").await.ok()?;
        let ready = condition(&node, "Ready")?.clone();
        (ready.status == "Unknown").then_some(ready)
    })
    .await;
    assert_eq!(unknown.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(unknown.message.as_deref(), Some("Kubelet stopped posting node status."));

    // The same command again: the certificate it has is used, no new bootstrap CSR.
    let before = csrs_of(&csrs, &agent.token.user).await.len();
    agent.start();
    agent.wait_ready(&nodes).await;
    assert_eq!(csrs_of(&csrs, &agent.token.user).await.len(), before, "a restarted node makes no new bootstrap CSR");
    agent.assert_no_refused_requests();
}

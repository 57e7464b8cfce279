//! Client-certificate rotation with short-lived certificates: the node renews its
//! certificate through a CSR made as itself and stays Ready past the first certificate's
//! expiry (the kubelet closes the connections of the old certificate when it rotates).

use crate::support::{Agent, cluster, condition, eventually_with};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use labkubelet::bootstrap::rotation::validity;
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn the_node_rotates_its_certificate_and_stays_ready_past_the_first_ones_expiry() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-rotate").await;
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    let (_, expiry) = validity(&agent.root.path().join("pki").join("kubelet-client-current.pem")).expect("the node's certificate");
    let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left < Duration::from_secs(600), "the control plane issues short-lived certificates ({left:?} left)");

    // kubectl get csr: csr-…  system:node:e2e-rotate  Approved,Issued
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let user = agent.user();
    eventually_with(&mut agent, "a rotation CSR made as the node, issued", left, async || {
        let list = csrs.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|c| c.spec.username.as_deref() == Some(user.as_str()) && c.status.as_ref().is_some_and(|s| s.certificate.is_some()))
            .map(|_| ())
    })
    .await;

    // The Lease renewed past the first certificate's expiry by more than the node monitor
    // grace period (awaited, not sampled: a renewal every 10 s may be late on a busy machine),
    // and the node Ready then.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let grace = cluster().settings.node_monitor_grace_period;
    let renewed_after = expiry + grace;
    eventually_with(&mut agent, "the Lease renewed after the first certificate expired", left + grace + Duration::from_secs(60), async || {
        let renewed = leases.get("e2e-rotate").await.ok()?.spec?.renew_time?.0;
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(renewed.as_microsecond()).ok()?);
        (renewed > renewed_after).then_some(())
    })
    .await;
    let node = nodes.get("e2e-rotate").await.expect("the Node");
    let ready = condition(&node, "Ready").expect("Ready");
    assert_eq!(ready.status, "True", "Ready after the first certificate expired: {ready:?}\n{}", agent.log_tail());
    agent.assert_no_refused_requests();
}

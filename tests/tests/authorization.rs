//! The double refuses what kube-apiserver with `Node,RBAC` and `NodeRestriction` refuses
//! for a node and a bootstrap token, with the same codes and messages (seen against the
//! real 1.20 server in the e2e suite).

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use labkubelet_tests::apiserver::ApiServer;
use serde_json::json;

struct Cluster {
    server: ApiServer,
    admin: kube::Client,
    /// As `system:node:n1`.
    node: kube::Client,
}

async fn cluster() -> Cluster {
    let server = ApiServer::start().await.expect("double");
    let admin = server.admin().await;
    let (cert, key) = server.client_certificate("system:node:n1", &["system:nodes"]).expect("a node certificate");
    let node = ApiServer::client(&server.kubeconfig_with_certificate(&cert, &key)).await.expect("node client");
    for name in ["n1", "n2"] {
        let object: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
        Api::<Node>::all(admin.clone()).create(&PostParams::default(), &object).await.expect("create node");
    }
    Cluster { server, admin, node }
}

fn forbidden(result: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => s.message,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

/// A pod bound to `node`, with `extra` merged in.
fn pod(name: &str, node: &str, extra: serde_json::Value) -> Pod {
    let mut pod = json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}});
    json_patch::merge(&mut pod, &extra);
    serde_json::from_value(pod).expect("pod")
}

#[tokio::test]
async fn a_node_reads_its_node_but_not_its_status_subresource() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.node.clone());
    nodes.get("n1").await.expect("get nodes/n1");
    let message = forbidden(nodes.get_status("n1").await);
    assert_eq!(message, "nodes \"n1\" is forbidden: User \"system:node:n1\" cannot get resource \"nodes/status\" in API group \"\" at the cluster scope");
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}}))).await.expect("patch nodes/n1/status");
    let message = forbidden(nodes.delete("n1", &DeleteParams::default()).await);
    assert!(message.contains("cannot delete resource \"nodes\""), "{message}");
}

#[tokio::test]
async fn a_node_changes_only_its_own_node_and_neither_its_taints_nor_restricted_labels() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.node.clone());
    let message = forbidden(nodes.patch("n2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await);
    assert_eq!(message, "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"");
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"lab": "yes", "kubernetes.io/hostname": "n1"}}})))
        .await
        .expect("own labels");
    let message =
        forbidden(nodes.patch("n1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"node-role.kubernetes.io/master": ""}}}))).await);
    assert_eq!(message, "nodes \"n1\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/master");
    let taint = json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
    let message = forbidden(nodes.patch("n1", &PatchParams::default(), &Patch::Merge(taint)).await);
    assert_eq!(message, "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints");
}

#[tokio::test]
async fn a_node_has_only_its_own_lease() {
    let c = cluster().await;
    let leases: Api<Lease> = Api::namespaced(c.node.clone(), "kube-node-lease");
    let mine: Lease = serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})).expect("lease");
    leases.create(&PostParams::default(), &mine).await.expect("create its lease");
    let theirs: Lease = serde_json::from_value(json!({"metadata": {"name": "n2"}})).expect("lease");
    Api::<Lease>::namespaced(c.admin.clone(), "kube-node-lease").create(&PostParams::default(), &theirs).await.expect("admin creates n2's");
    let message = forbidden(leases.get("n2").await);
    assert!(message.ends_with("in the namespace \"kube-node-lease\": can only access node lease with the same name as the requesting node"), "{message}");
    let message = forbidden(leases.list(&ListParams::default()).await);
    assert!(message.contains("cannot list resource \"leases\""), "{message}");
    let elsewhere: Api<Lease> = Api::namespaced(c.node.clone(), "default");
    let message = forbidden(elsewhere.create(&PostParams::default(), &mine).await);
    assert!(message.ends_with("can only access leases in the \"kube-node-lease\" system namespace"), "{message}");
}

#[tokio::test]
async fn a_node_creates_only_mirror_pods_bound_to_itself_and_owned_by_its_node() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.node.clone(), "default");
    let message = forbidden(pods.create(&PostParams::default(), &pod("plain", "n1", json!({}))).await);
    assert_eq!(message, "pods \"plain\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods");
    let mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
    let message = forbidden(pods.create(&PostParams::default(), &pod("elsewhere", "n2", mirror.clone())).await);
    assert_eq!(message, "pods \"elsewhere\" is forbidden: node \"n1\" can only create pods with spec.nodeName set to itself");
    let n1_uid = Api::<Node>::all(c.admin.clone()).get("n1").await.expect("n1").metadata.uid.expect("uid");
    let owned = |uid: &str| {
        json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": uid, "controller": true}]}})
    };
    let message = forbidden(pods.create(&PostParams::default(), &pod("wrong-uid", "n1", owned("not-the-uid"))).await);
    assert!(message.contains("UID mismatch"), "{message}");
    pods.create(&PostParams::default(), &pod("web-n1", "n1", owned(&n1_uid))).await.expect("a mirror pod owned by its Node");
    let message = forbidden(pods.patch("web-n1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await);
    assert_eq!(message, "pods \"web-n1\" is forbidden: User \"system:node:n1\" cannot patch resource \"pods\" in API group \"\" in the namespace \"default\"");
}

#[tokio::test]
async fn a_node_writes_status_of_and_deletes_only_pods_bound_to_it() {
    let c = cluster().await;
    let admin_pods: Api<Pod> = Api::namespaced(c.admin.clone(), "default");
    for (name, node) in [("mine", "n1"), ("theirs", "n2")] {
        admin_pods.create(&PostParams::default(), &pod(name, node, json!({}))).await.expect("create pod");
    }
    let pods: Api<Pod> = Api::namespaced(c.node.clone(), "default");
    let status = json!({"status": {"phase": "Running"}});
    pods.patch_status("mine", &PatchParams::default(), &Patch::Merge(status.clone())).await.expect("status of its pod");
    let message = forbidden(pods.patch_status("theirs", &PatchParams::default(), &Patch::Merge(status)).await);
    assert_eq!(message, "pods \"theirs\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself");
    let message = forbidden(pods.get_status("mine").await);
    assert!(message.contains("cannot get resource \"pods/status\""), "{message}");
    let message = forbidden(pods.delete("theirs", &DeleteParams::default()).await);
    assert_eq!(message, "pods \"theirs\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself");
    pods.delete("mine", &DeleteParams::default()).await.expect("delete its pod");
}

#[tokio::test]
async fn a_bootstrap_token_may_only_ask_for_certificates() {
    let c = cluster().await;
    let token = c.server.add_bootstrap_token("abcdef", "0123456789abcdef");
    let bootstrap = ApiServer::client(&c.server.kubeconfig_with_token(&token)).await.expect("bootstrap client");
    Api::<CertificateSigningRequest>::all(bootstrap.clone()).list(&ListParams::default()).await.expect("list CSRs");
    let message = forbidden(Api::<Node>::all(bootstrap).get("n1").await);
    assert_eq!(message, "nodes \"n1\" is forbidden: User \"system:bootstrap:abcdef\" cannot get resource \"nodes\" in API group \"\" at the cluster scope");
}

#[tokio::test]
async fn a_kubelet_csr_without_key_encipherment_fails_as_1_20s_signer_fails_it() {
    use base64::Engine as _;
    let c = cluster().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(c.admin.clone());
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:n1");
    let request = params.serialize_request(&key).and_then(|r| r.pem()).expect("a CSR");
    let csr: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "two-usages"}, "spec": {
        "request": base64::engine::general_purpose::STANDARD.encode(&request),
        "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"]}}))
    .expect("csr");
    csrs.create(&PostParams::default(), &csr).await.expect("create");
    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "approved"}]}});
    csrs.patch_approval("two-usages", &PatchParams::default(), &Patch::Merge(approval)).await.expect("approve");
    let status = csrs.get("two-usages").await.expect("csr").status.expect("status");
    let failed = status.conditions.iter().flatten().find(|c| c.type_ == "Failed").expect("Approved,Failed");
    assert_eq!(failed.reason.as_deref(), Some("SignerValidationFailure"));
    assert_eq!(failed.message.as_deref(), Some("usages did not match [client auth digital signature key encipherment]"));
    assert!(status.certificate.is_none());
}

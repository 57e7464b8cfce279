//! The API-server double against the real `kube` client: if kube-rs (and so the agent)
//! sees the double behave like kube-apiserver here, the agent's tests against it mean
//! something.

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use labkubelet_tests::apiserver::{ApiServer, Failures, Faults};
use rustls::pki_types::pem::PemObject;
use serde_json::json;

async fn client(kubeconfig: &str) -> kube::Client {
    ApiServer::client(kubeconfig).await.expect("client")
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "starting"}]}}))
    .unwrap()
}

fn rv(n: &Node) -> u64 {
    n.metadata.resource_version.as_deref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn writes_carry_resource_versions_and_stale_writes_conflict() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    let created = nodes.create(&PostParams::default(), &node("n1")).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.status.as_ref().unwrap().conditions.as_ref().unwrap()[0].type_, "Ready", "nodes keep status on create");
    let e = api_error(nodes.create(&PostParams::default(), &node("n1")).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (409, "AlreadyExists", "nodes \"n1\" already exists"));

    let mut changed = created.clone();
    changed.metadata.labels.get_or_insert_default().insert("lab".into(), "1".into());
    let updated = nodes.replace("n1", &PostParams::default(), &changed).await.unwrap();
    assert!(rv(&updated) > rv(&created));
    let e = api_error(nodes.replace("n1", &PostParams::default(), &changed).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on nodes \"n1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let e = api_error(nodes.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "nodes \"nope\" not found"));
}

#[tokio::test]
async fn the_status_subresource_takes_only_status_and_the_object_keeps_it() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    nodes.create(&PostParams::default(), &node("n1")).await.unwrap();
    // As the kubelet patches node status: a strategic merge patch merging conditions by type.
    let patch = json!({"metadata": {"labels": {"ignored": "yes"}}, "status": {
        "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
        "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    let patched = nodes.patch_status("n1", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    let conditions: Vec<(String, String)> = patched.status.unwrap().conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
    assert_eq!(conditions, [("MemoryPressure".to_string(), "False".to_string()), ("Ready".to_string(), "True".to_string())]);
    assert!(!patched.metadata.labels.unwrap().contains_key("ignored"), "the status subresource changed metadata");

    let mut replaced = nodes.get("n1").await.unwrap();
    replaced.status = None;
    replaced.spec.get_or_insert_default().unschedulable = Some(true);
    let after = nodes.replace("n1", &PostParams::default(), &replaced).await.unwrap();
    assert_eq!(after.spec.unwrap().unschedulable, Some(true));
    assert_eq!(after.status.unwrap().conditions.unwrap().len(), 2, "the main resource changed status");
}

#[tokio::test]
async fn patches_with_a_uid_are_preconditions() {
    let server = ApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.admin().await, "default");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"), "pods get a Pending status on create");
    let uid = created.metadata.uid.unwrap();
    let status = json!({"metadata": {"uid": uid}, "status": {"phase": "Running"}});
    let running = pods.patch_status("p", &PatchParams::default(), &Patch::Strategic(status)).await.unwrap();
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));
    let stale = json!({"metadata": {"uid": "00000000-0000-4000-a000-000000000000"}, "status": {"phase": "Failed"}});
    let e = api_error(pods.patch_status("p", &PatchParams::default(), &Patch::Strategic(stale)).await.unwrap_err());
    assert_eq!(e.code, 409);
    assert!(e.message.contains("Precondition failed: UID in precondition: 00000000-0000-4000-a000-000000000000"), "{}", e.message);
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_then_for_good_with_a_uid_precondition() {
    let server = ApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.admin().await, "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 45, "containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .unwrap();
    let uid = pods.create(&PostParams::default(), &pod).await.unwrap().metadata.uid.unwrap();
    let deleting = pods.delete("p", &DeleteParams::default()).await.unwrap().left().expect("the pod stays while it terminates");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(45));

    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions { uid: Some("other".into()), resource_version: None }),
        ..Default::default()
    };
    let e = api_error(pods.delete("p", &wrong).await.unwrap_err());
    assert_eq!(e.code, 409);
    assert_eq!(e.message, format!("Operation cannot be fulfilled on pods \"p\": Precondition failed: UID in precondition: other, UID in object meta: {uid}"));
    let right = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    pods.delete("p", &right).await.unwrap();
    assert_eq!(api_error(pods.get("p").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn lists_and_watches_filter_by_field_and_label_and_resume_from_a_version() {
    let server = ApiServer::start().await.unwrap();
    let c = server.admin().await;
    let pods: Api<Pod> = Api::all(c.clone());
    let in_ns: Api<Pod> = Api::namespaced(c.clone(), "default");
    let make = |name: &str, node: &str| -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}}),
        )
        .unwrap()
    };
    in_ns.create(&PostParams::default(), &make("a", "node-a")).await.unwrap();
    let mine = ListParams::default().fields("spec.nodeName=node-a");
    let listed = pods.list(&mine).await.unwrap();
    assert_eq!(listed.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["a"]);
    let from = listed.metadata.resource_version.clone().unwrap();

    let mut stream = pods.watch(&WatchParams::default().fields("spec.nodeName=node-a").timeout(30), &from).await.unwrap().boxed();
    in_ns.create(&PostParams::default(), &make("b", "node-b")).await.unwrap();
    in_ns.create(&PostParams::default(), &make("c", "node-a")).await.unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("c"), "the watch saw another node's pod"),
        other => panic!("expected pod c added, got {other:?}"),
    }
    let labelled = pods.list(&ListParams::default().labels("app in (a,b)")).await.unwrap();
    assert_eq!(labelled.items.len(), 2);

    // More changes than the history keeps: a watch from the first version is told 410 Gone.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(c, "kube-node-lease");
    leases.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "n"}})).unwrap()).await.unwrap();
    for i in 0..labkubelet_tests::apiserver::store_history() {
        let patch = json!({"spec": {"leaseDurationSeconds": i % 40 + 1}});
        leases.patch("l", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
    let mut old = pods.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    match old.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_need_a_token_or_a_client_certificate() {
    let server = ApiServer::start().await.unwrap();
    let nobody = client(&server.kubeconfig_with_token("wrong")).await;
    let e = api_error(Api::<Node>::all(nobody).list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));

    let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
    assert_eq!(token, "abcdef.0123456789abcdef");
    let bootstrap = client(&server.kubeconfig_with_token(&token)).await;
    Api::<CertificateSigningRequest>::all(bootstrap.clone()).list(&ListParams::default()).await.unwrap();

    let (cert, key) = server.client_certificate("system:node:n1", &["system:nodes"]).unwrap();
    let node_client = client(&server.kubeconfig_with_certificate(&cert, &key)).await;
    Api::<Node>::all(node_client).create(&PostParams::default(), &node("n1")).await.unwrap();
    assert!(server.requests().iter().any(|r| r.starts_with("POST /api/v1/nodes")));
}

#[tokio::test]
async fn an_approved_kubelet_csr_gets_a_certificate_from_the_ca() {
    let server = ApiServer::start().await.unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(server.admin().await);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:n1");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    use base64::Engine as _;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "node-csr-x"}, "spec": {
        "request": base64::engine::general_purpose::STANDARD.encode(&request),
        "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "key encipherment", "client auth"]}}))
    .unwrap();
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    assert!(csrs.get("node-csr-x").await.unwrap().status.unwrap().certificate.is_none());

    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "approved by the test"}]}});
    csrs.patch_approval("node-csr-x", &PatchParams::default(), &Patch::Merge(approval)).await.unwrap();
    let issued = csrs.get("node-csr-x").await.unwrap().status.unwrap().certificate.expect("a certificate");
    let pem = String::from_utf8(issued.0).unwrap();
    let first = pem.split("-----END CERTIFICATE-----").next().unwrap().to_string() + "-----END CERTIFICATE-----\n";
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(first.as_bytes()).next().unwrap().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let cn: Vec<&str> = cert.subject().iter_common_name().map(|a| a.as_str().unwrap()).collect();
    let o: Vec<&str> = cert.subject().iter_organization().map(|a| a.as_str().unwrap()).collect();
    assert_eq!((cn.as_slice(), o.as_slice()), (["system:node:n1"].as_slice(), ["system:nodes"].as_slice()));
    assert_eq!(cert.issuer().to_string(), "CN=labkubelet-test-ca");
}

#[tokio::test]
async fn injected_faults_fail_requests_until_they_are_used_up() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    server.set_faults(Faults { failing: vec![Failures::next(2, 503)], ..Faults::default() });
    assert_eq!(api_error(nodes.list(&ListParams::default()).await.unwrap_err()).code, 503);
    assert_eq!(api_error(nodes.list(&ListParams::default()).await.unwrap_err()).code, 503);
    nodes.list(&ListParams::default()).await.unwrap();
    // A burst on one path fails only the requests that match it.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(server.admin().await);
    server.set_faults(Faults { failing: vec![Failures::on("GET /api/v1/nodes", 1, 429)], ..Faults::default() });
    namespaces.list(&ListParams::default()).await.unwrap();
    let throttled = api_error(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((throttled.code, throttled.reason.as_str()), (429, "TooManyRequests"));
    nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(server.faults().failing[0].count, 0, "the burst is used up");
    server.set_faults(Faults { offline: true, ..Faults::default() });
    assert!(matches!(nodes.list(&ListParams::default()).await.unwrap_err(), kube::Error::HyperError(_) | kube::Error::Service(_)));
    server.set_faults(Faults::default());
    nodes.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn kube_runtime_watcher_lists_then_follows_changes() {
    use kube::runtime::watcher::{self, Event};
    let server = ApiServer::start().await.unwrap();
    let c = server.admin().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod = |name: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}})).unwrap()
    };
    pods.create(&PostParams::default(), &pod("before")).await.unwrap();
    let config = watcher::Config::default().fields("spec.nodeName=n1");
    let mut events = watcher::watcher(Api::<Pod>::all(c), config).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
            Some(Event::InitApply(p)) => initial.push(p.metadata.name.unwrap()),
            Some(Event::InitDone) => break,
            Some(_) => {}
            None => panic!("the watcher ended"),
        }
    }
    assert_eq!(initial, ["before"]);
    pods.create(&PostParams::default(), &pod("after")).await.unwrap();
    match tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(Event::Apply(p)) => assert_eq!(p.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the new pod, got {other:?}"),
    }
}

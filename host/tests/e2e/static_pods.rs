//! A static pod: its mirror pod appears, owned by the Node; `kubectl delete` brings it back;
//! removing the manifest removes it.

use crate::support::{Agent, cluster, eventually_with};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use std::time::Duration;

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n  containers:\n  - name: web\n    image: nginx:1.25\n";

#[tokio::test]
async fn a_static_pod_is_mirrored_recreated_after_delete_and_removed_with_its_file() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-static").await;
    std::fs::write(agent.manifests().join("web.yaml"), WEB).expect("write the manifest");
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    let node = agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    let mirror = eventually_with(&mut agent, "the mirror pod web-e2e-static Running", Duration::from_secs(60), async || {
        let p = pods.get_opt("web-e2e-static").await.ok()??;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let annotations = mirror.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("kubernetes.io/config.mirror"), "{annotations:?}");
    assert_eq!(annotations.get("kubernetes.io/config.source").map(String::as_str), Some("file"));
    let owners = mirror.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str(), owners[0].controller), ("Node", "e2e-static", Some(true)));
    assert_eq!(Some(&owners[0].uid), node.metadata.uid.as_ref());

    let first_uid = mirror.metadata.uid.clone();
    pods.delete("web-e2e-static", &DeleteParams::default()).await.expect("kubectl delete pod web-e2e-static");
    eventually_with(&mut agent, "the mirror pod recreated", Duration::from_secs(60), async || {
        let p = pods.get_opt("web-e2e-static").await.ok()??;
        (p.metadata.uid != first_uid && p.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;

    std::fs::remove_file(agent.manifests().join("web.yaml")).expect("remove the manifest");
    eventually_with(&mut agent, "the mirror pod gone with its file", Duration::from_secs(60), async || {
        pods.get_opt("web-e2e-static").await.ok()?.is_none().then_some(())
    })
    .await;
    agent.assert_no_refused_requests();
}

//! What a pod's containers are given, with kubectl's eyes on the real control plane: the
//! CKAD troubleshooting classic (a pod whose ConfigMap does not exist stays
//! `ContainerCreating` with the kubelet's `FailedMount` event, and runs once the ConfigMap is
//! created), an env reference to a missing Secret (`CreateContainerConfigError`), and the
//! default service account's token Secret, which 1.20's admission mounts into every pod and
//! the Node authorizer lets only this node read.

use crate::support::{Agent, cluster, container_status, event_reasons, eventually_with, pod_on};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, PostParams};
use std::time::Duration;

#[tokio::test]
async fn a_missing_config_map_or_secret_holds_the_pod_as_the_kubelet_does_until_it_exists() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-volumes").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let on_node = |name: &str, spec: serde_json::Value| pod_on("e2e-volumes", name, spec);
    let config = on_node(
        "needs-config",
        serde_json::json!({
            "volumes": [{"name": "config", "configMap": {"name": "e2e-app-config"}}],
            "containers": [{"name": "app", "image": "busybox:1.36", "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
                "command": ["sh", "-c", "cat /etc/config/greeting; echo; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; sleep 3600"]}],
        }),
    );
    pods.create(&PostParams::default(), &config).await.expect("create needs-config");
    let env = on_node(
        "needs-secret",
        serde_json::json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"], "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "e2e-db", "key": "password"}}},
        ]}]}),
    );
    pods.create(&PostParams::default(), &env).await.expect("create needs-secret");

    let waiting = |p: &Pod| container_status(p).and_then(|c| c.state?.waiting).map(|w| (w.reason.unwrap_or_default(), w.message.unwrap_or_default()));
    let uid = pods.get("needs-config").await.expect("needs-config").metadata.uid.unwrap_or_default();
    // The first read may come before the Node authorizer's graph links the new pod to the node
    // (403 "no relationship found", as a real kubelet sees in that race); the retry reads 404.
    let expected = "MountVolume.SetUp failed for volume \"config\" : configmap \"e2e-app-config\" not found";
    eventually_with(&mut agent, "needs-config's FailedMount: configmap not found", Duration::from_secs(60), async || {
        event_reasons(&admin, "default", &uid).await.into_iter().find(|(r, m)| r == "FailedMount" && m == expected).map(|_| ())
    })
    .await;
    let held = pods.get("needs-config").await.expect("needs-config");
    assert_eq!(waiting(&held).map(|w| w.0).as_deref(), Some("ContainerCreating"), "kubectl get pods: ContainerCreating");

    // The same race as above: the status settles on what a missing Secret shows.
    let expected = ("CreateContainerConfigError".to_string(), "secret \"e2e-db\" not found".to_string());
    eventually_with(&mut agent, "needs-secret in CreateContainerConfigError: secret not found", Duration::from_secs(60), async || {
        waiting(&pods.get("needs-secret").await.ok()?).filter(|w| *w == expected).map(|_| ())
    })
    .await;

    // kubectl create configmap e2e-app-config --from-literal=greeting=hello: Running within
    // the volume manager's back-off.
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let created = serde_json::json!({"metadata": {"name": "e2e-app-config"}, "data": {"greeting": "hello"}});
    config_maps.create(&PostParams::default(), &serde_json::from_value(created).expect("a configmap")).await.expect("create the configmap");
    eventually_with(&mut agent, "needs-config Running", Duration::from_secs(150), async || {
        let p = pods.get("needs-config").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // kubectl logs: the ConfigMap's key and the service account's namespace file, which 1.20's
    // admission mounts from the token Secret (the node read it, as the Node authorizer allows
    // for its own pods only).
    let logs = eventually_with(&mut agent, "needs-config's output", Duration::from_secs(30), async || {
        pods.logs("needs-config", &kube::api::LogParams::default()).await.ok().filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(logs, "hello\ndefault\n");
    let spec = pods.get("needs-config").await.expect("needs-config").spec.unwrap_or_default();
    assert!(spec.volumes.iter().flatten().any(|v| v.secret.is_some() && v.name.starts_with("default-token-")), "{:?}", spec.volumes);
    agent.assert_no_refused_requests();
}

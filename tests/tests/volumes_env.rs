//! What a pod's containers are given before they start, against the API-server double with
//! virtual time: volumes from ConfigMaps and Secrets (a missing one keeps the pod
//! `ContainerCreating` with the kubelet's `FailedMount` events) and the environment (a
//! missing reference is `CreateContainerConfigError`), as `kubectl describe pod` shows them;
//! and the volumes its containers share.

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, PostParams};
use labkubelet::runtime::ContainerRuntime;
use labkubelet_tests::eventually;
use labkubelet_tests::pod_lab::{PodLab, container, phase, waiting_reason};
use serde_json::json;
use std::time::Duration;

fn messages(events: &[Event], reason: &str) -> Vec<String> {
    events.iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.message.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_config_map_is_missing_waits_in_container_creating_until_it_exists() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({
        "volumes": [{"name": "config", "configMap": {"name": "app-config"}}, {"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "cat /etc/config/greeting; sleep 3600"], "volumeMounts": [
            {"name": "config", "mountPath": "/etc/config"}, {"name": "scratch", "mountPath": "/tmp"},
        ]}],
    });
    lab.create("app", json!({}), spec).await;
    let mounting = eventually("a FailedMount event", Duration::from_secs(10), async || {
        let events = lab.events("app").await;
        (!messages(&events, "FailedMount").is_empty()).then_some(events)
    })
    .await;
    assert_eq!(messages(&mounting, "FailedMount")[0], "MountVolume.SetUp failed for volume \"config\" : configmap \"app-config\" not found");
    assert!(mounting.iter().all(|e| !matches!(e.reason.as_deref(), Some("Pulling" | "Created" | "Started"))), "nothing starts before the volumes");
    let pod = lab.pods.get("app").await.expect("the pod");
    assert_eq!((phase(&pod), container(&pod, "app").and_then(waiting_reason)), ("Pending", Some("ContainerCreating")));

    // The kubelet's wait gives up after 2 min 3 s, says so, and waits again.
    let timed_out = eventually("the timeout event", Duration::from_secs(200), async || {
        messages(&lab.events("app").await, "FailedMount").into_iter().find(|m| m.starts_with("Unable to attach or mount volumes"))
    })
    .await;
    assert_eq!(
        timed_out,
        "Unable to attach or mount volumes: unmounted volumes=[config], unattached volumes=[config scratch]: timed out waiting for the condition"
    );
    let failures = lab.events("app").await.into_iter().find(|e| e.message.as_deref().is_some_and(|m| m.starts_with("MountVolume.SetUp failed")));
    let count = failures.and_then(|e| e.count).unwrap_or(0);
    assert!((6..=10).contains(&count), "retried with back-off (0.5 s doubling to 2 min 2 s), not each sync: {count} failures in 2 min");

    lab.create_object::<ConfigMap>(json!({"metadata": {"name": "app-config"}, "data": {"greeting": "hello"}})).await;
    let running = lab.until("app", "Running once its ConfigMap exists", Duration::from_secs(130), |p| phase(p) == "Running").await;
    assert!(container(&running, "app").is_some_and(|c| c.ready));
    let id = container(&running, "app").and_then(|c| c.container_id.clone()).unwrap_or_default();
    let id = id.trim_start_matches("labkubelet://").to_string();
    let logs = lab.runtime.container_logs(&id, None, None).await.expect("logs");
    assert_eq!(logs.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["hello"], "the key's file, as cat prints it");

    // kubectl edit configmap: the file changes in the running container within the
    // kubelet's sync period and cache TTL.
    let config_maps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "default");
    let patch = kube::api::Patch::Merge(json!({"data": {"greeting": "bonjour"}}));
    config_maps.patch("app-config", &kube::api::PatchParams::default(), &patch).await.expect("update the configmap");
    let cat = ["cat".to_string(), "/etc/config/greeting".to_string()];
    eventually("the update in the file", Duration::from_secs(90), async || {
        let out = lab.runtime.exec_sync(&id, &cat, &[], Duration::from_secs(5)).await.ok()?;
        (out.stdout == b"bonjour").then_some(())
    })
    .await;

    // A key removed from the ConfigMap: its file goes, as the kubelet's atomic writer removes it.
    let patch = kube::api::Patch::Merge(json!({"data": {"greeting": null, "farewell": "bye"}}));
    config_maps.patch("app-config", &kube::api::PatchParams::default(), &patch).await.expect("update the configmap");
    let ls = ["ls".to_string(), "/etc/config".to_string()];
    eventually("the removed key's file gone", Duration::from_secs(90), async || {
        let out = lab.runtime.exec_sync(&id, &ls, &[], Duration::from_secs(5)).await.ok()?;
        (out.stdout == b"farewell\n").then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_or_an_optional_config_map_is_handled_as_the_kubelet_does() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create_object::<ConfigMap>(json!({"metadata": {"name": "app-config"}, "data": {"greeting": "hello"}})).await;
    let mounting = |name: &str, volume: serde_json::Value| json!({"volumes": [volume], "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"], "volumeMounts": [{"name": name, "mountPath": "/etc/x"}]}]});
    let item = json!({"name": "config", "configMap": {"name": "app-config", "items": [{"key": "nope", "path": "n"}]}});
    lab.create("no-key", json!({}), mounting("config", item)).await;
    let optional = json!({"name": "maybe", "configMap": {"name": "absent", "optional": true}});
    lab.create("optional", json!({}), mounting("maybe", optional)).await;
    let secret = json!({"name": "creds", "secret": {"secretName": "absent"}});
    lab.create("no-secret", json!({}), mounting("creds", secret)).await;

    lab.until("optional", "Running with an empty volume", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let key = eventually("no-key's FailedMount", Duration::from_secs(10), async || messages(&lab.events("no-key").await, "FailedMount").pop()).await;
    assert_eq!(key, "MountVolume.SetUp failed for volume \"config\" : configmap references non-existent config key: nope");
    let secret = eventually("no-secret's FailedMount", Duration::from_secs(10), async || messages(&lab.events("no-secret").await, "FailedMount").pop()).await;
    assert_eq!(secret, "MountVolume.SetUp failed for volume \"creds\" : secret \"absent\" not found");
}

#[tokio::test(start_paused = true)]
async fn an_env_reference_to_a_missing_secret_is_create_container_config_error_until_it_exists() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"], "env": [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": true}}},
    ]}]});
    lab.create("app", json!({}), spec).await;
    let pod = lab
        .until("app", "CreateContainerConfigError", Duration::from_secs(30), |p| {
            container(p, "app").and_then(waiting_reason) == Some("CreateContainerConfigError")
        })
        .await;
    let waiting = container(&pod, "app").and_then(|c| c.state.as_ref()?.waiting.clone()).expect("waiting");
    assert_eq!(waiting.message.as_deref(), Some("secret \"db\" not found"));
    assert_eq!(phase(&pod), "Pending");
    let failed = eventually("the Failed event", Duration::from_secs(10), async || messages(&lab.events("app").await, "Failed").pop()).await;
    assert_eq!(failed, "Error: secret \"db\" not found");

    // A Secret without the key: the kubelet names the key.
    lab.create_object::<Secret>(json!({"metadata": {"name": "db"}, "data": {"user": "YWRtaW4="}})).await;
    let pod = lab
        .until("app", "the missing key named", Duration::from_secs(90), |p| {
            container(p, "app").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone()).as_deref()
                == Some("couldn't find key password in Secret default/db")
        })
        .await;
    assert_eq!(container(&pod, "app").and_then(waiting_reason), Some("CreateContainerConfigError"));

    let secrets: Api<Secret> = Api::namespaced(lab.client.clone(), "default");
    secrets.delete("db", &Default::default()).await.expect("delete the secret");
    lab.create_object::<Secret>(json!({"metadata": {"name": "db"}, "data": {"password": "czNjcmV0"}})).await;
    lab.until("app", "Running once the key exists", Duration::from_secs(90), |p| phase(p) == "Running").await;
}

#[tokio::test(start_paused = true)]
async fn a_sub_path_that_cannot_be_made_is_create_container_config_error() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "/abs"}]}]});
    lab.create("absolute", json!({}), spec).await;
    let pod = lab
        .until("absolute", "CreateContainerConfigError", Duration::from_secs(30), |p| {
            container(p, "app").and_then(waiting_reason) == Some("CreateContainerConfigError")
        })
        .await;
    let message = container(&pod, "app").and_then(|c| c.state.clone()?.waiting?.message);
    assert_eq!(message.as_deref(), Some("error SubPath `/abs` must not be an absolute path"));
}

/// The id a pod's container runs under, for the runtime's own calls.
fn container_id(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> String {
    let id = container(pod, name).and_then(|c| c.container_id.clone()).unwrap_or_default();
    id.trim_start_matches("labkubelet://").to_string()
}

/// The log lines of a pod's container.
async fn log_text(lab: &PodLab, pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> Vec<String> {
    let logs = lab.runtime.container_logs(&container_id(pod, name), None, None).await.expect("logs");
    logs.into_iter().map(|l| l.text).collect()
}

/// kubernetes.io's shared-volume examples: an init container fills an emptyDir that the app
/// container reads, and what one container writes to it, another that mounts it (read-only,
/// elsewhere) sees.
#[tokio::test(start_paused = true)]
async fn containers_of_a_pod_see_what_the_others_write_to_an_empty_dir() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({
        "volumes": [{"name": "workdir", "emptyDir": {}}],
        "initContainers": [{"name": "install", "image": "busybox:1.36", "command": ["sh", "-c", "echo '<h1>from init</h1>' > /work-dir/index.html"],
            "volumeMounts": [{"name": "workdir", "mountPath": "/work-dir"}]}],
        "containers": [
            {"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "cat /usr/share/html/index.html; sleep 3600"],
                "volumeMounts": [{"name": "workdir", "mountPath": "/usr/share/html"}]},
            {"name": "reader", "image": "busybox:1.36", "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "workdir", "mountPath": "/pod-data", "readOnly": true}]},
        ],
    });
    lab.create("shared", json!({}), spec).await;
    let pod = lab.until("shared", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    assert_eq!(log_text(&lab, &pod, "app").await, ["<h1>from init</h1>"], "the init container's file");

    let sh = |script: &str| ["sh".to_string(), "-c".to_string(), script.to_string()];
    let write = lab.runtime.exec_sync(&container_id(&pod, "app"), &sh("echo hello from app > /usr/share/html/note"), &[], Duration::from_secs(5)).await;
    assert_eq!(write.expect("exec").exit_code, 0);
    let read = lab.runtime.exec_sync(&container_id(&pod, "reader"), &sh("cat /pod-data/note"), &[], Duration::from_secs(5)).await.expect("exec");
    assert_eq!((read.exit_code, read.stdout.as_slice()), (0, &b"hello from app\n"[..]), "{}", String::from_utf8_lossy(&read.stderr));
    let refused = lab.runtime.exec_sync(&container_id(&pod, "reader"), &sh("touch /pod-data/x"), &[], Duration::from_secs(5)).await.expect("exec");
    assert_eq!(String::from_utf8_lossy(&refused.stderr), "touch: /pod-data/x: Read-only file system\n");
}

/// A hostPath is the node's folder: a later pod finds what an earlier one wrote there, where
/// an emptyDir starts empty with each pod.
#[tokio::test(start_paused = true)]
async fn a_host_path_keeps_what_a_pod_wrote_for_the_next_pod_and_an_empty_dir_does_not() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = |script: &str| {
        json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "host", "hostPath": {"path": "/var/lab"}}, {"name": "scratch", "emptyDir": {}}],
            "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "host", "mountPath": "/host"}, {"name": "scratch", "mountPath": "/scratch"}]}],
        })
    };
    lab.create("first", json!({}), spec("echo kept > /host/f; echo lost > /scratch/f")).await;
    lab.until("first", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
    lab.create("second", json!({}), spec("cat /host/f; cat /scratch/f")).await;
    let pod = lab.until("second", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    assert_eq!(log_text(&lab, &pod, "app").await, ["kept", "cat: can't open '/scratch/f': No such file or directory"]);
}

/// The node watches the Services, as the kubelet's informer does: one created after the node
/// began reading them is there for the next pod at once, not after a cache's minute. On the
/// real clock: the watch is the API server's.
#[tokio::test]
async fn a_service_created_after_the_first_pod_is_seen_by_the_next_one_at_once() {
    let server = labkubelet_tests::apiserver::ApiServer::start().await.expect("API double");
    let objects = labkubelet::pods::api_objects::ApiObjects::new(Some(server.admin().await), labkubelet::clock::Clock::new(), Default::default());
    assert!(objects.services().await.expect("listed").is_empty());
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(server.admin().await, "default");
    let service = serde_json::from_value(json!({"metadata": {"name": "fooservice"}, "spec": {"clusterIP": "10.0.0.11", "ports": [{"port": 8765}]}}));
    services.create(&PostParams::default(), &service.expect("a service")).await.expect("create the service");
    eventually("the Service in the node's list", Duration::from_secs(5), async || {
        objects.services().await.ok()?.iter().any(|s| s.metadata.name.as_deref() == Some("fooservice")).then_some(())
    })
    .await;
}

use super::*;
use k8s_openapi::ByteString;
use serde_json::json;

fn config_map() -> ConfigMap {
    let mut cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a.conf": "A", "b.conf": "B"}})).expect("cm");
    cm.binary_data = Some([("blob".to_string(), ByteString(vec![0, 1, 2]))].into());
    cm
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), mode }
}

#[test]
fn a_config_map_projects_every_key_or_the_items_asked_for_with_their_modes() {
    let all = config_map_payload(None, &config_map(), 0o640, false).expect("every key");
    let paths: Vec<(&str, i32)> = all.iter().map(|f| (f.path.as_str(), f.mode)).collect();
    assert_eq!(paths, [("a.conf", 0o640), ("b.conf", 0o640), ("blob", 0o640)]);
    assert_eq!(all[2].data, [0, 1, 2]);
    let items = [item("b.conf", "conf/b", Some(0o400)), item("blob", "raw", None)];
    let some = config_map_payload(Some(&items), &config_map(), DEFAULT_MODE, false).expect("the items");
    assert_eq!(some, [File { path: "conf/b".into(), data: b"B".to_vec(), mode: 0o400 }, File { path: "raw".into(), data: vec![0, 1, 2], mode: DEFAULT_MODE }]);
}

#[test]
fn a_missing_key_fails_the_volume_unless_it_is_optional() {
    let items = [item("a.conf", "a", None), item("nope", "n", None)];
    assert_eq!(config_map_payload(Some(&items), &config_map(), DEFAULT_MODE, false), Err("configmap references non-existent config key: nope".into()));
    let optional = config_map_payload(Some(&items), &config_map(), DEFAULT_MODE, true).expect("optional");
    assert_eq!(optional.len(), 1);
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"user": "YWRtaW4="}})).expect("secret");
    assert_eq!(secret_payload(Some(&items), &secret, DEFAULT_MODE, false), Err("references non-existent secret key: a.conf".into()));
    assert_eq!(secret_payload(None, &secret, DEFAULT_MODE, false).expect("all")[0].data, b"admin");
}

fn pod_with(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"volumes": volumes, "containers": [{"name": "app", "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}, {"name": "info", "mountPath": "/etc/info"}]}]},
    }))
    .expect("a pod")
}

fn inputs(objects: &ApiObjects) -> MountInputs<'_> {
    static NONE: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    MountInputs { objects, node: "node-1", addresses: Addresses { pod_ip: "10.88.0.3", host_ip: "10.1.0.5" }, allocatable: NONE.get_or_init(BTreeMap::new) }
}

/// Without an API server a ConfigMap cannot be read: the wait retries with back-off and
/// says it timed out after 2 min 3 s, naming the volumes as upstream does.
#[tokio::test]
async fn a_volume_that_cannot_be_set_up_is_retried_with_back_off_and_the_wait_times_out() {
    let pod = pod_with(json!([
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "unused", "emptyDir": {}},
    ]));
    let objects = ApiObjects::new(None, crate::clock::Clock::new(), crate::pods::dns::ClusterDns::default());
    let mut mounts = Mounts::default();
    let second = 1_000_000_000;
    let first = mounts.wait_for_attach_and_mount(&pod, inputs(&objects), 0).await.expect_err("the configmap cannot be read");
    assert_eq!(first.events, ["MountVolume.SetUp failed for volume \"config\" : couldn't get configmap default/app-config, no kubeClient defined"]);
    assert_eq!(first.retry_at, second / 2);
    let early = mounts.wait_for_attach_and_mount(&pod, inputs(&objects), second / 4).await.expect_err("still waiting");
    assert!(early.events.is_empty(), "not retried before its back-off: {early:?}");
    let retried = mounts.wait_for_attach_and_mount(&pod, inputs(&objects), second / 2).await.expect_err("still failing");
    assert_eq!((retried.events.len(), retried.retry_at), (1, second / 2 + second), "the delay doubled");
    let late = mounts.wait_for_attach_and_mount(&pod, inputs(&objects), 123 * second).await.expect_err("timed out");
    assert_eq!(
        late.events.last().map(String::as_str),
        Some("Unable to attach or mount volumes: unmounted volumes=[config], unattached volumes=[config info]: timed out waiting for the condition")
    );
    let files = set_up(&pod, &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[1], inputs(&objects)).await.expect("downward API");
    assert_eq!(files, [File { path: "labels".into(), data: b"app=\"web\"".to_vec(), mode: DEFAULT_MODE }]);
}

#[test]
fn a_container_sees_its_volumes_at_their_mount_paths_and_sub_paths() {
    let file = |path: &str, data: &str| File { path: path.into(), data: data.as_bytes().to_vec(), mode: 0o644 };
    let mounts = Mounts { mounted: [("config".to_string(), vec![file("app.conf", "A"), file("nested/b.conf", "B")])].into(), ..Mounts::default() };
    let c: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/config/"},
        {"name": "config", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "config", "mountPath": "/srv/nested", "subPath": "nested"},
        {"name": "absent", "mountPath": "/x"},
    ]}))
    .expect("a container");
    let paths: Vec<String> = mounts.container_files(&c).into_iter().map(|f| f.path).collect();
    assert_eq!(paths, ["/etc/config/app.conf", "/etc/config/nested/b.conf", "/etc/app.conf", "/srv/nested/b.conf"]);
    let updated: Vec<String> = mounts.updatable_files(&c).into_iter().map(|f| f.path).collect();
    assert_eq!(updated, ["/etc/config/app.conf", "/etc/config/nested/b.conf"], "never through subPath");
}

#[test]
fn sub_path_expressions_expand_and_bad_sub_paths_are_refused_in_the_kubelets_words() {
    let mounting = |mount: serde_json::Value| -> Container { serde_json::from_value(json!({"name": "app", "volumeMounts": [mount]})).expect("a container") };
    let env = [("POD_NAME".to_string(), "web-0".to_string())];
    let expanded = with_sub_paths(&mounting(json!({"name": "logs", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/app"})), &env).expect("expands");
    assert_eq!(expanded.volume_mounts.unwrap()[0].sub_path.as_deref(), Some("web-0/app"));
    let refused = |mount| with_sub_paths(&mounting(mount), &env).unwrap_err();
    assert_eq!(refused(json!({"name": "v", "mountPath": "/x", "subPathExpr": "$(NOPE)"})), "missing value for NOPE");
    assert_eq!(refused(json!({"name": "v", "mountPath": "/x", "subPath": "/abs"})), "error SubPath `/abs` must not be an absolute path");
    assert_eq!(refused(json!({"name": "v", "mountPath": "/x", "subPath": "a/../../b"})), "unable to provision SubPath `a/../../b`: must not contain '..'");
}

/// Containers share what they write to an emptyDir (in their pod), a hostPath and a claim
/// (on the node); the files of a ConfigMap come from the host, so it is not shared.
#[test]
fn writable_volumes_are_named_for_the_containers_that_share_them() {
    let mut pod = pod_with(json!([
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "tmp", "hostPath": {"path": "/tmp/"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
    ]));
    let c: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/config"},
        {"name": "cache", "mountPath": "/cache", "readOnly": true},
        {"name": "tmp", "mountPath": "/test-volume", "subPath": "sub-path/"},
        {"name": "data", "mountPath": "/var/lib/db"},
    ]}))
    .expect("a container");
    pod.spec.as_mut().expect("spec").containers = vec![c.clone()];
    let shared: Vec<Option<(String, String, bool)>> =
        container_mounts(&pod, &c).into_iter().map(|m| m.shared.map(|s| (s.name, s.sub_path, s.outlives_pod))).collect();
    let volume = |name: &str, sub: &str, outlives| Some((name.to_string(), sub.to_string(), outlives));
    assert_eq!(shared, [None, volume("pod:u1/cache", "", false), volume("hostpath:/tmp", "sub-path", true), volume("pvc:default/db", "", true)]);
}

/// The e2e suite's KubeletManagedEtcHosts pod: the node's `/etc/hosts` as a hostPath of type
/// `FileOrCreate` is a file in the container, the node's own, not a folder.
#[tokio::test]
async fn a_host_path_of_a_node_file_is_that_file_at_the_mount_path() {
    let pod = pod_with(
        json!([{"name": "host-etc-hosts", "hostPath": {"path": "/etc/hosts", "type": "FileOrCreate"}}, {"name": "f", "hostPath": {"path": "/var/x.log", "type": "File"}}]),
    );
    let objects = ApiObjects::new(None, crate::clock::Clock::new(), crate::pods::dns::ClusterDns::default());
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    let etc_hosts = set_up(&pod, &volumes[0], inputs(&objects)).await.expect("set up");
    assert_eq!(
        etc_hosts,
        [File { path: String::new(), data: b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.0.5\tnode-1\n".to_vec(), mode: 0o644 }]
    );
    let mounts = Mounts { mounted: [("host-etc-hosts".to_string(), etc_hosts)].into(), ..Mounts::default() };
    let c: Container =
        serde_json::from_value(json!({"name": "busybox-3", "volumeMounts": [{"name": "host-etc-hosts", "mountPath": "/etc/hosts-original"}, {"name": "host-etc-hosts", "mountPath": "/etc/hosts"}]}))
            .expect("a container");
    let paths: Vec<String> = mounts.container_files(&c).into_iter().map(|f| f.path).collect();
    assert_eq!(paths, ["/etc/hosts-original", "/etc/hosts"]);
    assert!(container_mounts(&pod, &c).is_empty(), "no folder is made where the file is");
    assert_eq!(set_up(&pod, &volumes[1], inputs(&objects)).await.expect("set up")[0].data, b"", "another file is empty, as FileOrCreate makes it");
}

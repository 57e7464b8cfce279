//! What the kubelet tells the runtime about a pod's sandbox and a container, as upstream's
//! `kuberuntime_sandbox.go` and `generateContainerConfig` build the CRI configs: the pod's
//! labels and annotations with the kubelet's own, and a container's resolved environment
//! with `$(VAR)` references in its command and args expanded.

use super::env::expand_all;
use super::plan::{HASH_ANNOTATION, RestartPolicy, spec_hash};
use crate::runtime::pleg::POD_UID_LABEL;
use crate::runtime::{ContainerConfig, ContainerFile, ContainerMetadata, KeyValue, PodSandboxConfig, PodSandboxMetadata};
use k8s_openapi::api::core::v1::{Container, Pod};

/// The container's kind, for plugins: `init`, `sidecar` or `regular`.
pub const CONTAINER_KIND_ANNOTATION: &str = "labkubelet.io/container-kind";
/// The pod's restart policy, for plugins.
pub const RESTART_POLICY_ANNOTATION: &str = "labkubelet.io/pod-restart-policy";
/// The container's memory limit in bytes, when it has one, for plugins: what the CRI's
/// `memory_limit_in_bytes` tells a runtime, so a plugin can OOM-kill at the limit.
pub const MEMORY_LIMIT_ANNOTATION: &str = "labkubelet.io/memory-limit";

fn kv(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<KeyValue> {
    pairs.into_iter().map(|(key, value)| KeyValue { key, value }).collect()
}

/// The sandbox the kubelet asks for: the pod's labels plus the kubelet's own.
pub fn sandbox_config(pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let m = &pod.metadata;
    let (name, namespace, uid) =
        (m.name.clone().unwrap_or_default(), m.namespace.clone().unwrap_or_else(|| "default".into()), m.uid.clone().unwrap_or_default());
    let mut labels = m.labels.clone().unwrap_or_default();
    labels.insert("io.kubernetes.pod.name".into(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), namespace.clone());
    labels.insert(POD_UID_LABEL.into(), uid.clone());
    let hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| name.clone());
    PodSandboxConfig {
        metadata: PodSandboxMetadata { name, namespace, uid, attempt },
        hostname,
        labels: kv(labels),
        annotations: kv(m.annotations.clone().unwrap_or_default()),
    }
}

/// What the runtime is told about a container. Besides the kubelet's labels and
/// annotations, labkubelet's say what the container is part of, so a plugin can complete
/// init containers and Jobs as a real process would: its kind (`init`, `sidecar`,
/// `regular`) and the pod's restart policy; and its memory limit, where the cgroup would
/// OOM-kill it. `env` is the container's environment as [`super::env`] made it, `files` its
/// volumes' files as [`super::volumes`] set them up.
pub fn container_config(pod: &Pod, c: &Container, init: bool, restart_count: u32, env: &[(String, String)], files: Vec<ContainerFile>) -> ContainerConfig {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let kind = match (init, c.restart_policy.as_deref()) {
        (true, Some("Always")) => "sidecar",
        (true, _) => "init",
        (false, _) => "regular",
    };
    let policy = pod.spec.as_ref().map_or(RestartPolicy::Always, RestartPolicy::of).as_str();
    let mut annotations = vec![
        (HASH_ANNOTATION.to_string(), spec_hash(c)),
        ("io.kubernetes.container.restartCount".to_string(), restart_count.to_string()),
        (CONTAINER_KIND_ANNOTATION.to_string(), kind.to_string()),
        (RESTART_POLICY_ANNOTATION.to_string(), policy.to_string()),
    ];
    let memory_limit = c.resources.as_ref().and_then(|r| r.limits.as_ref()?.get("memory")).and_then(|q| crate::pods::resources::Quantity::parse(&q.0).ok());
    if let Some(limit) = memory_limit {
        annotations.push((MEMORY_LIMIT_ANNOTATION.to_string(), limit.value().to_string()));
    }
    ContainerConfig {
        metadata: ContainerMetadata { name: c.name.clone(), attempt: restart_count },
        image: c.image.clone().unwrap_or_default(),
        command: expand_all(c.command.as_deref().unwrap_or_default(), env),
        args: expand_all(c.args.as_deref().unwrap_or_default(), env),
        env: kv(env.iter().cloned()),
        labels: kv([("io.kubernetes.container.name".to_string(), c.name.clone()), (POD_UID_LABEL.to_string(), uid)]),
        annotations: kv(annotations),
        files,
    }
}

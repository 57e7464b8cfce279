//! What the kubelet tells the runtime about a pod's sandbox and a container, as upstream's
//! `kuberuntime_sandbox.go` and `generateContainerConfig` build the CRI configs: the pod's
//! labels and annotations with the kubelet's own, and a container's resolved environment
//! with `$(VAR)` references in its command and args expanded.

use super::env::expand_all;
use super::plan::{HASH_ANNOTATION, RestartPolicy, spec_hash};
use crate::runtime::pleg::POD_UID_LABEL;
use crate::runtime::{ContainerConfig, ContainerFile, ContainerKind, ContainerMetadata, ContainerSecurity, KeyValue, PodSandboxConfig, PodSandboxMetadata};
use k8s_openapi::api::core::v1::{Container, Pod};

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
    let (hostname, _) = super::etc_hosts::hostname_and_domain(pod);
    PodSandboxConfig {
        metadata: PodSandboxMetadata { name, namespace, uid, attempt },
        hostname,
        labels: kv(labels),
        annotations: kv(m.annotations.clone().unwrap_or_default()),
        pod_ip: None,
    }
}

/// What the runtime is told about a container. Besides the kubelet's labels and
/// annotations, it says what the container is part of, so a plugin can complete init
/// containers and Jobs as a real process would: its kind and the pod's restart policy; and
/// its memory limit, where the cgroup would OOM-kill it. `env` is the container's environment as [`super::env`] made it, `files` its
/// volumes' files as [`super::volumes`] set them up, `mounted` is `c` with its `subPathExpr`s expanded
/// (its mounts are what the container sees).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    mounted: &Container,
    init: bool,
    restart_count: u32,
    env: &[(String, String)],
    files: Vec<ContainerFile>,
) -> ContainerConfig {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let kind = match (init, c.restart_policy.as_deref()) {
        (true, Some("Always")) => ContainerKind::Sidecar,
        (true, _) => ContainerKind::Init,
        (false, _) => ContainerKind::Regular,
    };
    let policy = pod.spec.as_ref().map_or(RestartPolicy::Always, RestartPolicy::of);
    let annotations = [
        (HASH_ANNOTATION.to_string(), spec_hash(c)),
        ("io.kubernetes.container.restartCount".to_string(), restart_count.to_string()),
        ("io.kubernetes.container.terminationMessagePath".to_string(), c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into())),
        ("io.kubernetes.container.terminationMessagePolicy".to_string(), c.termination_message_policy.clone().unwrap_or_else(|| "File".into())),
    ];
    let memory_limit = c.resources.as_ref().and_then(|r| r.limits.as_ref()?.get("memory")).and_then(|q| crate::pods::resources::Quantity::parse(&q.0).ok());
    ContainerConfig {
        metadata: ContainerMetadata { name: c.name.clone(), attempt: restart_count },
        kind,
        restart_policy: policy,
        memory_limit_bytes: memory_limit.and_then(|l| u64::try_from(l.value()).ok()),
        image: c.image.clone().unwrap_or_default(),
        command: expand_all(c.command.as_deref().unwrap_or_default(), env),
        args: expand_all(c.args.as_deref().unwrap_or_default(), env),
        env: kv(env.iter().cloned()),
        labels: kv([("io.kubernetes.container.name".to_string(), c.name.clone()), (POD_UID_LABEL.to_string(), uid)]),
        annotations: kv(annotations),
        files,
        mounts: super::volumes::container_mounts(pod, mounted),
        security: security(pod, c),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
    }
}

/// The container's effective security context (`determineEffectiveSecurityContext`): its
/// own `runAsUser` and `runAsGroup` over the pod's; no_new_privs only where
/// `allowPrivilegeEscalation` is false (`AddNoNewPrivileges`).
fn security(pod: &Pod, c: &Container) -> ContainerSecurity {
    let own = c.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    ContainerSecurity {
        run_as_user: own.and_then(|s| s.run_as_user).or(pod_sc.and_then(|s| s.run_as_user)),
        run_as_group: own.and_then(|s| s.run_as_group).or(pod_sc.and_then(|s| s.run_as_group)),
        read_only_root_filesystem: own.and_then(|s| s.read_only_root_filesystem) == Some(true),
        privileged: own.and_then(|s| s.privileged) == Some(true),
        no_new_privileges: own.and_then(|s| s.allow_privilege_escalation) == Some(false),
    }
}

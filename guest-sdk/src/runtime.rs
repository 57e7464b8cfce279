//! The fake container runtime's bookkeeping: sandbox, container and image records, their
//! state machines and timestamps, ids and addresses, planned exits: what every plugin's lab
//! actions (`triggers`) act on.

use crate::container::{Completion, ContainerCtx, ContainerKind, Exit, RestartPolicy};
use crate::shell::{Fs, Process};
use crate::volumes::{Side, Volumes};
use crate::{ContainerConfig, ContainerState, ErrorCode, LogLine, LogStream, PodSandboxConfig, RuntimeError, TriggerTarget, host};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A pod sandbox the runtime holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub ready: bool,
    pub created_at: i64,
    pub ip: String,
}

/// A container the runtime holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image_ref: String,
    /// When and how the container will exit by itself, as its scenario decided.
    pub planned_exit: Option<(i64, Exit)>,
    pub logs: Vec<LogLine>,
    /// Its main process, while it runs.
    #[serde(default)]
    pub process: Option<Process>,
    /// Its files, while it runs.
    #[serde(default)]
    pub fs: Fs,
    /// Whether the process's exit ends the container ([`crate::Lifetime::Command`]).
    #[serde(default)]
    pub follows_process: bool,
    /// Which change of each shared volume its files show, by mount path.
    #[serde(default)]
    pub(crate) volumes_seen: BTreeMap<String, u64>,
}

/// The most log lines a container keeps; older ones go, as a rotated log file's do.
pub(crate) const MAX_LOG_LINES: usize = 5_000;

impl ContainerRecord {
    /// Appends to the container's log, within [`MAX_LOG_LINES`].
    pub(crate) fn add_logs(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        self.logs.extend(lines);
        if self.logs.len() > MAX_LOG_LINES {
            let cut = self.logs.len() - MAX_LOG_LINES;
            self.logs.drain(..cut);
        }
    }

    /// The container as its shared volumes see it.
    pub(crate) fn side(&mut self) -> Side<'_> {
        Side { running: self.state == ContainerState::Running, mounts: &self.config.mounts, fs: &mut self.fs, seen: &mut self.volumes_seen }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) digest_ref: String,
    pub(crate) size: u64,
}

/// Faults any plugin built on the fake runtime can be told to show by a lab trigger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Faults {
    pub(crate) hang: bool,
    pub(crate) fail_pulls: Option<String>,
}

/// The runtime's bookkeeping. Scenario triggers get it to act on containers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FakeRuntime {
    pub(crate) sandboxes: BTreeMap<String, SandboxRecord>,
    pub(crate) containers: BTreeMap<String, ContainerRecord>,
    pub(crate) images: BTreeMap<String, ImageRecord>,
    next_ip: u32,
    pub(crate) faults: Faults,
    /// No planned exit comes before this: calls skip the scan of all containers until then.
    #[serde(default)]
    pub(crate) next_exit: Option<i64>,
    /// The volumes containers write to, shared by those that mount them.
    #[serde(default)]
    pub(crate) volumes: Volumes,
    /// How long finishing containers run: the plugin's configuration, not its state.
    #[serde(skip)]
    pub(crate) completion: Completion,
}

impl FakeRuntime {
    /// Host-clock time now.
    pub fn now(&self) -> i64 {
        host::now()
    }

    pub fn sandboxes(&self) -> impl Iterator<Item = &SandboxRecord> {
        self.sandboxes.values()
    }

    pub fn containers(&self) -> impl Iterator<Item = &ContainerRecord> {
        self.containers.values()
    }

    /// The ids of the containers a trigger target names, running or exited: those whose pod's
    /// namespace, pod's name and container name equal the target's; a field the target leaves
    /// out (`--namespace`, `--pod`, `--container` not given) matches any. A static pod's name is
    /// its mirror pod's (`web-<node>`).
    pub fn matching(&self, target: &TriggerTarget) -> Vec<String> {
        self.containers
            .values()
            .filter(|c| {
                let pod = self.sandboxes.get(&c.sandbox_id).map(|s| &s.config.metadata);
                let ns_ok = target.pod_namespace.as_ref().is_none_or(|ns| pod.is_some_and(|p| &p.namespace == ns));
                let name_ok = target.pod_name.as_ref().is_none_or(|n| pod.is_some_and(|p| &p.name == n));
                let ctr_ok = target.container.as_ref().is_none_or(|n| &c.config.metadata.name == n);
                ns_ok && name_ok && ctr_ok
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// The scenario's view of a container.
    pub fn ctx(&self, id: &str) -> Option<ContainerCtx> {
        let c = self.containers.get(id)?;
        let mut ctx = self.ctx_of(&c.config, self.sandboxes.get(&c.sandbox_id));
        ctx.id = c.id.clone();
        ctx.started_at = (c.started_at != 0).then_some(c.started_at);
        Some(ctx)
    }

    /// The scenario's view of a container about to be created in a sandbox (it has no id yet).
    pub(crate) fn new_ctx(&self, sandbox_id: &str, config: &ContainerConfig) -> ContainerCtx {
        self.ctx_of(config, self.sandboxes.get(sandbox_id))
    }

    fn ctx_of(&self, config: &ContainerConfig, pod: Option<&SandboxRecord>) -> ContainerCtx {
        let meta = pod.map(|s| &s.config.metadata);
        let (kind, restart_policy) = kind_of(config);
        ContainerCtx {
            id: String::new(),
            name: config.metadata.name.clone(),
            image: config.image.clone(),
            command: config.command.clone(),
            args: config.args.clone(),
            env: config.env.clone(),
            attempt: config.metadata.attempt,
            kind,
            restart_policy,
            pod_name: meta.map(|m| m.name.clone()).unwrap_or_default(),
            pod_namespace: meta.map(|m| m.namespace.clone()).unwrap_or_default(),
            pod_uid: meta.map(|m| m.uid.clone()).unwrap_or_default(),
            pod_labels: pod.map(|s| s.config.labels.clone()).unwrap_or_default(),
            pod_annotations: pod.map(|s| s.config.annotations.clone()).unwrap_or_default(),
            started_at: None,
            memory_limit: config.memory_limit_bytes,
            completion: self.completion,
        }
    }

    /// Ends a running container now, as if its process died.
    pub fn kill(&mut self, id: &str, exit: Exit) -> bool {
        let now = self.now();
        match self.containers.get_mut(id) {
            Some(c) if c.state == ContainerState::Running => {
                finish(c, now, exit);
                true
            }
            _ => false,
        }
    }

    /// Shows each running container the latest files of the volumes it shares.
    pub(crate) fn share_in(&mut self) {
        self.volumes.share_in(self.containers.values_mut().map(ContainerRecord::side));
    }

    /// Hands what containers wrote to their shared volumes over, and lets an ended
    /// container's files go.
    pub(crate) fn share_out(&mut self) {
        self.volumes.share_out(self.containers.values_mut().map(ContainerRecord::side));
    }

    /// Makes the next call look at the containers again (a process started, say).
    pub(crate) fn look_again_at(&mut self, at: i64) {
        self.next_exit = Some(self.next_exit.map_or(at, |n| n.min(at)));
    }

    /// A new sandbox or container id: 256 random bits, never one this runtime holds.
    pub(crate) fn new_id(&self) -> String {
        loop {
            let id: String = (0..4).map(|_| format!("{:016x}", host::random_u64())).collect();
            if !self.sandboxes.contains_key(&id) && !self.containers.contains_key(&id) {
                return id;
            }
        }
    }

    /// A new sandbox's address: the one the host allocated (`pod-ip`), else the next of this
    /// runtime's own.
    pub(crate) fn new_ip(&mut self, config: &PodSandboxConfig) -> String {
        if let Some(ip) = &config.pod_ip {
            return ip.clone();
        }
        self.next_ip += 1;
        let n = self.next_ip;
        format!("10.88.{}.{}", (n / 250) % 256, n % 250 + 2)
    }

    pub(crate) fn container(&self, id: &str) -> Result<&ContainerRecord, RuntimeError> {
        self.containers.get(id).ok_or_else(|| not_found("container", id))
    }

    pub(crate) fn container_mut(&mut self, id: &str) -> Result<&mut ContainerRecord, RuntimeError> {
        self.containers.get_mut(id).ok_or_else(|| not_found("container", id))
    }
}

/// The container's kind and its pod's restart policy, as the host's config says.
pub(crate) fn kind_of(config: &ContainerConfig) -> (ContainerKind, RestartPolicy) {
    use crate::bindings::labkubelet::runtime::types as wit;
    let kind = match config.kind {
        wit::ContainerKind::Init => ContainerKind::Init,
        wit::ContainerKind::Sidecar => ContainerKind::Sidecar,
        wit::ContainerKind::Regular => ContainerKind::Regular,
    };
    let policy = match config.restart_policy {
        wit::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
        wit::RestartPolicy::Never => RestartPolicy::Never,
        wit::RestartPolicy::Always => RestartPolicy::Always,
    };
    (kind, policy)
}

/// The annotations the kubelet puts on a container (upstream's `newContainerAnnotations`)
/// that say where its termination message is, and whether its log stands in for it.
pub(crate) const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub(crate) const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The most of a termination message file the kubelet reads (its end), and of the log when
/// the log stands in: the last 80 lines, at most 2 KiB.
const MAX_TERMINATION_MESSAGE: usize = 4096;
const MAX_TERMINATION_LOG_LINES: usize = 80;
const MAX_TERMINATION_LOG_BYTES: usize = 2048;

/// The message the kubelet shows for a container that ended with `code`, as upstream's
/// `getTerminationMessage` reads it: the file at `terminationMessagePath` when it holds
/// anything; else, with `FallbackToLogsOnError` and a failure, the end of the log.
fn termination_message(c: &ContainerRecord, code: i32) -> Option<String> {
    let annotation = |key: &str| c.config.annotations.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str());
    let written = annotation(TERMINATION_MESSAGE_PATH).filter(|p| !p.is_empty()).and_then(|p| c.fs.read(p).ok()).unwrap_or_default();
    if !written.is_empty() {
        let tail = &written[written.len().saturating_sub(MAX_TERMINATION_MESSAGE)..];
        return Some(String::from_utf8_lossy(tail).into_owned());
    }
    if annotation(TERMINATION_MESSAGE_POLICY) != Some("FallbackToLogsOnError") || code == 0 {
        return None;
    }
    let lines: Vec<&str> = c.logs.iter().rev().take(MAX_TERMINATION_LOG_LINES).map(|l| l.text.as_str()).collect();
    let text = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
    let mut start = text.len().saturating_sub(MAX_TERMINATION_LOG_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Some(text[start..].to_string()).filter(|t| !t.is_empty())
}

/// Ends a running container. A container whose end its scenario decided, or whose program
/// the shell does not know, gets a line saying so; one whose command the shell ran has only
/// what the command wrote. Its termination message is read before its process goes; its files
/// go after the call ([`FakeRuntime::share_out`]), once what it wrote to shared volumes is kept.
pub(crate) fn finish(c: &mut ContainerRecord, at: i64, exit: Exit) {
    c.state = ContainerState::Exited;
    c.finished_at = at;
    c.planned_exit = None;
    let message = termination_message(c, exit.code);
    let simulated = !c.follows_process || c.process.as_ref().is_some_and(|p| p.state() == crate::shell::ProcessState::External);
    if simulated {
        c.logs.push(LogLine {
            time: at,
            stream: LogStream::Stderr,
            text: format!("{} exited with code {} ({})", c.config.metadata.name, exit.code, exit.reason),
        });
    }
    c.process = None;
    c.exit_code = exit.code;
    c.reason = exit.reason;
    c.message = message.unwrap_or(exit.message);
}

pub(crate) fn not_found(kind: &str, id: &str) -> RuntimeError {
    RuntimeError { code: ErrorCode::NotFound, message: format!("{kind} \"{id}\" not found") }
}

/// Image names as a registry resolves them: `nginx` is `docker.io/library/nginx:latest`.
pub(crate) fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or(name);
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = match (has_registry, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

/// A stable sha256-shaped digest of an image name, so the same image has the same id on every node.
pub(crate) fn digest_of(name: &str) -> String {
    (0u8..4)
        .map(|salt| {
            let mut h = DefaultHasher::new();
            (salt, name).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

pub(crate) fn repo_of(normalized: &str) -> &str {
    let without_digest = normalized.split('@').next().unwrap_or(normalized);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_resolve_like_a_registry() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(normalize_image("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(normalize_image("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repo_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repo_of("docker.io/library/nginx:1.25"), "docker.io/library/nginx");
    }
}

//! What a scenario knows about a container and answers about it: the container in its pod
//! ([`ContainerCtx`]), how long it lives ([`Lifetime`]), how it ends ([`Exit`], [`Stop`]).

use crate::KeyValue;
use std::time::Duration;

/// How a container ends, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    pub code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    pub message: String,
}

impl Exit {
    /// Exit code 0, reason `Completed`.
    pub fn completed() -> Self {
        Exit { code: 0, reason: "Completed".into(), message: String::new() }
    }

    /// A non-zero exit code, reason `Error`.
    pub fn error(code: i32) -> Self {
        Exit { code, reason: "Error".into(), message: String::new() }
    }

    /// Killed by the kernel's OOM killer: exit code 137, reason `OOMKilled`.
    pub fn oom_killed() -> Self {
        Exit { code: 137, reason: "OOMKilled".into(), message: String::new() }
    }

    pub fn with_message(mut self, message: &str) -> Self {
        self.message = message.into();
        self
    }
}

/// What a started container does.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifetime {
    /// What its command does: the [`crate::shell`] runs it, and its exit status ends the
    /// container (`Completed` for 0, `Error` otherwise). A program the shell does not know
    /// runs until stopped (an init or Job container's completes after [`Completion`]).
    Command,
    /// Runs until it is stopped or killed, whatever its command does.
    Forever,
    /// Exits after this long with this status, whatever its command does.
    ExitsAfter(Duration, Exit),
}

impl Lifetime {
    pub fn exits_after(after: Duration, exit: Exit) -> Self {
        Lifetime::ExitsAfter(after, exit)
    }
}

/// What a container does when the kubelet stops it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// As its process takes SIGTERM: a command the shell runs is PID 1, which ignores it
    /// (so the stop takes the grace period and ends with 137, as busybox's `sh` does); a
    /// program the shell does not know exits at once with 0.
    AsItsProcess,
    /// Exits on SIGTERM, at once.
    Exits(Exit),
    /// Ignores SIGTERM: the stop call takes the whole grace period, then the container is
    /// SIGKILLed (exit code 137).
    IgnoresSigterm,
}

/// What a running container uses of the node, as the eviction manager and `kubectl top` read
/// it. A `None` leaves the figure to the host, which models it from the pod (its
/// `labkubelet.io/cpu-usage` or `labkubelet.io/memory-usage` annotation, its request, its
/// limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The CPU it uses now, in billionths of a core (1,000,000 is `1m`).
    pub cpu_nano_cores: Option<u64>,
    /// The memory working set, in bytes.
    pub memory_bytes: Option<u64>,
    /// What the container's writable layer and logs take of the node's filesystem, in bytes.
    pub disk_bytes: Option<u64>,
}

impl Usage {
    /// Uses this much memory; the disk is left to the host.
    pub fn memory(bytes: u64) -> Self {
        Usage { memory_bytes: Some(bytes), ..Usage::default() }
    }

    /// Uses this many thousandths of a core (`250` is what `kubectl top` shows as `250m`);
    /// memory and disk are left to the host.
    pub fn cpu_millicores(millicores: u64) -> Self {
        Usage { cpu_nano_cores: Some(millicores.saturating_mul(1_000_000)), ..Usage::default() }
    }
}

/// Which part of the pod a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerKind {
    /// One of `spec.containers`.
    #[default]
    Regular,
    /// One of `spec.initContainers`: runs to completion before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: runs beside the pod's containers.
    Sidecar,
}

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// How long init and Job containers whose program the shell does not know run before they
/// complete, set for every plugin by the `initContainerSeconds` and `runToCompletionSeconds`
/// keys of its configuration (a command the shell runs ends when it ends).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    /// Init containers exit 0 this long after they start (default 1 s).
    pub init: Duration,
    /// Containers of pods whose `restartPolicy` is `OnFailure` or `Never` (Jobs) exit 0 this
    /// long after they start (default 5 s).
    pub run_to_completion: Duration,
}

impl Default for Completion {
    fn default() -> Self {
        Completion { init: Duration::from_secs(1), run_to_completion: Duration::from_secs(5) }
    }
}

/// A container as a scenario sees it: the container and the pod it belongs to.
#[derive(Debug, Clone, Default)]
pub struct ContainerCtx {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Its environment, as the host resolved it (`env`, `envFrom`, service links).
    pub env: Vec<KeyValue>,
    /// How many times this container of this pod was created before.
    pub attempt: u32,
    pub kind: ContainerKind,
    pub restart_policy: RestartPolicy,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub pod_labels: Vec<KeyValue>,
    pub pod_annotations: Vec<KeyValue>,
    /// When the container started (host-clock ns), if it has.
    pub started_at: Option<i64>,
    /// The container's memory limit in bytes, if it has one: where its cgroup OOM-kills it.
    pub memory_limit: Option<u64>,
    /// How long finishing containers run, from the plugin's configuration.
    pub completion: Completion,
}

impl ContainerCtx {
    /// A label of the pod.
    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.pod_labels, key)
    }

    /// An annotation of the pod.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.pod_annotations, key)
    }

    /// What a healthy runtime's container does: what its command says ([`Lifetime::Command`]).
    ///
    /// ```
    /// use labkubelet_guest::*;
    /// assert_eq!(ContainerCtx::default().default_lifetime(), Lifetime::Command);
    /// ```
    pub fn default_lifetime(&self) -> Lifetime {
        Lifetime::Command
    }
}

pub(crate) fn find<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
}

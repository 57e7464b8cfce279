//! The CRI-shaped container runtime the kubelet logic talks to.
//!
//! The vocabulary (sandboxes, containers, images, conditions) is the WIT contract's, so
//! what a plugin answers reaches the kubelet logic unchanged. [`ContainerRuntime`] is
//! implemented over plugins by [`crate::plugin::PluginRuntime`]; tests may implement it
//! directly. [`pleg`] relists it into the [`pod_cache`] the pod workers read; [`state`] keeps its state across
//! agent restarts; [`ipam`] gives its sandboxes their addresses; [`outage`] takes it down
//! for a lab.

pub mod ipam;
pub mod outage;
pub mod pleg;
pub mod pod_cache;
pub mod state;

use async_trait::async_trait;
use std::time::Duration;

pub use crate::plugin::bindings::labkubelet::runtime::lab::TriggerTarget;
pub use crate::plugin::bindings::labkubelet::runtime::types::{
    AuthConfig, Container, ContainerConfig, ContainerFile, ContainerKind, ContainerMetadata, ContainerMount, ContainerSecurity, ContainerState, ContainerStats,
    ContainerStatus, ErrorCode, ExecProbe, ExecResult, HttpGetAction, HttpRequest, HttpResponse, Image, KeyValue, LogLine, LogStream, PodSandbox,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxState, PodSandboxStatus, ProbeAction, ProbeKind, ProbeOutcome, ProbeResult, RestartPolicy,
    RuntimeCondition, SessionOpened, SessionOutput, SharedVolume, VersionInfo,
};

impl ExecResult {
    /// Its stdout then its stderr as text, as probes, hooks and terminals show them.
    pub fn output(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.stdout), String::from_utf8_lossy(&self.stderr))
    }
}

/// Why a runtime call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime answered with an error: the message is what a user should see.
    #[error("{message}")]
    Runtime { code: ErrorCode, message: String },
    /// The plugin trapped (a panic, an out-of-bounds access, a memory limit).
    #[error("plugin {plugin} failed in {method}: {detail}")]
    Trap { plugin: String, method: &'static str, detail: String },
    /// The plugin ran longer than its per-call deadline.
    #[error("plugin {plugin} exceeded its {deadline:?} deadline in {method}")]
    Deadline { plugin: String, method: &'static str, deadline: Duration },
}

impl RuntimeError {
    /// True when the runtime said the thing asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Runtime { code: ErrorCode::NotFound, .. })
    }

    pub(crate) fn not_found(message: String) -> Self {
        RuntimeError::Runtime { code: ErrorCode::NotFound, message }
    }
}

/// A container runtime, shaped like the CRI RuntimeService and ImageService.
///
/// Image calls take the pod that needs the image, when there is one: a runtime plugin
/// serves a set of pods, and the pod decides which plugin's image store is asked.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    async fn version(&self) -> Result<VersionInfo, RuntimeError>;
    /// The runtime conditions (RuntimeReady, NetworkReady) the node's Ready depends on.
    async fn status(&self) -> Result<Vec<RuntimeCondition>, RuntimeError>;

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError>;
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, RuntimeError>;

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Replaces the files of a running container's volumes (a ConfigMap or Secret changed).
    async fn update_container_files(&self, id: &str, files: &[ContainerFile]) -> Result<(), RuntimeError>;
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError>;
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError>;
    /// What the running containers use, as far as the runtime says (CRI ListContainerStats).
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, RuntimeError>;

    /// Pulls with the credentials the kubelet found for the image's registry, if any.
    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>, pod: Option<&PodSandboxConfig>) -> Result<String, RuntimeError>;
    async fn image_status(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<Option<Image>, RuntimeError>;
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError>;
    async fn remove_image(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError>;

    /// Log lines at or after `since` (ns since the epoch), then at most the last `tail`.
    async fn container_logs(&self, id: &str, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError>;
    async fn exec_sync(&self, id: &str, cmd: &[String], stdin: &[u8], timeout: Duration) -> Result<ExecResult, RuntimeError>;
    /// Opens an interactive shell (`cmd` is a shell alone) for `kubectl exec -it`.
    async fn exec_session_open(&self, id: &str, cmd: &[String]) -> Result<SessionOpened, RuntimeError>;
    /// Runs a line typed into an open shell.
    async fn exec_session_line(&self, id: &str, session: u64, line: &str) -> Result<SessionOutput, RuntimeError>;
    async fn exec_session_close(&self, id: &str, session: u64);
    /// What a pod's server on `port` answers (`kubectl port-forward`); an error when nothing
    /// listens there.
    async fn serve_http(&self, pod_sandbox_id: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, RuntimeError>;
    async fn probe(&self, id: &str, kind: ProbeKind, action: &ProbeAction) -> Result<ProbeResult, RuntimeError>;
}

//! A node's container runtime going down, or its pod network, as a lab makes it
//! (`labkubelet node runtime-down`, `network-down`, undone by `heal`).
//!
//! A runtime that is down refuses every call the way a dead containerd socket does, so the
//! kubelet logic sees what it would see: the status check fails (after 30 s Ready turns
//! False with "container runtime is down"), PLEG's relist fails (after 3 min "PLEG is not
//! healthy"), and pod syncs fail. A network that is down makes the runtime report
//! `NetworkReady=false`, as containerd does without a CNI configuration, and refuses new
//! sandboxes; containers already running keep running.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which parts of a node's runtime are down.
#[derive(Debug, Default)]
pub struct Outage {
    runtime: AtomicBool,
    network: AtomicBool,
}

impl Outage {
    /// Takes the runtime down; false if it was down already.
    pub fn runtime_down(&self) -> bool {
        !self.runtime.swap(true, Ordering::SeqCst)
    }

    /// Takes the pod network down; false if it was down already.
    pub fn network_down(&self) -> bool {
        !self.network.swap(true, Ordering::SeqCst)
    }

    /// Brings both back; returns what was down ("runtime", "network").
    pub fn restore(&self) -> Vec<&'static str> {
        let mut restored = Vec::new();
        if self.runtime.swap(false, Ordering::SeqCst) {
            restored.push("runtime");
        }
        if self.network.swap(false, Ordering::SeqCst) {
            restored.push("network");
        }
        restored
    }

    fn runtime_is_down(&self) -> Result<(), RuntimeError> {
        if self.runtime.load(Ordering::SeqCst) {
            return Err(RuntimeError::Runtime { code: ErrorCode::Unavailable, message: RUNTIME_DOWN.to_string() });
        }
        Ok(())
    }

    fn network_is_down(&self) -> bool {
        self.network.load(Ordering::SeqCst)
    }
}

/// What a call to a containerd that is not running answers.
pub const RUNTIME_DOWN: &str = "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing dial unix /run/containerd/containerd.sock: connect: connection refused\"";
/// containerd's NetworkReady reason and message with no CNI network.
pub const NETWORK_DOWN_REASON: &str = "NetworkPluginNotReady";
pub const NETWORK_DOWN_MESSAGE: &str = "Network plugin returns error: cni plugin not initialized";

/// A runtime that answers as its [`Outage`] says: refusing everything while down.
///
/// ```
/// # async fn demo(plugins: std::sync::Arc<dyn labkubelet::runtime::ContainerRuntime>) {
/// use labkubelet::runtime::{ContainerRuntime, outage::{Outage, WithOutage}};
/// let outage = std::sync::Arc::new(Outage::default());
/// let runtime = WithOutage::new(plugins, outage.clone());
/// outage.runtime_down();
/// assert!(runtime.status().await.is_err());
/// # }
/// ```
pub struct WithOutage {
    inner: Arc<dyn ContainerRuntime>,
    outage: Arc<Outage>,
}

impl WithOutage {
    pub fn new(inner: Arc<dyn ContainerRuntime>, outage: Arc<Outage>) -> Self {
        WithOutage { inner, outage }
    }
}

#[async_trait]
impl ContainerRuntime for WithOutage {
    async fn version(&self) -> Result<VersionInfo, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.version().await
    }

    async fn status(&self) -> Result<Vec<RuntimeCondition>, RuntimeError> {
        self.outage.runtime_is_down()?;
        let mut conditions = self.inner.status().await?;
        if self.outage.network_is_down() {
            conditions.retain(|c| c.condition_type != "NetworkReady");
            conditions.push(RuntimeCondition {
                condition_type: "NetworkReady".into(),
                status: false,
                reason: NETWORK_DOWN_REASON.into(),
                message: NETWORK_DOWN_MESSAGE.into(),
            });
        }
        Ok(conditions)
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        self.outage.runtime_is_down()?;
        if self.outage.network_is_down() {
            let message = format!("failed to setup network for sandbox of pod {:?}: cni plugin not initialized", config.metadata.name);
            return Err(RuntimeError::Runtime { code: ErrorCode::Failed, message });
        }
        self.inner.run_pod_sandbox(config).await
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.stop_pod_sandbox(id).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.remove_pod_sandbox(id).await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.pod_sandbox_status(id).await
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.list_pod_sandboxes().await
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.create_container(sandbox_id, config).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.start_container(id).await
    }

    async fn update_container_files(&self, id: &str, files: &[ContainerFile]) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.update_container_files(id, files).await
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.stop_container(id, timeout).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.remove_container(id).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.container_status(id).await
    }

    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.list_containers().await
    }

    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.list_container_stats().await
    }

    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>, pod: Option<&PodSandboxConfig>) -> Result<String, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.pull_image(image, auth, pod).await
    }

    async fn image_status(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<Option<Image>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.image_status(image, pod).await
    }

    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.list_images().await
    }

    async fn remove_image(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.remove_image(image, pod).await
    }

    async fn container_logs(&self, id: &str, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.container_logs(id, since, tail).await
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], stdin: &[u8], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.exec_sync(id, cmd, stdin, timeout).await
    }

    async fn exec_session_open(&self, id: &str, cmd: &[String]) -> Result<SessionOpened, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.exec_session_open(id, cmd).await
    }

    async fn exec_session_line(&self, id: &str, session: u64, line: &str) -> Result<SessionOutput, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.exec_session_line(id, session, line).await
    }

    async fn exec_session_close(&self, id: &str, session: u64) {
        self.inner.exec_session_close(id, session).await
    }

    async fn serve_http(&self, pod_sandbox_id: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.serve_http(pod_sandbox_id, port, request).await
    }

    async fn probe(&self, id: &str, kind: ProbeKind, action: &ProbeAction) -> Result<ProbeResult, RuntimeError> {
        self.outage.runtime_is_down()?;
        self.inner.probe(id, kind, action).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_says_what_was_down() {
        let outage = Outage::default();
        assert!(outage.restore().is_empty());
        assert!(outage.network_down());
        assert!(!outage.network_down(), "down already");
        assert!(outage.runtime_down());
        assert_eq!(outage.restore(), ["runtime", "network"]);
        assert!(outage.runtime_is_down().is_ok());
    }
}

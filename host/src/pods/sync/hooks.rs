//! Lifecycle hooks, as upstream's handler runner (`pkg/kubelet/lifecycle/handlers.go`) runs
//! them: an `exec` hook in the container, its failure in the kubelet's words.

use super::terminate::{MIN_GRACE_SECONDS, grace_of};
use super::{AFTER_ERROR, PodSync, pod_name};
use crate::events::EventType;
use crate::pods::probes::container_port;
use crate::runtime::{HttpRequest, KeyValue, PodSandboxState};
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;

/// How long a `postStart` hook may run (upstream gives none; the runtime request timeout).
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

impl PodSync {
    /// Runs the container's `postStart` hook, if it has one, as upstream's startContainer
    /// does: false when it failed, and then the container is killed (`Killing`
    /// `FailedPostStartHook`, within the grace period) and waits `PostStartHookError`.
    pub(super) async fn post_start(&mut self, pod: &Pod, c: &Container, init: bool, id: &str) -> bool {
        let on = Some((c, init));
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else { return true };
        let Some(message) = self.run_hook(pod, c, id, hook, HOOK_TIMEOUT).await else { return true };
        self.event(pod, on, EventType::Warning, "FailedPostStartHook", &message);
        self.event(pod, on, EventType::Normal, "Killing", "FailedPostStartHook");
        let grace = Duration::from_secs(u64::try_from(grace_of(pod).max(MIN_GRACE_SECONDS)).unwrap_or(2));
        if let Err(e) = self.ctx.runtime.stop_container(id, grace).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.name, "stopping a container whose postStart hook failed: {e}");
        }
        self.start_error(c, "PostStartHookError", message, AFTER_ERROR);
        false
    }

    /// Runs a container's `postStart` or `preStop` hook in it, as upstream's handler runner
    /// does: `None` when it succeeded, else the message of its failure in the kubelet's words.
    /// An `exec` hook runs its command in the container; an `httpGet` hook is a GET to the
    /// server of the pod at its host (this pod when none is given).
    pub(super) async fn run_hook(&self, pod: &Pod, c: &Container, id: &str, hook: &LifecycleHandler, timeout: Duration) -> Option<String> {
        if let Some(get) = &hook.http_get {
            return self.http_hook(pod, c, get).await;
        }
        let command = hook.exec.as_ref()?.command.clone().unwrap_or_default();
        let (error, output) = match self.ctx.runtime.exec_sync(id, &command, &[], timeout).await {
            Ok(done) if done.exit_code == 0 => return None,
            Ok(done) => (format!("command '{}' exited with {}: {}", command.join(" "), done.exit_code, String::from_utf8_lossy(&done.stderr)), done.output()),
            Err(e) => (e.to_string(), String::new()),
        };
        Some(format!(
            "Exec lifecycle hook ([{}]) for Container {:?} in Pod {:?} failed - error: {error}, message: {output:?}",
            command.join(" "),
            c.name,
            pod_name(pod)
        ))
    }

    /// An `httpGet` hook, as upstream's `runHTTPHandler`: a GET of `http://host:port/path`,
    /// its host the pod's IP when none is given, a named port the container's. Any answer
    /// succeeds, whatever its status; a connection that fails is the failure, and the event
    /// then carries the (empty) body, as 1.20's does. A host that is no pod of this node is
    /// beyond the simulated network: the hook succeeds.
    async fn http_hook(&self, pod: &Pod, c: &Container, get: &HTTPGetAction) -> Option<String> {
        let own_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let host = get.host.clone().filter(|h| !h.is_empty()).unwrap_or(own_ip);
        // An empty port name is 80 for a hook; a port it cannot resolve is no call.
        let port = match &get.port {
            IntOrString::String(name) if name.is_empty() => 80,
            port => Some(container_port(port, c)).filter(|p| *p != 0)?,
        };
        let sandbox = self.sandbox_at(&host).await?;
        let path = get.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let headers = get.http_headers.iter().flatten().map(|h| KeyValue { key: h.name.clone(), value: h.value.clone() }).collect();
        let request = HttpRequest { method: "GET".into(), path, headers };
        match self.ctx.runtime.serve_http(&sandbox, port, &request).await {
            Ok(_) => None,
            Err(e) => {
                tracing::info!(pod = %pod_name(pod), container = %c.name, "Http lifecycle hook ({}) failed - error: {e}", request.path);
                Some(String::new())
            }
        }
    }

    /// The ready sandbox that holds `ip`: from PLEG's view, else (a pod that started since)
    /// from the runtime.
    async fn sandbox_at(&self, ip: &str) -> Option<String> {
        let cached = self.ctx.pod_cache.pods().iter().find_map(|(_, p)| p.ready_sandbox().filter(|s| s.ip == ip).map(|s| s.id.clone()));
        if cached.is_some() {
            return cached;
        }
        let runtime = &self.ctx.runtime;
        for s in runtime.list_pod_sandboxes().await.ok()?.into_iter().filter(|s| s.state == PodSandboxState::Ready) {
            if runtime.pod_sandbox_status(&s.id).await.is_ok_and(|status| status.ip == ip) {
                return Some(s.id);
            }
        }
        None
    }
}

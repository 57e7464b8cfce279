//! Lifecycle hooks, as upstream's handler runner (`pkg/kubelet/lifecycle/handlers.go`) runs
//! them: an `exec` hook in the container, its failure in the kubelet's words.

use super::terminate::{MIN_GRACE_SECONDS, grace_of};
use super::{AFTER_ERROR, PodSync, pod_name};
use crate::events::EventType;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
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
    /// An `exec` hook runs its command in the container; an `httpGet` hook succeeds (the
    /// container's servers are not simulated).
    pub(super) async fn run_hook(&self, pod: &Pod, c: &Container, id: &str, hook: &LifecycleHandler, timeout: Duration) -> Option<String> {
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
}

//! Starting a container, as upstream's startContainer does: the image (by pull policy),
//! the environment (`CreateContainerConfigError`), the CRI config with the volumes' files,
//! create and start (`CreateContainerError`, `RunContainerError`), the `postStart` hook; and
//! the restart back-off (CrashLoopBackOff) before a dead container is started again.

use super::{AFTER_CONFIG_ERROR, AFTER_ERROR, PodSync, digest, nanos, pod_name, restarts_seen};
use crate::clock::go_duration;
use crate::events::EventType;
use crate::pods::backoff::BackoffKey;
use crate::pods::cri_config::container_config;
use crate::pods::downward::Addresses;
use crate::pods::env::{EnvInputs, make_environment};
use crate::pods::etc_hosts;
use crate::pods::plan::spec_hash;
use crate::pods::status::Waiting;
use crate::pods::volumes::with_sub_paths;
use crate::runtime::PodSandboxConfig;
use crate::runtime::pod_cache::RuntimePod;
use k8s_openapi::api::core::v1::{Container, Pod};

impl PodSync {
    /// Starts the container's newest instance, dead or never started, again unless it is
    /// in back-off (CrashLoopBackOff).
    pub(super) async fn restart_with_backoff(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        rt: &RuntimePod,
    ) -> bool {
        // A container that never ran counts from its creation.
        let finished = rt.latest(&c.name).map_or(self.now(), |d| if d.finished_at > 0 { d.finished_at } else { d.created_at });
        // Upstream's stable key holds the container's hash: a changed definition (a new image)
        // starts without the old back-off.
        let key = BackoffKey::Restart { container: c.name.clone(), spec_hash: spec_hash(c) };
        // A start error just reported stays visible a moment before the back-off shows.
        if let Some(at) = self.start_errors.get(&c.name).copied().filter(|at| self.now() < at + nanos(AFTER_ERROR)) {
            self.wake_at(at + nanos(AFTER_ERROR));
            return false;
        }
        if let Some(end) = self.backoff.expiry_since(&key, finished) {
            let delay = go_duration(self.backoff.get(&key));
            let message = format!("back-off {delay} restarting failed container={} pod={}", c.name, pod_name(pod));
            self.waiting.insert(c.name.clone(), Waiting { reason: "CrashLoopBackOff".into(), message });
            let event = format!("Back-off restarting failed container {} in pod {}", c.name, pod_name(pod));
            self.event(pod, Some((c, init)), EventType::Warning, "BackOff", &event);
            self.wake_at(end);
            return false;
        }
        self.backoff.next(&key, finished);
        self.start(pod, c, init, sandbox_id, sandbox, rt).await
    }

    /// Pulls (by policy), creates and starts one container, recording what went wrong as
    /// the kubelet shows it; `rt` is the pod as the runtime had it before, whose newest
    /// instance of the container (if any) this one follows. Returns whether the runtime
    /// changed.
    pub(super) async fn start(&mut self, pod: &Pod, c: &Container, init: bool, sandbox_id: &str, sandbox: &PodSandboxConfig, rt: &RuntimePod) -> bool {
        // The runtime counts attempts; one that lost the container (its plugin's state)
        // carries on from the count the server has, as the kubelet does from its log folder.
        let attempt = rt.latest(&c.name).map_or_else(|| restarts_seen(pod, &c.name, init), |l| l.metadata.attempt + 1);
        let image = c.image.clone().unwrap_or_default();
        let on = Some((c, init));
        if let Err(waiting) = self.pull(pod, c, init, &image, sandbox).await {
            self.waiting.insert(c.name.clone(), waiting);
            return false;
        }
        let runtime = self.ctx.runtime.clone();
        let pod_ip = match rt.sandboxes.iter().find(|s| s.id == sandbox_id) {
            Some(s) => s.ip.clone(),
            None => runtime.pod_sandbox_status(sandbox_id).await.map(|s| s.ip).unwrap_or_default(),
        };
        let ctx = self.ctx.clone();
        let inputs = EnvInputs { pod, container: c, addresses: Addresses { pod_ip: &pod_ip, host_ip: &ctx.node_ip }, allocatable: &ctx.allocatable };
        let env = match make_environment(&ctx.objects, inputs).await {
            Ok(env) => env,
            Err(message) => {
                self.config_failed(pod, c, init, message);
                return false;
            }
        };
        for warning in &env.warnings {
            self.event(pod, None, EventType::Warning, "InvalidEnvironmentVariableNames", warning);
        }
        let mounted = match with_sub_paths(c, &env.vars) {
            Ok(mounted) => mounted,
            Err(message) => {
                self.config_failed(pod, c, init, message);
                return false;
            }
        };
        let mut files = self.mounts.container_files(&mounted);
        files.extend(etc_hosts::hosts_file(pod, c, &pod_ip, &etc_hosts::node_hosts(&ctx.node, &ctx.node_ip)));
        let id = match runtime.create_container(sandbox_id, &container_config(pod, c, &mounted, init, attempt, &env.vars, files)).await {
            Ok(id) => {
                self.made.containers.push(id.clone());
                self.sent_files.insert(id.clone(), digest(&self.mounts.updatable_files(c)));
                id
            }
            Err(e) => {
                self.start_failed(pod, c, init, "CreateContainerError", &e).await;
                return false;
            }
        };
        self.event(pod, on, EventType::Normal, "Created", &format!("Created container: {}", c.name));
        self.remove_old_instances(&c.name, rt).await;
        if let Err(e) = runtime.start_container(&id).await {
            self.start_failed(pod, c, init, "RunContainerError", &e).await;
            return true;
        }
        self.event(pod, on, EventType::Normal, "Started", &format!("Started container {}", c.name));
        if !self.post_start(pod, c, init, &id).await {
            return true;
        }
        self.waiting.remove(&c.name);
        self.start_errors.remove(&c.name);
        true
    }

    /// Records a failed create or start as the kubelet shows it, and comes back soon.
    pub(super) async fn start_failed(&mut self, pod: &Pod, c: &Container, init: bool, reason: &str, e: &crate::runtime::RuntimeError) {
        self.event(pod, Some((c, init)), EventType::Warning, "Failed", &format!("Error: {e}"));
        self.start_error(c, reason, e.to_string(), AFTER_ERROR);
    }

    /// Shows the container waiting with `reason` and `message` after a start that failed,
    /// remembers when, and comes back after `retry`.
    pub(super) fn start_error(&mut self, c: &Container, reason: &str, message: String, retry: std::time::Duration) {
        self.waiting.insert(c.name.clone(), Waiting { reason: reason.into(), message });
        self.start_errors.insert(c.name.clone(), self.now());
        let at = self.after(retry);
        self.wake_at(at);
    }

    /// Records a container whose config could not be made as the kubelet shows it
    /// (`CreateContainerConfigError`), and tries again after the pod worker's back-off.
    pub(super) fn config_failed(&mut self, pod: &Pod, c: &Container, init: bool, message: String) {
        self.event(pod, Some((c, init)), EventType::Warning, "Failed", &format!("Error: {message}"));
        self.start_error(c, "CreateContainerConfigError", message, AFTER_CONFIG_ERROR);
    }

    /// Once a new instance exists, keeps the one before it (it is `lastState`, and what
    /// `kubectl logs --previous` reads) and removes older ones, as the kubelet's container
    /// GC does. `rt` is the pod as it was before the new instance.
    pub(super) async fn remove_old_instances(&mut self, name: &str, rt: &RuntimePod) {
        for old in rt.instances(name).into_iter().skip(1) {
            match self.ctx.runtime.remove_container(&old.id).await {
                Ok(()) => self.made.removed.push(old.id.clone()),
                Err(e) => tracing::debug!("removing an old container instance: {e}"),
            }
        }
    }
}

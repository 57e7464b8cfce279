//! Stopping a pod's containers, as upstream's killPod and killContainer do (`preStop` first,
//! within the grace period, 2 s at least), and the ways a pod ends on the node: deleted
//! (`terminate`), evicted, or past its `activeDeadlineSeconds`.

use super::{Next, PodSync, RESYNC, pod_name};
use crate::events::EventType;
use crate::runtime::ContainerStatus as RuntimeContainer;
use crate::runtime::pod_cache::RuntimePod;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use std::time::Duration;

/// The least grace a container gets when it is stopped, as upstream's killContainer.
pub(super) const MIN_GRACE_SECONDS: i64 = 2;

impl PodSync {
    /// The pod is gone from every source: its containers stop at once, and what the node
    /// held for it is let go.
    pub(super) async fn gone(&mut self, rt: &RuntimePod) -> Next {
        if let Some(last) = self.last.take() {
            self.ctx.probes.stop(&self.uid);
            let stopped = self.stop_all(&last, rt, 0, false).await;
            self.remove_from_runtime(&stopped).await;
            // A static pod whose manifest is gone takes its mirror pod with it.
            if let Err(e) = self.ctx.delete(&last).await {
                tracing::warn!(pod = %pod_name(&last), "deleting the mirror pod: {e}");
            }
        }
        self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).release(&self.uid);
        self.ctx.evictions.forget(&self.uid);
        Next::Done
    }

    /// Stops a container as upstream's killContainer does: its `preStop` hook first (when
    /// there is grace to give), which takes its time from the grace period, then the stop with
    /// what is left (2 s at least).
    pub(super) async fn stop_container(&self, pod: &Pod, c: &RuntimeContainer, grace: i64) {
        let spec = pod.spec.as_ref().and_then(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).find(|s| s.name == c.metadata.name));
        let mut grace = grace;
        if grace > 0
            && let Some((spec, hook)) = spec.and_then(|s| Some((s, s.lifecycle.as_ref()?.pre_stop.as_ref()?)))
        {
            let began = self.now();
            let given = Duration::from_secs(grace.unsigned_abs());
            if let Some(message) = self.run_hook(pod, spec, &c.id, hook, given).await {
                let init = pod.spec.as_ref().is_some_and(|s| s.init_containers.iter().flatten().any(|i| i.name == spec.name));
                self.event(pod, Some((spec, init)), EventType::Warning, "FailedPreStopHook", &message);
            }
            grace -= (self.now() - began) / 1_000_000_000;
        }
        let grace = Duration::from_secs(u64::try_from(grace.max(MIN_GRACE_SECONDS)).unwrap_or(2));
        if let Err(e) = self.ctx.runtime.stop_container(&c.id, grace).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.metadata.name, "stopping a container: {e}");
        }
    }

    /// Stops every running container of the pod at once.
    pub(super) async fn stop_running(&self, pod: &Pod, rt: &RuntimePod) {
        let grace = grace_of(pod);
        futures_util::future::join_all(rt.running().map(|c| self.stop_container(pod, c, grace))).await;
    }

    /// Stops every running container of `rt` (with `Killing` events when `announce`) and
    /// the sandboxes; returns the pod as the runtime has it then.
    pub(super) async fn stop_all(&self, pod: &Pod, rt: &RuntimePod, grace: i64, announce: bool) -> RuntimePod {
        let spec = pod.spec.clone().unwrap_or_default();
        let stops = rt.running().map(|c| {
            let name = c.metadata.name.clone();
            let init = spec.init_containers.iter().flatten().find(|s| s.name == name).map(|s| (s.clone(), true));
            let on = init.or_else(|| spec.containers.iter().find(|s| s.name == name).map(|s| (s.clone(), false)));
            async move {
                if announce && let Some((spec, init)) = &on {
                    self.event(pod, Some((spec, *init)), EventType::Normal, "Killing", &format!("Stopping container {name}"));
                }
                self.stop_container(pod, c, grace).await;
            }
        });
        futures_util::future::join_all(stops).await;
        for s in &rt.sandboxes {
            if let Err(e) = self.ctx.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(pod = %pod_name(pod), "stopping a sandbox: {e}");
            }
        }
        rt.refreshed(&*self.ctx.runtime, &self.made).await.unwrap_or_else(|_| rt.clone())
    }

    pub(super) async fn remove_from_runtime(&self, rt: &RuntimePod) {
        for c in &rt.containers {
            let _ = self.ctx.runtime.remove_container(&c.id).await;
        }
        for s in &rt.sandboxes {
            let _ = self.ctx.runtime.remove_pod_sandbox(&s.id).await;
        }
    }

    /// An evicted pod: stopped at once (a hard threshold gives no grace), and failed with the
    /// eviction's reason and message, as upstream's `killPodFunc` writes it. Each sync
    /// after that finds nothing to stop and writes only when the status changed.
    pub(super) async fn evicted(&mut self, pod: &Arc<Pod>, rt: &RuntimePod, message: String) -> Next {
        self.fail(pod, rt, crate::eviction::REASON, message, 0).await
    }

    /// When the pod's `activeDeadlineSeconds` run out, counted from its start time.
    pub(super) fn active_deadline(&self, pod: &Pod) -> Option<i64> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let started = pod.status.as_ref().and_then(|s| s.start_time.clone()).or_else(|| self.ctx.status.cached(&self.uid)?.start_time)?;
        Some(i64::try_from(started.0.as_nanosecond()).ok()?.saturating_add(seconds.saturating_mul(1_000_000_000)))
    }

    /// A pod past its `activeDeadlineSeconds`, as upstream's active deadline handler fails
    /// it: a Normal `DeadlineExceeded` event, its containers stopped within the grace period,
    /// phase `Failed` with that reason and message.
    pub(super) async fn deadline_exceeded(&mut self, pod: &Arc<Pod>, rt: &RuntimePod) -> Next {
        const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
        self.event(pod, None, EventType::Normal, "DeadlineExceeded", MESSAGE);
        let next = self.fail(pod, rt, "DeadlineExceeded", MESSAGE.into(), grace_of(pod)).await;
        self.finished = true;
        next
    }

    /// Stops the pod's containers and sandboxes within `grace` (with `Killing` events unless
    /// it is 0) and writes phase `Failed` with `reason` and `message`.
    pub(super) async fn fail(&mut self, pod: &Arc<Pod>, rt: &RuntimePod, reason: &str, message: String, grace: i64) -> Next {
        self.ctx.probes.stop(&self.uid);
        let stopped = self.stop_all(pod, rt, grace, grace > 0).await;
        let mut status = self.status(pod, &stopped, false);
        status.phase = Some(crate::pods::status::PodPhase::Failed.as_str().into());
        status.reason = Some(reason.into());
        status.message = Some(message);
        self.set_status(pod, &status);
        self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).release(&self.uid);
        let resync = self.after(RESYNC);
        Next::At(self.wake.map_or(resync, |w| w.min(resync)))
    }

    /// A pod with a deletionTimestamp: stop it within its grace period, and hand its final
    /// status to the status manager, which writes it and then deletes the pod for good with
    /// grace 0 and its uid as a precondition.
    pub(super) async fn terminate(&mut self, pod: &Arc<Pod>, rt: &RuntimePod) -> Next {
        self.ctx.probes.stop(&self.uid);
        let rt = self.stop_all(pod, rt, grace_of(pod), true).await;
        let status = self.status(pod, &rt, true);
        self.ctx.set_status(pod, &status, true);
        self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).release(&self.uid);
        self.remove_from_runtime(&rt).await;
        self.last = None;
        Next::Done
    }
}

/// The grace period of a pod being stopped: the deletion's, else the spec's, else 30 s.
pub(super) fn grace_of(pod: &Pod) -> i64 {
    pod.metadata.deletion_grace_period_seconds.or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30)
}

//! Syncing one pod, as the kubelet's syncPod and the runtime manager's SyncPod do: admit
//! it, make its sandbox, pull images by policy, run init containers in order and then the
//! containers, restart what died by restart policy and back-off, restart on a failed
//! liveness probe or a changed spec, and compute the status for the status manager; and on
//! deletion, stop everything within the grace period and hand over the final status, after
//! which the status manager deletes the pod. A sync reads the runtime from PLEG's pod cache,
//! and neither events nor status writes wait for the API server.

use super::PodContext;
use super::backoff::{self, Backoff};
use super::cri_config::{container_config, sandbox_config};
use super::downward::Addresses;
use super::env::{EnvInputs, make_environment};
use super::plan::compute_pod_actions;
use super::probes::ProbeTarget;
use super::status::{StatusInputs, Waiting, api_status, rejected_status, server_container_status};
use super::volumes::{MountInputs, Mounts};
use crate::clock::go_duration;
use crate::runtime::pod_cache::{Made, Relist, RuntimePod};
use crate::runtime::{ContainerState, ContainerStatus as RuntimeContainer, PodSandboxConfig};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, ObjectReference, Pod};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The least grace a container gets when it is stopped, as upstream's killContainer.
const MIN_GRACE_SECONDS: i64 = 2;
/// How long a `postStart` hook may run (upstream gives none; the runtime request timeout).
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// Retry delays while the runtime fails (upstream: 100 ms doubling to 5 s).
const RUNTIME_RETRY: Duration = Duration::from_millis(100);
const RUNTIME_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a pod is synced when nothing happens: keeps the status true to the server's
/// copy (the status manager's resync) and notices what PLEG missed.
const RESYNC: Duration = Duration::from_secs(10);
/// After a start error, the sync comes back soon to show the back-off that follows.
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// After a container's config could not be made (a missing ConfigMap, say), the sync tries
/// again after the pod worker's back-off period, as upstream's does after a failed syncPod.
const AFTER_CONFIG_ERROR: Duration = Duration::from_secs(10);

/// What the pod worker does after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sync again at this host-clock time, or sooner when something changes.
    At(i64),
    /// The pod is gone: the worker ends.
    Done,
}

/// `name_namespace(uid)`, as the kubelet names a pod in messages.
pub fn pod_name(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!("{}_{}({})", m.name.as_deref().unwrap_or(""), m.namespace.as_deref().unwrap_or("default"), m.uid.as_deref().unwrap_or(""))
}

/// The reference events about a pod (or one of its containers) carry.
pub fn pod_ref(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// Where a container is in the pod spec, as events name it: `spec.containers{web}`.
fn field_path(c: &Container, init: bool) -> String {
    format!("spec.{}{{{}}}", if init { "initContainers" } else { "containers" }, c.name)
}

/// The attempt of a container the runtime has no record of: the restart count the server
/// has, plus one when that instance ran (it is gone, so this is a restart).
fn restarts_seen(pod: &Pod, name: &str, init: bool) -> u32 {
    let Some(c) = server_container_status(pod, name, init) else { return 0 };
    let ran = c.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some());
    u32::try_from(c.restart_count).unwrap_or(0) + u32::from(ran)
}

/// The pull policy, defaulted as the API server does: Always for `:latest` or no tag.
fn pull_policy(c: &Container) -> &str {
    if let Some(p) = c.image_pull_policy.as_deref() {
        return p;
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        _ if image.contains('@') => "IfNotPresent",
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// One pod's kubelet-side memory between syncs.
pub struct PodSync {
    ctx: Arc<PodContext>,
    uid: String,
    backoff: Backoff,
    waiting: HashMap<String, Waiting>,
    /// The pod reached a terminal phase: nothing runs until it is deleted.
    finished: bool,
    /// The last copy of the pod, to clean up after it once it is gone.
    last: Option<Arc<Pod>>,
    runtime_retry: Duration,
    /// When each container's last create or start error happened.
    start_errors: HashMap<String, i64>,
    /// The last failed pull of each image: when, and the runtime's message.
    pull_errors: HashMap<String, (i64, String)>,
    /// Soonest wake-up asked for during this sync.
    wake: Option<i64>,
    /// The relist whose view the next sync reads: one begun after the last sync ended.
    since: Relist,
    /// What this sync created, which the view it started from lacks.
    made: Made,
    /// The pod's volumes: which are set up, and when a failed one is tried again.
    mounts: Mounts,
    /// What each running container last got of its volumes' files (a digest), by container id.
    sent_files: HashMap<String, u64>,
}

impl PodSync {
    pub fn new(ctx: Arc<PodContext>, uid: &str) -> Self {
        let backoff = Backoff::new(backoff::INITIAL, backoff::MAX, ctx.clock);
        PodSync {
            ctx,
            uid: uid.to_string(),
            backoff,
            waiting: HashMap::new(),
            finished: false,
            last: None,
            runtime_retry: RUNTIME_RETRY,
            pull_errors: HashMap::new(),
            start_errors: HashMap::new(),
            wake: None,
            since: Relist::FIRST,
            made: Made::default(),
            mounts: Mounts::default(),
            sent_files: HashMap::new(),
        }
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now_nanos()
    }

    fn wake_at(&mut self, at: i64) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn after(&self, d: Duration) -> i64 {
        self.now().saturating_add(nanos(d))
    }

    fn event(&self, pod: &Pod, container: Option<(&Container, bool)>, type_: &str, reason: &str, message: &str) {
        let field = container.map(|(c, init)| field_path(c, init));
        self.ctx.events.record(&pod_ref(pod, field), type_, reason, message);
    }

    /// Syncs the pod once, from a view of the runtime PLEG took after the last sync ended
    /// (waiting for it, a relist period at most), and with the pod as its sources have it
    /// then.
    pub async fn sync(&mut self) -> Next {
        self.wake = None;
        self.made = Made::default();
        let cached = self.ctx.pod_cache.newer_than(&self.uid, self.since).await;
        let pod = self.ctx.manager.get(&self.uid);
        let next = match cached {
            Ok(rt) => {
                self.runtime_retry = RUNTIME_RETRY;
                self.sync_with(pod, &rt).await
            }
            Err(e) if pod.is_none() => {
                // Its sandboxes and containers are left to housekeeping.
                tracing::warn!(uid = %self.uid, "reading a deleted pod from the runtime: {e}");
                self.sync_with(None, &RuntimePod::default()).await
            }
            Err(e) => {
                tracing::warn!(uid = %self.uid, "reading the pod from the runtime: {e}");
                let retry = self.runtime_retry;
                self.runtime_retry = (retry * 2).min(RUNTIME_RETRY_MAX);
                Next::At(self.after(retry))
            }
        };
        self.since = self.ctx.pod_cache.after_now();
        next
    }

    /// One sync of the pod over the runtime's view `rt`; `None` means it is gone from every
    /// source.
    async fn sync_with(&mut self, pod: Option<Arc<Pod>>, rt: &RuntimePod) -> Next {
        let Some(pod) = pod else {
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
            self.ctx.forget_eviction(&self.uid);
            return Next::Done;
        };
        self.last = Some(pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(&pod, rt).await;
        }
        if let Err(e) = self.ctx.ensure_mirror(&pod).await {
            tracing::warn!(pod = %pod_name(&pod), "creating the mirror pod: {e}");
            let retry = self.after(AFTER_ERROR);
            self.wake_at(retry);
        }
        // The pod as the API has it: a static pod's status lives on its mirror pod.
        let pod = self.ctx.api_view(&pod);
        if let Some(message) = self.ctx.eviction_of(&self.uid) {
            return self.evicted(&pod, rt, message).await;
        }
        if self.finished {
            return Next::At(self.after(RESYNC));
        }
        if let Some(at) = self.active_deadline(&pod) {
            if self.now() >= at {
                return self.deadline_exceeded(&pod, rt).await;
            }
            self.wake_at(at);
        }
        if matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) && rt.running().next().is_none() {
            self.finished = true;
            return Next::At(self.after(RESYNC));
        }
        let admitted = self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).admit(&self.uid, &pod);
        if let Err(rejection) = admitted {
            self.event(&pod, None, "Warning", &rejection.reason, &rejection.message);
            self.set_status(&pod, &rejected_status(&pod, &rejection.reason, &rejection.message, self.now()));
            self.finished = true;
            return Next::At(self.after(RESYNC));
        }

        // As syncPod does: the status goes out before the sandbox and the pulls, so a slow one
        // shows as ContainerCreating (PodInitializing) for as long as it takes. A terminal
        // status waits until the pod's containers and sandbox are stopped, below.
        // Once set, it is the status the rest of the sync starts from.
        let early = self.status(&pod, rt, false);
        let terminal = matches!(early.phase.as_deref(), Some("Succeeded" | "Failed"));
        let pod = if terminal {
            pod
        } else {
            self.set_status(&pod, &early);
            Arc::new(Pod { status: Some(early), ..(*pod).clone() })
        };
        // As syncPod does next: no sandbox or container starts before the volumes are set up.
        if !terminal && !self.mount(&pod).await {
            let resync = self.after(RESYNC);
            return Next::At(self.wake.map_or(resync, |w| w.min(resync)));
        }
        self.update_files(&pod, rt).await;
        let acted = self.run_pod(&pod, rt).await;
        let refreshed = if acted { rt.refreshed(&*self.ctx.runtime, &self.made).await.ok() } else { None };
        let rt = refreshed.as_ref().unwrap_or(rt);
        self.sync_probes(&pod, rt);
        let mut status = self.status(&pod, rt, false);
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            // A terminal pod keeps nothing running and takes nothing from the node.
            self.ctx.probes.stop(&self.uid);
            let stopped = self.stop_all(&pod, rt, grace_of(&pod), false).await;
            self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).release(&self.uid);
            self.finished = true;
            status = self.status(&pod, &stopped, false);
        }
        self.set_status(&pod, &status);
        let resync = self.after(RESYNC);
        Next::At(self.wake.map_or(resync, |w| w.min(resync)))
    }

    /// Waits (without blocking) for the pod's volumes: true once all are set up; otherwise
    /// records the volume manager's events and comes back at its next retry.
    async fn mount(&mut self, pod: &Pod) -> bool {
        let ctx = self.ctx.clone();
        let inputs = MountInputs { objects: &ctx.objects, addresses: Addresses { pod_ip: "", host_ip: &ctx.node_ip }, allocatable: &ctx.allocatable };
        match self.mounts.wait_for_attach_and_mount(pod, inputs, self.now()).await {
            Ok(()) => true,
            Err(not) => {
                for message in &not.events {
                    self.event(pod, None, "Warning", "FailedMount", message);
                }
                self.wake_at(not.retry_at);
                false
            }
        }
    }

    /// Hands running containers their volumes' files when these changed (a ConfigMap or
    /// Secret was updated), as the kubelet's periodic remount does; never through `subPath`.
    async fn update_files(&mut self, pod: &Pod, rt: &RuntimePod) {
        let Some(spec) = &pod.spec else { return };
        let running: Vec<(String, &Container)> = rt
            .running()
            .filter_map(|r| spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == r.metadata.name).map(|c| (r.id.clone(), c)))
            .collect();
        self.sent_files.retain(|id, _| running.iter().any(|(r, _)| r == id));
        for (id, c) in running {
            let files = self.mounts.updatable_files(c);
            let now = digest(&files);
            if self.sent_files.get(&id).is_some_and(|sent| *sent == now) {
                continue;
            }
            match self.ctx.runtime.update_container_files(&id, &files).await {
                Ok(()) => {
                    self.sent_files.insert(id, now);
                }
                Err(e) => tracing::debug!(pod = %pod_name(pod), container = %c.name, "updating a container's files: {e}"),
            }
        }
    }

    fn status(&self, pod: &Pod, rt: &RuntimePod, terminal: bool) -> k8s_openapi::api::core::v1::PodStatus {
        let probes = &self.ctx.probes;
        // The start time and transition times carry on from the status the kubelet generated
        // last when the pod's own copy lacks them (a standalone pod has no API copy), as
        // upstream's status manager takes its cached status as the old one.
        let with_last;
        let without_start = pod.status.as_ref().is_none_or(|s| s.start_time.is_none());
        let pod = match without_start.then(|| self.ctx.status.cached(&self.uid)).flatten() {
            Some(last) => {
                with_last = Pod { status: Some(last), ..pod.clone() };
                &with_last
            }
            None => pod,
        };
        api_status(&StatusInputs {
            pod,
            runtime: rt,
            runtime_name: &self.ctx.runtime_name,
            node_ip: &self.ctx.node_ip,
            waiting: &self.waiting,
            ready: &|c, id| probes.ready(c, id),
            started: &|c, id| probes.started(c, id),
            now: self.now(),
            terminal,
        })
    }

    /// Hands the status to the status manager, which writes it unless the server has it.
    fn set_status(&self, pod: &Arc<Pod>, status: &k8s_openapi::api::core::v1::PodStatus) {
        self.ctx.set_status(pod, status, false);
    }

    fn sync_probes(&self, pod: &Pod, rt: &RuntimePod) {
        let Some(spec) = &pod.spec else { return };
        let targets = spec
            .containers
            .iter()
            .filter_map(|c| {
                let latest = rt.latest(&c.name).filter(|l| l.state == ContainerState::Running)?;
                let any = c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some();
                any.then(|| ProbeTarget {
                    uid: self.uid.clone(),
                    container: c.clone(),
                    container_id: latest.id.clone(),
                    object: pod_ref(pod, Some(field_path(c, false))),
                })
            })
            .collect();
        self.ctx.probes.sync(&self.uid, targets);
    }

    /// Brings the runtime towards the spec, as [`compute_pod_actions`] plans it. Returns
    /// whether it changed anything.
    async fn run_pod(&mut self, pod: &Pod, rt: &RuntimePod) -> bool {
        let Some(spec) = pod.spec.clone() else { return false };
        let probes = &self.ctx.probes;
        let plan = compute_pod_actions(&spec, rt, &|id| probes.failed(id));
        let mut acted = false;
        let (sandbox_id, sandbox) = match (&plan.sandbox, rt.ready_sandbox()) {
            (None, Some(s)) => (s.id.clone(), sandbox_config(pod, s.metadata.attempt)),
            (Some(new), _) => {
                if new.changed {
                    self.event(pod, None, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
                    self.stop_running(pod, rt).await;
                }
                if let Some(end) = self.backoff.expiry_since_update("sandbox") {
                    self.wake_at(end);
                    return new.changed;
                }
                let config = sandbox_config(pod, new.attempt);
                match self.ctx.runtime.run_pod_sandbox(&config).await {
                    Ok(id) => {
                        self.made.sandboxes.push(id.clone());
                        acted = true;
                        (id, config)
                    }
                    Err(e) => {
                        let message = format!("Failed to create pod sandbox: {e}");
                        self.event(pod, None, "Warning", "FailedCreatePodSandBox", &message);
                        self.backoff.next("sandbox", self.now());
                        if let Some(end) = self.backoff.expiry_since_update("sandbox") {
                            self.wake_at(end);
                        }
                        return true;
                    }
                }
            }
            (None, None) => return false,
        };
        let find = |name: &str, init: bool| {
            let list = if init { spec.init_containers.as_deref().unwrap_or_default() } else { &spec.containers[..] };
            list.iter().find(|c| c.name == name)
        };
        for kill in &plan.kill {
            let (Some(c), Some(running)) = (find(&kill.name, false), rt.containers.iter().find(|c| c.id == kill.id)) else { continue };
            self.event(pod, Some((c, false)), "Normal", "Killing", &kill.message);
            self.stop_container(pod, running, grace_of(pod)).await;
            acted = true;
        }
        for start in &plan.start {
            let Some(c) = find(&start.name, start.init) else { continue };
            acted |= if start.after_backoff {
                self.restart_with_backoff(pod, c, start.init, &sandbox_id, &sandbox, rt).await
            } else {
                self.start(pod, c, start.init, &sandbox_id, &sandbox, rt).await
            };
        }
        acted
    }

    /// Starts the container's newest instance, dead or never started, again unless it is
    /// in back-off (CrashLoopBackOff).
    async fn restart_with_backoff(&mut self, pod: &Pod, c: &Container, init: bool, sandbox_id: &str, sandbox: &PodSandboxConfig, rt: &RuntimePod) -> bool {
        // A container that never ran counts from its creation.
        let finished = rt.latest(&c.name).map_or(self.now(), |d| if d.finished_at > 0 { d.finished_at } else { d.created_at });
        let key = format!("restart/{}", c.name);
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
            self.event(pod, Some((c, init)), "Warning", "BackOff", &event);
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
    async fn start(&mut self, pod: &Pod, c: &Container, init: bool, sandbox_id: &str, sandbox: &PodSandboxConfig, rt: &RuntimePod) -> bool {
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
            self.event(pod, None, "Warning", "InvalidEnvironmentVariableNames", warning);
        }
        let files = self.mounts.container_files(c);
        let id = match runtime.create_container(sandbox_id, &container_config(pod, c, init, attempt, &env.vars, files)).await {
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
        self.event(pod, on, "Normal", "Created", &format!("Created container: {}", c.name));
        self.remove_old_instances(&c.name, rt).await;
        if let Err(e) = runtime.start_container(&id).await {
            self.start_failed(pod, c, init, "RunContainerError", &e).await;
            return true;
        }
        self.event(pod, on, "Normal", "Started", &format!("Started container {}", c.name));
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Some(message) = self.run_hook(pod, c, &id, hook, HOOK_TIMEOUT).await
        {
            // As upstream's startContainer: the container is killed and the start failed.
            self.event(pod, on, "Warning", "FailedPostStartHook", &message);
            self.event(pod, on, "Normal", "Killing", "FailedPostStartHook");
            let grace = Duration::from_secs(u64::try_from(grace_of(pod).max(MIN_GRACE_SECONDS)).unwrap_or(2));
            if let Err(e) = runtime.stop_container(&id, grace).await {
                tracing::warn!(pod = %pod_name(pod), container = %c.name, "stopping a container whose postStart hook failed: {e}");
            }
            self.waiting.insert(c.name.clone(), Waiting { reason: "PostStartHookError".into(), message });
            self.start_errors.insert(c.name.clone(), self.now());
            let retry = self.after(AFTER_ERROR);
            self.wake_at(retry);
            return true;
        }
        self.waiting.remove(&c.name);
        self.start_errors.remove(&c.name);
        true
    }

    /// Runs a container's `postStart` or `preStop` hook in it, as upstream's handler runner
    /// does: `None` when it succeeded, else the message of its failure in the kubelet's words.
    /// An `exec` hook runs its command in the container; an `httpGet` hook succeeds (the
    /// container's servers are not simulated).
    async fn run_hook(&self, pod: &Pod, c: &Container, id: &str, hook: &LifecycleHandler, timeout: Duration) -> Option<String> {
        let command = hook.exec.as_ref()?.command.clone().unwrap_or_default();
        let (error, output) = match self.ctx.runtime.exec_sync(id, &command, timeout).await {
            Ok(done) if done.exit_code == 0 => return None,
            Ok(done) => (format!("command '{}' exited with {}: {}", command.join(" "), done.exit_code, done.stderr), format!("{}{}", done.stdout, done.stderr)),
            Err(e) => (e.to_string(), String::new()),
        };
        Some(format!(
            "Exec lifecycle hook ([{}]) for Container {:?} in Pod {:?} failed - error: {error}, message: {output:?}",
            command.join(" "),
            c.name,
            pod_name(pod)
        ))
    }

    /// Records a failed create or start as the kubelet shows it, and comes back soon.
    async fn start_failed(&mut self, pod: &Pod, c: &Container, init: bool, reason: &str, e: &crate::runtime::RuntimeError) {
        self.event(pod, Some((c, init)), "Warning", "Failed", &format!("Error: {e}"));
        self.waiting.insert(c.name.clone(), Waiting { reason: reason.into(), message: e.to_string() });
        self.start_errors.insert(c.name.clone(), self.now());
        let retry = self.after(AFTER_ERROR);
        self.wake_at(retry);
    }

    /// Records a container whose config could not be made as the kubelet shows it
    /// (`CreateContainerConfigError`), and tries again after the pod worker's back-off.
    fn config_failed(&mut self, pod: &Pod, c: &Container, init: bool, message: String) {
        self.event(pod, Some((c, init)), "Warning", "Failed", &format!("Error: {message}"));
        self.waiting.insert(c.name.clone(), Waiting { reason: "CreateContainerConfigError".into(), message });
        self.start_errors.insert(c.name.clone(), self.now());
        let retry = self.after(AFTER_CONFIG_ERROR);
        self.wake_at(retry);
    }

    /// The image step of a container start, by pull policy and image pull back-off.
    async fn pull(&mut self, pod: &Pod, c: &Container, init: bool, image: &str, sandbox: &PodSandboxConfig) -> Result<(), Waiting> {
        let on = Some((c, init));
        let runtime = self.ctx.runtime.clone();
        let present = match runtime.image_status(image, Some(sandbox)).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.event(pod, on, "Warning", "Failed", &format!("Error: {e}"));
                return Err(Waiting { reason: "ErrImagePull".into(), message: e.to_string() });
            }
        };
        let policy = pull_policy(c);
        if present && policy != "Always" {
            self.event(pod, on, "Normal", "Pulled", &format!("Container image \"{image}\" already present on machine"));
            return Ok(());
        }
        if policy == "Never" {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(pod, on, "Warning", "ErrImageNeverPull", &message);
            return Err(Waiting { reason: "ErrImageNeverPull".into(), message });
        }
        let key = format!("pull/{image}");
        if let Some(end) = self.backoff.expiry_since_update(&key) {
            // A sync right after the failure (a PLEG event, say) still shows ErrImagePull,
            // so it is seen before ImagePullBackOff follows.
            if let Some((at, message)) = self.pull_errors.get(&key).filter(|(at, _)| self.now() < at + nanos(AFTER_ERROR)) {
                let (retry, message) = (at + nanos(AFTER_ERROR), message.clone());
                self.wake_at(retry);
                return Err(Waiting { reason: "ErrImagePull".into(), message });
            }
            let message = format!("Back-off pulling image \"{image}\"");
            self.event(pod, on, "Normal", "BackOff", &message);
            self.event(pod, on, "Warning", "Failed", "Error: ImagePullBackOff");
            self.wake_at(end);
            return Err(Waiting { reason: "ImagePullBackOff".into(), message });
        }
        self.event(pod, on, "Normal", "Pulling", &format!("Pulling image \"{image}\""));
        let started = self.now();
        match runtime.pull_image(image, Some(sandbox)).await {
            Ok(_) => {
                let took = go_duration(Duration::from_nanos(u64::try_from(self.now() - started).unwrap_or(0)));
                let size = runtime.image_status(image, Some(sandbox)).await.ok().flatten().map_or(0, |i| i.size);
                let message = format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes.");
                self.event(pod, on, "Normal", "Pulled", &message);
                Ok(())
            }
            Err(e) => {
                self.backoff.next(&key, self.now());
                self.pull_errors.insert(key, (self.now(), e.to_string()));
                self.event(pod, on, "Warning", "Failed", &format!("Failed to pull image \"{image}\": {e}"));
                self.event(pod, on, "Warning", "Failed", "Error: ErrImagePull");
                let retry = self.after(AFTER_ERROR);
                self.wake_at(retry);
                Err(Waiting { reason: "ErrImagePull".into(), message: e.to_string() })
            }
        }
    }

    /// Once a new instance exists, keeps the one before it (it is `lastState`, and what
    /// `kubectl logs --previous` reads) and removes older ones, as the kubelet's container
    /// GC does. `rt` is the pod as it was before the new instance.
    async fn remove_old_instances(&mut self, name: &str, rt: &RuntimePod) {
        for old in rt.instances(name).into_iter().skip(1) {
            match self.ctx.runtime.remove_container(&old.id).await {
                Ok(()) => self.made.removed.push(old.id.clone()),
                Err(e) => tracing::debug!("removing an old container instance: {e}"),
            }
        }
    }

    /// Stops a container as upstream's killContainer does: its `preStop` hook first (when
    /// there is grace to give), which takes its time from the grace period, then the stop with
    /// what is left (2 s at least).
    async fn stop_container(&self, pod: &Pod, c: &RuntimeContainer, grace: i64) {
        let spec = pod.spec.as_ref().and_then(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).find(|s| s.name == c.metadata.name));
        let mut grace = grace;
        if grace > 0
            && let Some((spec, hook)) = spec.and_then(|s| Some((s, s.lifecycle.as_ref()?.pre_stop.as_ref()?)))
        {
            let began = self.now();
            let given = Duration::from_secs(grace.unsigned_abs());
            if let Some(message) = self.run_hook(pod, spec, &c.id, hook, given).await {
                let init = pod.spec.as_ref().is_some_and(|s| s.init_containers.iter().flatten().any(|i| i.name == spec.name));
                self.event(pod, Some((spec, init)), "Warning", "FailedPreStopHook", &message);
            }
            grace -= (self.now() - began) / 1_000_000_000;
        }
        let grace = Duration::from_secs(u64::try_from(grace.max(MIN_GRACE_SECONDS)).unwrap_or(2));
        if let Err(e) = self.ctx.runtime.stop_container(&c.id, grace).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.metadata.name, "stopping a container: {e}");
        }
    }

    /// Stops every running container of the pod at once.
    async fn stop_running(&self, pod: &Pod, rt: &RuntimePod) {
        let grace = grace_of(pod);
        futures_util::future::join_all(rt.running().map(|c| self.stop_container(pod, c, grace))).await;
    }

    /// Stops every running container of `rt` (with `Killing` events when `announce`) and
    /// the sandboxes; returns the pod as the runtime has it then.
    async fn stop_all(&self, pod: &Pod, rt: &RuntimePod, grace: i64, announce: bool) -> RuntimePod {
        let spec = pod.spec.clone().unwrap_or_default();
        let stops = rt.running().map(|c| {
            let name = c.metadata.name.clone();
            let init = spec.init_containers.iter().flatten().find(|s| s.name == name).map(|s| (s.clone(), true));
            let on = init.or_else(|| spec.containers.iter().find(|s| s.name == name).map(|s| (s.clone(), false)));
            async move {
                if announce && let Some((spec, init)) = &on {
                    self.event(pod, Some((spec, *init)), "Normal", "Killing", &format!("Stopping container {name}"));
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

    async fn remove_from_runtime(&self, rt: &RuntimePod) {
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
    async fn evicted(&mut self, pod: &Arc<Pod>, rt: &RuntimePod, message: String) -> Next {
        self.fail(pod, rt, crate::eviction::REASON, message, 0).await
    }

    /// When the pod's `activeDeadlineSeconds` run out, counted from its start time.
    fn active_deadline(&self, pod: &Pod) -> Option<i64> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let started = pod.status.as_ref().and_then(|s| s.start_time.clone()).or_else(|| self.ctx.status.cached(&self.uid)?.start_time)?;
        Some(i64::try_from(started.0.as_nanosecond()).ok()?.saturating_add(seconds.saturating_mul(1_000_000_000)))
    }

    /// A pod past its `activeDeadlineSeconds`, as upstream's active deadline handler fails
    /// it: a Normal `DeadlineExceeded` event, its containers stopped within the grace period,
    /// phase `Failed` with that reason and message.
    async fn deadline_exceeded(&mut self, pod: &Arc<Pod>, rt: &RuntimePod) -> Next {
        const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
        self.event(pod, None, "Normal", "DeadlineExceeded", MESSAGE);
        let next = self.fail(pod, rt, "DeadlineExceeded", MESSAGE.into(), grace_of(pod)).await;
        self.finished = true;
        next
    }

    /// Stops the pod's containers and sandboxes within `grace` (with `Killing` events unless
    /// it is 0) and writes phase `Failed` with `reason` and `message`.
    async fn fail(&mut self, pod: &Arc<Pod>, rt: &RuntimePod, reason: &str, message: String, grace: i64) -> Next {
        self.ctx.probes.stop(&self.uid);
        let stopped = self.stop_all(pod, rt, grace, grace > 0).await;
        let mut status = self.status(pod, &stopped, false);
        status.phase = Some("Failed".into());
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
    async fn terminate(&mut self, pod: &Arc<Pod>, rt: &RuntimePod) -> Next {
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

/// A digest of files, to tell whether a container has them already.
fn digest(files: &[crate::runtime::ContainerFile]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        (&f.path, &f.data, f.mode).hash(&mut h);
    }
    h.finish()
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The grace period of a pod being stopped: the deletion's, else the spec's, else 30 s.
fn grace_of(pod: &Pod) -> i64 {
    pod.metadata.deletion_grace_period_seconds.or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30)
}

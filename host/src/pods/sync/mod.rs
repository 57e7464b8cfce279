//! Syncing one pod, as the kubelet's syncPod and the runtime manager's SyncPod do: admit
//! it, make its sandbox, pull images by policy, run init containers in order and then the
//! containers, restart what died by restart policy and back-off, restart on a failed
//! liveness probe or a changed spec, and compute the status for the status manager; and on
//! deletion, stop everything within the grace period and hand over the final status, after
//! which the status manager deletes the pod. A sync reads the runtime from PLEG's pod cache,
//! and neither events nor status writes wait for the API server.
//!
//! One upstream job a file: this one is syncPod itself; `mounts` the volume manager's wait
//! and updates; `start` startContainer and the restart back-off; `images` the image
//! manager; `hooks` the lifecycle handler runner; `terminate` killPod and killContainer, and
//! the ways a pod ends on the node (deleted, evicted, past its deadline).

mod hooks;
mod images;
mod mounts;
mod start;
mod terminate;

use crate::events::EventType;
use terminate::grace_of;

use super::PodContext;
use super::backoff::{self, Backoff, BackoffKey};
use super::cri_config::sandbox_config;
use super::plan::compute_pod_actions;
use super::probes::ProbeTarget;
use super::status::{StatusInputs, Waiting, api_status, rejected_status, server_container_status};
use super::volumes::Mounts;
use crate::runtime::ContainerState;
use crate::runtime::pod_cache::{Made, Relist, RuntimePod};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

    fn event(&self, pod: &Pod, container: Option<(&Container, bool)>, type_: EventType, reason: &str, message: &str) {
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

    /// What ends a sync before it runs anything: the pod was evicted, ran past its
    /// `activeDeadlineSeconds`, finished, or admission refuses it.
    async fn ended_or_refused(&mut self, pod: &Arc<Pod>, rt: &RuntimePod) -> Option<Next> {
        if let Some(message) = self.ctx.evictions.eviction_of(&self.uid) {
            return Some(self.evicted(pod, rt, message).await);
        }
        if self.finished {
            return Some(Next::At(self.after(RESYNC)));
        }
        if let Some(at) = self.active_deadline(pod) {
            if self.now() >= at {
                return Some(self.deadline_exceeded(pod, rt).await);
            }
            self.wake_at(at);
        }
        if crate::pods::status::is_terminal(pod.status.as_ref()) && rt.running().next().is_none() {
            self.finished = true;
            return Some(Next::At(self.after(RESYNC)));
        }
        let admitted = self.ctx.admission.lock().unwrap_or_else(|p| p.into_inner()).admit(&self.uid, pod);
        if let Err(rejection) = admitted {
            self.event(pod, None, EventType::Warning, &rejection.reason, &rejection.message);
            self.set_status(pod, &rejected_status(pod, &rejection.reason, &rejection.message, self.now()));
            self.finished = true;
            return Some(Next::At(self.after(RESYNC)));
        }
        None
    }

    /// One sync of the pod over the runtime's view `rt`; `None` means it is gone from every
    /// source.
    async fn sync_with(&mut self, pod: Option<Arc<Pod>>, rt: &RuntimePod) -> Next {
        let Some(pod) = pod else { return self.gone(rt).await };
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
        let pod = self.ctx.view.api_view(&pod);
        if let Some(next) = Box::pin(self.ended_or_refused(&pod, rt)).await {
            return next;
        }

        // As syncPod does: the status goes out before the sandbox and the pulls, so a slow one
        // shows as ContainerCreating (PodInitializing) for as long as it takes. A terminal
        // status waits until the pod's containers and sandbox are stopped, below.
        // Once set, it is the status the rest of the sync starts from.
        let early = self.status(&pod, rt, false);
        let terminal = crate::pods::status::is_terminal(Some(&early));
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
        if crate::pods::status::is_terminal(Some(&status)) {
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
                    self.event(pod, None, EventType::Normal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
                    self.stop_running(pod, rt).await;
                }
                if let Some(end) = self.backoff.expiry_since_update(&BackoffKey::Sandbox) {
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
                        self.event(pod, None, EventType::Warning, "FailedCreatePodSandBox", &message);
                        self.backoff.next(&BackoffKey::Sandbox, self.now());
                        if let Some(end) = self.backoff.expiry_since_update(&BackoffKey::Sandbox) {
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
            self.event(pod, Some((c, false)), EventType::Normal, "Killing", &kill.message);
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

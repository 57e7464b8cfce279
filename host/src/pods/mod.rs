//! The pod side of the kubelet, shaped like kube-rs' runtime: sources feed the pod manager
//! (as a watcher feeds a reflector), and pod workers act on each pod (as a controller's
//! reconciler does), woken by pod changes, PLEG events and probe results.
//!
//! - [`source`], [`static_pods`], [`url_source`]: where pods come from: the API watch,
//!   manifest files and a manifest URL (static pods, with mirror pods in the API).
//! - [`manager`]: the pods this node should run, from every source.
//! - [`workers`]: one task per pod.
//! - [`plan`]: what a sync should do to the runtime (computePodActions), a pure function.
//! - [`sync`]: what one sync of one pod does (syncPod), carrying the plan out.
//! - [`status`]: the pod's API status and the status manager; [`view`]: the pods as the
//!   kubelet's API shows them; [`evictions`]: the pods the eviction manager evicted.
//! - [`volumes`]: the volume manager, whose wait a sync passes before the sandbox starts;
//!   [`env`]: a container's environment; [`cri_config`]: what the runtime is told; both
//!   read [`api_objects`] (ConfigMaps, Secrets, Services) and the [`downward`] API.
//! - [`admission`], [`backoff`], [`probes`], [`resources`]: the parts syncPod uses; it reads
//!   the runtime from PLEG's [`crate::runtime::pod_cache`].

pub mod admission;
pub mod api_objects;
pub mod backoff;
pub mod credentials;
pub mod cri_config;
pub mod dns;
pub mod downward;
pub mod env;
pub mod etc_hosts;
pub mod evictions;
pub mod manager;
pub mod plan;
pub mod probes;
pub mod resources;
pub mod source;
pub mod static_pods;
pub mod status;
pub mod sync;
pub mod url_source;
pub mod view;
pub mod volumes;
pub mod workers;

use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::runtime::pleg::{Pleg, PlegHealth};
use crate::runtime::pod_cache::PodCache;
use crate::runtime::{ContainerRuntime, PodSandboxState};
use admission::Admission;
use evictions::Evictions;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use manager::{PodManager, is_static};
use probes::ProbeManager;
use status::StatusWriter;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use view::PodView;
use workers::PodWorkers;

/// How often orphaned sandboxes (of pods no source has) are looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// What one node's pod lifecycle needs to know about its node.
#[derive(Debug, Clone)]
pub struct NodePods {
    pub node: String,
    pub node_ip: String,
    /// The node's labels, for node selectors.
    pub labels: BTreeMap<String, String>,
    /// cpu, memory, pods.
    pub allocatable: BTreeMap<String, String>,
    /// The runtime's name, shown in container ids (`<name>://<id>`).
    pub runtime_name: String,
    /// staticPodPath: a manifest file or folder of static pods.
    pub static_pod_path: Option<PathBuf>,
    /// fileCheckFrequency: how often the static pod path is read besides file events.
    pub file_check_frequency: Duration,
    /// staticPodURL / `--manifest-url`, with its headers.
    pub manifest_url: Option<url_source::ManifestUrl>,
    /// httpCheckFrequency: how often the manifest URL is fetched.
    pub http_check_frequency: Duration,
    /// The cluster DNS the node's containers ask, answered from the Services the pods'
    /// environment watches (the plugin runtime holds a clone).
    pub dns: dns::ClusterDns,
}

impl NodePods {
    /// Node `node` at `node_ip` with the kubelet's defaults: no labels, the allocatable of a
    /// small node (4 CPUs, 8 GiB, 110 pods), the `labkubelet` runtime, no static pod source
    /// (checked every 20 s when set), no cluster DNS. Fields are public to change the rest.
    pub fn new(node: &str, node_ip: &str) -> NodePods {
        let allocatable = [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NodePods {
            node: node.to_string(),
            node_ip: node_ip.to_string(),
            labels: BTreeMap::new(),
            allocatable,
            runtime_name: "labkubelet".into(),
            static_pod_path: None,
            file_check_frequency: Duration::from_secs(20),
            manifest_url: None,
            http_check_frequency: Duration::from_secs(20),
            dns: dns::ClusterDns::default(),
        }
    }
}

/// Everything a pod worker uses, shared by the workers of one node.
pub struct PodContext {
    pub node: String,
    pub node_ip: String,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// What PLEG's last relist found of each pod: the workers' view of the runtime.
    pub pod_cache: Arc<PodCache>,
    pub runtime_name: String,
    pub clock: Clock,
    pub events: Arc<EventRecorder>,
    pub manager: Arc<PodManager>,
    pub probes: ProbeManager,
    pub admission: Mutex<Admission>,
    /// The node's pressure conditions: the eviction manager sets them, admission reads them.
    pub pressure: Arc<crate::node::pressure::Conditions>,
    /// The API server; None for a standalone node, whose pods all come from manifests.
    client: Option<kube::Client>,
    pub status: Arc<StatusWriter>,
    /// The pods as the kubelet's API shows them.
    pub view: PodView,
    /// The ConfigMaps, Secrets and Services the node's pods refer to.
    pub objects: api_objects::ApiObjects,
    /// The node's allocatable resources: a container's limits where it sets none, for the
    /// downward API.
    pub allocatable: BTreeMap<String, String>,
    pub evictions: Arc<Evictions>,
}

impl PodContext {
    /// Sets a pod's status: `/pods` shows it at once, the status manager's task writes it
    /// to the API (a static pod's to its mirror pod), keeping the conditions other writers
    /// set on the API's copy, as upstream's `mergePodStatus` keeps them. With `delete`, the
    /// pod finished terminating and is deleted once the status is written.
    pub fn set_status(&self, pod: &Arc<Pod>, status: &PodStatus, delete: bool) {
        self.status.set(pod, status, self.clock.now_nanos(), delete);
    }

    /// Deletes a pod that is gone from its source; for a static pod, its mirror. (A pod that
    /// finished terminating is deleted by the status manager, once its final status is in.)
    pub async fn delete(&self, pod: &Pod) -> Result<(), kube::Error> {
        let Some(client) = &self.client else { return Ok(()) };
        if !is_static(pod) {
            return status::delete_pod(client, pod).await;
        }
        match self.manager.mirror(pod) {
            Some(mirror) => status::delete_pod(client, &mirror).await,
            None => Ok(()),
        }
    }

    /// Makes sure a static pod has its mirror pod: created when missing, replaced when it
    /// was deleted (`kubectl delete`) or mirrors another version of the manifest.
    pub async fn ensure_mirror(&self, pod: &Pod) -> Result<(), kube::Error> {
        let Some(client) = &self.client else { return Ok(()) };
        if !is_static(pod) || self.manager.current_mirror(pod).is_some() {
            return Ok(());
        }
        if let Some(stale) = self.manager.mirror(pod) {
            status::delete_pod(client, &stale).await?;
        }
        static_pods::create_mirror(client, &self.node, pod).await
    }
}

/// One node's pod lifecycle: sources, pod workers, PLEG, probes.
///
/// ```no_run
/// # async fn demo(client: kube::Client, runtime: std::sync::Arc<dyn labkubelet::runtime::ContainerRuntime>) {
/// // A standalone node passes no client: its pods come from manifests only.
/// let client = Some(client);
/// use labkubelet::{clock::Clock, events::EventRecorder, pods::{NodePods, PodLifecycle}};
/// let clock = Clock::new();
/// let events = std::sync::Arc::new(match &client {
///     Some(c) => EventRecorder::new(c.clone(), "node-1", clock),
///     None => EventRecorder::standalone("node-1", clock),
/// });
/// let node = NodePods::new("node-1", "10.0.0.5");
/// let pods = PodLifecycle::new(node, client, runtime, clock, events);
/// let pleg = pods.pleg_health(); // for the node's Ready condition
/// pods.run().await;
/// # }
/// ```
pub struct PodLifecycle {
    ctx: Arc<PodContext>,
    pleg: Pleg,
    pleg_events: mpsc::Receiver<crate::runtime::pleg::PlegEvent>,
    changed: mpsc::UnboundedReceiver<String>,
    woken: mpsc::UnboundedReceiver<String>,
    files: Option<(static_pods::FileSource, Duration)>,
    url: Option<(url_source::UrlSource, Duration)>,
}

impl PodLifecycle {
    pub fn new(node: NodePods, client: Option<kube::Client>, runtime: Arc<dyn ContainerRuntime>, clock: Clock, events: Arc<EventRecorder>) -> Self {
        let (manager, changed) = PodManager::new();
        let (wake, woken) = mpsc::unbounded_channel();
        let (pleg, pleg_events) = Pleg::new(&node.node, runtime.clone(), clock);
        let files = node.static_pod_path.as_deref().map(|p| (static_pods::FileSource::new(p, &node.node, clock), node.file_check_frequency));
        let url = node.manifest_url.and_then(|manifest| match url_source::UrlSource::new(manifest.clone(), &node.node, clock) {
            Ok(source) => Some((source, node.http_check_frequency)),
            Err(e) => {
                tracing::error!(url = manifest.url, "the manifest URL cannot be fetched: no root certificates ({e})");
                None
            }
        });
        let journal = events.journal().clone();
        let pressure = Arc::new(crate::node::pressure::Conditions::default());
        let status = Arc::new(StatusWriter::new(client.clone(), manager.clone(), journal));
        let view = PodView::new(manager.clone(), status.clone());
        let ctx = Arc::new(PodContext {
            node: node.node,
            node_ip: node.node_ip,
            probes: ProbeManager::new(runtime.clone(), clock, events.clone(), wake.clone()),
            runtime,
            pod_cache: pleg.cache(),
            runtime_name: node.runtime_name,
            clock,
            events,
            status,
            view,
            manager,
            objects: api_objects::ApiObjects::new(client.clone(), clock, node.dns),
            allocatable: node.allocatable.clone(),
            admission: Mutex::new(Admission::new(node.labels, node.allocatable, pressure.clone())),
            pressure,
            client,
            evictions: Arc::new(Evictions::new(wake)),
        });
        PodLifecycle { ctx, pleg, pleg_events, changed, woken, files, url }
    }

    /// The pods as the kubelet's API shows them.
    pub fn view(&self) -> PodView {
        self.ctx.view.clone()
    }

    /// Where the eviction manager records the pods it evicts.
    pub fn evictions(&self) -> Arc<Evictions> {
        self.ctx.evictions.clone()
    }

    /// The node's pressure conditions: the eviction manager sets them, admission reads them.
    pub fn pressure(&self) -> Arc<crate::node::pressure::Conditions> {
        self.ctx.pressure.clone()
    }

    /// The runtime the pods run on.
    pub fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.ctx.runtime.clone()
    }

    /// The node's allocatable resources.
    pub fn allocatable(&self) -> &BTreeMap<String, String> {
        &self.ctx.allocatable
    }

    /// The node's clock, which the pods' timing follows.
    pub fn clock(&self) -> Clock {
        self.ctx.clock
    }

    /// PLEG's health, which the node status loop turns into the Ready condition.
    pub fn pleg_health(&self) -> Arc<PlegHealth> {
        self.pleg.health()
    }

    /// Runs until the future is dropped; the pod workers and probe tasks end with it (a
    /// kubelet restart starts them again over the runtime the next run has).
    pub async fn run(self) {
        let PodLifecycle { ctx, pleg, mut pleg_events, mut changed, mut woken, files, url } = self;
        let _probes = StopProbesOnDrop(ctx.clone());
        let workers = Arc::new(PodWorkers::new(ctx.clone()));
        let api = async {
            match ctx.client.clone() {
                Some(client) => source::watch_api(client, &ctx.node, ctx.manager.clone()).await,
                // No API server: its (empty) list is complete, so housekeeping may start.
                None => ctx.manager.replace("api", Vec::new()),
            }
        };
        // The static pod sources on the heap, when there are any: inline, each would take its
        // room in every node's pod lifecycle, configured or not.
        let files = async {
            if let Some((source, period)) = files {
                Box::pin(source.run(ctx.manager.clone(), period)).await
            }
        };
        let url = async {
            if let Some((source, period)) = url {
                Box::pin(source.run(ctx.manager.clone(), period)).await
            }
        };
        let dispatch = async {
            loop {
                let uid = tokio::select! {
                    Some(uid) = changed.recv() => uid,
                    Some(event) = pleg_events.recv() => event.pod_uid,
                    Some(uid) = woken.recv() => uid,
                    else => return,
                };
                // PLEG sees the pods of every source, and orphans, which housekeeping handles.
                if ctx.manager.get(&uid).is_some() || workers.has(&uid) {
                    workers.update(&uid);
                }
            }
        };
        tokio::join!(api, files, url, pleg.run(), dispatch, ctx.status.run(), housekeeping(ctx.clone(), workers.clone()));
    }
}

/// Ends the probe tasks with the pod lifecycle, as [`PodWorkers`] ends the pod workers:
/// the node's HTTP API may keep the context alive longer.
struct StopProbesOnDrop(Arc<PodContext>);

impl Drop for StopProbesOnDrop {
    fn drop(&mut self) {
        self.0.probes.stop_all();
    }
}

/// Stops and removes the sandboxes and containers of pods that no source has and no worker
/// handles (left from before an agent restart, say), once the API source has listed. What
/// there is comes from the pod cache: housekeeping lists nothing itself.
async fn housekeeping(ctx: Arc<PodContext>, workers: Arc<PodWorkers>) {
    loop {
        ctx.clock.sleep(HOUSEKEEPING).await;
        workers.collect();
        ctx.status.retain(|uid| ctx.manager.get(uid).is_some() || workers.has(uid));
        crate::metrics::METRICS.working_pods.with_label_values(&[&ctx.node]).set(workers.count() as i64);
        if !ctx.manager.synced() {
            continue;
        }
        for (uid, orphan) in ctx.pod_cache.pods() {
            if ctx.manager.get(&uid).is_some() || workers.has(&uid) {
                continue;
            }
            let name = orphan.sandboxes.first().map(|s| s.metadata.name.as_str()).unwrap_or(&uid);
            tracing::info!(node = %ctx.node, pod = name, "removing the sandboxes and containers of a pod this node no longer has");
            for c in &orphan.containers {
                let _ = ctx.runtime.stop_container(&c.id, Duration::from_secs(2)).await;
                let _ = ctx.runtime.remove_container(&c.id).await;
            }
            for s in &orphan.sandboxes {
                if s.state == PodSandboxState::Ready {
                    let _ = ctx.runtime.stop_pod_sandbox(&s.id).await;
                }
                let _ = ctx.runtime.remove_pod_sandbox(&s.id).await;
            }
        }
    }
}

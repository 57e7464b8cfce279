//! One node against the API-server double, on virtual time: the node `labkubelet run` runs
//! (`agent::run`: bootstrap, registration, Lease, status, pods, eviction, its HTTP API) over a
//! plugin folder, started, stopped and restarted as a user does.

use crate::apiserver::ApiServer;
use crate::{PluginLab, eventually};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, NodeCondition, Pod};
use kube::api::{Api, ListParams, PostParams};
use labkubelet::clock::Clock;
use labkubelet::node::status::StatusTimings;
use labkubelet::plugin::{PluginPolicy, PluginRuntime};
use labkubelet::pods::url_source::ManifestUrl;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const NODE: &str = "lab-node-1";

/// The bootstrap kubeconfig in the agent's root dir.
const BOOTSTRAP: &str = "bootstrap-kubelet.conf";

/// The running agent's task.
type Agent = tokio::task::JoinHandle<anyhow::Result<()>>;

/// A node over a plugin folder, against the double.
pub struct PodLab {
    server: ApiServer,
    pub client: kube::Client,
    pub pods: Api<Pod>,
    pub nodes: Api<Node>,
    pub plugins: PluginLab,
    pub manifests: Option<std::path::PathBuf>,
    pub manifest_url: Option<ManifestUrl>,
    /// The agent's root dir: the runtime state survives an agent restart there.
    pub root: tempfile::TempDir,
    /// The running agent (none once stopped).
    task: Option<Agent>,
    /// Stops the running agent as Ctrl-C does: it saves the runtime state first.
    stop: tokio_util::sync::CancellationToken,
    /// The runtime of the agent now running.
    pub runtime: Arc<PluginRuntime>,
}

impl Drop for PodLab {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl PodLab {
    /// Starts with these stock plugins and configuration files in the plugin folder.
    pub async fn start(plugins: &[&str], files: &[(&str, &str)]) -> PodLab {
        PodLab::with_manifests(plugins, files, None).await
    }

    /// Starts with a static pod folder too.
    pub async fn with_manifests(plugins: &[&str], files: &[(&str, &str)], manifests: Option<&std::path::Path>) -> PodLab {
        // Virtual time: the node's client speaks HTTP/1.1 (see `ApiServer::http1_only`).
        let server = ApiServer::http1_only().await.expect("API double");
        let client = server.admin().await;
        let lab = PluginLab::new(PluginPolicy::default()).await;
        for p in plugins {
            lab.install(p);
        }
        for (file, text) in files {
            lab.put(file, text.as_bytes());
        }
        lab.sync().await;
        // The node joins as `labkubelet run` joins a cluster: a bootstrap token, a CSR the
        // double approves, then the node's own identity.
        server.set_auto_approve(true);
        let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
        let root = tempfile::tempdir().expect("root dir");
        std::fs::write(root.path().join(BOOTSTRAP), server.kubeconfig_with_token(&token)).expect("bootstrap kubeconfig");
        // Replaced by the running agent's runtime below.
        let placeholder = Arc::new(PluginRuntime::new(NODE, lab.catalog.clone(), Clock::new()));
        let mut lab = PodLab {
            pods: Api::namespaced(client.clone(), "default"),
            nodes: Api::all(client.clone()),
            client,
            server,
            plugins: lab,
            manifests: manifests.map(std::path::Path::to_path_buf),
            manifest_url: None,
            root,
            task: None,
            stop: tokio_util::sync::CancellationToken::new(),
            runtime: placeholder,
        };
        lab.restart_agent().await;
        lab
    }

    /// Runs the node as `labkubelet run` does (the same `agent::run`, joining the double with
    /// a bootstrap token the first time), restoring the runtime state a previous run saved;
    /// returns once the node's API is up.
    async fn spawn_agent(&self) -> (Agent, Arc<PluginRuntime>, tokio_util::sync::CancellationToken) {
        let mut config = crate::agent_config(self.root.path(), vec![NODE.to_string()], self.root.path().join(BOOTSTRAP));
        // The pod lab's node is a small one, with the kubelet's status timings.
        config.capacity = [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        config.status = StatusTimings::default();
        config.lease_duration_seconds = 40;
        config.static_pod_path = self.manifests.clone();
        config.manifest_url = self.manifest_url.clone();
        let (started, mut up) = tokio::sync::mpsc::unbounded_channel();
        config.started = Some(started);
        let stop = config.stop.clone();
        let mut task = tokio::spawn(labkubelet::agent::run(config, self.plugins.catalog.clone(), Clock::new()));
        let up = tokio::select! {
            up = up.recv() => up,
            ended = &mut task => panic!("the agent stopped before its API was up: {ended:?}"),
        };
        (task, up.expect("the agent reports its node").api.plugins.clone(), stop)
    }

    /// Injects faults into what the API server double serves from now on.
    pub fn set_faults(&self, faults: crate::apiserver::Faults) {
        self.server.set_faults(faults);
    }

    /// The API server double the node talks to.
    pub fn server(&self) -> &ApiServer {
        &self.server
    }

    /// Stops the agent and starts it again, as `systemctl restart` would.
    pub async fn restart_agent(&mut self) {
        self.stop_agent().await;
        let (task, runtime, stop) = self.spawn_agent().await;
        (self.task, self.runtime, self.stop) = (Some(task), runtime, stop);
    }

    /// Stops the agent as Ctrl-C does: the runtime state is saved, the tasks end.
    pub async fn stop_agent(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await.expect("the agent panicked")
        {
            panic!("the agent failed: {e:#}");
        }
    }

    /// Creates a pod and binds it to the node, as the scheduler does.
    pub async fn create(&self, name: &str, annotations: serde_json::Value, spec: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}, "spec": spec})).expect("pod");
        let created = self.pods.create(&PostParams::default(), &pod).await.expect("create pod");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
        let request = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&binding).expect("binding"))
            .expect("binding request");
        self.client.request_text(request).await.expect("bind the pod");
        created
    }

    /// The pod once `pred` holds, polling every 200 ms of virtual time for at most `within`.
    pub async fn until(&self, name: &str, what: &str, within: Duration, pred: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        loop {
            if let Ok(p) = self.pods.get(name).await {
                if pred(&p) {
                    return p;
                }
                last = Some(p.status);
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} {what}: not within {within:?}; last status: {last:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the pod is gone from the API; `what` says what it means if it is not.
    pub async fn gone(&self, name: &str, what: &str, within: Duration) {
        eventually(what, within, async || self.pods.get_opt(name).await.ok()?.is_none().then_some(())).await
    }

    /// The node's Ready condition once `pred` holds.
    pub async fn ready(&self, what: &str, within: Duration, pred: impl Fn(&NodeCondition) -> bool) -> NodeCondition {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let node = self.nodes.get(NODE).await.expect("node");
            let ready = node.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
            if let Some(c) = ready.filter(|c| pred(c)) {
                return c;
            }
            assert!(tokio::time::Instant::now() < deadline, "node Ready {what}: not within {within:?}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Creates an object of the default namespace (a ConfigMap, a Secret, a Service) the
    /// node's pods refer to.
    pub async fn create_object<K>(&self, object: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + serde::Serialize,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), "default");
        api.create(&PostParams::default(), &serde_json::from_value(object).expect("an object")).await.expect("created");
    }

    /// The first event about a pod with this reason, once the node has written it: events
    /// go out after the status, at the kubelet's event rate.
    pub async fn event(&self, name: &str, reason: &str) -> Event {
        let what = format!("a {reason} event about {name}");
        eventually(&what, Duration::from_secs(30), async || self.events(name).await.into_iter().find(|e| e.reason.as_deref() == Some(reason))).await
    }

    /// The events about a pod, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let all: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let mut events: Vec<Event> =
            all.list(&ListParams::default()).await.expect("events").items.into_iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).collect();
        events.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
        events
    }
}

pub fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name)
}

pub fn condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>, Option<String>)> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn reasons(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.reason.clone().unwrap_or_default()).collect()
}

pub fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

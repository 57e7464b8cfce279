//! One run of one node, built from its parts: the runtime over the plugins (restored from
//! the previous run), the pods' kubelet logic, the eviction manager and the node's HTTP API
//! for every node; the credentials, the Node, its Lease and status loop and the certificate
//! rotation besides for a node in a cluster.

use super::boot::{boot_id, machine_id};
use super::{AgentConfig, NODE_ACTIONS_QUEUED, NodeHome, Process, Started};
use crate::api_client::connections::{Connections, OnDemandClient, node_client};
use crate::bootstrap::rotation::rotate;
use crate::bootstrap::{BootstrapConfig, ensure_client_credentials};
use crate::events::EventRecorder;
use crate::events::EventType;
use crate::eviction::EvictionManager;
use crate::node::actions::NodeControl;
use crate::node::conditions::transition_events;
use crate::node::lease::NodeLease;
use crate::node::register::{NodeIdentity, reconcile_node_info, register};
use crate::node::status::NodeStatusLoop;
use crate::plugin::{PluginEvent, PluginRuntime};
use crate::pods::dns::ClusterDns;
use crate::pods::{NodePods, PodLifecycle};
use crate::runtime::outage::WithOutage;
use crate::runtime::state::RuntimeStateDir;
use crate::runtime::{ContainerRuntime, VersionInfo};
use crate::server::NodeApi;
use crate::server::auth::Access;
use crate::server::tls::{ServingCertificate, cluster_ca, server_config};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use std::net::SocketAddr;
use std::sync::Arc;

/// A node's run: its tasks, which run until the node ends, and the runtime, which outlives
/// them.
pub(super) struct NodeRun<'a> {
    pub(super) tasks: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
    pub(super) runtime: Arc<PluginRuntime>,
}

/// Starts a node: restores its runtime, registers it (unless standalone) and makes the
/// tasks that keep it: one list for every node, and the cluster's besides.
pub(super) async fn start_node<'a>(
    config: &'a AgentConfig,
    name: &'a str,
    process: &Process,
    home: &'a NodeHome,
    state: &'a RuntimeStateDir,
) -> anyhow::Result<NodeRun<'a>> {
    let clock = process.clock;
    let address = home.listener.local_addr()?;
    let (asks, asked) = tokio::sync::mpsc::channel(NODE_ACTIONS_QUEUED);
    let dns = ClusterDns::default();
    let runtime: Arc<PluginRuntime> = Arc::new(PluginRuntime::new(name, process.catalog.clone(), clock).with_node_actions(asks).with_dns(dns.clone()));
    let plugin_actions = crate::node::actions::do_asked(&home.control, asked, &home.journal, clock, name);
    // Each step of the start that awaits goes on the heap while it runs: kept inline, the
    // largest would size this future, which lives as long as the node.
    let restored = Box::pin(state.restore(&runtime)).await;
    if !restored.is_empty() {
        tracing::info!(node = name, plugins = ?restored, "restored the runtime state saved by the previous run");
    }
    // The kubelet logic sees the runtime through the node's outages.
    let cri: Arc<dyn ContainerRuntime> = Arc::new(WithOutage::new(runtime.clone(), home.control.outage().clone()));
    let version = Box::pin(runtime.version()).await?;
    let mut id = identity(config, name, &version, address.port());
    let node_pods = node_pods(config, &id, &version, dns);
    let bootstrap = config.bootstrap_for(name);
    let serving = ServingCertificate::load_or_create(&bootstrap.cert_dir, name, &config.node_ip)?;
    let spec = machine_spec(config, &id.machine_id, &id.boot_id);
    let cluster = if config.standalone { None } else { Some(Box::pin(join_cluster(config, name, bootstrap, process, home, &mut id)).await?) };

    let events = match &cluster {
        Some(c) => c.events.clone(),
        None => Arc::new(EventRecorder::standalone(name, clock).with_journal(home.journal.clone())),
    };
    let pods = PodLifecycle::new(node_pods, cluster.as_ref().map(|c| c.client.clone()), cri.clone(), clock, events.clone());
    let eviction = eviction_manager(config, home, &pods, name, &events);
    let (access, client_ca) = match &cluster {
        Some(c) => (Access::Cluster { client: c.access.clone() }, c.client_ca.clone()),
        None => (Access::Anonymous, Vec::new()),
    };
    let tls = server_config(&serving, &client_ca)?;
    let api = node_api(name, &pods, &runtime, &events, spec, access, &home.control);
    announce(config, address, &api);
    let cluster_tasks = cluster.map(|c| {
        let status = NodeStatusLoop::new(kube::Api::all(c.client.clone()), name, cri, clock, config.status, events.clone())
            .with_pleg(pods.pleg_health())
            .with_pressure(eviction.pressure())
            .with_pod_addresses(runtime.addresses().clone());
        c.tasks(config, name, status, events.clone(), clock)
    });
    let held = runtime.clone();
    let node_tasks = async move {
        tokio::join!(
            pods.run(),
            eviction.run(),
            plugin_actions,
            journal_plugin_events(&runtime, &events),
            state.keep_saved(runtime.clone(), clock),
            crate::server::serve(&home.listener, api, tls)
        );
    };
    let tasks: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> = match cluster_tasks {
        Some(cluster_tasks) => Box::pin(async move {
            tokio::join!(node_tasks, cluster_tasks);
        }),
        None => Box::pin(node_tasks),
    };
    Ok(NodeRun { tasks, runtime: held })
}

/// Who the node says it is in its Node object.
fn identity(config: &AgentConfig, name: &str, version: &VersionInfo, port: u16) -> NodeIdentity {
    NodeIdentity {
        name: name.to_string(),
        hostname: name.to_string(),
        node_ip: config.node_ip.clone(),
        labels: config.node_labels.clone(),
        taints: config.taints.clone(),
        register_schedulable: true,
        capacity: config.capacity.clone(),
        container_runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
        kubelet_version: format!("v1.33.0-labkubelet.{}", env!("CARGO_PKG_VERSION")),
        port: i32::from(port),
        machine_id: machine_id(name),
        boot_id: boot_id(&config.root_dir, name),
    }
}

/// What the pods' kubelet logic knows of its node.
fn node_pods(config: &AgentConfig, id: &NodeIdentity, version: &VersionInfo, dns: ClusterDns) -> NodePods {
    let mut labels = id.default_labels();
    labels.extend(config.node_labels.clone());
    NodePods {
        node: id.name.clone(),
        node_ip: config.node_ip.clone(),
        labels,
        allocatable: config.capacity.clone(),
        runtime_name: version.runtime_name.clone(),
        static_pod_path: config.static_pod_path.clone(),
        file_check_frequency: config.file_check_frequency,
        manifest_url: config.manifest_url.clone(),
        http_check_frequency: config.http_check_frequency,
        dns,
    }
}

/// What a node in a cluster has that a standalone one has not.
struct Cluster {
    client: kube::Client,
    /// The connections of the kubelet's client and of the node API's own, closed when the
    /// certificate rotates.
    connections: Vec<Connections>,
    access: OnDemandClient,
    client_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    events: Arc<EventRecorder>,
    node_ref: ObjectReference,
    plugin_events: tokio::sync::broadcast::Receiver<PluginEvent>,
    /// Where the node's credentials live, for their rotation.
    bootstrap: BootstrapConfig,
}

/// Makes sure of the node's credentials, builds its clients and registers its Node; the
/// node reports the API server's version.
async fn join_cluster(
    config: &AgentConfig,
    name: &str,
    bootstrap: BootstrapConfig,
    process: &Process,
    home: &NodeHome,
    id: &mut NodeIdentity,
) -> anyhow::Result<Cluster> {
    let clock = process.clock;
    let _starting = process.startups.acquire().await.context("the agent is stopping")?;
    Box::pin(ensure_client_credentials(&bootstrap)).await?;
    // The client reads the current certificate for each connection: rotation needs no
    // restart, only the connections of the old certificate closed.
    // The heartbeats (Lease, node status) go unthrottled, as the kubelet's heartbeat client;
    // everything else waits its turn as the kubelet's kubeAPIQPS and eventRecordQPS make it:
    // one client, whose requests take their lane by what they ask for.
    // A partition cuts the kubelet's clients; the node's HTTP API asks the API server who may
    // use it over a client of its own (made when first asked), so the lab can still heal the node.
    let limits = crate::api_client::Limits { api: config.api_throttle, events: config.event_throttle };
    let (client, connections) = Box::pin(node_client(&bootstrap.kubeconfig, Some(home.control.link()), limits)).await?;
    let access = OnDemandClient::new(&bootstrap.kubeconfig);
    let access_connections = access.connections();
    let events = Arc::new(EventRecorder::new(client.clone(), name, clock).with_journal(home.journal.clone()));
    let node_ref = EventRecorder::node_ref(name);
    let plugin_events = process.catalog.subscribe();
    events.record(&node_ref, EventType::Normal, "Starting", "Starting kubelet.");
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    // The version-skew policy lets a kubelet be no newer than its API server, and students
    // read `kubectl get nodes`: the node reports the server's version.
    match Box::pin(client.apiserver_version()).await {
        Ok(server) => id.kubelet_version = server.git_version,
        Err(e) => tracing::warn!(node = name, "reading the API server's version (the node reports {}): {e}", id.kubelet_version),
    }
    // The Node as registered is read here and let go: with its managed fields it is a
    // dozen KiB, for each of a thousand nodes.
    {
        let registered = Box::pin(register(&nodes, id, &clock, &["container runtime status check may not have completed yet".to_string()])).await;
        match Box::pin(reconcile_node_info(&nodes, id, &registered)).await {
            Ok(Some(_)) => events.record(&node_ref, EventType::Warning, "Rebooted", &format!("Node {name} has been rebooted, boot id: {}", id.boot_id)),
            Ok(None) => {}
            Err(e) => tracing::warn!(node = name, "updating the node's nodeInfo: {e}"),
        }
        let conditions = registered.status.and_then(|s| s.conditions).unwrap_or_default();
        for reason in transition_events(&[], &conditions) {
            events.record(&node_ref, EventType::Normal, reason, &format!("Node {name} status is now: {reason}"));
        }
    }
    let client_ca = match &config.client_ca_file {
        Some(file) => {
            let pem = std::fs::read(file).with_context(|| format!("--client-ca-file {}", file.display()))?;
            crate::server::tls::ca_file_certs(&pem).map_err(|e| anyhow::anyhow!("--client-ca-file {}: {e}", file.display()))?
        }
        None => Box::pin(cluster_ca(&bootstrap.kubeconfig)).await?,
    };
    Ok(Cluster { client, connections: vec![connections, access_connections], access, client_ca, events, node_ref, plugin_events, bootstrap })
}

impl Cluster {
    /// The cluster's tasks of a node: its Lease, its status, the plugin refusals it records
    /// as events, and the rotation of its certificate.
    fn tasks<'a>(
        self,
        config: &'a AgentConfig,
        name: &'a str,
        status: NodeStatusLoop,
        events: Arc<EventRecorder>,
        clock: crate::clock::Clock,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        let Cluster { client, connections, plugin_events, node_ref, bootstrap, .. } = self;
        let lease = NodeLease::new(client.clone(), name, config.lease_duration_seconds, clock);
        let rotation = rotate(bootstrap, client, connections, clock);
        async move {
            tokio::join!(lease.run(), status.run(), record_refusals(plugin_events, &events, &node_ref, name), rotation);
        }
    }
}

/// The machine as cAdvisor's MachineInfo shows it at `/spec/`.
fn machine_spec(config: &AgentConfig, machine_id: &str, boot_id: &str) -> serde_json::Value {
    let capacity = |k: &str| config.capacity.get(k).and_then(|q| crate::pods::resources::Quantity::parse(q).ok()).map_or(0, |q| q.value());
    serde_json::json!({
        "num_cores": capacity("cpu"),
        "cpu_frequency_khz": 0,
        "memory_capacity": capacity("memory"),
        "machine_id": machine_id,
        "system_uuid": machine_id,
        "boot_id": boot_id,
        "filesystems": [{"device": "labkubelet", "capacity": capacity("ephemeral-storage"), "type": "vfs"}],
        "cloud_provider": "Unknown",
        "instance_type": "Unknown",
    })
}

/// Records a Warning for a refused plugin file, on every node, and for a refused state
/// hand-over, on its node; until the catalog closes.
async fn record_refusals(mut plugin_events: tokio::sync::broadcast::Receiver<PluginEvent>, events: &EventRecorder, node_ref: &ObjectReference, name: &str) {
    loop {
        match plugin_events.recv().await {
            Ok(event) => {
                let ours = match &event {
                    PluginEvent::Refused { .. } => true,
                    PluginEvent::MigrationRefused { node, .. } => node == name,
                    _ => false,
                };
                if ours {
                    events.record(node_ref, EventType::Warning, "PluginRefused", &event.to_string());
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// The node's eviction manager over its pods, with the thresholds configured and the squeezes
/// a lab makes.
fn eviction_manager(config: &AgentConfig, home: &NodeHome, pods: &PodLifecycle, name: &str, events: &Arc<EventRecorder>) -> EvictionManager {
    let handles = crate::eviction::NodeHandles {
        node: name.to_string(),
        pods: pods.view(),
        evictions: pods.evictions(),
        runtime: pods.runtime(),
        clock: pods.clock(),
        events: events.clone(),
        pressure: pods.pressure(),
    };
    EvictionManager::new(handles, config.eviction.clone(), config.capacity.clone(), home.control.squeezed().clone())
}

fn node_api(
    name: &str,
    pods: &PodLifecycle,
    runtime: &Arc<PluginRuntime>,
    events: &EventRecorder,
    spec: serde_json::Value,
    access: Access,
    control: &Arc<NodeControl>,
) -> Arc<NodeApi> {
    Arc::new(NodeApi {
        node: name.to_string(),
        pods: pods.view(),
        runtime: pods.runtime(),
        clock: pods.clock(),
        plugins: runtime.clone(),
        journal: events.journal().clone(),
        pleg: pods.pleg_health(),
        spec,
        access,
        control: control.clone(),
        stats: crate::stats::StatsProvider::new(name, pods.allocatable().clone(), pods.clock().now_nanos()),
    })
}

fn announce(config: &AgentConfig, address: SocketAddr, api: &Arc<NodeApi>) {
    if let Some(started) = &config.started {
        let _ = started.send(Started { address, api: api.clone() });
    }
}

/// Puts every change of the plugin set on the node's timeline, until dropped.
async fn journal_plugin_events(runtime: &PluginRuntime, events: &EventRecorder) {
    let mut changes = runtime.catalog().subscribe();
    let (journal, node, clock) = (events.journal(), runtime.node(), runtime.clock());
    loop {
        match changes.recv().await {
            Ok(event) => {
                let about_another_node = match &event {
                    PluginEvent::Migrated { node: n, .. } | PluginEvent::MigrationRefused { node: n, .. } => n != node,
                    _ => false,
                };
                if !about_another_node {
                    let refused = matches!(event, PluginEvent::Refused { .. } | PluginEvent::MigrationRefused { .. });
                    journal.record(clock.now_nanos(), None, crate::timeline::What::Plugin { message: event.to_string(), refused });
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

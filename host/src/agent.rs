//! The agent: N nodes in one process. For each node it makes sure of client credentials
//! (TLS bootstrap, then rotation), registers the Node, keeps its Lease and status, runs the
//! pods bound to it over a runtime made of the plugins of one shared catalog, and serves
//! the node's HTTP API. A standalone node (no cluster) runs its static pods and serves its
//! API on localhost, and nothing else.

use crate::api_client::connections::{OnDemandClient, node_client};
use crate::bootstrap::rotation::rotate;
use crate::bootstrap::{BootstrapConfig, ensure_client_credentials};
use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::eviction::EvictionManager;
use crate::node::actions::{NodeControl, Restart};
use crate::node::conditions::transition_events;
use crate::node::lease::NodeLease;
use crate::node::register::{NodeIdentity, reconcile_node_info, register};
use crate::node::status::{NodeStatusLoop, StatusTimings};
use crate::plugin::{PluginCatalog, PluginEvent, PluginRuntime};
use crate::pods::{NodePods, PodLifecycle};
use crate::runtime::ContainerRuntime;
use crate::runtime::outage::WithOutage;
use crate::runtime::state::RuntimeStateDir;
use crate::server::NodeApi;
use crate::server::auth::Access;
use crate::server::tls::{ServingCertificate, cluster_ca, server_config};
use crate::timeline::Journal;
use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Taint};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// What the agent runs with: the kubelet's flags that apply.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The nodes this process runs; one is the usual kubelet.
    pub nodes: Vec<String>,
    pub kubeconfig: PathBuf,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub cert_dir: PathBuf,
    /// Where each node keeps its runtime state (`<root-dir>/<node>/runtime`).
    pub root_dir: PathBuf,
    pub node_ip: String,
    pub node_labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub capacity: BTreeMap<String, String>,
    pub lease_duration_seconds: i32,
    /// The rate limits of a node's API client and event client (`None`: none).
    pub api_throttle: Option<crate::api_client::Throttle>,
    pub event_throttle: Option<crate::api_client::Throttle>,
    pub status: StatusTimings,
    /// No cluster: static pods only, no credentials, Node, Lease or events in an API, and
    /// the HTTP API on `address` (localhost) open to anyone.
    pub standalone: bool,
    /// The address the nodes' HTTP APIs listen on.
    pub address: IpAddr,
    /// The first node's API port; node `i` listens on `port + i`. 0 picks free ports (each
    /// node's Node shows its own in `daemonEndpoints`).
    pub port: u16,
    /// The CA that signs accepted client certificates; default: the cluster CA of the
    /// node's kubeconfig.
    pub client_ca_file: Option<PathBuf>,
    /// Told about each node once its API listens (the terminal view, tests).
    pub started: Option<tokio::sync::mpsc::UnboundedSender<Started>>,
    /// staticPodPath / `--pod-manifest-path`: static pods every node runs.
    pub static_pod_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    /// staticPodURL / `--manifest-url` and its headers.
    pub manifest_url: Option<crate::pods::url_source::ManifestUrl>,
    pub http_check_frequency: Duration,
    /// The eviction manager's thresholds.
    pub eviction: crate::eviction::EvictionConfig,
    /// Cancelled to stop the agent (Ctrl-C): each node saves its runtime state and returns.
    pub stop: tokio_util::sync::CancellationToken,
}

/// A node that is up: where its API listens, and what the API serves.
#[derive(Clone)]
pub struct Started {
    pub address: SocketAddr,
    pub api: Arc<NodeApi>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Started {{ node: {}, address: {} }}", self.api.node, self.address)
    }
}

impl AgentConfig {
    /// Where a node's credentials live: the given paths for one node, a folder per node
    /// for several.
    fn bootstrap_for(&self, node: &str) -> BootstrapConfig {
        let (kubeconfig, cert_dir) = if self.nodes.len() == 1 {
            (self.kubeconfig.clone(), self.cert_dir.clone())
        } else {
            (self.cert_dir.join(node).join("kubelet.conf"), self.cert_dir.join(node))
        };
        BootstrapConfig {
            node_name: node.to_string(),
            kubeconfig,
            bootstrap_kubeconfig: self.bootstrap_kubeconfig.clone(),
            cert_dir,
            reminder: Duration::from_secs(60),
        }
    }
}

/// Runs every node until one fails for good (its credentials cannot be had, its port is
/// taken), the agent is stopped (`config.stop`) or the future is dropped. A node that fails
/// for a reason that passes starts again on its own; the others run on.
pub async fn run(config: AgentConfig, catalog: Arc<PluginCatalog>, clock: Clock) -> anyhow::Result<()> {
    let mut nodes = JoinSet::new();
    let process = Arc::new(Process { catalog, clock, startups: tokio::sync::Semaphore::new(STARTING_AT_ONCE) });
    // One configuration for every node: a copy each would give each node the names of all
    // (40 KiB a node at a thousand).
    let config = Arc::new(config);
    for (index, name) in config.nodes.iter().cloned().enumerate() {
        let (config, process) = (config.clone(), process.clone());
        nodes.spawn(async move { supervise(&config, index, &name, &process).await.with_context(|| format!("node {name}")) });
    }
    while let Some(done) = nodes.join_next().await {
        done.context("a node task panicked")??;
    }
    Ok(())
}

/// The file under `<root-dir>/<node>/` that says where the node's API listens, so
/// `labkubelet trigger` and `timeline` need only `--root-dir`.
pub const ENDPOINT_FILE: &str = "endpoint";

/// Writes where the node's API listens (`https://127.0.0.1:<port>` for an API on every
/// address): a file, so a client on this machine finds the agent.
fn record_endpoint(root_dir: &std::path::Path, node: &str, address: SocketAddr) {
    let host = if address.ip().is_unspecified() { std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST) } else { address.ip() };
    let url = format!("https://{}\n", SocketAddr::new(host, address.port()));
    let dir = root_dir.join(node);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(ENDPOINT_FILE), url)) {
        tracing::warn!(node, dir = %dir.display(), "cannot record where the node's API listens: {e}");
    }
}

/// What the nodes of a process share.
struct Process {
    catalog: Arc<PluginCatalog>,
    clock: Clock,
    /// Permits to bootstrap and register, [`STARTING_AT_ONCE`] of them.
    startups: tokio::sync::Semaphore,
}

/// How many nodes of a process bootstrap and register at the same time: a thousand nodes
/// starting at once would each find the API server at its in-flight limit.
const STARTING_AT_ONCE: usize = 50;

/// How many node actions a node's plugins may have asked for and not yet had done.
const NODE_ACTIONS_QUEUED: usize = 16;

/// The first wait before a failed node starts again; it doubles up to [`RESTART_MAX`].
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// What a node keeps across the runs of its kubelet logic: where its API listens, its
/// timeline, and the faults and restarts a lab gave it.
struct NodeHome {
    listener: tokio::net::TcpListener,
    journal: Arc<Journal>,
    control: Arc<NodeControl>,
}

/// How a run of a node's kubelet logic ended.
enum Ended {
    /// The agent is stopping.
    Stopped,
    /// A lab restarted the kubelet or rebooted the node: run it again at once.
    Restarted(Restart),
}

/// Runs a node, and runs it again: at once when a lab restarts its kubelet or reboots it,
/// and after a back-off when it failed because the API server could not serve it
/// (throttled past the retries, unavailable, unreachable), saying so.
async fn supervise(config: &AgentConfig, index: usize, name: &str, process: &Process) -> anyhow::Result<()> {
    // The port first: a port in use is the error a user sees at once, before anything else.
    let port =
        if config.port == 0 { 0 } else { u16::try_from(usize::from(config.port) + index).context("the node's API port is above 65535; lower --port")? };
    let listener = crate::server::bind(SocketAddr::new(config.address, port)).await?;
    record_endpoint(&config.root_dir, name, listener.local_addr()?);
    let home = NodeHome { listener, journal: Arc::new(Journal::new(name)), control: Arc::new(NodeControl::default()) };
    let mut delay = RESTART_FIRST;
    loop {
        // A run on the heap: the supervisor's future, spawned for each node, stays small.
        match Box::pin(run_node(config, name, process, &home)).await {
            Ok(Ended::Restarted(restart)) => {
                tracing::info!(node = name, "{}", if restart == Restart::Reboot { "the node reboots" } else { "the kubelet restarts" });
                delay = RESTART_FIRST;
            }
            Err(e) if passes(&e) && !config.stop.is_cancelled() => {
                tracing::warn!(node = name, "{e:#}; starting the node again in {delay:?}");
                crate::metrics::METRICS.node_restarts.with_label_values(&[name]).inc();
                tokio::select! {
                    () = process.clock.sleep(delay) => {}
                    () = config.stop.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(RESTART_MAX);
            }
            Ok(Ended::Stopped) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Runs a node's `tasks` until the agent stops or a lab restarts the node, then keeps the
/// runtime's state for the next run: a runtime outlives its kubelet, and after a reboot it
/// still has its records, with every container exited and every sandbox not ready.
/// The reboot and the save run on the heap: inline, they would size the future of the
/// whole run.
async fn run_until_ended(config: &AgentConfig, home: &NodeHome, state: &RuntimeStateDir, run: NodeRun<'_>) -> Ended {
    let NodeRun { tasks, runtime } = run;
    let ended = tokio::select! {
        () = tasks => Ended::Stopped,
        () = config.stop.cancelled() => Ended::Stopped,
        restart = home.control.restart_asked() => Ended::Restarted(restart),
    };
    let reboot = matches!(ended, Ended::Restarted(Restart::Reboot));
    if reboot {
        Box::pin(runtime.reboot()).await;
    }
    Box::pin(state.save_now(&runtime)).await;
    if reboot {
        next_boot(&config.root_dir, runtime.node());
    }
    ended
}

/// Whether a node's failure is the API server's, and may pass: a 429 or 5xx answer, or no
/// answer at all.
fn passes(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| match cause.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
        Some(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
        _ => matches!(cause.downcast_ref::<crate::bootstrap::BootstrapError>(), Some(crate::bootstrap::BootstrapError::Api(_))),
    })
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

/// A node's run: its tasks, which run until the node ends, and the runtime, which outlives
/// them.
struct NodeRun<'a> {
    tasks: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
    runtime: Arc<PluginRuntime>,
}

/// One run of a node's kubelet logic. The start runs on the heap and is let go: what it
/// held across its awaits (the Node it registered, the identity, the clients as built)
/// would otherwise stay in this future for as long as the node runs.
async fn run_node(config: &AgentConfig, name: &str, process: &Process, home: &NodeHome) -> anyhow::Result<Ended> {
    // The runtime kept running while the agent was down: its state carries over the runs.
    let state = RuntimeStateDir::new(&config.root_dir, name);
    let run = Box::pin(start_node(config, name, process, home, &state)).await?;
    Ok(run_until_ended(config, home, &state, run).await)
}

/// Starts a node: restores its runtime, registers it (unless standalone) and makes the
/// tasks that keep it.
async fn start_node<'a>(
    config: &'a AgentConfig,
    name: &'a str,
    process: &Process,
    home: &'a NodeHome,
    state: &'a RuntimeStateDir,
) -> anyhow::Result<NodeRun<'a>> {
    let clock = process.clock;
    let address = home.listener.local_addr()?;
    let bootstrap = config.bootstrap_for(name);

    let (asks, asked) = tokio::sync::mpsc::channel(NODE_ACTIONS_QUEUED);
    let runtime: Arc<PluginRuntime> = Arc::new(PluginRuntime::new(name, process.catalog.clone(), clock).with_node_actions(asks));
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
    let (machine, boot) = (machine_id(name), boot_id(&config.root_dir, name));
    let mut id = NodeIdentity {
        name: name.to_string(),
        hostname: name.to_string(),
        node_ip: config.node_ip.clone(),
        labels: config.node_labels.clone(),
        taints: config.taints.clone(),
        register_schedulable: true,
        capacity: config.capacity.clone(),
        container_runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
        kubelet_version: format!("v1.33.0-labkubelet.{}", env!("CARGO_PKG_VERSION")),
        port: i32::from(address.port()),
        machine_id: machine.clone(),
        boot_id: boot.clone(),
    };
    let mut labels = id.default_labels();
    labels.extend(config.node_labels.clone());
    let node_pods = NodePods {
        node: name.to_string(),
        node_ip: config.node_ip.clone(),
        labels,
        allocatable: config.capacity.clone(),
        runtime_name: version.runtime_name.clone(),
        static_pod_path: config.static_pod_path.clone(),
        file_check_frequency: config.file_check_frequency,
        manifest_url: config.manifest_url.clone(),
        http_check_frequency: config.http_check_frequency,
    };
    let serving = ServingCertificate::load_or_create(&bootstrap.cert_dir, name, &config.node_ip)?;
    let spec = machine_spec(config, &machine, &boot);

    if config.standalone {
        let events = Arc::new(EventRecorder::standalone(name, clock).with_journal(home.journal.clone()));
        let pods = PodLifecycle::new(node_pods, None, cri, clock, events.clone());
        let eviction = eviction_manager(config, home, &pods);
        let api = node_api(name, &pods, &runtime, &events, spec, Access::Anonymous, &home.control);
        let tls = server_config(&serving, &[])?;
        announce(config, address, &api);
        let held = runtime.clone();
        let tasks = async move {
            tokio::join!(
                pods.run(),
                eviction.run(),
                plugin_actions,
                journal_plugin_events(&runtime, &events),
                state.keep_saved(runtime.clone(), clock),
                crate::server::serve(&home.listener, api, tls)
            );
        };
        return Ok(NodeRun { tasks: Box::pin(tasks), runtime: held });
    }

    let starting = process.startups.acquire().await.context("the agent is stopping")?;
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
    let plugin_events = runtime.catalog().subscribe();
    events.record(&node_ref, "Normal", "Starting", "Starting kubelet.");
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
        let registered = Box::pin(register(&nodes, &id, &clock, &["container runtime status check may not have completed yet".to_string()])).await;
        match Box::pin(reconcile_node_info(&nodes, &id, &registered)).await {
            Ok(Some(_)) => events.record(&node_ref, "Warning", "Rebooted", &format!("Node {name} has been rebooted, boot id: {}", id.boot_id)),
            Ok(None) => {}
            Err(e) => tracing::warn!(node = name, "updating the node's nodeInfo: {e}"),
        }
        let conditions = registered.status.and_then(|s| s.conditions).unwrap_or_default();
        for reason in transition_events(&[], &conditions) {
            events.record(&node_ref, "Normal", reason, &format!("Node {name} status is now: {reason}"));
        }
    }
    drop(starting);

    let pods = PodLifecycle::new(node_pods, Some(client.clone()), cri.clone(), clock, events.clone());
    let eviction = eviction_manager(config, home, &pods);
    let client_ca = match &config.client_ca_file {
        Some(file) => {
            let pem = std::fs::read(file).with_context(|| format!("--client-ca-file {}", file.display()))?;
            crate::server::tls::ca_file_certs(&pem).map_err(|e| anyhow::anyhow!("--client-ca-file {}: {e}", file.display()))?
        }
        None => Box::pin(cluster_ca(&bootstrap.kubeconfig)).await?,
    };
    let tls = server_config(&serving, &client_ca)?;
    let api = node_api(name, &pods, &runtime, &events, spec, Access::Cluster { client: access }, &home.control);
    announce(config, address, &api);
    let client_for_rotation = client.clone();
    let lease = NodeLease::new(client.clone(), name, config.lease_duration_seconds, clock);
    let status = NodeStatusLoop::new(kube::Api::all(client.clone()), name, cri, clock, config.status, events.clone())
        .with_pleg(pods.pleg_health())
        .with_pressure(eviction.pressure())
        .with_pod_addresses(runtime.addresses().clone());
    let rotation = rotate(bootstrap.clone(), client_for_rotation, vec![connections, access_connections], clock);
    let serve = crate::server::serve(&home.listener, api, tls);
    let held = runtime.clone();
    let tasks = async move {
        tokio::join!(
            lease.run(),
            status.run(),
            record_refusals(plugin_events, &events, &node_ref, name),
            journal_plugin_events(&runtime, &events),
            pods.run(),
            eviction.run(),
            plugin_actions,
            state.keep_saved(runtime.clone(), clock),
            rotation,
            serve
        );
    };
    Ok(NodeRun { tasks: Box::pin(tasks), runtime: held })
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
                    events.record(node_ref, "Warning", "PluginRefused", &event.to_string());
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// The node's eviction manager over its pods, with the thresholds configured and the squeezes
/// a lab makes.
fn eviction_manager(config: &AgentConfig, home: &NodeHome, pods: &PodLifecycle) -> EvictionManager {
    EvictionManager::new(pods.context(), config.eviction.clone(), config.capacity.clone(), home.control.squeezed().clone())
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
        pods: pods.context(),
        plugins: runtime.clone(),
        journal: events.journal().clone(),
        pleg: pods.pleg_health(),
        spec,
        access,
        control: control.clone(),
        stats: crate::stats::StatsProvider::new(name, pods.context().allocatable.clone(), pods.context().clock.now_nanos()),
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

/// The file under `<root-dir>/<node>/` that counts the node's lab reboots.
const BOOTS_FILE: &str = "boots";

/// How many times a lab rebooted the node.
fn boots(root_dir: &std::path::Path, node: &str) -> u64 {
    std::fs::read_to_string(root_dir.join(node).join(BOOTS_FILE)).ok().and_then(|b| b.trim().parse().ok()).unwrap_or(0)
}

/// A node's boot id: from the machine's, so restarting the agent is not a reboot and
/// rebooting the machine is, and from the reboots a lab made.
fn boot_id(root_dir: &std::path::Path, node: &str) -> String {
    match boots(root_dir, node) {
        0 => machine_id(&format!("{node}/{}", host_boot_id())),
        n => machine_id(&format!("{node}/{}/{n}", host_boot_id())),
    }
}

/// Counts one more reboot of the node, so its next run has a new boot id.
fn next_boot(root_dir: &std::path::Path, node: &str) {
    let file = root_dir.join(node).join(BOOTS_FILE);
    if let Err(e) = std::fs::write(&file, format!("{}\n", boots(root_dir, node) + 1)) {
        tracing::warn!(node, file = %file.display(), "counting the reboot (the boot id stays): {e}");
    }
}

/// The machine's boot id.
fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|b| b.trim().to_string()).unwrap_or_default()
}

/// A stable 32-hex-digit id derived from a name, as /etc/machine-id looks.
fn machine_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(seed.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

//! The agent: N nodes in one process. For each node it makes sure of client credentials
//! (TLS bootstrap, then rotation), registers the Node, keeps its Lease and status, runs the
//! pods bound to it over a runtime made of the plugins of one shared catalog, and serves
//! the node's HTTP API. A standalone node (no cluster) runs its static pods and serves its
//! API on localhost, and nothing else.

mod boot;
mod node;

use crate::bootstrap::BootstrapConfig;
use crate::clock::Clock;
use crate::node::actions::{NodeControl, Restart};
use crate::node::status::StatusTimings;
use crate::plugin::PluginCatalog;
use crate::runtime::state::RuntimeStateDir;
use crate::server::NodeApi;
use crate::timeline::Journal;
use anyhow::Context;
use boot::next_boot;
use k8s_openapi::api::core::v1::Taint;
use node::{NodeRun, start_node};
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
        _ => cause.downcast_ref::<crate::bootstrap::BootstrapError>().is_some_and(crate::bootstrap::BootstrapError::is_transient),
    })
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

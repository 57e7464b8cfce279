//! The runtime of one node, made of plugins: routes each call to the plugin that serves
//! the pod (or owns the id) through one call helper (`instances`), which keeps one instance
//! per plugin, moves an instance's state into its replacement when the plugin is swapped,
//! and holds replies as plugins ask. `cri` is the CRI over it; `failed_starts` shows a start
//! a plugin trapped in as containerd shows a failed start.

mod cri;
mod failed_starts;
mod instances;
mod traps;

use super::bindings::{
    AskedAction, HostState, NodeLinks,
    exports::labkubelet::runtime::runtime::{Guest, PluginInfo},
};
use super::catalog::PluginCatalog;
use super::instance::CallFuture;
use crate::clock::Clock;
use crate::pods::dns::ClusterDns;
use crate::runtime::ipam::PodAddresses;
use crate::runtime::*;
use instances::Slot;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use wasmtime::Store;

/// A plugin's answer to a lab trigger.
pub type TriggerResult = Result<String, TriggerError>;
pub use super::bindings::labkubelet::runtime::lab::TriggerError;

/// The container runtime of one node, served by the plugins of a [`PluginCatalog`].
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginPolicy, PluginRuntime};
/// use labkubelet::runtime::ContainerRuntime;
/// let engine = PluginEngine::new(PluginPolicy::default())?;
/// let catalog = PluginCatalog::new(engine).await?;
/// let runtime = PluginRuntime::new("node-1", catalog, labkubelet::clock::Clock::new());
/// let conditions = runtime.status().await?;
/// assert!(conditions.iter().all(|c| c.status));
/// # Ok(()) }
/// ```
pub struct PluginRuntime {
    node: String,
    catalog: Arc<PluginCatalog>,
    clock: Clock,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Which plugin holds each sandbox and container id.
    owners: Mutex<HashMap<String, String>>,
    /// Which plugin holds each pod's sandboxes, by pod uid.
    serving: Mutex<HashMap<String, String>>,
    addresses: Arc<PodAddresses>,
    /// The addresses of sandboxes that outlived an agent restart have been read.
    addresses_known: tokio::sync::OnceCell<()>,
    /// Where the node actions its plugins ask for go, and the DNS their containers ask.
    links: NodeLinks,
    /// Starts a plugin trapped in, shown as failed starts.
    failed_starts: failed_starts::FailedStarts,
}

impl PluginRuntime {
    pub fn new(node: &str, catalog: Arc<PluginCatalog>, clock: Clock) -> Self {
        PluginRuntime {
            node: node.to_string(),
            catalog,
            clock,
            slots: Mutex::new(BTreeMap::new()),
            owners: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
            addresses: Arc::new(PodAddresses::default()),
            addresses_known: tokio::sync::OnceCell::new(),
            links: NodeLinks::default(),
            failed_starts: Default::default(),
        }
    }

    /// Sends the node actions its plugins ask for (`act-on-node`) to `asks`; without it they
    /// are dropped.
    pub fn with_node_actions(mut self, asks: tokio::sync::mpsc::Sender<AskedAction>) -> Self {
        self.links.actions = Some(asks);
        self
    }

    /// Answers the names its plugins' containers look up (`nslookup`, `getent hosts`) from
    /// `dns`; without it no name resolves.
    pub fn with_dns(mut self, dns: ClusterDns) -> Self {
        self.links.dns = dns;
        self
    }

    /// The plugin whose instance holds the pod's sandbox: the one that serves the pod now,
    /// which after a swap or a removal may differ from the one a new pod would get.
    pub fn serving(&self, pod_uid: &str) -> Option<String> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner()).get(pod_uid).cloned()
    }

    /// The node's pod addresses.
    pub fn addresses(&self) -> &Arc<PodAddresses> {
        &self.addresses
    }

    /// Reads the addresses of the sandboxes the plugins hold (after an agent restart they
    /// hold some), once, before the first new one is handed out.
    async fn know_addresses(&self) {
        self.addresses_known
            .get_or_init(|| async {
                for sandbox in self.list_pod_sandboxes().await.unwrap_or_default() {
                    if sandbox.state != PodSandboxState::Ready {
                        continue;
                    }
                    let ip = self.pod_sandbox_status(&sandbox.id).await.ok().and_then(|s| s.ip.parse().ok());
                    if let Some(ip) = ip
                        && let Err(e) = self.addresses.record(&sandbox.id, ip)
                    {
                        tracing::warn!(node = %self.node, sandbox = %sandbox.id, "{e}");
                    }
                }
            })
            .await;
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn catalog(&self) -> &Arc<PluginCatalog> {
        &self.catalog
    }

    /// Records the plugin of a new sandbox or container. An id another plugin holds is
    /// refused: the host, not the plugins, keeps ids unique on a node.
    fn claim(&self, id: &str, plugin: &str, what: &str) -> Result<(), RuntimeError> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match owners.get(id) {
            Some(holder) if holder != plugin => Err(RuntimeError::Runtime {
                code: ErrorCode::Failed,
                message: format!("plugin {plugin} gave its new {what} the id {id}, which plugin {holder} holds on this node; ids must be unique"),
            }),
            _ => {
                owners.insert(id.to_string(), plugin.to_string());
                Ok(())
            }
        }
    }

    fn disown(&self, id: &str) {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The plugin that holds an id; asks every active plugin when the id is not known yet
    /// (after a restart, say).
    async fn owner(&self, id: &str) -> Result<String, RuntimeError> {
        if let Some(p) = self.owners.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(p.clone());
        }
        self.list_pod_sandboxes().await?;
        self.list_containers().await?;
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::not_found(format!("no pod sandbox or container with id {id} on this node")))
    }

    /// Tells every plugin instance on this node that the machine rebooted: their containers
    /// end and their sandboxes are not ready, as containerd finds them after a boot.
    pub async fn reboot(&self) {
        for plugin in self.active() {
            if let Err(e) = self.call(&plugin, "reboot", |g, s| Box::pin(g.call_reboot(s))).await {
                tracing::warn!(node = %self.node, plugin, "rebooting the runtime: {e}");
            }
        }
    }

    /// Sends a lab action to a plugin's instance on this node.
    pub async fn trigger(&self, plugin: &str, action: &str, target: &TriggerTarget, args: &[KeyValue]) -> Result<TriggerResult, RuntimeError> {
        if self.catalog.get(plugin).is_none() {
            let known: Vec<String> = self.catalog.plugins().iter().map(|p| p.info.name.clone()).collect();
            return Err(RuntimeError::not_found(format!("no plugin named {plugin}; loaded: {}", known.join(", "))));
        }
        let (action, target, args) = (action.to_string(), target.clone(), args.to_vec());
        self.call(plugin, "trigger", move |g, s| Box::pin(async move { g.call_trigger(s, &action, &target, &args).await })).await
    }

    /// Asks a plugin's instance on this node who it is: the answer comes from the instance
    /// that serves now, so it shows when a swap has reached this node.
    pub async fn plugin_info(&self, plugin: &str) -> Result<PluginInfo, RuntimeError> {
        self.call(plugin, "info", |g, s| Box::pin(g.call_info(s))).await
    }

    /// Lists over every active plugin, recording which plugin holds each id.
    async fn list_everywhere<T, F>(&self, method: &'static str, id: fn(&T) -> &String, call: impl Fn() -> F) -> Result<Vec<T>, RuntimeError>
    where
        F: for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> CallFuture<'a, Result<Vec<T>, WitRuntimeError>>,
    {
        let mut all = Vec::new();
        for plugin in self.active() {
            let listed = self.call(&plugin, method, call()).await?.map_err(runtime_error)?;
            // The hot path of every relist: one lock, and no allocation for known ids.
            let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            let others = all.len();
            for item in listed {
                match owners.get(id(&item).as_str()) {
                    Some(holder) if *holder == plugin => {}
                    Some(holder) if all[..others].iter().any(|seen: &T| id(seen) == id(&item)) => {
                        tracing::warn!(node = %self.node, plugin, id = %id(&item), "plugin {holder} lists the same id; the first keeps it");
                        continue;
                    }
                    _ => {
                        owners.insert(id(&item).clone(), plugin.clone());
                    }
                }
                all.push(item);
            }
        }
        Ok(all)
    }

    fn select(&self, pod: &PodSandboxConfig) -> String {
        self.catalog.select(&pod.labels, &pod.annotations).info.name.clone()
    }

    fn image_plugin(&self, pod: Option<&PodSandboxConfig>) -> String {
        pod.map_or_else(|| self.catalog.default_plugin().info.name.clone(), |p| self.select(p))
    }
}

use super::bindings::labkubelet::runtime::types::RuntimeError as WitRuntimeError;

fn runtime_error(e: WitRuntimeError) -> RuntimeError {
    RuntimeError::Runtime { code: e.code, message: e.message }
}

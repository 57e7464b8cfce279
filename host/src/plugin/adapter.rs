//! The runtime of one node, made of plugins: routes each call to the plugin that serves
//! the pod (or owns the id), keeps one instance per plugin, moves an instance's state into
//! its replacement when the plugin is swapped, and holds replies as plugins ask.

use super::bindings::{
    AskedAction, Hold, HostState, NodeActionAsks,
    exports::labkubelet::runtime::runtime::{Guest, PluginInfo},
};
use super::catalog::{PluginCatalog, PluginEvent};
use super::engine::LoadedPlugin;
use super::instance::{CallFuture, PluginInstance};
use crate::clock::Clock;
use crate::runtime::ipam::{POD_IP_ANNOTATION, PodAddresses};
use crate::runtime::*;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::Store;

/// A plugin's instance on this node, and the channel that releases its held replies.
struct Slot {
    instance: tokio::sync::Mutex<Option<Running>>,
    /// Outlives instance swaps, so a `heal` from a new instance releases replies held by
    /// the old one.
    release: Arc<watch::Sender<u64>>,
}

struct Running {
    plugin: Arc<LoadedPlugin>,
    instance: PluginInstance,
    /// A replacement that refused this instance's state: not retried for every call.
    refused: Option<[u8; 32]>,
    /// The state it last exported or was given (saved every [`crate::runtime::state::SAVE_PERIOD`]):
    /// what a replacement starts from when this instance traps.
    saved: Option<Vec<u8>>,
}

/// What became of a hand-over of state to a new instance.
enum HandOver {
    /// The new instance serves, from this state (`None`: it starts empty).
    Took(Option<Vec<u8>>),
    /// It refused the state: the old instance serves on.
    Refused,
}

/// A plugin's answer to a lab trigger.
pub type TriggerResult = Result<String, TriggerError>;
pub use super::bindings::labkubelet::runtime::types::TriggerError;

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
    /// Where the node actions its plugins ask for go.
    node_actions: NodeActionAsks,
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
            node_actions: None,
        }
    }

    /// Sends the node actions its plugins ask for (`act-on-node`) to `asks`; without it they
    /// are dropped.
    pub fn with_node_actions(mut self, asks: tokio::sync::mpsc::Sender<AskedAction>) -> Self {
        self.node_actions = Some(asks);
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

    fn slot(&self, plugin: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(plugin.to_string())
            .or_insert_with(|| Arc::new(Slot { instance: tokio::sync::Mutex::new(None), release: Arc::new(watch::channel(0).0) }))
            .clone()
    }

    /// The plugins with an instance on this node.
    fn active(&self) -> Vec<String> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
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

    /// Calls a plugin's instance: makes or swaps the instance as the catalog says, runs the
    /// call under its limits, then holds the reply as the plugin asked, without holding the
    /// instance.
    async fn call<R>(
        &self,
        plugin: &str,
        method: &'static str,
        f: impl for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> CallFuture<'a, R>,
    ) -> Result<R, RuntimeError> {
        let started = std::time::Instant::now();
        let answer = self.call_held(plugin, method, f).await;
        let metrics = &crate::metrics::METRICS;
        metrics.runtime_operations_duration.with_label_values(&[&self.node, plugin, method]).observe(started.elapsed().as_secs_f64());
        if answer.is_err() {
            metrics.runtime_operations_errors.with_label_values(&[&self.node, plugin, method]).inc();
        }
        answer
    }

    async fn call_held<R>(
        &self,
        plugin: &str,
        method: &'static str,
        f: impl for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> CallFuture<'a, R>,
    ) -> Result<R, RuntimeError> {
        let slot = self.slot(plugin);
        let (answer, hold) = {
            let mut guard = slot.instance.lock().await;
            let current = self.catalog.get_or_default(plugin);
            let running = self.ensure(&mut guard, current, plugin, &slot).await?;
            match running.instance.call(method, f).await {
                Ok(answered) => answered,
                Err(e) => {
                    // A trapped instance may be half-way through a change: a new one starts
                    // from the state saved before it, so the node's other containers live on.
                    let trapped = guard.take();
                    *guard = self.restart(trapped, plugin, &slot, &e).await;
                    return Err(e);
                }
            }
        };
        self.hold(hold, &slot).await;
        Ok(answer)
    }

    /// A new instance for one that trapped with `e`, from the trapped one's saved state; `None`
    /// (the next call starts one empty) when there is none or the new one refuses it.
    async fn restart(&self, trapped: Option<Running>, plugin: &str, slot: &Slot, e: &RuntimeError) -> Option<Running> {
        let Some(Running { plugin: loaded, saved: Some(state), .. }) = trapped else {
            tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted with empty state");
            return None;
        };
        let restored = match self.start(&loaded, plugin, slot).await {
            Ok(mut fresh) => match fresh.import_state(state.clone()).await {
                Ok(Ok(())) => Ok(fresh),
                Ok(Err(refused)) => Err(refused),
                Err(failed) => Err(failed.to_string()),
            },
            Err(failed) => Err(failed.to_string()),
        };
        match restored {
            Ok(instance) => {
                tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted from the state it saved last");
                Some(Running { plugin: loaded, instance, refused: None, saved: Some(state) })
            }
            Err(why) => {
                tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted with empty state ({why})");
                None
            }
        }
    }

    /// Makes sure the slot runs `current`, moving the old instance's state into it.
    async fn ensure<'g>(&self, guard: &'g mut Option<Running>, current: Arc<LoadedPlugin>, plugin: &str, slot: &Slot) -> Result<&'g mut Running, RuntimeError> {
        let stale = match guard.as_ref() {
            None => true,
            Some(r) => !Arc::ptr_eq(&r.plugin, &current) && r.refused != Some(current.fingerprint),
        };
        if stale {
            let mut fresh = self.start(&current, plugin, slot).await?;
            let handed = match guard.as_mut() {
                None => HandOver::Took(None),
                Some(old) => self.hand_over(old, &mut fresh, &current, plugin).await,
            };
            if let HandOver::Took(saved) = handed {
                *guard = Some(Running { plugin: current, instance: fresh, refused: None, saved });
            }
        }
        guard.as_mut().ok_or_else(|| RuntimeError::Trap { plugin: plugin.into(), method: "instantiate", detail: "no instance".into() })
    }

    /// Moves the old instance's state into the new one. `Refused` when the new one is a
    /// version of the same plugin that refuses the state: the old one serves on.
    async fn hand_over(&self, old: &mut Running, fresh: &mut PluginInstance, current: &LoadedPlugin, plugin: &str) -> HandOver {
        let imported = match old.instance.export_state().await {
            Ok(state) => fresh
                .import_state(state.clone())
                .await
                .and_then(|r| r.map_err(|detail| RuntimeError::Trap { plugin: plugin.into(), method: "import-state", detail }))
                .map(|()| state),
            Err(e) => Err(e),
        };
        let still_loaded = self.catalog.get(&old.plugin.info.name).is_some_and(|p| p.fingerprint == current.fingerprint);
        match imported {
            Ok(state) => {
                self.catalog.emit(PluginEvent::Migrated { node: self.node.clone(), name: current.info.name.clone(), version: current.info.version.clone() });
                HandOver::Took(Some(state))
            }
            Err(e) if still_loaded => {
                self.catalog.emit(PluginEvent::MigrationRefused { node: self.node.clone(), name: current.info.name.clone(), error: e.to_string() });
                old.refused = Some(current.fingerprint);
                HandOver::Refused
            }
            // The plugin was unloaded: its pods go to the default plugin, with the state if it
            // takes it, without otherwise.
            Err(e) => {
                tracing::warn!(node = %self.node, plugin, "{e}; {} starts with empty state", current.info.name);
                HandOver::Took(None)
            }
        }
    }

    async fn start(&self, plugin: &LoadedPlugin, slot_name: &str, slot: &Slot) -> Result<PluginInstance, RuntimeError> {
        let mut instance = PluginInstance::start(
            self.catalog.engine(),
            &plugin.pre,
            slot_name.into(),
            &self.node,
            self.clock,
            slot.release.clone(),
            self.node_actions.clone(),
        )
        .await?;
        // The plugin took this configuration when it was loaded: a refusal now is its fault.
        instance.configure(&plugin.config).await?.map_err(|e| RuntimeError::Trap {
            plugin: slot_name.into(),
            method: "configure",
            detail: format!("it refuses the configuration it accepted when loaded: {}", plugin.config.describe(&e)),
        })?;
        Ok(instance)
    }

    async fn hold(&self, hold: Hold, slot: &Slot) {
        match hold {
            Hold::None => {}
            Hold::Delay(d) => {
                let mut released = slot.release.subscribe();
                tokio::select! {
                    _ = self.clock.sleep(d) => {}
                    _ = released.changed() => {}
                }
            }
            Hold::Hang => {
                let mut released = slot.release.subscribe();
                let _ = released.changed().await;
            }
        }
    }

    /// The exported state of every plugin instance on this node, by plugin: what a
    /// restarted agent imports so the runtime carries on (containers keep running, restart
    /// counts stay).
    pub async fn export_states(&self) -> Vec<(String, Vec<u8>)> {
        let mut states = Vec::new();
        for plugin in self.active() {
            let slot = self.slot(&plugin);
            let mut guard = slot.instance.lock().await;
            let Some(running) = guard.as_mut() else { continue };
            match running.instance.export_state().await {
                Ok(state) => {
                    running.saved = Some(state.clone());
                    states.push((plugin, state));
                }
                Err(e) => tracing::warn!(node = %self.node, plugin, "exporting the runtime state: {e}"),
            }
        }
        states
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

    /// Starts the named plugins' instances with saved state. A plugin that is no longer
    /// loaded, or refuses the state, is reported and starts empty when first used.
    pub async fn import_states(&self, states: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
        let mut refused = Vec::new();
        for (plugin, state) in states {
            let Some(current) = self.catalog.get(&plugin) else {
                refused.push((plugin, "the plugin is not loaded".to_string()));
                continue;
            };
            let slot = self.slot(&plugin);
            let mut guard = slot.instance.lock().await;
            let imported = match self.start(&current, &plugin, &slot).await {
                Ok(mut fresh) => match fresh.import_state(state.clone()).await {
                    Ok(Ok(())) => {
                        *guard = Some(Running { plugin: current, instance: fresh, refused: None, saved: Some(state) });
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = imported {
                refused.push((plugin, e));
            }
        }
        refused
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

#[async_trait]
impl ContainerRuntime for PluginRuntime {
    async fn version(&self) -> Result<VersionInfo, RuntimeError> {
        let name = self.catalog.default_plugin().info.name.clone();
        self.call(&name, "version", |g, s| Box::pin(g.call_version(s))).await
    }

    /// Merged over the active plugins: a condition is true only where every plugin says so.
    async fn status(&self) -> Result<Vec<RuntimeCondition>, RuntimeError> {
        let mut plugins = self.active();
        if plugins.is_empty() {
            plugins.push(self.catalog.default_plugin().info.name.clone());
        }
        let mut merged: Vec<RuntimeCondition> = Vec::new();
        for plugin in plugins {
            for c in self.call(&plugin, "status", |g, s| Box::pin(g.call_status(s))).await? {
                match merged.iter_mut().find(|m| m.condition_type == c.condition_type) {
                    Some(m) if m.status && !c.status => *m = c,
                    Some(_) => {}
                    None => merged.push(c),
                }
            }
        }
        Ok(merged)
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        if let Some(message) = self.catalog.missing_scenario(&config.annotations) {
            return Err(RuntimeError::Runtime { code: ErrorCode::Unavailable, message });
        }
        let plugin = self.select(config);
        self.know_addresses().await;
        let config_uid = config.metadata.uid.clone();
        let pending = format!("new:{config_uid}:{}", config.metadata.attempt);
        let offered = self.addresses.allocate(&pending);
        let mut config = config.clone();
        if let Some(ip) = offered {
            config.annotations.push(KeyValue { key: POD_IP_ANNOTATION.into(), value: ip.to_string() });
        }
        let created = self.call(&plugin, "run-pod-sandbox", move |g, s| Box::pin(async move { g.call_run_pod_sandbox(s, &config).await })).await;
        let id = match created.and_then(|c| c.map_err(runtime_error)) {
            Ok(id) => id,
            Err(e) => {
                self.addresses.release(&pending);
                return Err(e);
            }
        };
        self.addresses.transfer(&pending, &id);
        self.claim(&id, &plugin, "pod sandbox")?;
        self.serving.lock().unwrap_or_else(|p| p.into_inner()).insert(config_uid, plugin.clone());
        // The plugin may have chosen another address: it must be one no other sandbox holds.
        let reported: Option<std::net::Ipv4Addr> = self.pod_sandbox_status(&id).await.ok().and_then(|s| s.ip.parse().ok());
        if let Some(ip) = reported.filter(|ip| Some(*ip) != offered)
            && let Err(taken) = self.addresses.record(&id, ip)
        {
            let _ = self.stop_pod_sandbox(&id).await;
            let _ = self.remove_pod_sandbox(&id).await;
            return Err(RuntimeError::Runtime {
                code: ErrorCode::Failed,
                message: format!("plugin {plugin} gave the new pod sandbox an address in use: {taken}"),
            });
        }
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let owned = id.to_string();
        self.call(&plugin, "stop-pod-sandbox", move |g, s| Box::pin(async move { g.call_stop_pod_sandbox(s, &owned).await })).await?.map_err(runtime_error)?;
        // Stopping a sandbox tears its network down (CNI DEL): the address is free.
        self.addresses.release(id);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let Ok(plugin) = self.owner(id).await else { return Ok(()) };
        let owned = id.to_string();
        self.call(&plugin, "remove-pod-sandbox", move |g, s| Box::pin(async move { g.call_remove_pod_sandbox(s, &owned).await }))
            .await?
            .map_err(runtime_error)?;
        self.disown(id);
        self.addresses.release(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "inspect-pod-sandbox", move |g, s| Box::pin(async move { g.call_inspect_pod_sandbox(s, &id).await })).await?.map_err(runtime_error)
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, RuntimeError> {
        let listed = self.list_everywhere("list-pod-sandboxes", |s: &PodSandbox| &s.id, || |g, s| Box::pin(g.call_list_pod_sandboxes(s))).await?;
        // The newest sandbox of a pod says who serves it. Every relist runs this: entries are
        // changed only where they differ.
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest: HashMap<&str, (i64, Option<&String>)> = HashMap::new();
        for sandbox in &listed {
            let uid = sandbox.metadata.uid.as_str();
            if newest.get(uid).is_none_or(|(at, _)| *at <= sandbox.created_at) {
                newest.insert(uid, (sandbox.created_at, owners.get(&sandbox.id)));
            }
        }
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        serving.retain(|uid, _| newest.get(uid.as_str()).is_some_and(|(_, plugin)| plugin.is_some()));
        for (uid, (_, plugin)) in newest {
            if let Some(plugin) = plugin
                && serving.get(uid) != Some(plugin)
            {
                serving.insert(uid.to_string(), plugin.clone());
            }
        }
        drop((owners, serving));
        Ok(listed)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let plugin = self.owner(sandbox_id).await?;
        let sandbox_id = sandbox_id.to_string();
        let config = config.clone();
        let id = self
            .call(&plugin, "create-container", move |g, s| Box::pin(async move { g.call_create_container(s, &sandbox_id, &config).await }))
            .await?
            .map_err(runtime_error)?;
        self.claim(&id, &plugin, "container")?;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "start-container", move |g, s| Box::pin(async move { g.call_start_container(s, &id).await })).await?.map_err(runtime_error)
    }

    async fn update_container_files(&self, id: &str, files: &[ContainerFile]) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, files) = (id.to_string(), files.to_vec());
        self.call(&plugin, "update-container-files", move |g, s| Box::pin(async move { g.call_update_container_files(s, &id, &files).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let id = id.to_string();
        self.call(&plugin, "stop-container", move |g, s| Box::pin(async move { g.call_stop_container(s, &id, seconds).await })).await?.map_err(runtime_error)
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let Ok(plugin) = self.owner(id).await else { return Ok(()) };
        let owned = id.to_string();
        self.call(&plugin, "remove-container", move |g, s| Box::pin(async move { g.call_remove_container(s, &owned).await })).await?.map_err(runtime_error)?;
        self.disown(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "inspect-container", move |g, s| Box::pin(async move { g.call_inspect_container(s, &id).await })).await?.map_err(runtime_error)
    }

    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError> {
        self.list_everywhere("list-containers", |c: &Container| &c.id, || |g, s| Box::pin(g.call_list_containers(s))).await
    }

    /// Each plugin speaks for its own containers only.
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, RuntimeError> {
        let mut all = Vec::new();
        for plugin in self.active() {
            let listed = self.call(&plugin, "list-container-stats", |g, s| Box::pin(g.call_list_container_stats(s))).await?.map_err(runtime_error)?;
            let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(listed.into_iter().filter(|s| owners.get(&s.id) == Some(&plugin)));
        }
        Ok(all)
    }

    async fn pull_image(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<String, RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        let pod = pod.cloned();
        self.call(&plugin, "pull-image", move |g, s| Box::pin(async move { g.call_pull_image(s, &image, pod.as_ref()).await })).await?.map_err(runtime_error)
    }

    async fn image_status(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<Option<Image>, RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        self.call(&plugin, "inspect-image", move |g, s| Box::pin(async move { g.call_inspect_image(s, &image).await })).await?.map_err(runtime_error)
    }

    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        let mut all: Vec<Image> = Vec::new();
        for plugin in self.active() {
            let listed = self.call(&plugin, "list-images", |g, s| Box::pin(g.call_list_images(s))).await?.map_err(runtime_error)?;
            all.extend(listed.into_iter().filter(|i| !all.iter().any(|a| a.id == i.id)).collect::<Vec<_>>());
        }
        Ok(all)
    }

    async fn remove_image(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        self.call(&plugin, "remove-image", move |g, s| Box::pin(async move { g.call_remove_image(s, &image).await })).await?.map_err(runtime_error)
    }

    async fn container_logs(&self, id: &str, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "container-logs", move |g, s| Box::pin(async move { g.call_container_logs(s, &id, since, tail).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], stdin: &[u8], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let plugin = self.owner(id).await?;
        let seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let (id, cmd, stdin) = (id.to_string(), cmd.to_vec(), stdin.to_vec());
        self.call(&plugin, "exec-sync", move |g, s| Box::pin(async move { g.call_exec_sync(s, &id, &cmd, &stdin, seconds).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_session_open(&self, id: &str, cmd: &[String]) -> Result<SessionOpened, RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, cmd) = (id.to_string(), cmd.to_vec());
        self.call(&plugin, "exec-session-open", move |g, s| Box::pin(async move { g.call_exec_session_open(s, &id, &cmd).await })).await?.map_err(runtime_error)
    }

    async fn exec_session_line(&self, id: &str, session: u64, line: &str) -> Result<SessionOutput, RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, line) = (id.to_string(), line.to_string());
        self.call(&plugin, "exec-session-line", move |g, s| Box::pin(async move { g.call_exec_session_line(s, &id, session, &line).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_session_close(&self, id: &str, session: u64) {
        let Ok(plugin) = self.owner(id).await else { return };
        let id = id.to_string();
        // A session whose plugin went away is gone with it.
        let _ = self.call(&plugin, "exec-session-close", move |g, s| Box::pin(async move { g.call_exec_session_close(s, &id, session).await })).await;
    }

    async fn serve_http(&self, pod_sandbox_id: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, RuntimeError> {
        let plugin = self.owner(pod_sandbox_id).await?;
        let (id, request) = (pod_sandbox_id.to_string(), request.clone());
        self.call(&plugin, "serve-http", move |g, s| Box::pin(async move { g.call_serve_http(s, &id, port, &request).await })).await?.map_err(runtime_error)
    }

    async fn probe(&self, id: &str, kind: ProbeKind, action: &ProbeAction) -> Result<ProbeResult, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        let action = action.clone();
        self.call(&plugin, "probe", move |g, s| Box::pin(async move { g.call_probe(s, &id, kind, &action).await })).await?.map_err(runtime_error)
    }
}

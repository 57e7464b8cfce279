//! One instance of a plugin: its store, and the discipline every call goes through — a
//! deadline, a memory cap, and the reply holding a plugin asks for.

use super::bindings::labkubelet::runtime::lab::ConfigError;
use super::bindings::{
    Hold, HostState, NodeLinks, Plugin, PluginPre,
    exports::labkubelet::runtime::runtime::{Guest, PluginInfo},
};
use super::config_file::ConfigFile;
use super::policy::PluginPolicy;
use crate::clock::Clock;
use crate::runtime::RuntimeError;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The future of one call into a plugin's exports.
pub(crate) type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

pub(crate) struct PluginInstance {
    store: Store<HostState>,
    bindings: Plugin,
}

/// Instances started by this process, so no two get the same seed.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl PluginInstance {
    /// Instantiates a plugin for a node. The instance sees only the host imports and what
    /// the operator granted this plugin by name.
    pub(crate) async fn start(
        policy: &PluginPolicy,
        pre: &PluginPre<HostState>,
        plugin: Arc<str>,
        node: &str,
        clock: Clock,
        release: Arc<watch::Sender<u64>>,
        links: NodeLinks,
    ) -> Result<Self, RuntimeError> {
        let trap = |detail: String| RuntimeError::Trap { plugin: plugin.to_string(), method: "instantiate", detail };
        let mut wasi = WasiCtxBuilder::new();
        if let Some(grants) = policy.grants.get(&*plugin) {
            for (key, value) in &grants.env {
                wasi.env(key, value);
            }
            for (host, guest) in &grants.dirs {
                wasi.preopened_dir(host, guest, FsPerms::ReadOnly).map_err(|e| trap(format!("cannot grant folder {}: {e}", host.display())))?;
            }
        }
        // Every instance draws its own numbers: a replacement (a swap, an agent restart) that
        // drew its predecessor's would hand out the ids and addresses it already gave.
        let started = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed: [u8; 32] = Sha256::new()
            .chain_update(policy.seed.to_le_bytes())
            .chain_update(node.as_bytes())
            .chain_update([0])
            .chain_update(plugin.as_bytes())
            .chain_update([0])
            .chain_update(started.to_le_bytes())
            .chain_update(clock.now_nanos().to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .finalize()
            .into();
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            plugin: plugin.clone(),
            node: node.into(),
            clock,
            rng: SmallRng::from_seed(seed),
            release,
            links,
            memory_limit: policy.memory_limit,
            deadline: policy.call_deadline,
            call_started: None,
            hold: Hold::None,
            deadline_hit: false,
            memory_denied: false,
            last_error: None,
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|s| s);
        store.epoch_deadline_callback(HostState::on_epoch);
        store.set_epoch_deadline(1);
        store.data_mut().begin_call();
        let instantiated = pre.instantiate_async(&mut store).await;
        store.data_mut().end_call();
        match instantiated {
            Ok(bindings) => Ok(PluginInstance { store, bindings }),
            Err(e) => Err(classify(&mut store, "instantiate", e)),
        }
    }

    /// Runs one export call under the deadline. Returns the answer and how the plugin asked
    /// for it to be held. After an error the instance must not be used again.
    ///
    /// The call's arguments are moved into `f`: its future may borrow only the bindings
    /// and the store.
    pub(crate) async fn call<R>(
        &mut self,
        method: &'static str,
        f: impl for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> CallFuture<'a, R>,
    ) -> Result<(R, Hold), RuntimeError> {
        self.store.data_mut().begin_call();
        self.store.set_epoch_deadline(1);
        let result = f(self.bindings.labkubelet_runtime_runtime(), &mut self.store).await;
        let hold = self.store.data_mut().end_call();
        match result {
            Ok(r) => Ok((r, hold)),
            Err(e) => Err(classify(&mut self.store, method, e)),
        }
    }

    pub(crate) async fn info(&mut self) -> Result<PluginInfo, RuntimeError> {
        Ok(self.call("info", |g, s| Box::pin(g.call_info(s))).await?.0)
    }

    /// Gives the instance its configuration, as the first call; the plugin's refusal is
    /// returned as it gave it.
    pub(crate) async fn configure(&mut self, config: &ConfigFile) -> Result<Result<(), ConfigError>, RuntimeError> {
        let config = config.to_wit();
        Ok(self.call("configure", move |g, s| Box::pin(async move { g.call_configure(s, &config).await })).await?.0)
    }

    pub(crate) async fn export_state(&mut self) -> Result<Vec<u8>, RuntimeError> {
        Ok(self.call("export-state", |g, s| Box::pin(g.call_export_state(s))).await?.0)
    }

    /// Takes over exported state; the plugin's refusal is returned as its message.
    pub(crate) async fn import_state(&mut self, state: Vec<u8>) -> Result<Result<(), String>, RuntimeError> {
        Ok(self.call("import-state", move |g, s| Box::pin(async move { g.call_import_state(s, &state).await })).await?.0)
    }
}

/// Turns a wasmtime error into what the kubelet logic sees: a deadline, a memory cap, or a
/// trap with the plugin's last logged error.
fn classify(store: &mut Store<HostState>, method: &'static str, e: wasmtime::Error) -> RuntimeError {
    let state = store.data_mut();
    let plugin = state.plugin.to_string();
    if state.deadline_hit {
        return RuntimeError::Deadline { plugin, method, deadline: state.deadline };
    }
    let last = state.last_error.take();
    // The SDK's panic hook logs the message with its file and line: that is the story, not
    // the wasm backtrace of the abort that follows.
    if let Some(panic) = last.as_ref().filter(|l| l.starts_with("panicked")) {
        return RuntimeError::Trap { plugin, method, detail: panic.clone() };
    }
    let mut detail = if state.memory_denied { format!("memory limit of {} MiB reached", state.memory_limit >> 20) } else { format!("{e:#}") };
    if let Some(last) = last {
        detail.push_str(&format!(" (last error it logged: {last})"));
    }
    RuntimeError::Trap { plugin, method, detail }
}

//! The generated bindings of the `labkubelet:runtime` WIT package, and the host side of
//! its imports: what a plugin may ask of the host, and nothing else.

use crate::clock::Clock;
use crate::pods::dns::ClusterDns;
use rand::RngCore;
use rand::rngs::SmallRng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

use self::labkubelet::runtime::lab::{LogLevel, NodeAction};

/// The WIT package version this host speaks.
pub const WIT_VERSION: &str = "0.12.0";

/// How the reply of the call in progress is to be held, as the plugin asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Hold {
    #[default]
    None,
    Delay(Duration),
    Hang,
}

impl Hold {
    fn merge(self, other: Hold) -> Hold {
        match (self, other) {
            (Hold::Hang, _) | (_, Hold::Hang) => Hold::Hang,
            (Hold::Delay(a), Hold::Delay(b)) => Hold::Delay(a.max(b)),
            (Hold::None, x) | (x, Hold::None) => x,
        }
    }
}

/// A node action a plugin asked for, on its way to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedAction {
    pub plugin: Arc<str>,
    pub action: NodeAction,
}

/// What an instance reaches of the node it serves: where its node actions go, and the
/// cluster DNS its containers ask. Neither for an instance that serves no node (the one
/// that validates a plugin): its actions are dropped and no name resolves.
#[derive(Clone, Default)]
pub(crate) struct NodeLinks {
    pub(crate) actions: Option<tokio::sync::mpsc::Sender<AskedAction>>,
    pub(crate) dns: ClusterDns,
}

/// Everything a plugin's store holds: its WASI context (empty unless granted), limits,
/// identity, and the per-call bookkeeping the deadline and reply holding need.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) plugin: Arc<str>,
    pub(crate) node: Arc<str>,
    pub(crate) clock: Clock,
    pub(crate) rng: SmallRng,
    pub(crate) release: Arc<watch::Sender<u64>>,
    pub(crate) links: NodeLinks,
    pub(crate) memory_limit: usize,
    pub(crate) deadline: Duration,
    pub(crate) call_started: Option<std::time::Instant>,
    pub(crate) hold: Hold,
    pub(crate) deadline_hit: bool,
    pub(crate) memory_denied: bool,
    /// The last error the plugin logged: shown when it traps, since a panic message goes
    /// to a stderr nobody reads.
    pub(crate) last_error: Option<String>,
}

impl HostState {
    pub(crate) fn begin_call(&mut self) {
        self.call_started = Some(std::time::Instant::now());
        self.hold = Hold::None;
        self.deadline_hit = false;
        self.memory_denied = false;
    }

    pub(crate) fn end_call(&mut self) -> Hold {
        self.call_started = None;
        std::mem::take(&mut self.hold)
    }

    /// Called at every epoch tick while the plugin runs: yield to other tasks, or stop a
    /// call that has run past its deadline.
    pub(crate) fn on_epoch(mut ctx: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
        let state = ctx.data_mut();
        let overdue = state.call_started.is_some_and(|t| t.elapsed() >= state.deadline);
        if overdue {
            state.deadline_hit = true;
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl self::labkubelet::runtime::types::Host for HostState {}
impl self::labkubelet::runtime::lab::Host for HostState {}

impl self::labkubelet::runtime::host::Host for HostState {
    fn now(&mut self) -> i64 {
        self.clock.now_nanos()
    }

    fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let (plugin, node) = (&*self.plugin, &*self.node);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, node, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, node, "{message}"),
            LogLevel::Info => tracing::info!(plugin, node, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, node, "{message}"),
            LogLevel::Error => {
                tracing::error!(plugin, node, "{message}");
                self.last_error = Some(message);
            }
        }
    }

    fn delay_reply(&mut self, millis: u64) {
        self.hold = self.hold.merge(Hold::Delay(Duration::from_millis(millis)));
    }

    fn hang_reply(&mut self) {
        self.hold = Hold::Hang;
    }

    fn release_replies(&mut self) {
        self.release.send_modify(|generation| *generation += 1);
    }

    /// Queued, not done: the action may end the very run this call belongs to. The queue is
    /// short, so a plugin that asks in a loop loses the excess rather than filling memory.
    fn act_on_node(&mut self, action: NodeAction) {
        let (plugin, node) = (&*self.plugin, &*self.node);
        let Some(asks) = &self.links.actions else {
            tracing::debug!(plugin, node, ?action, "no node takes this instance's node actions: ignored");
            return;
        };
        if let Err(e) = asks.try_send(AskedAction { plugin: self.plugin.clone(), action }) {
            tracing::warn!(plugin, node, ?action, "the node action is dropped: {e}");
        }
    }

    /// Bounded: a name longer than DNS allows resolves to nothing, and the answer is the
    /// few addresses a Service has.
    fn resolve_name(&mut self, name: String) -> Vec<String> {
        if name.len() > 253 { Vec::new() } else { self.links.dns.resolve(&name) }
    }
}

//! A node's instances of its plugins: one per plugin, made when first called and remade
//! when the catalog swaps the plugin (its state handed over) or when it traps (from the
//! state it saved last, backing off when it traps again and again), and the replies it
//! asks to hold.

use super::PluginRuntime;
use super::traps::Traps;
use crate::plugin::bindings::{Hold, HostState, exports::labkubelet::runtime::runtime::Guest};
use crate::plugin::catalog::PluginEvent;
use crate::plugin::engine::LoadedPlugin;
use crate::plugin::instance::{CallFuture, PluginInstance};
use crate::runtime::RuntimeError;
use std::sync::Arc;
use tokio::sync::watch;
use wasmtime::Store;

/// A plugin's instance on this node, and the channel that releases its held replies.
pub(super) struct Slot {
    instance: tokio::sync::Mutex<Option<Running>>,
    /// Outlives instance swaps, so a `heal` from a new instance releases replies held by
    /// the old one.
    release: Arc<watch::Sender<u64>>,
    traps: std::sync::Mutex<Traps>,
}

impl Slot {
    fn traps(&self) -> std::sync::MutexGuard<'_, Traps> {
        self.traps.lock().unwrap_or_else(|p| p.into_inner())
    }
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

impl PluginRuntime {
    pub(super) fn slot(&self, plugin: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(plugin.to_string())
            .or_insert_with(|| Arc::new(Slot { instance: tokio::sync::Mutex::new(None), release: Arc::new(watch::channel(0).0), traps: Default::default() }))
            .clone()
    }

    /// The plugins with an instance on this node.
    pub(super) fn active(&self) -> Vec<String> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Calls a plugin's instance: makes or swaps the instance as the catalog says, runs the
    /// call under its limits, then holds the reply as the plugin asked, without holding the
    /// instance.
    pub(super) async fn call<R>(
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
        if let Some(refused) = slot.traps().refusal(plugin, method, self.clock.now_nanos()) {
            return Err(refused);
        }
        let (answer, hold) = {
            let mut guard = slot.instance.lock().await;
            let current = self.catalog.get_or_default(plugin);
            let running = self.ensure(&mut guard, current, plugin, &slot).await?;
            match running.instance.call(method, f).await {
                Ok(answered) => {
                    slot.traps().answered();
                    answered
                }
                Err(e) => {
                    // A trapped instance may be half-way through a change: a new one starts
                    // from the state saved before it, so the node's other containers live on.
                    let backoff = slot.traps().trapped(&e, self.clock.now_nanos());
                    let trapped = guard.take();
                    *guard = self.restart(trapped, plugin, &slot, &e, backoff).await;
                    return Err(e);
                }
            }
        };
        self.hold(hold, &slot).await;
        Ok(answer)
    }

    /// A new instance for one that trapped with `e`, from the trapped one's saved state; `None`
    /// (the next call starts one empty) when there is none or the new one refuses it.
    async fn restart(&self, trapped: Option<Running>, plugin: &str, slot: &Slot, e: &RuntimeError, backoff: std::time::Duration) -> Option<Running> {
        let then = if backoff.is_zero() { String::new() } else { format!(", and calls wait {backoff:?}: it failed again and again") };
        let Some(Running { plugin: loaded, saved: Some(state), .. }) = trapped else {
            tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted with empty state{then}");
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
                tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted from the state it saved last{then}");
                Some(Running { plugin: loaded, instance, refused: None, saved: Some(state) })
            }
            Err(why) => {
                tracing::warn!(node = %self.node, plugin, "{e}; the plugin's instance is restarted with empty state ({why}){then}");
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
            self.catalog.engine().policy(),
            &plugin.pre,
            slot_name.into(),
            &self.node,
            self.clock,
            slot.release.clone(),
            self.links.clone(),
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

    /// Takes the state of `plugin`'s instance as the one it comes back to if it traps.
    pub(super) async fn save_state(&self, plugin: &str) {
        let slot = self.slot(plugin);
        let mut guard = slot.instance.lock().await;
        let Some(running) = guard.as_mut() else { return };
        match running.instance.export_state().await {
            Ok(state) => running.saved = Some(state),
            Err(e) => tracing::warn!(node = %self.node, plugin, "exporting the runtime state: {e}"),
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
}

//! The runtime's state on disk: a real container runtime keeps running while the kubelet
//! restarts, so a restarted agent must find the same sandboxes, containers and restart
//! counts. Each plugin's exported state is saved under the node's folder in the root dir
//! whenever it changed (checked every few seconds), and imported at start.

use crate::clock::Clock;
use crate::plugin::PluginRuntime;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the state is checked for changes and saved.
pub const SAVE_PERIOD: Duration = Duration::from_secs(2);
const SUFFIX: &str = ".state";

/// Where one node's runtime state lives: `<root-dir>/<node>/runtime`.
pub struct RuntimeStateDir {
    dir: PathBuf,
}

impl RuntimeStateDir {
    pub fn new(root_dir: &Path, node: &str) -> Self {
        RuntimeStateDir { dir: root_dir.join(node).join("runtime") }
    }

    /// Imports the saved state into the runtime's plugins; returns what was restored.
    pub async fn restore(&self, runtime: &PluginRuntime) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut states = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(plugin) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
            match std::fs::read(&path) {
                Ok(bytes) => states.push((plugin.to_string(), bytes)),
                Err(e) => tracing::warn!(path = %path.display(), "reading saved runtime state: {e}"),
            }
        }
        let names: Vec<String> = states.iter().map(|(p, _)| p.clone()).collect();
        let refused = runtime.import_states(states).await;
        for (plugin, e) in &refused {
            tracing::warn!(node = %runtime.node(), plugin, "the saved runtime state was not restored ({e}); the plugin starts empty");
        }
        names.into_iter().filter(|n| !refused.iter().any(|(p, _)| p == n)).collect()
    }

    /// Saves every plugin's state that changed since the last save.
    pub async fn save(&self, runtime: &PluginRuntime, last: &mut HashMap<String, Vec<u8>>) -> std::io::Result<()> {
        for (plugin, state) in runtime.export_states().await {
            if last.get(&plugin) == Some(&state) {
                continue;
            }
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(format!("{plugin}{SUFFIX}"));
            let partial = self.dir.join(format!(".{plugin}{SUFFIX}.partial"));
            std::fs::write(&partial, &state)?;
            std::fs::rename(&partial, &path)?;
            last.insert(plugin, state);
        }
        Ok(())
    }

    /// Saves every period until dropped.
    pub async fn keep_saved(&self, runtime: Arc<PluginRuntime>, clock: Clock) {
        let mut last = HashMap::new();
        loop {
            clock.sleep(SAVE_PERIOD).await;
            self.save_logged(&runtime, &mut last).await;
        }
    }

    /// Saves every plugin's state now, logging a failure.
    pub async fn save_now(&self, runtime: &PluginRuntime) {
        self.save_logged(runtime, &mut HashMap::new()).await;
    }

    async fn save_logged(&self, runtime: &PluginRuntime, last: &mut HashMap<String, Vec<u8>>) {
        if let Err(e) = self.save(runtime, last).await {
            tracing::warn!(node = %runtime.node(), dir = %self.dir.display(), "saving the runtime state: {e}");
        }
    }
}

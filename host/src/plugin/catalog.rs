//! The set of loaded plugins: which plugin serves a pod, and how the set follows the plugin
//! folder — new and changed components are loaded and swapped in, refused ones leave the
//! old plugin serving, removed ones are unloaded.

use super::config_file::ConfigFile;
use super::engine::{LoadError, LoadedPlugin, PluginEngine};
use super::folder::{PluginFiles, plugin_files};
use super::stock;
use crate::runtime::KeyValue;
use kube_core::SelectorExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// The annotation a pod names its scenario plugin with.
pub const SCENARIO_ANNOTATION: &str = "labkubelet.io/scenario";
/// The plugin that serves every pod no other plugin claims.
pub const DEFAULT_PLUGIN: &str = "healthy";

/// Something that happened to the plugin set, for logs, Node events and `plugin watch`.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginEvent {
    Loaded {
        name: String,
        version: String,
        origin: String,
    },
    Replaced {
        name: String,
        old_version: String,
        version: String,
        origin: String,
    },
    /// A file was refused; `still_serving` names the plugin it loaded before, which serves on.
    Refused {
        origin: String,
        error: String,
        still_serving: Option<String>,
    },
    Unloaded {
        name: String,
        origin: String,
    },
    /// A node's instance took over the state of the instance it replaced.
    Migrated {
        node: String,
        name: String,
        version: String,
    },
    /// A node's instance could not take over the old state: the old one keeps serving.
    MigrationRefused {
        node: String,
        name: String,
        error: String,
    },
}

impl std::fmt::Display for PluginEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginEvent::Loaded { name, version, origin } => write!(f, "loaded {name} {version} from {origin}"),
            PluginEvent::Replaced { name, old_version, version, origin } => {
                write!(f, "swapped {name} {old_version} for {version} from {origin}")
            }
            PluginEvent::Refused { error, still_serving: Some(name), .. } => write!(f, "refused {error}; {name} keeps serving as before"),
            PluginEvent::Refused { error, still_serving: None, .. } => write!(f, "refused {error}"),
            PluginEvent::Unloaded { name, origin } => {
                write!(f, "unloaded {name} ({origin} removed); its pods fall back to {DEFAULT_PLUGIN}")
            }
            PluginEvent::Migrated { node, name, version } => write!(f, "node {node}: {name} {version} took over the runtime state"),
            PluginEvent::MigrationRefused { node, name, error } => {
                write!(f, "node {node}: {name} refused the old runtime state: {error}; the previous instance keeps serving")
            }
        }
    }
}

/// What the catalog remembers of a file in the plugin folder.
#[derive(Debug, Clone)]
struct FileEntry {
    fingerprint: [u8; 32],
    /// The plugin this file serves, if it ever loaded.
    serving: Option<String>,
    /// Why its present content was refused, if it was.
    refused: Option<String>,
}

/// A refused file of the plugin folder, as the catalog last saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedFile {
    pub file: String,
    pub error: String,
    /// The plugin it loaded before, which serves on.
    pub still_serving: Option<String>,
}

#[derive(Default)]
struct Loaded {
    by_name: BTreeMap<String, Arc<LoadedPlugin>>,
    by_file: BTreeMap<PathBuf, FileEntry>,
}

/// The plugins a process has loaded, shared by all its nodes.
pub struct PluginCatalog {
    engine: Arc<PluginEngine>,
    builtin_default: Arc<LoadedPlugin>,
    loaded: RwLock<Loaded>,
    sync: tokio::sync::Mutex<()>,
    syncs: std::sync::atomic::AtomicU64,
    events: broadcast::Sender<PluginEvent>,
}

impl PluginCatalog {
    /// A catalog holding only the built-in default plugin.
    pub async fn new(engine: Arc<PluginEngine>) -> Result<Arc<Self>, LoadError> {
        let bytes = stock::component(DEFAULT_PLUGIN).unwrap_or_default().to_vec();
        let builtin_default = engine.load(bytes, ConfigFile::none(), format!("builtin:{DEFAULT_PLUGIN}")).await?;
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new(PluginCatalog {
            engine,
            builtin_default,
            loaded: RwLock::new(Loaded::default()),
            sync: tokio::sync::Mutex::new(()),
            syncs: std::sync::atomic::AtomicU64::new(0),
            events,
        }))
    }

    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// How many times a plugin folder was read.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Follows what happens to the plugin set.
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, event: PluginEvent) {
        let outcome = match &event {
            PluginEvent::Loaded { .. } => "loaded",
            PluginEvent::Replaced { .. } => "replaced",
            PluginEvent::Refused { .. } => "refused",
            PluginEvent::Unloaded { .. } => "unloaded",
            PluginEvent::Migrated { .. } => "migrated",
            PluginEvent::MigrationRefused { .. } => "migration_refused",
        };
        crate::metrics::METRICS.plugin_reloads.with_label_values(&[outcome]).inc();
        match &event {
            PluginEvent::Refused { .. } | PluginEvent::MigrationRefused { .. } => tracing::warn!("plugin {event}"),
            _ => tracing::info!("plugin {event}"),
        }
        let _ = self.events.send(event);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The plugin of this name, if loaded (the default plugin is always there).
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let loaded = self.read();
        match loaded.by_name.get(name) {
            Some(p) => Some(p.clone()),
            None if name == DEFAULT_PLUGIN => Some(self.builtin_default.clone()),
            None => None,
        }
    }

    /// The plugin of this name, or the default plugin when it is gone.
    pub fn get_or_default(&self, name: &str) -> Arc<LoadedPlugin> {
        self.get(name).unwrap_or_else(|| self.default_plugin())
    }

    /// The plugin serving pods no other plugin claims: a `healthy` from the folder, or the
    /// built-in one.
    pub fn default_plugin(&self) -> Arc<LoadedPlugin> {
        self.read().by_name.get(DEFAULT_PLUGIN).cloned().unwrap_or_else(|| self.builtin_default.clone())
    }

    /// Every plugin that can serve pods, by name.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        let loaded = self.read();
        let mut all: Vec<_> = loaded.by_name.values().cloned().collect();
        if !loaded.by_name.contains_key(DEFAULT_PLUGIN) {
            all.push(self.builtin_default.clone());
        }
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The files of the plugin folder whose present content was refused.
    pub fn refused(&self) -> Vec<RefusedFile> {
        let loaded = self.read();
        loaded
            .by_file
            .iter()
            .filter_map(|(path, e)| {
                let error = e.refused.clone()?;
                Some(RefusedFile { file: path.display().to_string(), error, still_serving: e.serving.clone() })
            })
            .collect()
    }

    /// Why a pod cannot have a sandbox yet: its `labkubelet.io/scenario` annotation names a
    /// plugin that is not loaded. Like a pod whose RuntimeClass handler the node lacks, it
    /// waits (its sandbox creation fails and is retried with back-off) instead of running
    /// on another plugin, and is served by the named one as soon as that loads.
    pub fn missing_scenario(&self, annotations: &[KeyValue]) -> Option<String> {
        let name = annotations.iter().find(|kv| kv.key == SCENARIO_ANNOTATION)?.value.clone();
        if name == DEFAULT_PLUGIN || self.read().by_name.contains_key(&name) {
            return None;
        }
        let loaded: Vec<String> = self.plugins().iter().map(|p| p.name().to_string()).collect();
        let hint = if let Some(near) = near_miss(&name, loaded.iter().map(String::as_str)) {
            format!("; did you mean {near:?}?")
        } else if let Some(stock) = near_miss(&name, stock::names()) {
            let what = if stock == name { format!("{stock:?} is a stock plugin") } else { format!("did you mean the stock plugin {stock:?}? It is") };
            format!("; {what} not in the plugin folder: labkubelet plugin install --plugin-dir <dir> {stock}")
        } else {
            String::new()
        };
        Some(format!("no runtime plugin {name:?} is loaded ({SCENARIO_ANNOTATION} names it; loaded: {}){hint}; the pod starts once it is", loaded.join(", ")))
    }

    /// The plugin that serves a pod: the one its `labkubelet.io/scenario` annotation names,
    /// else the first (by name) whose selector matches its labels, else the default.
    pub fn select(&self, labels: &[KeyValue], annotations: &[KeyValue]) -> Arc<LoadedPlugin> {
        let loaded = self.read();
        if let Some(p) = annotations.iter().find(|kv| kv.key == SCENARIO_ANNOTATION).and_then(|kv| loaded.by_name.get(&kv.value)) {
            return p.clone();
        }
        let map: BTreeMap<String, String> = labels.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        let chosen = loaded.by_name.values().find(|p| !p.info.selector.trim().is_empty() && p.selector.matches(&map)).cloned();
        drop(loaded);
        chosen.unwrap_or_else(|| self.default_plugin())
    }

    /// Brings the catalog in line with a plugin folder: loads new and changed `*.wasm`
    /// files (with their `<stem>.json` / `.yaml` / `.yml` configuration) and `*.py`
    /// scenarios, unloads removed ones. Unchanged files are not reloaded. Returns what
    /// happened.
    pub async fn sync_dir(&self, dir: &Path) -> Vec<PluginEvent> {
        let _one_at_a_time = self.sync.lock().await;
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut events = Vec::new();
        let files = match plugin_files(dir) {
            Ok(files) => files,
            Err(e) => {
                let event = PluginEvent::Refused {
                    origin: dir.display().to_string(),
                    error: format!("{}: cannot read the plugin folder: {e}", dir.display()),
                    still_serving: None,
                };
                self.emit(event.clone());
                return vec![event];
            }
        };
        for path in &files {
            if let Some(event) = self.sync_file(path).await {
                self.emit(event.clone());
                events.push(event);
            }
        }
        let gone: Vec<(PathBuf, FileEntry)> = {
            let mut loaded = self.write();
            let gone: Vec<PathBuf> = loaded.by_file.keys().filter(|p| p.starts_with(dir) && !files.contains(p)).cloned().collect();
            gone.into_iter().filter_map(|p| loaded.by_file.remove(&p).map(|e| (p, e))).collect()
        };
        for (path, entry) in gone {
            if let Some(name) = entry.serving {
                self.write().by_name.remove(&name);
                let event = PluginEvent::Unloaded { name, origin: path.display().to_string() };
                self.emit(event.clone());
                events.push(event);
            }
        }
        events
    }

    async fn sync_file(&self, path: &Path) -> Option<PluginEvent> {
        let origin = path.display().to_string();
        let files = match PluginFiles::read(path) {
            Ok(files) => files,
            Err(error) => return Some(self.refuse(path, None, error)),
        };
        let fingerprint = files.fingerprint();
        let previous = self.read().by_file.get(path).cloned();
        if previous.as_ref().is_some_and(|p| p.fingerprint == fingerprint) {
            return None;
        }
        let serving = previous.and_then(|p| p.serving);
        let plugin = match self.engine.load(files.component.into_bytes(), files.config, origin.clone()).await {
            Ok(p) => p,
            Err(e) => return Some(self.refuse(path, Some(fingerprint), e)),
        };
        let name = plugin.name().to_string();
        let mut loaded = self.write();
        let other = loaded.by_file.iter().find(|(p, e)| p.as_path() != path && e.serving.as_deref() == Some(name.as_str())).map(|(p, _)| p.clone());
        if let Some(other) = other {
            drop(loaded);
            let error = LoadError::NameTaken { origin, name, other: other.display().to_string() };
            return Some(self.refuse(path, Some(fingerprint), error));
        }
        if let Some(old_name) = serving.as_ref().filter(|n| **n != name) {
            loaded.by_name.remove(old_name);
        }
        let old = loaded.by_name.insert(name.clone(), plugin.clone());
        loaded.by_file.insert(path.to_path_buf(), FileEntry { fingerprint, serving: Some(name.clone()), refused: None });
        let version = plugin.info.version.clone();
        Some(match old {
            Some(old) => PluginEvent::Replaced { name, old_version: old.info.version.clone(), version, origin },
            None => PluginEvent::Loaded { name, version, origin },
        })
    }

    /// Records a refused file (so the same bad content is not retried at every event) and
    /// keeps whatever it served before.
    fn refuse(&self, path: &Path, fingerprint: Option<[u8; 32]>, error: LoadError) -> PluginEvent {
        let mut loaded = self.write();
        let serving = loaded.by_file.get(path).and_then(|e| e.serving.clone());
        if let Some(fingerprint) = fingerprint {
            loaded.by_file.insert(path.to_path_buf(), FileEntry { fingerprint, serving: serving.clone(), refused: Some(error.to_string()) });
        }
        PluginEvent::Refused { origin: path.display().to_string(), error: error.to_string(), still_serving: serving }
    }
}

/// The name a misspelt one was meant to be (`oom-kill` for `oomkill`): the same but for case
/// and dashes, else the nearest within two edits.
fn near_miss<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let bare = |s: &str| s.to_lowercase().replace(['-', '_'], "");
    candidates
        .map(|c| (if bare(c) == bare(name) { 0 } else { strsim::levenshtein(c, name) }, c))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

//! The WebAssembly plugin host.
//!
//! - [`engine`]: the process-wide wasmtime engine, limits, and validation of components.
//! - [`compiled`]: compiled components kept on disk between runs.
//! - [`catalog`]: the loaded plugins, selection of the plugin that serves a pod, folder sync.
//! - [`folder`]: which files of the plugin folder are plugins, Python scenarios among them.
//! - [`watch`]: hot reload of a plugin folder.
//! - [`router`]: [`PluginRuntime`], a node's [`crate::runtime::ContainerRuntime`] over plugins.
//! - [`stock`]: the stock plugins embedded in the binary.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use labkubelet::plugin::*;
//! let engine = PluginEngine::new(PluginPolicy::default())?;
//! let catalog = PluginCatalog::new(engine).await?;
//! let _watcher = watch_dir(catalog.clone(), std::path::Path::new("plugins.d")).await?;
//! let node = PluginRuntime::new("lab-node-1", catalog, labkubelet::clock::Clock::new());
//! # Ok(()) }
//! ```

pub(crate) mod bindings;
pub mod catalog;
pub mod compiled;
pub mod config_file;
pub mod engine;
pub mod folder;
mod instance;
pub mod policy;
pub mod router;
mod selector;
pub mod stock;
pub mod watch;

pub use bindings::exports::labkubelet::runtime::runtime::PluginInfo;
pub use bindings::labkubelet::runtime::lab::TriggerAction;
pub use bindings::{AskedAction, WIT_VERSION};
pub use catalog::{DEFAULT_PLUGIN, PluginCatalog, PluginEvent, SCENARIO_ANNOTATION};
pub use config_file::ConfigFile;
pub use engine::{LoadError, LoadedPlugin, PluginEngine};
pub use policy::{Grants, PluginPolicy};
pub use router::{PluginRuntime, TriggerError, TriggerResult};
pub use selector::{SelectorError, parse_selector};
pub use watch::{PluginWatcher, WatchError, watch_dir};

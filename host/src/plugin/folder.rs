//! What the plugin folder holds: which of its files are plugins (`*.wasm` components, and
//! `*.py` scenarios, which are the stock `python` plugin with the file as its configuration),
//! and what each loads as.

use super::config_file::ConfigFile;
use super::engine::LoadError;
use super::stock;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The stock plugin that runs a Python scenario (`<name>.py`), given as its configuration.
pub const PYTHON_PLUGIN: &str = "python";

/// The `*.wasm` and `*.py` files of a folder, dotfiles excluded, no recursion.
pub(crate) fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        let plugin = path.extension().is_some_and(|e| e == "wasm") || ConfigFile::is_python_path(&path);
        if !hidden && plugin && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a plugin file and its configuration (`<stem>.json`, `.yaml` or `.yml` next to it);
/// a Python scenario is the stock `python` plugin with the file as its configuration.
pub fn read_plugin(path: &Path) -> Result<(Vec<u8>, ConfigFile), LoadError> {
    let files = PluginFiles::read(path)?;
    Ok((files.component.into_bytes(), files.config))
}

/// A plugin file's component: the file's own, or a stock one embedded in the binary.
pub(crate) enum Component {
    File(Vec<u8>),
    Stock { name: &'static str, bytes: &'static [u8] },
}

impl Component {
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Component::File(bytes) => bytes,
            Component::Stock { bytes, .. } => bytes.to_vec(),
        }
    }
}

/// A component and its configuration file as they are on disk.
pub(crate) struct PluginFiles {
    pub(crate) component: Component,
    pub(crate) config: ConfigFile,
}

impl PluginFiles {
    pub(crate) fn read(component: &Path) -> Result<Self, LoadError> {
        let origin = component.display().to_string();
        let unreadable = |detail: String| LoadError::Unreadable { origin: origin.clone(), detail };
        if ConfigFile::is_python_path(component) {
            let config = ConfigFile::read(component).map_err(|e| unreadable(e.to_string()))?;
            let bytes = stock::component(PYTHON_PLUGIN).unwrap_or_default();
            return Ok(PluginFiles { component: Component::Stock { name: PYTHON_PLUGIN, bytes }, config });
        }
        let bytes = std::fs::read(component).map_err(|e| unreadable(e.to_string()))?;
        let config = ConfigFile::beside(component).map_err(|e| unreadable(format!("its configuration: {e}")))?;
        Ok(PluginFiles { component: Component::File(bytes), config })
    }

    /// What decides whether a file needs loading again: the component and its configuration.
    /// An embedded component cannot change while the agent runs, so its name stands for it:
    /// every folder event would otherwise copy and hash 5.6 MB per Python scenario.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        match &self.component {
            Component::File(bytes) => hash.update(bytes),
            Component::Stock { name, .. } => hash.update(format!("stock:{name}")),
        }
        hash.update([0]);
        if let Some(path) = &self.config.path {
            hash.update(path.as_os_str().as_encoded_bytes());
            hash.update([0]);
            hash.update(self.config.text.as_bytes());
        }
        hash.finalize().into()
    }
}

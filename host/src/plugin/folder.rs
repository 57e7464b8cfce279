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
    Ok((files.component, files.config))
}

/// A component and its configuration file as they are on disk.
pub(crate) struct PluginFiles {
    pub(crate) component: Vec<u8>,
    pub(crate) config: ConfigFile,
}

impl PluginFiles {
    pub(crate) fn read(component: &Path) -> Result<Self, LoadError> {
        let origin = component.display().to_string();
        let unreadable = |detail: String| LoadError::Unreadable { origin: origin.clone(), detail };
        if ConfigFile::is_python_path(component) {
            let config = ConfigFile::read(component).map_err(|e| unreadable(e.to_string()))?;
            return Ok(PluginFiles { component: stock::component(PYTHON_PLUGIN).unwrap_or_default().to_vec(), config });
        }
        let bytes = std::fs::read(component).map_err(|e| unreadable(e.to_string()))?;
        let config = ConfigFile::beside(component).map_err(|e| unreadable(format!("its configuration: {e}")))?;
        Ok(PluginFiles { component: bytes, config })
    }

    /// What decides whether a file needs loading again: the component and its configuration.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new().chain_update(&self.component).chain_update([0]);
        if let Some(path) = &self.config.path {
            hash.update(path.as_os_str().as_encoded_bytes());
            hash.update([0]);
            hash.update(self.config.text.as_bytes());
        }
        hash.finalize().into()
    }
}

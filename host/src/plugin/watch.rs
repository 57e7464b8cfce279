//! Hot reload: a debounced watch on the plugin folder that brings the catalog in line with
//! it after every burst of changes.

use super::catalog::PluginCatalog;
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the folder must be quiet before it is read: long enough to see a copy as one
/// change, short enough that a swap feels immediate.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Watches a plugin folder until dropped.
pub struct PluginWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    task: JoinHandle<()>,
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a folder cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch plugin folder {dir}: {detail}")]
pub struct WatchError {
    pub dir: PathBuf,
    pub detail: String,
}

/// Loads the folder's plugins, then follows the folder. Must be called in a tokio runtime.
pub async fn watch_dir(catalog: Arc<PluginCatalog>, dir: &Path) -> Result<PluginWatcher, WatchError> {
    let fail = |detail: String| WatchError { dir: dir.to_path_buf(), detail };
    if !dir.is_dir() {
        return Err(fail("it is not a folder; create it or pass another --plugin-dir".into()));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
        // Reading the folder is an access event: reacting to it would read the folder forever.
        Ok(events) => {
            if events.iter().any(|e| !matches!(e.kind, EventKind::Access(_))) {
                let _ = tx.send(());
            }
        }
        Err(errors) => tracing::warn!(?errors, "plugin folder watch error"),
    })
    .map_err(|e| fail(e.to_string()))?;
    debouncer.watch(dir, RecursiveMode::NonRecursive).map_err(|e| fail(e.to_string()))?;
    catalog.sync_dir(dir).await;
    let dir = dir.to_path_buf();
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while rx.try_recv().is_ok() {}
            catalog.sync_dir(&dir).await;
        }
    });
    Ok(PluginWatcher { _debouncer: debouncer, task })
}

//! What an operator lets plugins do: the limits every call runs under and the grants beyond
//! the host imports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What an operator lets a plugin do beyond the host imports. Nothing by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Host folders the plugin may open, as (host path, path seen by the plugin).
    pub dirs: Vec<(PathBuf, String)>,
    /// Environment variables the plugin sees.
    pub env: Vec<(String, String)>,
}

/// The limits and grants every plugin call runs under.
///
/// ```
/// let policy = labkubelet::plugin::PluginPolicy::default();
/// assert_eq!(policy.call_deadline, std::time::Duration::from_secs(2));
/// assert_eq!(policy.memory_limit, 64 << 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPolicy {
    /// How long one call may run in the plugin (held replies do not count).
    pub call_deadline: Duration,
    /// The most linear memory one plugin instance may have, in bytes.
    pub memory_limit: usize,
    /// Grants by plugin name.
    pub grants: BTreeMap<String, Grants>,
    /// Seeds the plugins' randomness, together with the node and plugin names and the
    /// instance's start: no two instances draw the same numbers.
    pub seed: u64,
}

impl Default for PluginPolicy {
    fn default() -> Self {
        PluginPolicy { call_deadline: Duration::from_secs(2), memory_limit: 64 << 20, grants: BTreeMap::new(), seed: 0 }
    }
}

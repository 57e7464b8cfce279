//! The timeline: what happened to a node's pods, for a lab to look back at. Container state
//! changes (from the statuses the kubelet logic generates), the events it records, plugin
//! reloads and lab triggers, each with its time.
//!
//! - [`Journal`]: one node's record, bounded; exported as JSON by `/timeline` and
//!   `labkubelet timeline`.
//! - [`render`]: the export drawn as a self-contained SVG or HTML page.

pub mod render;

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many entries a node keeps; the oldest go first.
pub const CAPACITY: usize = 20_000;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Nanoseconds since the Unix epoch, on the agent's clock.
    pub time: i64,
    /// `namespace/name` of the pod it concerns; absent for node-wide entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(flatten)]
    pub what: What,
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum What {
    /// A container's state as the pod status shows it changed.
    #[serde(rename_all = "camelCase")]
    Container {
        container: String,
        /// `Waiting`, `Running` or `Terminated`.
        state: String,
        /// The waiting or terminated reason (`CrashLoopBackOff`, `Error`, ...).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        restart_count: i32,
        ready: bool,
    },
    /// An event the kubelet recorded.
    Event {
        #[serde(rename = "type")]
        type_: String,
        reason: String,
        message: String,
        /// The container it is about (from the event's `fieldPath`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
    /// The plugin set changed (loaded, swapped, refused, unloaded).
    Plugin {
        message: String,
        /// A refused file or state: nothing changed.
        #[serde(default)]
        refused: bool,
    },
    /// A lab trigger and the plugin's answer.
    Trigger {
        plugin: String,
        action: String,
        /// `accepted: <what was done>`, or why not (`no-such-pod: ...`).
        result: String,
        #[serde(default)]
        accepted: bool,
    },
}

/// A node's timeline as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub node: String,
    pub entries: Vec<Entry>,
}

/// One node's record of what happened.
///
/// ```
/// use labkubelet::timeline::{Journal, What};
/// let journal = Journal::new("node-1");
/// journal.record(1_000, Some("default/web"), What::Plugin { message: "loaded crashloop".into(), refused: false });
/// assert_eq!(journal.export().entries.len(), 1);
/// ```
pub struct Journal {
    node: String,
    entries: Mutex<VecDeque<Entry>>,
}

impl Journal {
    pub fn new(node: &str) -> Self {
        Journal { node: node.to_string(), entries: Mutex::new(VecDeque::new()) }
    }

    pub fn record(&self, time: i64, pod: Option<&str>, what: What) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(Entry { time, pod: pod.map(str::to_string), what });
    }

    /// A lab action (a plugin's trigger, a node action) and what became of it (`accepted`,
    /// `unknown-action`, ...): counted in the trigger metric and put on the timeline, on its
    /// pod's lane if it has one.
    pub fn lab_action(&self, time: i64, pod: Option<&str>, plugin: &str, action: &str, result: &str, message: &str) {
        crate::metrics::METRICS.triggers.with_label_values(&[&self.node, plugin, action, result]).inc();
        let what = What::Trigger { plugin: plugin.into(), action: action.into(), result: format!("{result}: {message}"), accepted: result == "accepted" };
        self.record(time, pod, what);
    }

    /// The entries so far, oldest first.
    pub fn export(&self) -> Timeline {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        Timeline { node: self.node.clone(), entries }
    }
}

//! A node cut off from the API server on cue. `afterSeconds` after this plugin's first pod
//! starts on a node, the node stops talking to the API server (Lease, node status, pod
//! status, watches) while its containers keep running; `forSeconds` later it is connected
//! again, and reconciles what the cluster did meanwhile. In between the node lifecycle
//! controller marks the node `Unknown` (after 40 s), taints it
//! `node.kubernetes.io/unreachable`, and evicts its pods after their toleration (300 s by
//! default).
//!
//! Serves the pods annotated `labkubelet.io/scenario: node-partition` as `healthy` does.
//! Configuration: `{"afterSeconds": 30, "forSeconds": 120}`; `forSeconds: 0` leaves the node
//! cut off until `labkubelet node heal`.

use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Config {
    after_seconds: u64,
    for_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { after_seconds: 30, for_seconds: 120 }
    }
}

#[derive(Default)]
struct NodePartition;

impl NodeScenario for NodePartition {
    fn info(&self) -> Info {
        Info::new("node-partition", env!("CARGO_PKG_VERSION"))
            .describe("The node is cut off from the API server after afterSeconds, for forSeconds: Unknown, tainted, its pods evicted.")
    }

    fn script(&self, file: &ConfigFile) -> Result<NodeScript, ConfigError> {
        let c: Config = file.parse()?;
        let mut steps = vec![(secs(c.after_seconds), NodeAction::Partition)];
        if c.for_seconds > 0 {
            steps.push((secs(c.after_seconds.saturating_add(c.for_seconds)), NodeAction::Heal));
        }
        Ok(NodeScript::new(steps))
    }
}

export_scenario!(OnSchedule<NodePartition>);

//! A node that reboots. `afterSeconds` after this plugin's first pod starts on a node, the
//! node reboots, once: every container exits (255, `Unknown`, as containerd shows one after
//! a boot), the boot id is new, the kubelet records `Rebooted`, finds every sandbox changed
//! (`SandboxChanged`) and starts every pod again with its restart count one higher.
//!
//! Serves the pods annotated `labkubelet.io/scenario: node-reboot` as `healthy` does.
//! Configuration: `{"afterSeconds": 60}`.

use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Config {
    after_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { after_seconds: 60 }
    }
}

#[derive(Default)]
struct NodeReboot;

impl NodeScenario for NodeReboot {
    fn info(&self) -> Info {
        Info::new("node-reboot", env!("CARGO_PKG_VERSION"))
            .describe("The node reboots afterSeconds after the pod starts: a new boot id, Rebooted, every pod restarted.")
    }

    fn script(&self, file: &ConfigFile) -> Result<NodeScript, ConfigError> {
        let c: Config = file.parse()?;
        Ok(NodeScript::new(vec![(secs(c.after_seconds), NodeAction::Reboot)]))
    }
}

export_scenario!(OnSchedule<NodeReboot>);

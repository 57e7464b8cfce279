//! Containers are killed by the kernel's OOM killer some time after they start: exit code
//! 137, reason OOMKilled.
//!
//! Configuration: `{"afterSeconds": 30, "selector": "app=db"}`.

use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct OomKill {
    after_seconds: u64,
}

impl Default for OomKill {
    fn default() -> Self {
        OomKill { after_seconds: 30 }
    }
}

impl Scenario for OomKill {
    fn info(&self) -> Info {
        Info::new("oomkill", env!("CARGO_PKG_VERSION")).describe("Containers are OOMKilled (exit 137) after a while.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        *self = file.parse()?;
        Ok(())
    }

    fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        Ok(Lifetime::exits_after(secs(self.after_seconds), Exit::oom_killed()))
    }

    fn start_logs(&mut self, _c: &ContainerCtx) -> Vec<String> {
        vec!["allocating memory without bound...".into()]
    }
}

export_scenario!(OomKill);

//! Containers exit with an error a few seconds after they start, so the kubelet restarts
//! them with a growing back-off: CrashLoopBackOff.
//!
//! Configuration (`crashloop.json` or `.yaml` next to the component):
//! `{"exitAfterSeconds": 5, "exitCode": 1, "selector": "app=flaky"}`.

use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct CrashLoop {
    exit_after_seconds: u64,
    exit_code: i32,
}

impl Default for CrashLoop {
    fn default() -> Self {
        CrashLoop { exit_after_seconds: 5, exit_code: 1 }
    }
}

impl Scenario for CrashLoop {
    fn info(&self) -> Info {
        Info::new("crashloop", env!("CARGO_PKG_VERSION")).describe("Containers exit with an error after a few seconds: CrashLoopBackOff.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        *self = file.parse()?;
        Ok(())
    }

    fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        let exit = Exit::error(self.exit_code).with_message("simulated crash (labkubelet crashloop plugin)");
        Ok(Lifetime::exits_after(secs(self.exit_after_seconds), exit))
    }
}

export_scenario!(CrashLoop);

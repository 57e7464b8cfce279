//! Readiness probes alternate between success and failure, so the pod's Ready condition
//! flips and the pod drops in and out of its Services' endpoints. Liveness and startup
//! probes keep succeeding.
//!
//! Configuration: `{"periodSeconds": 20}`: ready for a period, then not ready for a period.

use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct ReadinessFlap {
    period_seconds: u64,
}

impl Default for ReadinessFlap {
    fn default() -> Self {
        ReadinessFlap { period_seconds: 20 }
    }
}

impl Scenario for ReadinessFlap {
    fn info(&self) -> Info {
        Info::new("readiness-flap", env!("CARGO_PKG_VERSION")).describe("Readiness probes alternate between success and failure.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        *self = file.parse()?;
        if self.period_seconds == 0 {
            return Err("periodSeconds must be at least 1".into());
        }
        Ok(())
    }

    fn probe(&mut self, c: &ContainerCtx, kind: ProbeKind, _action: &ProbeAction) -> Option<ProbeResult> {
        if kind != ProbeKind::Readiness {
            return None;
        }
        let since_start = host::now().saturating_sub(c.started_at.unwrap_or(0)).max(0);
        let period = (since_start / 1_000_000_000).unsigned_abs() / self.period_seconds;
        let up = ProbeResult { outcome: ProbeOutcome::Success, output: String::new() };
        Some(if period.is_multiple_of(2) {
            up
        } else {
            ProbeResult { outcome: ProbeOutcome::Failure, output: "HTTP probe failed with statuscode: 503".into() }
        })
    }
}

export_scenario!(ReadinessFlap);

//! A deadlocked runtime: after a while, the list calls PLEG makes every second hang for
//! minutes. The kubelet's relist stalls, and after 3 minutes the node turns NotReady with
//! "PLEG is not healthy: pleg was last seen active ... ago; threshold is 3m0s". When the
//! stall ends (or on `heal`) the node recovers.
//!
//! Configuration: `{"stallAfterSeconds": 30, "stallForSeconds": 240}`.
//! Actions: `stall` starts a stall now; `heal` ends it.

use labkubelet_guest::*;
use serde::{Deserialize, Serialize};

const NANOS: i64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Config {
    stall_after_seconds: u64,
    stall_for_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { stall_after_seconds: 30, stall_for_seconds: 240 }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Window {
    /// The stall, as [start, end) in host-clock ns; set on the first call.
    start: i64,
    end: i64,
}

#[derive(Default)]
struct PlegStall {
    after: i64,
    length: i64,
    window: Option<Window>,
}

impl Scenario for PlegStall {
    fn info(&self) -> Info {
        Info::new("pleg-stall", env!("CARGO_PKG_VERSION"))
            .describe("List calls hang for minutes, as in a deadlocked runtime: PLEG turns unhealthy.")
            .action("stall", "list calls hang from now for stallForSeconds (args: seconds=N)")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        let c: Config = file.parse()?;
        self.after = i64::try_from(c.stall_after_seconds).map_err(|e| ConfigError::new(e.to_string()))? * NANOS;
        self.length = i64::try_from(c.stall_for_seconds).map_err(|e| ConfigError::new(e.to_string()))? * NANOS;
        Ok(())
    }

    fn before_call(&mut self, call: &Call, rt: &FakeRuntime) -> Reply {
        let now = rt.now();
        let (after, length) = (self.after, self.length);
        let w = self.window.get_or_insert_with(|| Window { start: now + after, end: now + after + length });
        if call.method.is_list() && now >= w.start && now < w.end {
            Reply::Delay(std::time::Duration::from_nanos((w.end - now).unsigned_abs()))
        } else {
            Reply::Now
        }
    }

    fn trigger(&mut self, rt: &mut FakeRuntime, action: &str, _t: &TriggerTarget, args: &[KeyValue]) -> Option<Result<String, TriggerError>> {
        let now = rt.now();
        match action {
            "stall" => {
                let seconds = match args.iter().find(|a| a.key == "seconds") {
                    Some(a) => match a.value.parse::<i64>() {
                        Ok(s) => s * NANOS,
                        Err(_) => return Some(Err(TriggerError::InvalidArgument(format!("seconds must be a number, got {:?}", a.value)))),
                    },
                    None => self.length,
                };
                self.window = Some(Window { start: now, end: now + seconds });
                Some(Ok(format!("list calls hang for the next {}s", seconds / NANOS)))
            }
            "heal" => {
                self.window = Some(Window { start: 0, end: 0 });
                host::release_replies();
                None
            }
            _ => None,
        }
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.window).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.window = serde_json::from_value(state).map_err(|e| e.to_string())?;
        Ok(())
    }
}

export_scenario!(PlegStall);

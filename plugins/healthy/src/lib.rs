//! The default runtime: every sandbox starts, every pull succeeds; init containers and the
//! containers of pods that are not restarted (Jobs) complete with exit code 0 after a short
//! while (`initContainerSeconds`, `runToCompletionSeconds` in its configuration), every other
//! container runs until it is stopped. Serves every pod no other plugin claims.

use labkubelet_guest::*;

#[derive(Default)]
struct Healthy;

impl Scenario for Healthy {
    fn info(&self) -> Info {
        Info::new("healthy", env!("CARGO_PKG_VERSION")).describe("A container runtime where everything works.")
    }
}

export_scenario!(Healthy);

//! Containers that leak memory: a container's working set starts at `startMiB` and grows by
//! `leakMiBPerSecond` while it runs. A container with a memory limit is OOMKilled when it
//! reaches it (exit 137, reason `OOMKilled`, restarted with back-off), as its cgroup would;
//! one without grows until the node runs short: the node turns `MemoryPressure=True`, is
//! tainted `node.kubernetes.io/memory-pressure`, and the kubelet evicts the pod that uses
//! the most above its request ("The node was low on resource: memory. Container app was
//! using …, which exceeds its request of 0. ").
//!
//! Serves the pods annotated `labkubelet.io/scenario: memory-pressure` as `healthy` does.
//! Configuration: `{"leakMiBPerSecond": 256, "startMiB": 16}`: a node of the default 32Gi
//! runs short about two minutes after the pod starts.

use labkubelet_guest::*;
use serde::Deserialize;

const MIB: u64 = 1 << 20;
const NANOS: u64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct MemoryLeak {
    #[serde(rename = "leakMiBPerSecond")]
    leak_mib_per_second: u64,
    #[serde(rename = "startMiB")]
    start_mib: u64,
}

impl Default for MemoryLeak {
    fn default() -> Self {
        MemoryLeak { leak_mib_per_second: 256, start_mib: 16 }
    }
}

impl MemoryLeak {
    /// The working set of a container that has run for `ran_ns`.
    fn working_set(&self, ran_ns: u64) -> u64 {
        let leaked = u128::from(self.leak_mib_per_second) * u128::from(MIB) * u128::from(ran_ns) / u128::from(NANOS);
        (self.start_mib * MIB).saturating_add(u64::try_from(leaked).unwrap_or(u64::MAX))
    }

    /// How long a container runs before its working set reaches `limit`; never, if it does
    /// not grow.
    fn time_to(&self, limit: u64) -> Option<std::time::Duration> {
        let left = limit.saturating_sub(self.start_mib * MIB);
        match self.leak_mib_per_second {
            _ if left == 0 => Some(std::time::Duration::ZERO),
            0 => None,
            rate => Some(std::time::Duration::from_nanos(u64::try_from(u128::from(left) * u128::from(NANOS) / u128::from(rate * MIB)).unwrap_or(u64::MAX))),
        }
    }
}

impl Scenario for MemoryLeak {
    fn info(&self) -> Info {
        Info::new("memory-pressure", env!("CARGO_PKG_VERSION"))
            .describe("Containers leak memory: OOMKilled at their limit, or evicted when the node runs short.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        *self = file.parse()?;
        if self.start_mib.checked_mul(MIB).is_none() || self.leak_mib_per_second.checked_mul(MIB).is_none() {
            return Err(ConfigError::new("startMiB and leakMiBPerSecond must be below 2^44"));
        }
        Ok(())
    }

    fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        match c.memory_limit.and_then(|limit| self.time_to(limit)) {
            Some(reached) => Ok(Lifetime::exits_after(reached, Exit::oom_killed())),
            None => Ok(c.default_lifetime()),
        }
    }

    fn start_logs(&mut self, _c: &ContainerCtx) -> Vec<String> {
        vec![format!("allocating {} MiB a second and never freeing it...", self.leak_mib_per_second)]
    }

    fn usage(&mut self, c: &ContainerCtx) -> Usage {
        let ran = c.started_at.map_or(0, |at| u64::try_from(host::now().saturating_sub(at)).unwrap_or(0));
        let used = self.working_set(ran);
        Usage::memory(c.memory_limit.map_or(used, |limit| used.min(limit)))
    }
}

export_scenario!(MemoryLeak);

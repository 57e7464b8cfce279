//! A plugin that misbehaves on cue, for the host's containment tests: it loops forever,
//! grows memory without bound, tries to read host files and environment variables, or
//! traps, spins or grows when asked who it is (configuration `trap-in-info`, `spin-in-info`,
//! `grow-in-info`), or refuses the state of the
//! instance it replaces (configuration `refuse-state`). With `fail-from-third-start`, each
//! start from a container's third panics when its pod's name holds `panic`, and spins when it
//! holds `spin`.

use labkubelet_guest::*;

#[derive(Default)]
struct Misbehave {
    config: String,
}

impl Scenario for Misbehave {
    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        self.config = file.text().to_string();
        Ok(())
    }

    fn info(&self) -> Info {
        let config = &self.config;
        if config.contains("trap-in-info") {
            panic!("misbehave was told to trap in info");
        }
        if config.contains("spin-in-info") {
            spin();
        }
        if config.contains("grow-in-info") {
            grow();
        }
        Info::new("misbehave", env!("CARGO_PKG_VERSION"))
            .describe("Misbehaves on cue, for the host's tests.")
            .action("spin", "loops forever")
            .action("grow", "allocates memory without bound")
            .action("panic", "indexes past the end of a list")
            .action("read-file", "reads the host file named by path=")
            .action("env", "reads the environment variable named by name=")
    }

    fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        if self.config.contains("fail-from-third-start") && c.attempt >= 2 {
            if c.pod_name.contains("panic") {
                let empty: Vec<u8> = Vec::new();
                return Ok(Lifetime::exits_after(secs(empty[std::hint::black_box(3)].into()), Exit::completed()));
            }
            if c.pod_name.contains("spin") {
                spin();
            }
        }
        Ok(c.default_lifetime())
    }

    fn trigger(&mut self, _rt: &mut FakeRuntime, action: &str, _t: &TriggerTarget, args: &[KeyValue]) -> Option<Result<String, TriggerError>> {
        let arg = |k: &str| args.iter().find(|a| a.key == k).map(|a| a.value.clone()).unwrap_or_default();
        match action {
            "spin" => spin(),
            "grow" => grow(),
            "panic" => {
                let empty: Vec<u8> = Vec::new();
                Some(Ok(empty[std::hint::black_box(3)].to_string()))
            }
            "read-file" => Some(match std::fs::read_to_string(arg("path")) {
                Ok(text) => Ok(format!("read {} bytes", text.len())),
                Err(e) => Err(TriggerError::InvalidArgument(format!("cannot read: {e}"))),
            }),
            "env" => Some(match std::env::var(arg("name")) {
                Ok(v) => Ok(format!("value {v}")),
                Err(e) => Err(TriggerError::InvalidArgument(format!("cannot read: {e}"))),
            }),
            _ => None,
        }
    }

    fn restore(&mut self, _state: serde_json::Value) -> Result<(), String> {
        if self.config.contains("refuse-state") {
            return Err("this version cannot take the old state".into());
        }
        Ok(())
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn grow() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export_scenario!(Misbehave);

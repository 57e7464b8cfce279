//! The stock `python` plugin: it runs a Python scenario, `<name>.py` in the plugin folder,
//! which the host hands over as this plugin's configuration. It is a plugin on the guest SDK
//! like any other, so a Python scenario keeps the SDK's container shell, images and defaults,
//! and overrides only the hooks it defines; an edit of the file reloads it without compiling
//! anything (the component is compiled once per agent build).
//!
//! ```python
//! """Every second start of an app=flaky container exits 2; :canary images do not pull."""
//! SELECTOR = "app=flaky"
//!
//! def on_pull(image, pod):
//!     if image.endswith(":canary"):
//!         return fail("manifest unknown")
//!
//! def on_start(c):
//!     if c.attempt % 2 == 1:
//!         return exits(after=5, code=2)
//! ```
//!
//! An exception in a hook, a hook that runs too long, or an answer of the wrong kind is
//! logged with the file and line, and the call gets the default answer.

mod interpreter;
mod values;

use interpreter::Interpreter;
use labkubelet_guest::*;
use monty_types::MontyObject;

/// The hooks a scenario may define, with how many arguments each takes.
const HOOKS: [(&str, usize); 12] = [
    ("on_pull", 2),
    ("on_run_sandbox", 1),
    ("on_create", 1),
    ("on_start", 1),
    ("on_stop", 1),
    ("before_call", 1),
    ("probe", 2),
    ("start_logs", 1),
    ("usage", 1),
    ("conditions", 0),
    ("on_exec", 2),
    ("trigger", 3),
];
/// The most a scenario's `state` may take, as JSON: a call that grows it past this has its
/// changes dropped (and reported), so no scenario grows without bound.
const STATE_LIMIT: usize = 64 << 10;

struct Python {
    /// The scenario's file name (`flaky.py`), for messages.
    file: String,
    info: Info,
    interpreter: Option<Interpreter>,
    /// The `state` dict every hook is handed.
    state: MontyObject,
    /// The last problem reported, so a hook failing at every call logs once.
    last_report: String,
    /// The containers the last hook asked to kill (only `trigger` may).
    kills: Vec<(String, Exit)>,
}

impl Default for Python {
    fn default() -> Self {
        Python {
            file: String::new(),
            info: Info::new("python", env!("CARGO_PKG_VERSION")).describe("Runs a Python scenario: drop a <name>.py into the plugin folder."),
            interpreter: None,
            state: empty_state(),
            last_report: String::new(),
            kills: Vec::new(),
        }
    }
}

fn empty_state() -> MontyObject {
    MontyObject::Dict(Vec::new().into())
}

impl Python {
    /// Loads a scenario file: its settings become the plugin's info.
    fn load(&mut self, file: &str, source: &str) -> Result<(), ConfigError> {
        let refused = |e: interpreter::PyError| ConfigError { message: e.message, line: e.line, column: e.column };
        let loaded = Interpreter::load(source, &HOOKS, values::seconds_since_epoch(host::now())).map_err(refused)?;
        // A plugin name is lowercase with dashes; Python files are often named with underscores.
        let stem = file.strip_suffix(".py").unwrap_or(file).to_lowercase().replace('_', "-");
        let mut info = Info::new(&stem, "1");
        for (name, value) in &loaded.settings {
            if *name == "ACTIONS" {
                info.actions = values::actions(value).map_err(ConfigError::new)?;
                continue;
            }
            let value = values::setting(name, value).map_err(ConfigError::new)?;
            match *name {
                "NAME" => info.name = value,
                "VERSION" => info.version = value,
                "SELECTOR" => info.selector = value,
                _ => info.description = value,
            }
        }
        self.file = file.to_string();
        self.info = info;
        self.interpreter = Some(loaded.interpreter);
        self.printed(&loaded.printed);
        Ok(())
    }

    /// Asks a hook, if the scenario defines it; `None` when it does not or when it failed
    /// (reported), so the caller gives the default answer.
    fn ask<T>(&mut self, hook: &str, args: Vec<MontyObject>, read: impl FnOnce(&MontyObject) -> Result<T, String>) -> Option<T> {
        let py = self.interpreter.as_ref().filter(|py| py.has(hook))?;
        self.kills.clear();
        match py.call(hook, args, self.state.clone(), values::seconds_since_epoch(host::now())) {
            Ok(answer) => {
                self.printed(&answer.printed);
                self.keep(hook, answer.state);
                for effect in &answer.effects {
                    match values::effect(effect) {
                        Ok(values::Effect::Node(action)) => host::node_action(action),
                        Ok(values::Effect::Kill { id, exit }) => self.kills.push((id, exit)),
                        Err(e) => self.report(format!("{}: {hook}: {e}", self.file)),
                    }
                }
                if hook != "trigger" && !self.kills.is_empty() {
                    self.report(format!("{}: {hook} called kill(), which acts only from trigger", self.file));
                }
                read(&answer.value).map_err(|e| self.report(format!("{}: {e}", self.file))).ok()
            }
            Err(e) => {
                let placed = e.placed(&self.file);
                self.report(placed);
                None
            }
        }
    }

    /// Keeps the state a hook left, if it is still a dict within bounds.
    fn keep(&mut self, hook: &str, state: MontyObject) {
        let size = serde_json::to_vec(&state).map_or(usize::MAX, |v| v.len());
        match state {
            MontyObject::Dict(_) if size <= STATE_LIMIT => self.state = state,
            MontyObject::Dict(_) => self.report(format!("{}: {hook} grew state past {STATE_LIMIT} bytes; its changes are dropped", self.file)),
            other => self.report(format!("{}: {hook} made state {}; it must stay a dict, its changes are dropped", self.file, other.py_repr())),
        }
    }

    fn report(&mut self, message: String) {
        if message != self.last_report {
            host::log(LogLevel::Warn, &format!("{message}; the call gets the default answer"));
            self.last_report = message;
        }
    }

    fn printed(&self, printed: &str) {
        for line in printed.lines() {
            host::log(LogLevel::Info, &format!("{}: {line}", self.file));
        }
    }
}

impl Scenario for Python {
    fn info(&self) -> Info {
        self.info.clone()
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        if !file.is_python() {
            return if file.text().trim().is_empty() {
                Ok(())
            } else {
                Err(ConfigError::new("the python plugin runs <name>.py files; give it no other configuration"))
            };
        }
        self.load(file.file_name(), file.text())
    }

    fn before_call(&mut self, call: &Call, _rt: &FakeRuntime) -> Reply {
        self.ask("before_call", vec![values::call(call)], values::reply).unwrap_or(Reply::Now)
    }

    fn on_pull(&mut self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        let args = vec![MontyObject::String(image.into()), values::pod(pod)];
        self.ask("on_pull", args, |v| values::outcome("on_pull", v)).unwrap_or(Ok(()))
    }

    fn on_run_sandbox(&mut self, config: &PodSandboxConfig) -> Result<(), RuntimeError> {
        self.ask("on_run_sandbox", vec![values::pod(Some(config))], |v| values::outcome("on_run_sandbox", v)).unwrap_or(Ok(()))
    }

    fn on_create(&mut self, c: &ContainerCtx) -> Result<(), RuntimeError> {
        self.ask("on_create", vec![values::container(c)], |v| values::outcome("on_create", v)).unwrap_or(Ok(()))
    }

    fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        self.ask("on_start", vec![values::container(c)], values::lifetime).unwrap_or(Ok(c.default_lifetime()))
    }

    fn start_logs(&mut self, c: &ContainerCtx) -> Vec<String> {
        self.ask("start_logs", vec![values::container(c)], values::lines).unwrap_or_default()
    }

    fn on_stop(&mut self, c: &ContainerCtx) -> Stop {
        self.ask("on_stop", vec![values::container(c)], values::stop).unwrap_or(Stop::AsItsProcess)
    }

    fn usage(&mut self, c: &ContainerCtx) -> Usage {
        self.ask("usage", vec![values::container(c)], values::usage).unwrap_or_default()
    }

    fn probe(&mut self, c: &ContainerCtx, kind: ProbeKind, _action: &ProbeAction) -> Option<ProbeResult> {
        self.ask("probe", vec![values::container(c), values::probe_kind(kind)], values::probe).flatten()
    }

    fn conditions(&mut self, _rt: &FakeRuntime) -> Vec<RuntimeCondition> {
        self.ask("conditions", vec![], values::conditions).unwrap_or_else(ready_conditions)
    }

    fn exec(&mut self, c: &ContainerCtx, cmd: &[String]) -> Option<ExecResult> {
        let cmd = MontyObject::List(cmd.iter().map(|a| MontyObject::String(a.clone())).collect());
        self.ask("on_exec", vec![values::container(c), cmd], values::exec_result).flatten()
    }

    fn trigger(&mut self, rt: &mut FakeRuntime, action: &str, target: &TriggerTarget, args: &[KeyValue]) -> Option<Result<String, TriggerError>> {
        let running = |id: &String| rt.containers().any(|c| c.id == *id && c.state == ContainerState::Running);
        let containers = rt.matching(target).iter().filter(|id| running(id)).filter_map(|id| rt.ctx(id)).map(|c| values::container(&c)).collect();
        let args =
            MontyObject::Dict(args.iter().map(|kv| (MontyObject::String(kv.key.clone()), MontyObject::String(kv.value.clone()))).collect::<Vec<_>>().into());
        let answer = self.ask("trigger", vec![MontyObject::String(action.into()), MontyObject::List(containers), args], values::trigger).flatten();
        for (id, exit) in std::mem::take(&mut self.kills) {
            rt.kill(&id, exit);
        }
        answer
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, saved: serde_json::Value) -> Result<(), String> {
        if !saved.is_null() {
            self.state = serde_json::from_value(saved).map_err(|e| format!("the saved state of {} does not read back: {e}", self.file))?;
        }
        Ok(())
    }
}

export_scenario!(Python);

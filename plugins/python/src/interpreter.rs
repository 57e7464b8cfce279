//! The scenario's Python: its file parsed once, then run for each decision up to the hook the
//! decision asks, under a time limit, with errors placed at the file's line.
//!
//! Each call runs the file's top level afresh (defining its functions and constants takes
//! microseconds) and then one hook, so nothing a call leaves behind accumulates: what a
//! scenario remembers lives in the `state` dict it is handed, which the plugin keeps, bounds
//! and carries over a reload.

use monty::MontyRun;
use monty_types::{CompileOptions, MontyException, MontyObject, PrintWriter, ResourceLimits, ResourceTracker};
use std::time::Duration;

/// The helpers every scenario can call (`exits`, `fail`, ...), run before its file.
const PRELUDE: &str = include_str!("prelude.py");
/// How long one call may run: well inside the host's deadline for a call (2 s by default), so
/// a loop is reported as Python's `TimeoutError` at its line and the scenario keeps serving,
/// instead of the call trapping.
const TIME_LIMIT: Duration = Duration::from_millis(500);
/// The most `print()` output one call keeps for the host's log.
const PRINT_LIMIT: usize = 4096;
/// What every run is given: the hook to call and its arguments, the scenario's state, the host
/// clock, and the list the prelude's `kill` and `node_action` append to.
const INPUTS: [&str; 5] = ["__lk_hook", "__lk_args", "state", "__lk_now", "__lk_effects"];
/// The settings a file may set, read once at load.
pub const SETTINGS: [&str; 5] = ["NAME", "VERSION", "SELECTOR", "DESCRIPTION", "ACTIONS"];

/// An error of the scenario, placed in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct PyError {
    /// The exception as Python's last traceback line shows it (`ZeroDivisionError: division
    /// by zero`), with the function it was raised in.
    pub message: String,
    /// The line and column in the scenario's file, when a frame of it is on the traceback.
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl PyError {
    /// `flaky.py:11: ZeroDivisionError: division by zero (in on_start)`.
    pub fn placed(&self, file: &str) -> String {
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.message),
            None => format!("{file}: {}", self.message),
        }
    }
}

/// What a hook call gave back.
#[derive(Debug)]
pub struct Answer {
    /// What the hook returned.
    pub value: MontyObject,
    /// The state it left.
    pub state: MontyObject,
    /// What it asked for besides: `kill(...)` and `node_action(...)`, as the prelude records them.
    pub effects: Vec<MontyObject>,
    pub printed: String,
}

/// A scenario file, parsed, with the hooks it defines.
pub struct Interpreter {
    run: MontyRun,
    /// The lines of the file: frames past them are the plugin's call, not the scenario's.
    lines: u32,
    hooks: Vec<&'static str>,
}

/// What the file's top level set.
pub struct Loaded {
    pub interpreter: Interpreter,
    /// The settings it set, by name.
    pub settings: Vec<(&'static str, MontyObject)>,
    pub printed: String,
}

impl Interpreter {
    /// Parses the file and runs its top level once: its syntax errors and the exceptions its
    /// top level raises are refusals. `hooks` are the names a scenario may define.
    pub fn load(source: &str, hooks: &[(&'static str, usize)], now: f64) -> Result<Loaded, PyError> {
        let lines = u32::try_from(source.lines().count()).unwrap_or(u32::MAX);
        let probe = Interpreter::parse(source, lines, &probe_suffix(hooks), INPUTS[2..].iter().map(|i| i.to_string()).collect())?;
        let mut printed = String::new();
        let found = probe.execute(vec![MontyObject::Dict(Vec::new().into()), MontyObject::Float(now), MontyObject::List(Vec::new())], &mut printed)?;
        let defined = |name: &str| dict_get(&found, name);
        let settings = SETTINGS.iter().filter_map(|s| defined(s).map(|v| (*s, v))).collect();
        let present: Vec<_> = hooks.iter().filter(|(h, _)| defined(h) == Some(MontyObject::Bool(true))).copied().collect();
        let run = Interpreter::parse(source, lines, &call_suffix(&present), INPUTS.iter().map(|i| i.to_string()).collect())?;
        let interpreter = Interpreter { hooks: present.iter().map(|(h, _)| *h).collect(), ..run };
        Ok(Loaded { interpreter, settings, printed })
    }

    fn parse(source: &str, lines: u32, suffix: &str, inputs: Vec<String>) -> Result<Interpreter, PyError> {
        let code = format!("{source}\n{PRELUDE}\n{suffix}");
        let run = MontyRun::new(code, "<scenario>", inputs, CompileOptions::default()).map_err(|e| error(&e, lines))?;
        Ok(Interpreter { run, lines, hooks: Vec::new() })
    }

    fn execute(&self, inputs: Vec<MontyObject>, printed: &mut String) -> Result<MontyObject, PyError> {
        let tracker = ResourceTracker::new(ResourceLimits { max_duration: Some(TIME_LIMIT), ..ResourceLimits::default() });
        self.run.run(inputs, tracker, PrintWriter::CollectString(printed, Some(PRINT_LIMIT))).map_err(|e| error(&e, self.lines))
    }

    /// Whether the file defines this hook.
    pub fn has(&self, hook: &str) -> bool {
        self.hooks.contains(&hook)
    }

    /// Calls a hook with the scenario's state and the host clock (seconds).
    pub fn call(&self, hook: &str, args: Vec<MontyObject>, state: MontyObject, now: f64) -> Result<Answer, PyError> {
        let mut printed = String::new();
        let inputs = vec![MontyObject::String(hook.into()), MontyObject::List(args), state, MontyObject::Float(now), MontyObject::List(Vec::new())];
        // A time limit stops the run without a frame: the hook is the place to name.
        let out = self
            .execute(inputs, &mut printed)
            .map_err(|e| if e.line.is_none() { PyError { message: format!("{} (in {hook})", e.message), ..e } } else { e })?;
        match out {
            MontyObject::Tuple(mut parts) if parts.len() == 3 => {
                let effects = match parts.pop() {
                    Some(MontyObject::List(effects)) => effects,
                    _ => Vec::new(),
                };
                let state = parts.pop().unwrap_or(MontyObject::None);
                let value = parts.pop().unwrap_or(MontyObject::None);
                Ok(Answer { value, state, effects, printed })
            }
            other => Err(PyError { message: format!("the call of {hook} ended with {}", other.py_repr()), line: None, column: None }),
        }
    }
}

/// The exception, placed at the deepest frame in the scenario's file. The prelude and the
/// call come after the file, so its lines are the file's own.
fn error(e: &MontyException, lines: u32) -> PyError {
    let frame = e.traceback().iter().rev().find(|f| f.start.line <= lines);
    let within = frame.and_then(|f| f.frame_name.as_deref()).filter(|name| *name != "<module>");
    let message = match within {
        Some(function) => format!("{} (in {function})", e.summary()),
        None => e.summary(),
    };
    PyError { message, line: frame.map(|f| f.start.line), column: frame.map(|f| f.start.column) }
}

/// Code that reports which settings and hooks the file defines, as a dict.
fn probe_suffix(hooks: &[(&str, usize)]) -> String {
    let mut code = String::from("__lk_found = {}\n");
    for setting in SETTINGS {
        code.push_str(&format!("try:\n    __lk_found[{setting:?}] = {setting}\nexcept NameError:\n    pass\n"));
    }
    for (hook, _) in hooks {
        code.push_str(&format!("try:\n    {hook}\n    __lk_found[{hook:?}] = True\nexcept NameError:\n    pass\n"));
    }
    code.push_str("__lk_found\n");
    code
}

/// Code that calls the hook `__lk_hook` names with `__lk_args`, and returns its answer and
/// the state.
fn call_suffix(hooks: &[(&str, usize)]) -> String {
    let mut code = String::from("__lk_answer = None\n");
    for (i, (hook, arity)) in hooks.iter().enumerate() {
        let args: Vec<String> = (0..*arity).map(|n| format!("__lk_args[{n}]")).collect();
        let keyword = if i == 0 { "if" } else { "elif" };
        code.push_str(&format!("{keyword} __lk_hook == {hook:?}:\n    __lk_answer = {hook}({})\n", args.join(", ")));
    }
    code.push_str("(__lk_answer, state, __lk_effects)\n");
    code
}

/// The value of a string key of a dict.
pub fn dict_get(dict: &MontyObject, key: &str) -> Option<MontyObject> {
    let MontyObject::Dict(pairs) = dict else { return None };
    pairs.iter().find(|(k, _)| matches!(k, MontyObject::String(s) if s == key)).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOKS: [(&str, usize); 2] = [("on_start", 1), ("on_stop", 1)];

    fn state() -> MontyObject {
        MontyObject::Dict(Vec::new().into())
    }

    #[test]
    fn settings_and_hooks_are_found_and_state_carries_between_calls() {
        let source = "NAME = 'flaky'\n\ndef on_start(c):\n    state['starts'] = state.get('starts', 0) + 1\n    return exits(after=state['starts'], code=2)\n";
        let loaded = Interpreter::load(source, &HOOKS, 0.0).expect("loads");
        assert_eq!(loaded.settings, vec![("NAME", MontyObject::String("flaky".into()))]);
        let py = loaded.interpreter;
        assert!(py.has("on_start") && !py.has("on_stop"));
        let first = py.call("on_start", vec![MontyObject::None], state(), 0.0).expect("runs");
        let second = py.call("on_start", vec![MontyObject::None], first.state.clone(), 0.0).expect("runs");
        let (first, second) = (first.value, second.value);
        let after = |v: &MontyObject| match v {
            MontyObject::Tuple(items) => items.get(1).cloned(),
            _ => None,
        };
        assert_eq!((after(&first), after(&second)), (Some(MontyObject::Int(1)), Some(MontyObject::Int(2))));
    }

    #[test]
    fn errors_name_the_line_of_the_file() {
        let e = Interpreter::load("x = 1\ny = = 2\n", &HOOKS, 0.0).err().expect("a syntax error");
        assert!(e.placed("bad.py").starts_with("bad.py:2: SyntaxError"), "{e:?}");
        let e = Interpreter::load("x = 1\ny = undefined_name\n", &HOOKS, 0.0).err().expect("a NameError");
        assert_eq!(e.placed("bad.py"), "bad.py:2: NameError: name 'undefined_name' is not defined");
        let py = Interpreter::load("def on_start(c):\n    return 1/0\n", &HOOKS, 0.0).expect("loads").interpreter;
        let e = py.call("on_start", vec![MontyObject::None], state(), 0.0).expect_err("raises");
        assert_eq!(e.placed("zero.py"), "zero.py:2: ZeroDivisionError: division by zero (in on_start)");
    }

    #[test]
    fn a_loop_is_stopped_at_the_time_limit_and_the_next_call_runs() {
        let source = "def on_start(c):\n    while True:\n        pass\n\ndef on_stop(c):\n    return runs_forever()\n";
        let py = Interpreter::load(source, &HOOKS, 0.0).expect("loads").interpreter;
        let e = py.call("on_start", vec![MontyObject::None], state(), 0.0).expect_err("stopped");
        assert!(e.placed("spin.py").starts_with("spin.py: TimeoutError: time limit exceeded") && e.message.ends_with("(in on_start)"), "{e:?}");
        let answer = py.call("on_stop", vec![MontyObject::None], state(), 0.0).expect("runs");
        assert_eq!(answer.value, MontyObject::Tuple(vec![MontyObject::String("forever".into())]));
    }
}

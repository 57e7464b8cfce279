//! A container that does what its command says: a small `sh` over the container's own
//! [`Fs`], run on the host clock.
//!
//! A container's command is a [`Process`]: its script runs step by step as host time passes,
//! so `sleep 30` ends 30 s after it began, output becomes log lines at the moments it was
//! written, and the exit status ends the container. [`Process::exec`] runs a command beside
//! it (an exec probe, `kubectl exec`) over the same files. What the shell knows is
//! [`builtins`]; the grammar is [`parse`]'s. A program it does not know runs until it is
//! stopped when it is the container's command, and succeeds at once with no output when it
//! is exec'd (`pg_isready`, `redis-cli ping`): the runtime has no binaries to run.
//!
//! Everything is bounded: steps per call ([`STEPS_PER_CALL`]), output kept per container,
//! file bytes ([`fs::MAX_BYTES`]), script size and nesting. A busy loop spins on, call after
//! call, like a process at 100 % CPU; it never holds a call past its budget.

pub mod arith;
pub mod awk;
pub mod builtins;
pub mod dns;
pub mod fs;
mod input;
pub mod net;
pub mod parse;
mod run;
mod state;
pub mod tar;
pub mod test_images;

pub use dns::Resolve;
pub use fs::Fs;
pub use net::{NetError, Network};
pub use parse::{Script, SyntaxError, parse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many steps (commands, loop turns) a process or an exec takes in one call at most.
pub const STEPS_PER_CALL: u32 = 20_000;
/// The longest line kept; a longer one is cut there.
pub const MAX_LINE: usize = 16 * 1024;
/// The most output one exec, pipe or substitution keeps, in bytes.
pub const MAX_CAPTURE: usize = 1024 * 1024;

/// One line a process wrote, at the host-clock time it wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub time: i64,
    pub stderr: bool,
    pub text: String,
}

/// Where a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    /// Runs, or sleeps until its clock is reached.
    Running,
    /// Waits for nothing that will come: `sleep infinity`, `tail -f`, a loop that never
    /// sleeps in a pipeline.
    Forever,
    /// Runs a program the shell does not know (a server, an application): it runs until it
    /// is stopped, unless the runtime knows better.
    External,
    /// Ended with this status at this time.
    Exited { code: i32, at: i64 },
}

/// What an exec'd command gave back. Output is bytes: `tar cf -` writes binary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// It ran past its steps or its timeout: a probe counts it as failed.
    pub timed_out: bool,
    /// It killed the container's main process with this exit status (`kill 1`).
    pub killed_main: Option<i32>,
    /// How long it ran on the host clock (its sleeps), in nanoseconds.
    pub took: i64,
}

/// The shell's variables and working folder, and who it runs as.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vars {
    pub values: BTreeMap<String, String>,
    /// `$0`, `$1`…
    pub positional: Vec<String>,
    pub cwd: String,
    /// `$?`
    pub status: i32,
    #[serde(default)]
    pub user: User,
}

/// Who a process runs as and what it may change, as the container's security context says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: i64,
    pub gid: i64,
    /// May change the network and devices (`privileged`).
    pub privileged: bool,
    /// no_new_privs: a setuid program runs as its caller.
    pub no_new_privileges: bool,
}

/// The container's main process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    vars: Vars,
    frames: Vec<run::Frame>,
    /// The host-clock time the next step runs at.
    clock: i64,
    state: ProcessState,
    /// Written since the runtime last took it.
    #[serde(default)]
    output: Vec<Output>,
    /// The unfinished last line of stdout and of stderr, with when it began.
    #[serde(default)]
    partial: [Option<(i64, String)>; 2],
    /// Its open stdin, when it is a shell that reads its commands there ([`input`]).
    #[serde(default)]
    input: Option<input::Input>,
}

impl Process {
    /// Starts `argv` (a container's command and args) at `now`, with its environment.
    /// `sh -c SCRIPT [NAME ARGS…]` runs the script; a shell alone, with no script and no
    /// terminal, ends at once; any other program the shell knows runs as a one-line script.
    pub fn start(argv: &[String], env: &[(String, String)], now: i64) -> Process {
        Process::start_as(argv, env, User::default(), now)
    }

    /// [`Process::start`] as `user`.
    pub fn start_as(argv: &[String], env: &[(String, String)], user: User, now: i64) -> Process {
        let mut vars = Vars { cwd: "/".into(), user, ..Vars::default() };
        vars.values.extend(env.iter().cloned());
        vars.values.entry("HOME".into()).or_insert_with(|| "/root".into());
        vars.values.entry("PATH".into()).or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut process =
            Process { vars, frames: Vec::new(), clock: now, state: ProcessState::Running, output: Vec::new(), partial: Default::default(), input: None };
        let script = match invocation(argv) {
            Invocation::Script { script, positional } => {
                process.vars.positional = positional;
                script.to_string()
            }
            Invocation::Interactive => String::new(),
            Invocation::Program => test_images::as_script(argv).unwrap_or_else(|| argv.iter().map(|a| parse::quote(a)).collect::<Vec<_>>().join(" ")),
        };
        match parse(&script) {
            Ok(script) => process.frames.push(run::Frame::seq(script)),
            Err(e) => {
                process.write_line(true, &format!("sh: {e}"));
                process.end(2);
            }
        }
        process
    }

    pub fn state(&self) -> ProcessState {
        self.state
    }

    /// Runs the process up to `now` (or its step budget), its name lookups asking `dns`:
    /// what it wrote comes out of [`Process::take_output`].
    pub fn advance(&mut self, fs: &mut Fs, now: i64, dns: Resolve) {
        let mut steps = 0;
        while self.state == ProcessState::Running && self.clock <= now && steps < STEPS_PER_CALL {
            steps += run::step(self, fs, dns);
        }
        // A line without its newline is in the log as soon as the process waits, as a
        // runtime's log file has it.
        self.flush();
    }

    /// When the process next needs a call to go on, if it sleeps: a runtime need not look
    /// before then.
    pub fn wakes_at(&self) -> Option<i64> {
        (self.state == ProcessState::Running).then_some(self.clock)
    }

    /// Takes what the process wrote since the last call.
    pub fn take_output(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.output)
    }

    /// Ends the process as a signal does (`kill`, a stop): status 128 + the signal.
    pub fn kill(&mut self, code: i32, at: i64) {
        if !matches!(self.state, ProcessState::Exited { .. }) {
            self.state = ProcessState::Exited { code, at };
        }
    }

    /// The process's variables and working folder, which an exec starts from.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// Runs `argv` beside the process over the same files and environment, as an exec does,
    /// for at most `timeout_ns` of its own sleeping.
    pub fn exec(&self, fs: &mut Fs, argv: &[String], stdin: &[u8], now: i64, timeout_ns: i64) -> ExecOutput {
        exec_in(&self.vars, fs, argv, stdin, now, timeout_ns)
    }

    fn write_line(&mut self, stderr: bool, text: &str) {
        self.push_line(self.clock, stderr, text);
    }

    fn push_line(&mut self, time: i64, stderr: bool, text: &str) {
        let text: String = text.chars().take(MAX_LINE).collect();
        self.output.push(Output { time, stderr, text });
    }

    /// Writes what a command wrote: whole lines become output (a line begun earlier keeps
    /// the time it began), the rest waits for its end.
    fn write(&mut self, stderr: bool, bytes: &[u8]) {
        let stream = usize::from(stderr);
        let (mut began, mut text) = self.partial[stream].take().unwrap_or((self.clock, String::new()));
        text.push_str(&String::from_utf8_lossy(bytes));
        let mut lines: Vec<&str> = text.split('\n').collect();
        let rest: String = lines.pop().unwrap_or_default().chars().take(MAX_LINE).collect();
        for line in lines {
            self.push_line(began, stderr, line);
            began = self.clock;
        }
        if !rest.is_empty() {
            self.partial[stream] = Some((began, rest));
        }
    }

    /// Writes the unfinished lines.
    fn flush(&mut self) {
        for stderr in [false, true] {
            if let Some((began, rest)) = self.partial[usize::from(stderr)].take() {
                self.push_line(began, stderr, &rest);
            }
        }
    }

    /// Ends the process with `code` at its clock, its unfinished lines written.
    fn end(&mut self, code: i32) {
        self.flush();
        self.state = ProcessState::Exited { code, at: self.clock };
        self.frames.clear();
    }
}

/// What a command line asks of the shell.
enum Invocation<'a> {
    /// `sh -c SCRIPT [NAME ARGS…]`: the script, with `$0` (the name, else the shell's) and
    /// the arguments.
    Script { script: &'a str, positional: Vec<String> },
    /// A shell alone: it reads its commands from its input.
    Interactive,
    /// Any other program, run as a one-line script.
    Program,
}

fn invocation(argv: &[String]) -> Invocation<'_> {
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p)).unwrap_or("");
    match (program, argv.get(1).map(String::as_str)) {
        ("sh" | "ash" | "bash" | "dash", Some("-c")) => {
            let mut positional: Vec<String> = argv.iter().skip(3).cloned().collect();
            if positional.is_empty() {
                positional.push(argv[0].clone());
            }
            Invocation::Script { script: argv.get(2).map_or("", String::as_str), positional }
        }
        ("sh" | "ash" | "bash" | "dash", None) | ("", _) => Invocation::Interactive,
        _ => Invocation::Program,
    }
}

/// Whether `argv` is a shell alone, which reads its commands as they are typed.
pub fn is_interactive(argv: &[String]) -> bool {
    matches!(invocation(argv), Invocation::Interactive)
}

impl ExecOutput {
    /// Its stdout then its stderr, as text: what a probe records and a terminal shows.
    pub fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.stdout), String::from_utf8_lossy(&self.stderr))
    }
}

/// What an exec's commands reach beyond the container: the pods' servers (`curl`, `wget`)
/// and the cluster DNS (`nslookup`, `getent hosts`). The default reaches neither.
pub struct Reach<'a> {
    pub net: Option<&'a mut dyn Network>,
    pub dns: Resolve,
}

impl Default for Reach<'_> {
    fn default() -> Self {
        Reach { net: None, dns: dns::nowhere }
    }
}

/// Runs one line typed into an interactive shell (`kubectl exec -it … -- sh`): what it sets
/// (variables, the working folder, `$?`) stays in `vars` for the next line. `exit` ends the
/// session with the code of [`ExecOutput::code`] and `true`.
pub fn session_line(vars: &mut Vars, fs: &mut Fs, line: &str, now: i64, timeout_ns: i64, reach: Reach) -> (ExecOutput, bool) {
    let Reach { mut net, dns } = reach;
    let mut shell = state::Shell::new(vars, now, state::Context::Exec);
    (shell.net, shell.dns) = (net.as_mut().map(|n| &mut **n as &mut dyn Network), dns);
    shell.deadline = now.saturating_add(timeout_ns.max(0));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = match parse(line) {
        Ok(script) => shell.run_script(&script, fs, &[], &mut out, &mut err),
        Err(e) => {
            err.extend_from_slice(format!("sh: {e}\n").as_bytes());
            2
        }
    };
    let exited = shell.exited;
    let output = ExecOutput {
        code: exited.unwrap_or(status),
        stdout: out,
        stderr: err,
        timed_out: shell.out_of_steps || shell.clock > shell.deadline,
        killed_main: shell.killed_main,
        took: shell.clock.min(shell.deadline).saturating_sub(now),
    };
    vars.status = output.code;
    (output, exited.is_some())
}

/// The prompt a shell shows as root: busybox's `\w # `, bash's `root@host:\w# `.
pub fn prompt(argv: &[String], vars: &Vars) -> String {
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p)).unwrap_or("");
    let host = vars.values.get("HOSTNAME").map_or("localhost", String::as_str);
    match program {
        "bash" => format!("root@{host}:{}# ", vars.cwd),
        _ => format!("{} # ", vars.cwd),
    }
}

/// Runs `argv` as an exec does, with the environment `vars` (a container's, or a fresh one
/// for a container that has none running).
pub fn exec_in(vars: &Vars, fs: &mut Fs, argv: &[String], stdin: &[u8], now: i64, timeout_ns: i64) -> ExecOutput {
    exec_on(vars, fs, argv, stdin, now, timeout_ns, Reach::default())
}

/// [`exec_in`] with what its commands reach beyond the container.
pub fn exec_on(vars: &Vars, fs: &mut Fs, argv: &[String], stdin: &[u8], now: i64, timeout_ns: i64, reach: Reach) -> ExecOutput {
    let Reach { mut net, dns } = reach;
    let mut own = vars.clone();
    let mut shell = state::Shell::new(&mut own, now, state::Context::Exec);
    (shell.net, shell.dns) = (net.as_mut().map(|n| &mut **n as &mut dyn Network), dns);
    shell.deadline = now.saturating_add(timeout_ns.max(0));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (script, stdin) = match invocation(argv) {
        Invocation::Script { script, positional } => {
            shell.vars.positional = positional;
            (script.to_string(), stdin)
        }
        // An interactive shell reads its commands from stdin.
        Invocation::Interactive => (String::from_utf8_lossy(stdin).into_owned(), &[][..]),
        Invocation::Program => (argv.iter().map(|a| parse::quote(a)).collect::<Vec<_>>().join(" "), stdin),
    };
    let status = match parse(&script) {
        Ok(script) => shell.run_script(&script, fs, stdin, &mut out, &mut err),
        Err(e) => {
            err.extend_from_slice(format!("sh: {e}\n").as_bytes());
            2
        }
    };
    ExecOutput {
        code: shell.exited.unwrap_or(status),
        stdout: out,
        stderr: err,
        timed_out: shell.out_of_steps || shell.clock > shell.deadline,
        killed_main: shell.killed_main,
        took: shell.clock.min(shell.deadline).saturating_sub(now),
    }
}

#[cfg(test)]
mod tests;

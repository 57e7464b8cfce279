//! What a started container does in the fake runtime: its command (or its image's default)
//! runs as a [`Process`] of the [`crate::shell`] over the container's own files, its output
//! becomes the container's log lines, and, unless a scenario decided otherwise, its exit
//! ends the container with the kubelet's reasons (`Completed`, `Error`). Execs and exec
//! probes run in the same shell over the same files.
//!
//! A container starts with the image's usual folders, the kubelet-managed `/etc/hostname`,
//! `/etc/hosts` and `/etc/resolv.conf` (written here from the sandbox), its volumes'
//! files as the host hands them over, and what other containers wrote to the volumes it
//! shares with them ([`crate::volumes`]).

use crate::container::{ContainerKind, Exit, Lifetime, RestartPolicy, Stop};
use crate::image::{ImageDefault, container_argv};
use crate::runtime::{ContainerRecord, FakeRuntime, SandboxRecord, finish, kind_of};
use crate::server::PodNetwork;
use crate::shell::fs::MountPoint;
use crate::shell::{ExecOutput, Fs, Process, ProcessState, Reach, User, Vars, exec_on};
use crate::{ContainerFile, ContainerState, ExecResult, LogLine, LogStream, ProbeOutcome, ProbeResult, RuntimeError, host};

/// Starts a container's process at `now`, as `lifetime` says the container lives.
pub(crate) fn start(rt: &mut FakeRuntime, id: &str, now: i64, lifetime: Lifetime) {
    let completion = rt.completion;
    let sandbox = rt.containers.get(id).and_then(|c| rt.sandboxes.get(&c.sandbox_id)).cloned();
    let Some(c) = rt.containers.get_mut(id) else { return };
    let mut env: Vec<(String, String)> = c.config.env.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    if let Some(s) = &sandbox
        && !env.iter().any(|(k, _)| k == "HOSTNAME")
    {
        env.push(("HOSTNAME".into(), s.config.hostname.clone()));
    }
    c.fs = container_files(sandbox.as_ref());
    for m in &c.config.mounts {
        c.fs.mount(&m.path, MountPoint { mode: m.mode, read_only: m.read_only, tmpfs: m.tmpfs });
    }
    for file in &c.config.files {
        c.fs.put(&file.path, &file.data, file.mode);
    }
    // The command runs on what other containers wrote to the volumes it shares.
    c.volumes_seen.clear();
    rt.volumes.share_in(std::iter::once(c.side()));
    let security = &c.config.security;
    c.fs.set_read_only_root(security.read_only_root_filesystem);
    let uid = security.run_as_user.unwrap_or(0);
    let user = User {
        uid,
        gid: security.run_as_group.unwrap_or(if uid == 65534 { 65534 } else { 0 }),
        privileged: security.privileged,
        no_new_privileges: security.no_new_privileges,
    };
    c.follows_process = lifetime == Lifetime::Command;
    if let Lifetime::ExitsAfter(after, exit) = lifetime {
        let at = now.saturating_add(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX));
        c.planned_exit = Some((at, exit));
    }
    match container_argv(&c.config.image, &c.config.command, &c.config.args, &c.config.env) {
        Ok(argv) => {
            let process = Process::start_as(&argv, &env, user, now);
            c.process = Some(if c.config.stdin { process.with_stdin(&argv, c.config.tty) } else { process });
        }
        Err(ImageDefault::Exits { code, stderr }) => {
            c.add_logs(stderr.into_iter().map(|text| LogLine { time: now, stream: LogStream::Stderr, text }));
            if c.follows_process {
                finish(c, now, Exit::error(code));
            }
            return;
        }
        Err(_) => {}
    }
    advance(c, now);
    if c.process.as_ref().is_some_and(|p| p.state() == ProcessState::External) {
        // The program is the image's own: a line to show it started, and init containers and
        // Jobs complete after the configured time, as before there was a shell.
        // First, before what the scenario has it write when it starts.
        let line = format!("{} started from image {}", c.config.metadata.name, c.config.image);
        c.logs.insert(0, LogLine { time: now, stream: LogStream::Stdout, text: line });
        let finishes = match kind_of(&c.config) {
            (ContainerKind::Init, _) => Some(completion.init),
            (ContainerKind::Regular, RestartPolicy::OnFailure | RestartPolicy::Never) => Some(completion.run_to_completion),
            _ => None,
        };
        if let Some(after) = finishes.filter(|_| c.follows_process) {
            let at = now.saturating_add(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX));
            c.planned_exit = Some((at, Exit::completed()));
        }
    }
}

/// Runs the processes and applies the exits whose time has come.
pub(crate) fn refresh(rt: &mut FakeRuntime, now: i64) {
    if rt.next_exit.is_none_or(|t| now < t) {
        return;
    }
    let mut next = None::<i64>;
    for c in rt.containers.values_mut() {
        if c.state != ContainerState::Running {
            continue;
        }
        // The process runs up to the scenario's exit, if that comes first.
        let planned = c.planned_exit.as_ref().map(|(at, _)| *at);
        advance(c, planned.map_or(now, |at| at.min(now)));
        if c.state != ContainerState::Running {
            continue;
        }
        if let Some((at, exit)) = c.planned_exit.clone() {
            if at <= now {
                finish(c, at, exit);
                continue;
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(wake) = wakes_at(c) {
            next = Some(next.map_or(wake, |n| n.min(wake)));
        }
    }
    rt.next_exit = next;
}

/// Runs a container's process up to `until`: its output to the logs, its exit to the
/// container when the container follows it.
pub(crate) fn advance(c: &mut ContainerRecord, until: i64) {
    let Some(process) = c.process.as_mut() else { return };
    process.advance(&mut c.fs, until, host::resolve);
    let lines: Vec<LogLine> = process
        .take_output()
        .into_iter()
        .map(|o| LogLine { time: o.time, stream: if o.stderr { LogStream::Stderr } else { LogStream::Stdout }, text: o.text })
        .collect();
    let state = process.state();
    c.add_logs(lines);
    if let ProcessState::Exited { code, at } = state
        && c.follows_process
    {
        finish(c, at, if code == 0 { Exit::completed() } else { Exit::error(code) });
    }
}

/// What a container does on SIGTERM: a command the shell still runs is PID 1 and ignores
/// it; anything else (a program the shell does not know, an ended command) exits at once.
pub(crate) fn on_sigterm(c: &ContainerRecord) -> Stop {
    match c.process.as_ref().map(Process::state) {
        Some(ProcessState::Running | ProcessState::Forever) if c.follows_process => Stop::IgnoresSigterm,
        _ => Stop::Exits(Exit::completed()),
    }
}

/// When a running container's process next needs a call, if it sleeps.
pub(crate) fn wakes_at(c: &ContainerRecord) -> Option<i64> {
    c.process.as_ref().and_then(Process::wakes_at)
}

/// The environment an exec starts in: the main process's, or the container's own when no
/// process of ours runs in it.
fn exec_vars(c: &ContainerRecord) -> Vars {
    match &c.process {
        Some(p) => p.vars().clone(),
        None => {
            let mut vars = Vars { cwd: "/".into(), ..Vars::default() };
            vars.values.extend(c.config.env.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
            vars
        }
    }
}

/// Runs `cmd` in running container `id`, as `kubectl exec`, exec probes and hooks do: its
/// `curl` and `wget` reach the pods' servers; `kill 1` ends the container as its PID 1's
/// death does.
pub(crate) fn exec(rt: &mut FakeRuntime, id: &str, cmd: &[String], stdin: &[u8], now: i64, timeout_ns: i64) -> Result<ExecOutput, RuntimeError> {
    let c = rt.container_mut(id)?;
    let vars = exec_vars(c);
    // The command holds the container's files while the network may reach its own server.
    let mut fs = std::mem::take(&mut c.fs);
    let out = exec_on(&vars, &mut fs, cmd, stdin, now, timeout_ns, Reach { net: Some(&mut PodNetwork { rt, caller: id, now }), dns: host::resolve });
    let c = rt.container_mut(id)?;
    c.fs = fs;
    after_exec(c, &out, now);
    Ok(out)
}

/// The interactive shells open in a plugin's containers, and the attaches to their own
/// processes' stdin, at most [`MAX_SESSIONS`] (opening one more forgets the oldest). Not part
/// of the exported state: a reload ends them.
#[derive(Default)]
pub(crate) struct Sessions {
    next: u64,
    open: std::collections::BTreeMap<u64, Session>,
}

struct Session {
    container: String,
    /// The shell exec'd, or none for an attach to the container's own process.
    argv: Vec<String>,
    vars: Vars,
}

const MAX_SESSIONS: usize = 16;

impl Sessions {
    /// Opens a shell `argv` in running container `c`, or with no `argv` attaches to the stdin
    /// of its own process: its id and first prompt (none for an attach: the prompt is in the
    /// log).
    pub(crate) fn open(&mut self, c: &ContainerRecord, argv: &[String]) -> Result<(u64, String), String> {
        let attach = argv.is_empty();
        if attach && !c.process.as_ref().is_some_and(Process::reads_stdin) {
            return Err(format!("container {} does not read its stdin", c.config.metadata.name));
        }
        if !attach && !crate::shell::is_interactive(argv) {
            return Err(format!("{:?} is not an interactive shell: run it without a terminal", argv.join(" ")));
        }
        if self.open.len() >= MAX_SESSIONS {
            self.open.pop_first();
        }
        self.next += 1;
        let session = Session { container: c.id.clone(), argv: argv.to_vec(), vars: exec_vars(c) };
        let prompt = if attach { String::new() } else { crate::shell::prompt(argv, &session.vars) };
        self.open.insert(self.next, session);
        Ok((self.next, prompt))
    }

    /// Runs `line` in session `id` of container `c`: its output, its exit code if it ended
    /// the shell, and the next prompt. `None` when there is no such session. A line typed
    /// into an attach goes to the container's process, whose output is its log.
    pub(crate) fn line(&mut self, c: &mut ContainerRecord, id: u64, line: &str, now: i64) -> Option<(String, Option<i32>, String)> {
        let session = self.open.get_mut(&id).filter(|s| s.container == c.id)?;
        if session.argv.is_empty() {
            if let Some(process) = c.process.as_mut() {
                process.feed_line(line, now);
            }
            advance(c, now);
            let ended = (c.state != ContainerState::Running).then_some(c.exit_code);
            return Some((String::new(), ended, String::new()));
        }
        let (out, exited) = crate::shell::session_line(&mut session.vars, &mut c.fs, line, now, i64::MAX, Reach { net: None, dns: host::resolve });
        let prompt = crate::shell::prompt(&session.argv, &session.vars);
        if exited {
            self.open.remove(&id);
        }
        after_exec(c, &out, now);
        Some((out.text(), exited.then_some(out.code), prompt))
    }

    /// Ends session `id` of container `c`: an attach that goes away ends the process's input
    /// when the container has `stdinOnce`.
    pub(crate) fn close(&mut self, c: Option<&mut ContainerRecord>, id: u64, now: i64) {
        let Some(c) = c else { return };
        let Some(session) = self.open.remove_entry(&id).filter(|(_, s)| s.container == c.id).map(|(_, s)| s) else { return };
        if session.argv.is_empty() && c.config.stdin_once {
            if let Some(process) = c.process.as_mut() {
                process.close_stdin(now);
            }
            advance(c, now);
        }
    }
}

/// What an exec's command did to its container beyond its output: `kill 1` ends it, and a
/// command that sleeps holds the reply that long.
fn after_exec(c: &mut ContainerRecord, out: &ExecOutput, now: i64) {
    if let Some(code) = out.killed_main {
        finish(c, now, Exit::error(code));
    }
    // A command that sleeps takes that long: the reply waits (a `preStop` hook's `sleep 10`
    // holds the stop, `kubectl exec … sleep 5` returns after 5 s).
    if out.took > 0 {
        host::delay_reply(std::time::Duration::from_nanos(out.took.unsigned_abs()));
    }
}

/// Writes a running container's new volume files over the old ones.
pub(crate) fn update_files(c: &mut ContainerRecord, files: &[ContainerFile]) {
    // The host hands over every file of the volumes it updates: a file of a read-only volume
    // folder that is not among them left its object (a deleted key, a deleted optional
    // ConfigMap) and goes, as the kubelet's atomic writer removes it.
    let folders: Vec<String> = c.config.mounts.iter().filter(|m| m.read_only && c.fs.is_dir(&m.path)).map(|m| m.path.clone()).collect();
    for folder in folders {
        for stale in c.fs.files_under(&folder).into_iter().filter(|p| !files.iter().any(|f| f.path == *p)) {
            c.fs.remove_file(&stale);
        }
    }
    for file in files {
        c.fs.put(&file.path, &file.data, file.mode);
    }
}

/// What an exec returns to the host.
pub(crate) fn exec_result(out: ExecOutput) -> ExecResult {
    ExecResult { exit_code: out.code, stdout: out.stdout, stderr: out.stderr }
}

/// An exec probe the scenario left to the container: it runs `cmd` (success is exit 0 within
/// `timeout_ns`, the output is what it wrote). HTTP and TCP probes reach the pod's servers
/// ([`crate::server::probe`]).
pub(crate) fn probe(rt: &mut FakeRuntime, id: &str, cmd: &[String], now: i64, timeout_ns: i64) -> Result<ProbeResult, RuntimeError> {
    let out = exec(rt, id, cmd, &[], now, timeout_ns)?;
    if out.timed_out {
        let output = format!("command \"{}\" timed out", cmd.join(" "));
        return Ok(ProbeResult { outcome: ProbeOutcome::Failure, output });
    }
    Ok(probe_result(exec_result(out)))
}

/// What an exec probe whose command ran shows: success on exit 0, and what it wrote.
pub(crate) fn probe_result(ran: ExecResult) -> ProbeResult {
    let outcome = if ran.exit_code == 0 { ProbeOutcome::Success } else { ProbeOutcome::Failure };
    let output = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    ProbeResult { outcome, output }
}

/// The files every container starts with: the kubelet-managed hostname and DNS files, and
/// the image's own `/etc/hosts` (the kubelet's, naming the pod, comes with the host's files).
fn container_files(sandbox: Option<&SandboxRecord>) -> Fs {
    let mut fs = Fs::new();
    let (hostname, namespace) = sandbox.map_or(("localhost", "default"), |s| (s.config.hostname.as_str(), s.config.metadata.namespace.as_str()));
    fs.put("/etc/hostname", format!("{hostname}\n").as_bytes(), 0o644);
    fs.put("/etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644);
    let resolv = format!("search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
    fs.put("/etc/resolv.conf", resolv.as_bytes(), 0o644);
    fs.put("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n", 0o644);
    fs
}

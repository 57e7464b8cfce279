//! How a script runs: the main process's resumable frames (a list, `&&`/`||`, loops and
//! `if` at the top level go on call after call) and [`Shell`], which runs a command to its
//! end (expansions, redirections, pipelines, substitutions, everything nested).

use super::dns::Resolve;
use super::fs::{Fs, resolve};
use super::parse::{AndOr, Command, Connector, Pipeline, RedirectOp, Script, Word};
use super::state::{Context, Shell, bounded};
use super::{MAX_CAPTURE, Process, ProcessState, STEPS_PER_CALL, Vars, builtins};
use serde::{Deserialize, Serialize};

/// What the main process has still to do, innermost last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Frame {
    Seq { items: Vec<AndOr>, next: usize },
    AndOr { rest: Vec<(Connector, Pipeline)>, next: usize },
    Negate,
    Loop { until: bool, cond: Script, body: Script, in_body: bool, checking: bool, last: i32 },
    For { var: String, items: Vec<String>, next: usize, body: Script },
    If { branches: Vec<(Script, Script)>, otherwise: Option<Script>, next: usize, deciding: bool },
}

impl Frame {
    pub(super) fn seq(script: Script) -> Frame {
        Frame::Seq { items: script.0, next: 0 }
    }
}

/// One step of the main process: one frame's turn, or one command run to its end. Returns
/// the steps it took: 1, or what the command used of the budget.
pub(super) fn step(p: &mut Process, fs: &mut Fs, dns: Resolve) -> u32 {
    let Some(top) = p.frames.last_mut() else {
        // A shell on an open stdin takes its next line, or waits for one.
        if !p.next_input() {
            p.end(p.vars.status);
        }
        return 1;
    };
    match top {
        Frame::Seq { items, next } => {
            let Some(item) = items.get(*next).cloned() else {
                p.frames.pop();
                return 1;
            };
            *next += 1;
            p.frames.push(Frame::AndOr { rest: item.rest, next: 0 });
            return start_pipeline(p, fs, item.first, dns);
        }
        Frame::AndOr { rest, next } => {
            let Some((connector, pipeline)) = rest.get(*next).cloned() else {
                p.frames.pop();
                return 1;
            };
            *next += 1;
            if (connector == Connector::And) == (p.vars.status == 0) {
                return start_pipeline(p, fs, pipeline, dns);
            }
        }
        Frame::Negate => {
            p.frames.pop();
            p.vars.status = i32::from(p.vars.status == 0);
        }
        Frame::Loop { .. } => step_loop(p),
        Frame::For { var, items, next, body } => match items.get(*next).cloned() {
            Some(item) => {
                *next += 1;
                p.vars.values.insert(var.clone(), item);
                let body = body.clone();
                p.frames.push(Frame::seq(body));
            }
            None => {
                if *next == 0 {
                    p.vars.status = 0;
                }
                p.frames.pop();
            }
        },
        Frame::If { .. } => step_if(p),
    }
    1
}

/// One step of a `while` or `until` loop: check its condition, or run its body once more.
fn step_loop(p: &mut Process) {
    let Some(Frame::Loop { until, cond, body, in_body, checking, last }) = p.frames.last_mut() else { return };
    if *checking {
        *checking = false;
        if (p.vars.status == 0) != *until {
            *in_body = true;
            let body = body.clone();
            p.frames.push(Frame::seq(body));
        } else {
            p.vars.status = *last;
            p.frames.pop();
        }
    } else {
        if *in_body {
            *last = p.vars.status;
        }
        *checking = true;
        let cond = cond.clone();
        p.frames.push(Frame::seq(cond));
    }
}

/// One step of an `if`: check the next condition, or run the branch it chose.
fn step_if(p: &mut Process) {
    let Some(Frame::If { branches, otherwise, next, deciding }) = p.frames.last_mut() else { return };
    if !*deciding {
        *deciding = true;
        let cond = branches[*next].0.clone();
        p.frames.push(Frame::seq(cond));
    } else if p.vars.status == 0 {
        let then = branches[*next].1.clone();
        p.frames.pop();
        p.frames.push(Frame::seq(then));
    } else if *next + 1 < branches.len() {
        *next += 1;
        *deciding = false;
    } else {
        let otherwise = otherwise.take();
        p.frames.pop();
        match otherwise {
            Some(o) => p.frames.push(Frame::seq(o)),
            None => p.vars.status = 0,
        }
    }
}

/// Starts a pipeline of the main process: a compound command without redirections becomes
/// frames; anything else runs to its end now.
fn start_pipeline(p: &mut Process, fs: &mut Fs, pipeline: Pipeline, dns: Resolve) -> u32 {
    if let [command] = pipeline.commands.as_slice()
        && command.redirects().is_empty()
        && !matches!(command, Command::Simple { .. } | Command::Subshell(..))
    {
        if pipeline.negated {
            p.frames.push(Frame::Negate);
        }
        let frame = match command.clone() {
            Command::Group(script, _) => Frame::seq(script),
            Command::Loop { until, cond, body, .. } => Frame::Loop { until, cond, body, in_body: false, checking: false, last: 0 },
            Command::If { branches, otherwise, .. } => Frame::If { branches, otherwise, next: 0, deciding: false },
            Command::For { var, items, body, .. } => {
                let mut shell = Shell::new(&mut p.vars, p.clock, Context::Main);
                shell.dns = dns;
                let items = match items {
                    Some(words) => shell.expand_words(&words, fs),
                    None => shell.vars.positional.iter().skip(1).cloned().collect(),
                };
                Frame::For { var, items, next: 0, body }
            }
            Command::Simple { .. } | Command::Subshell(..) => return 1,
        };
        p.frames.push(frame);
        return 1;
    }
    let mut shell = Shell::new(&mut p.vars, p.clock, Context::Main);
    shell.dns = dns;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = shell.pipeline(&pipeline, fs, &[], &mut out, &mut err);
    let used = shell.steps.max(1);
    let Shell { clock, exited, forever, external, out_of_steps, killed_main, .. } = shell;
    // Output is stamped with the time the command ended: a command that sleeps inside a
    // pipeline or a redirected block writes all it wrote then.
    p.clock = clock;
    p.write(false, &out);
    p.write(true, &err);
    p.vars.status = status;
    if let Some(code) = exited.or(killed_main) {
        p.end(code);
    } else if external {
        p.state = ProcessState::External;
    } else if forever || out_of_steps {
        p.state = ProcessState::Forever;
    }
    used
}

impl<'v> Shell<'v> {
    /// A shell nested in this one (a subshell, a substitution, `sh -c`) over `vars`: one
    /// level deeper, on the same clock, deadline and step budget, so nesting is bounded too.
    pub fn nested<'w>(&self, vars: &'w mut Vars) -> Shell<'w> {
        let mut sub = Shell::new(vars, self.clock, self.context);
        (sub.deadline, sub.steps, sub.depth, sub.dns) = (self.deadline, self.steps, self.depth + 1, self.dns);
        sub
    }

    /// What a nested shell (a subshell, a substitution, `sh -c`) found that stops its parent
    /// too: (waits for ever, runs an unknown program, out of steps, killed the main process).
    pub fn flags(&self) -> (bool, bool, bool, Option<i32>) {
        (self.forever, self.external, self.out_of_steps, self.killed_main)
    }

    /// How many steps this shell (and the ones it nested) took.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Takes on a nested shell's clock, steps and [`Shell::flags`].
    pub fn absorb(&mut self, clock: i64, steps: u32, (forever, external, out_of_steps, killed_main): (bool, bool, bool, Option<i32>)) {
        (self.clock, self.steps) = (clock, self.steps.max(steps));
        self.forever |= forever;
        self.external |= external;
        self.out_of_steps |= out_of_steps;
        self.killed_main = self.killed_main.or(killed_main);
    }

    /// Whether the shell must stop: exited, waiting for ever, or out of steps or time.
    pub fn stopped(&self) -> bool {
        self.exited.is_some() || self.killed_main.is_some() || self.forever || self.external || self.out_of_steps || self.clock > self.deadline
    }

    pub fn run_script(&mut self, script: &Script, fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        for item in &script.0 {
            if self.stopped() {
                break;
            }
            self.vars.status = self.and_or(item, fs, stdin, out, err);
        }
        self.vars.status
    }

    fn and_or(&mut self, item: &AndOr, fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        let mut status = self.pipeline(&item.first, fs, stdin, out, err);
        for (connector, pipeline) in &item.rest {
            if self.stopped() {
                break;
            }
            if (*connector == Connector::And) == (status == 0) {
                status = self.pipeline(pipeline, fs, stdin, out, err);
            }
        }
        status
    }

    pub fn pipeline(&mut self, pipeline: &Pipeline, fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        let mut input = stdin.to_vec();
        let mut status = 0;
        let last = pipeline.commands.len().saturating_sub(1);
        for (i, command) in pipeline.commands.iter().enumerate() {
            if self.stopped() {
                break;
            }
            if i == last {
                status = self.command(command, fs, &input, out, err);
            } else {
                let mut piped = Vec::new();
                status = self.command(command, fs, &input, &mut piped, err);
                input = piped;
            }
        }
        self.vars.status = if pipeline.negated { i32::from(status == 0) } else { status };
        self.vars.status
    }

    fn command(&mut self, command: &Command, fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        self.steps += 1;
        if self.steps > STEPS_PER_CALL {
            self.out_of_steps = true;
            return 1;
        }
        if self.depth > 64 {
            err.extend_from_slice(b"sh: nested too deeply\n");
            return 2;
        }
        self.depth += 1;
        let mut input = stdin.to_vec();
        let (mut own_out, mut own_err) = (Vec::new(), Vec::new());
        let status = match self.redirected_input(command, fs, &mut input, err) {
            Some(status) => status,
            None => self.body(command, fs, &input, &mut own_out, &mut own_err),
        };
        self.depth -= 1;
        self.route(command, fs, own_out, own_err, out, err).unwrap_or(status)
    }

    fn body(&mut self, command: &Command, fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        match command {
            Command::Simple { assigns, words, .. } => self.simple(assigns, words, fs, stdin, out, err),
            Command::Group(script, _) => self.run_script(script, fs, stdin, out, err),
            Command::Subshell(script, _) => {
                let mut copy = self.vars.clone();
                let mut sub = self.nested(&mut copy);
                let status = sub.run_script(script, fs, stdin, out, err);
                let exited = sub.exited;
                let (clock, steps, flags) = (sub.clock, sub.steps, sub.flags());
                self.absorb(clock, steps, flags);
                exited.unwrap_or(status)
            }
            Command::If { branches, otherwise, .. } => {
                for (cond, then) in branches {
                    if self.run_script(cond, fs, stdin, out, err) == 0 && !self.stopped() {
                        return self.run_script(then, fs, stdin, out, err);
                    }
                    if self.stopped() {
                        return 1;
                    }
                }
                otherwise.as_ref().map_or(0, |o| self.run_script(o, fs, stdin, out, err))
            }
            Command::Loop { until, cond, body, .. } => {
                let mut last = 0;
                while !self.stopped() && (self.run_script(cond, fs, stdin, out, err) == 0) != *until && !self.stopped() {
                    last = self.run_script(body, fs, stdin, out, err);
                    self.steps += 1;
                    if self.steps > STEPS_PER_CALL {
                        self.out_of_steps = true;
                    }
                }
                last
            }
            Command::For { var, items, body, .. } => {
                let items = match items {
                    Some(words) => self.expand_words(words, fs),
                    None => self.vars.positional.iter().skip(1).cloned().collect(),
                };
                let mut last = 0;
                for item in items {
                    if self.stopped() {
                        break;
                    }
                    self.vars.values.insert(var.clone(), item);
                    last = self.run_script(body, fs, stdin, out, err);
                }
                last
            }
        }
    }

    fn simple(&mut self, assigns: &[(String, Word)], words: &[Word], fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        let values: Vec<(String, String)> = assigns.iter().map(|(name, w)| (name.clone(), bounded(self.expand_single(w, fs)))).collect();
        let argv = self.expand_words(words, fs);
        if argv.is_empty() {
            self.vars.values.extend(values);
            return self.vars.status;
        }
        // Assignments before a command hold for that command only.
        let saved: Vec<(String, Option<String>)> = values.iter().map(|(k, _)| (k.clone(), self.vars.values.get(k).cloned())).collect();
        self.vars.values.extend(values);
        let status = self.run_argv(&argv, fs, stdin, out, err);
        for (k, old) in saved {
            match old {
                Some(v) => self.vars.values.insert(k, v),
                None => self.vars.values.remove(&k),
            };
        }
        status
    }

    /// Runs one command line's words: a builtin, `sh -c`, or a program the shell does not know.
    pub fn run_argv(&mut self, argv: &[String], fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
        let Some(program) = argv.first() else { return 0 };
        if let Some(status) = builtins::run(self, argv, fs, stdin, out, err) {
            cap(out);
            cap(err);
            return status;
        }
        let name = program.rsplit('/').next().unwrap_or(program);
        match self.context {
            Context::Main => {
                self.external = true;
                0
            }
            Context::Exec if name.is_empty() => {
                err.extend_from_slice(format!("sh: {program}: not found\n").as_bytes());
                127
            }
            Context::Exec => 0,
        }
    }

    /// `< file`: the command's input, or the status when it cannot be read.
    fn redirected_input(&mut self, command: &Command, fs: &mut Fs, input: &mut Vec<u8>, err: &mut Vec<u8>) -> Option<i32> {
        for r in command.redirects().iter().filter(|r| r.op == RedirectOp::Read && r.fd == 0) {
            let target = self.expand_single(&r.target, fs);
            match fs.read(&resolve(&self.vars.cwd, &target)) {
                Ok(bytes) => *input = bytes.to_vec(),
                Err(e) => {
                    err.extend_from_slice(format!("{}: can't open '{target}': {e}\n", self.name()).as_bytes());
                    return Some(1);
                }
            }
        }
        None
    }

    /// Sends a command's own output where its redirections say: the files, the other
    /// stream, or on to `out` and `err`. `Some(1)` when a file cannot be written.
    fn route(&mut self, command: &Command, fs: &mut Fs, own_out: Vec<u8>, own_err: Vec<u8>, out: &mut Vec<u8>, err: &mut Vec<u8>) -> Option<i32> {
        #[derive(Clone)]
        enum To {
            Out,
            Err,
            File(String, bool),
        }
        let mut to = [To::Out, To::Out, To::Err];
        for r in command.redirects() {
            let fd = usize::try_from(r.fd).ok().filter(|fd| (1..=2).contains(fd));
            let Some(fd) = fd else { continue };
            let target = self.expand_single(&r.target, fs);
            to[fd] = match r.op {
                RedirectOp::Write | RedirectOp::Append => To::File(resolve(&self.vars.cwd, &target), r.op == RedirectOp::Append),
                RedirectOp::Dup => match target.as_str() {
                    "1" => to[1].clone(),
                    "2" => to[2].clone(),
                    _ => continue,
                },
                RedirectOp::Read => continue,
            };
        }
        let mut failed = None;
        let mut files: Vec<(String, bool, Vec<u8>)> = Vec::new();
        for (fd, bytes) in [(1, own_out), (2, own_err)] {
            match &to[fd] {
                To::Out => out.extend_from_slice(&bytes),
                To::Err => err.extend_from_slice(&bytes),
                To::File(path, append) => match files.iter_mut().find(|(p, _, _)| p == path) {
                    Some((_, _, data)) => data.extend_from_slice(&bytes),
                    None => files.push((path.clone(), *append, bytes)),
                },
            }
        }
        // Every redirected file is made even when nothing is written to it, as `> f` does.
        for r in command.redirects().iter().filter(|r| matches!(r.op, RedirectOp::Write | RedirectOp::Append)) {
            let target = self.expand_single(&r.target, fs);
            let path = resolve(&self.vars.cwd, &target);
            if !files.iter().any(|(p, _, _)| *p == path) {
                files.push((path, r.op == RedirectOp::Append, Vec::new()));
            }
        }
        for (path, append, data) in files {
            if let Err(e) = fs.write(&path, &data, append) {
                err.extend_from_slice(format!("{}: can't create {path}: {e}\n", self.name()).as_bytes());
                failed = Some(1);
            }
        }
        cap(out);
        cap(err);
        failed
    }

    /// A word as one string: no field splitting (assignments, redirection targets).
    pub fn expand_single(&mut self, word: &Word, fs: &mut Fs) -> String {
        self.pieces(word, fs).into_iter().map(|(text, _)| text).collect()
    }

    /// Words as the command's fields: unquoted expansions split at blanks, unquoted
    /// patterns matched against the files.
    pub fn expand_words(&mut self, words: &[Word], fs: &mut Fs) -> Vec<String> {
        let mut fields = Vec::new();
        for word in words {
            let glob = word.0.iter().all(|p| matches!(p, super::parse::Part::Literal(_)))
                && word.0.iter().any(|p| matches!(p, super::parse::Part::Literal(l) if l.contains(['*', '?'])));
            let (mut current, mut have) = (String::new(), false);
            for (text, split) in self.pieces(word, fs) {
                if !split {
                    current.push_str(&text);
                    have = true;
                    continue;
                }
                for (i, chunk) in text.split([' ', '\t', '\n']).enumerate() {
                    if i > 0 && have {
                        fields.push(std::mem::take(&mut current));
                        have = false;
                    }
                    if !chunk.is_empty() {
                        current.push_str(chunk);
                        have = true;
                    }
                }
            }
            if have {
                if glob {
                    let matches = super::builtins::glob(fs, &self.vars.cwd, &current);
                    if !matches.is_empty() {
                        fields.extend(matches);
                        continue;
                    }
                }
                fields.push(current);
            }
        }
        fields
    }

    /// A word's pieces: (text, whether it may be split into fields).
    fn pieces(&mut self, word: &Word, fs: &mut Fs) -> Vec<(String, bool)> {
        use super::parse::Part;
        let mut pieces = Vec::new();
        for part in &word.0 {
            match part {
                Part::Literal(s) => pieces.push((s.clone(), false)),
                Part::Quoted(s) => pieces.push((s.clone(), false)),
                Part::Var { name, default, quoted } => {
                    let value = self.var(name);
                    let value = match (value.is_empty(), default) {
                        (true, Some(d)) => self.expand_single(d, fs),
                        _ => value,
                    };
                    // Copying a large value costs steps, so a loop over one stays within a call.
                    self.steps = self.steps.saturating_add(u32::try_from(value.len() / BYTES_PER_STEP).unwrap_or(u32::MAX));
                    pieces.push((value, !quoted));
                }
                Part::Command { script, quoted } => {
                    let (mut out, mut err) = (Vec::new(), Vec::new());
                    let mut copy = self.vars.clone();
                    let mut sub = self.nested(&mut copy);
                    let status = sub.run_script(script, fs, &[], &mut out, &mut err);
                    let exited = sub.exited;
                    let (clock, steps, flags) = (sub.clock, sub.steps, sub.flags());
                    self.absorb(clock, steps, flags);
                    self.vars.status = exited.unwrap_or(status);
                    let text = String::from_utf8_lossy(&out);
                    pieces.push((text.trim_end_matches('\n').to_string(), !quoted));
                }
                Part::Arith { expr, quoted } => {
                    let text = super::arith::eval(expr, &self.vars.values).map_or_else(|e| e, |n| n.to_string());
                    pieces.push((text, !quoted));
                }
            }
        }
        pieces
    }

    /// The name the shell was run by (`$0`: `/bin/sh` for `/bin/sh -c …`), which its messages
    /// start with, as busybox's do.
    fn name(&self) -> String {
        self.vars.positional.first().filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| "sh".into())
    }

    /// A variable's value; special parameters included.
    pub fn var(&self, name: &str) -> String {
        match name {
            "?" => self.vars.status.to_string(),
            "$" => "1".into(),
            "!" => String::new(),
            "#" => self.vars.positional.len().saturating_sub(1).to_string(),
            "@" | "*" => self.vars.positional.iter().skip(1).cloned().collect::<Vec<_>>().join(" "),
            n if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() => self.vars.positional.get(usize::from(n.as_bytes()[0] - b'0')).cloned().unwrap_or_default(),
            // The shell keeps `$PWD` as the working folder, as `cd` sets it.
            "PWD" => self.vars.cwd.clone(),
            n => self.vars.values.get(n).cloned().unwrap_or_default(),
        }
    }
}

/// Keeps a capture within [`MAX_CAPTURE`]: what passes it is dropped from the front.
fn cap(buffer: &mut Vec<u8>) {
    if buffer.len() > MAX_CAPTURE {
        let cut = buffer.len() - MAX_CAPTURE;
        buffer.drain(..cut);
    }
}

/// How many bytes an expansion copies for one step of the budget.
const BYTES_PER_STEP: usize = 16 * 1024;

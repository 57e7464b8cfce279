//! A main process that reads its commands from an open stdin: a container with `stdin: true`
//! whose command is a shell alone (`kubectl run -it … -- sh`). It waits for lines instead of
//! ending at once, runs each line typed into `kubectl attach -i` as the container's own
//! process (its output is the container's log), writes its prompt there between lines when
//! stdin is a terminal, and ends when its input does (`exit`, or the end of stdin).

use super::{Process, ProcessState, invocation, parse, run};
use serde::{Deserialize, Serialize};

/// The most lines typed ahead while the process is busy; more are dropped, as a full pipe
/// would hold its writer.
const MAX_PENDING: usize = 64;

/// Where a process's stdin stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Input {
    /// The shell's name when stdin is a terminal, for the prompt it writes before each line;
    /// none without one.
    terminal: Option<String>,
    /// Lines typed while it was still running the one before.
    pending: std::collections::VecDeque<String>,
    /// The input has not ended.
    open: bool,
}

impl Process {
    /// Keeps a shell alone (`sh`, `bash`) waiting on its stdin for lines, on a terminal when
    /// `tty`; any other command is left as it is (its stdin is not read).
    pub fn with_stdin(mut self, argv: &[String], tty: bool) -> Process {
        if matches!(invocation(argv), super::Invocation::Interactive) && self.state == ProcessState::Running {
            let terminal = tty.then(|| argv.first().cloned().unwrap_or_default());
            self.input = Some(Input { terminal, pending: Default::default(), open: true });
        }
        self
    }

    /// Whether it reads lines from an open stdin.
    pub fn reads_stdin(&self) -> bool {
        self.input.as_ref().is_some_and(|i| i.open) && !matches!(self.state, ProcessState::Exited { .. })
    }

    /// A line typed on its stdin at `now`: run as soon as the line before has ended.
    pub fn feed_line(&mut self, line: &str, now: i64) {
        let Some(input) = self.input.as_mut().filter(|i| i.open) else { return };
        if input.pending.len() < MAX_PENDING {
            input.pending.push_back(line.to_string());
        }
        if self.state == ProcessState::Forever && self.frames.is_empty() {
            self.clock = self.clock.max(now);
            self.state = ProcessState::Running;
        }
    }

    /// Its stdin ended at `now` (the attach of a `stdinOnce` container went away, Ctrl-D):
    /// it ends once the lines it has are run.
    pub fn close_stdin(&mut self, now: i64) {
        let Some(input) = self.input.as_mut() else { return };
        input.open = false;
        if self.state == ProcessState::Forever && self.frames.is_empty() {
            self.clock = self.clock.max(now);
            self.state = ProcessState::Running;
        }
    }

    /// What a shell reading stdin does when its commands are done: the next line typed, else
    /// its prompt and a wait for one; `false` when it has no stdin or the stdin ended, and so
    /// the process ends.
    pub(super) fn next_input(&mut self) -> bool {
        let Some(input) = self.input.as_mut() else { return false };
        if let Some(line) = input.pending.pop_front() {
            match parse(&line) {
                Ok(script) => self.frames.push(run::Frame::seq(script)),
                Err(e) => {
                    self.write_line(true, &format!("sh: {e}"));
                    self.vars.status = 2;
                }
            }
            return true;
        }
        if !input.open {
            return false;
        }
        if let Some(shell) = input.terminal.clone() {
            let prompt = super::prompt(&[shell], &self.vars);
            // A line of its own in the log: what is typed next is not echoed there.
            self.write(false, prompt.as_bytes());
            self.flush();
        }
        self.state = ProcessState::Forever;
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::shell::dns::nowhere;
    use crate::shell::{Fs, Process, ProcessState};

    const S: i64 = 1_000_000_000;

    fn texts(p: &mut Process) -> Vec<String> {
        p.take_output().into_iter().map(|o| o.text).collect()
    }

    #[test]
    fn a_shell_on_an_open_stdin_waits_runs_each_line_and_ends_with_exit() {
        let argv = ["sh".to_string()];
        let mut fs = Fs::new();
        let mut p = Process::start(&argv, &[], 0).with_stdin(&argv, true);
        p.advance(&mut fs, 0, nowhere);
        assert_eq!(p.state(), ProcessState::Forever, "it waits for its input");
        assert_eq!(texts(&mut p), ["/ # "]);
        p.feed_line("cd /tmp; echo hi > f; sleep 5; cat f", S);
        p.feed_line("echo typed ahead", S);
        p.advance(&mut fs, 2 * S, nowhere);
        assert!(texts(&mut p).is_empty(), "still asleep");
        p.advance(&mut fs, 6 * S, nowhere);
        assert_eq!(texts(&mut p), ["hi", "typed ahead", "/tmp # "]);
        p.feed_line("exit 3", 7 * S);
        p.advance(&mut fs, 7 * S, nowhere);
        assert_eq!(p.state(), ProcessState::Exited { code: 3, at: 7 * S });
    }

    #[test]
    fn without_a_terminal_there_is_no_prompt_and_the_end_of_stdin_ends_it() {
        let argv = ["sh".to_string()];
        let mut fs = Fs::new();
        let mut p = Process::start(&argv, &[], 0).with_stdin(&argv, false);
        p.advance(&mut fs, 0, nowhere);
        p.feed_line("false", S);
        p.close_stdin(S);
        p.advance(&mut fs, S, nowhere);
        assert!(texts(&mut p).is_empty());
        assert_eq!(p.state(), ProcessState::Exited { code: 1, at: S }, "the status of its last command");
        let script = ["sh".to_string(), "-c".to_string(), "echo once".to_string()];
        let mut q = Process::start(&script, &[], 0).with_stdin(&script, true);
        q.advance(&mut fs, 0, nowhere);
        assert!(!q.reads_stdin(), "a script does not read the shell's stdin");
        assert_eq!(q.state(), ProcessState::Exited { code: 0, at: 0 });
    }
}

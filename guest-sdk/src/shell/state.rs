//! The shell's state while it runs commands: its variables, clock and budget, and what
//! the commands did to the process. [`super::run`] interprets scripts over it;
//! [`super::builtins`] are the commands it knows.

use super::dns::Resolve;
use super::net::Network;
use super::{MAX_CAPTURE, Vars};

/// Where a command runs: as (part of) the container's main process, or exec'd beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Main,
    Exec,
}

/// Runs commands to their end on a clock of its own, within a step budget.
pub struct Shell<'v> {
    pub vars: &'v mut Vars,
    pub clock: i64,
    pub context: Context,
    /// An exec gives up past this time.
    pub deadline: i64,
    pub(super) steps: u32,
    pub(super) depth: usize,
    pub exited: Option<i32>,
    /// A command waits for ever (`sleep infinity`).
    pub forever: bool,
    /// The main process runs a program the shell does not know.
    pub external: bool,
    pub out_of_steps: bool,
    /// `kill 1` ended the container's main process with this status.
    pub killed_main: Option<i32>,
    /// What `curl` and `wget` reach; nothing without one.
    pub net: Option<&'v mut dyn Network>,
    /// What `nslookup` and `getent hosts` ask.
    pub dns: Resolve,
}

impl<'v> Shell<'v> {
    /// `sleep infinity`, `tail -f`: the main process waits for ever; an exec runs out of time.
    pub fn wait_forever(&mut self) -> i32 {
        match self.context {
            Context::Main => self.forever = true,
            Context::Exec => self.clock = self.deadline.saturating_add(1),
        }
        0
    }

    pub fn new(vars: &'v mut Vars, clock: i64, context: Context) -> Shell<'v> {
        Shell {
            vars,
            clock,
            context,
            deadline: i64::MAX,
            steps: 0,
            depth: 0,
            exited: None,
            forever: false,
            external: false,
            out_of_steps: false,
            killed_main: None,
            net: None,
            dns: super::dns::nowhere,
        }
    }
}

/// A variable's value within [`MAX_CAPTURE`] bytes: `x=$x$x` in a loop stops growing there.
pub(super) fn bounded(mut value: String) -> String {
    if value.len() > MAX_CAPTURE {
        let mut end = MAX_CAPTURE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

//! Node actions on a schedule: what a scenario that partitions or reboots its node "after
//! 30 s" keeps, and asks the host for as the calls come in; and [`OnSchedule`], a whole
//! scenario made of such a schedule.

use crate::config::{ConfigError, ConfigFile};
use crate::runtime::FakeRuntime;
use crate::scenario::{Call, Info, Reply, Scenario};
use crate::{NodeAction, host};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Node actions at set times after the scenario's first call on a node. A plugin is called
/// at least every second while it has pods (PLEG's relist), so calling [`NodeScript::tick`]
/// from [`Scenario::before_call`](crate::Scenario::before_call) keeps the times to within a
/// second. Save it with the scenario's state, so a kubelet restart or a plugin reload does
/// not start the script again.
///
/// ```no_run
/// use labkubelet_guest::*;
/// let mut script = NodeScript::new(vec![(secs(30), NodeAction::Partition), (secs(150), NodeAction::Heal)]);
/// script.tick(host::now());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeScript {
    /// Each action with its time after the start, in ns, in order.
    steps: Vec<(i64, NodeAction)>,
    /// Host-clock ns of the first tick.
    start: Option<i64>,
    /// How many steps were done.
    done: usize,
}

impl NodeScript {
    /// A script of actions at times after the first tick; they are done in time order.
    pub fn new(steps: Vec<(Duration, NodeAction)>) -> Self {
        let mut steps: Vec<(i64, NodeAction)> = steps.into_iter().map(|(at, action)| (i64::try_from(at.as_nanos()).unwrap_or(i64::MAX), action)).collect();
        steps.sort_by_key(|(at, _)| *at);
        NodeScript { steps, start: None, done: 0 }
    }

    /// Asks the host for every action that is due at `now` (host-clock ns) and not done yet;
    /// returns them.
    pub fn tick(&mut self, now: i64) -> Vec<NodeAction> {
        let due = self.take_due(now);
        for action in &due {
            host::node_action(*action);
        }
        due
    }

    /// The actions due at `now` and not done yet, counted as done.
    fn take_due(&mut self, now: i64) -> Vec<NodeAction> {
        let start = *self.start.get_or_insert(now);
        let due: Vec<NodeAction> = self.steps[self.done..].iter().take_while(|(at, _)| now.saturating_sub(start) >= *at).map(|(_, a)| *a).collect();
        self.done += due.len();
        due
    }

    /// Whether every action was done.
    pub fn finished(&self) -> bool {
        self.done == self.steps.len()
    }
}

/// A scenario that is nothing but node actions on a schedule: what [`OnSchedule`] needs.
pub trait NodeScenario: Default + 'static {
    fn info(&self) -> Info;
    /// The schedule, from the plugin's configuration file.
    fn script(&self, config: &ConfigFile) -> Result<NodeScript, ConfigError>;
}

/// A [`Scenario`] that serves its pods as `healthy` does and asks for the node actions of
/// its [`NodeScenario`]'s schedule when they are due. The schedule is kept with the plugin's
/// state, so a kubelet restart, a reboot or a reload carries on with it.
///
/// ```
/// use labkubelet_guest::*;
///
/// #[derive(Default)]
/// struct RebootAfterAMinute;
///
/// impl NodeScenario for RebootAfterAMinute {
///     fn info(&self) -> Info {
///         Info::new("reboot-after-a-minute", "0.1.0")
///     }
///     fn script(&self, _config: &ConfigFile) -> Result<NodeScript, ConfigError> {
///         Ok(NodeScript::new(vec![(secs(60), NodeAction::Reboot)]))
///     }
/// }
///
/// export_scenario!(OnSchedule<RebootAfterAMinute>);
/// ```
#[derive(Default)]
pub struct OnSchedule<T> {
    scenario: T,
    script: Option<NodeScript>,
}

impl<T: NodeScenario> Scenario for OnSchedule<T> {
    fn info(&self) -> Info {
        self.scenario.info()
    }

    fn configure(&mut self, config: &ConfigFile) -> Result<(), ConfigError> {
        self.script = Some(self.scenario.script(config)?);
        Ok(())
    }

    fn before_call(&mut self, _call: &Call, rt: &FakeRuntime) -> Reply {
        if let Some(script) = &mut self.script {
            script.tick(rt.now());
        }
        Reply::Now
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.script).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
        if let Some(script) = serde_json::from_value::<Option<NodeScript>>(state).map_err(|e| e.to_string())? {
            self.script = Some(script);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn actions_come_once_each_in_time_order_from_the_first_tick() {
        let mut script = NodeScript::new(vec![(Duration::from_secs(150), NodeAction::Heal), (Duration::from_secs(30), NodeAction::Partition)]);
        assert_eq!(script.take_due(100 * S), vec![]);
        assert_eq!(script.take_due(129 * S), vec![]);
        assert_eq!(script.take_due(130 * S), vec![NodeAction::Partition]);
        assert_eq!(script.take_due(131 * S), vec![]);
        assert!(!script.finished());
        // A saved and restored script carries on where it was.
        let mut restored: NodeScript = serde_json::from_value(serde_json::to_value(&script).unwrap()).unwrap();
        assert_eq!(restored.take_due(400 * S), vec![NodeAction::Heal]);
        assert!(restored.finished());
        assert_eq!(restored.take_due(500 * S), vec![]);
    }
}

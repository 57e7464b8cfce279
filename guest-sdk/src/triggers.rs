//! The lab actions every plugin offers: `kill`, `hang`, `fail-pulls`, `heal`.

use crate::container::{Exit, find};
use crate::process;
use crate::runtime::{FakeRuntime, Faults};
use crate::{KeyValue, TriggerAction, TriggerError, TriggerTarget, host};

pub(crate) fn builtin_actions() -> Vec<TriggerAction> {
    [
        ("kill", "the target containers die now (args: code=137, reason=Error)"),
        ("hang", "every runtime call hangs until heal, like a deadlocked runtime"),
        ("fail-pulls", "every image pull fails (args: message=...)"),
        ("heal", "undo hang and fail-pulls, release held replies"),
    ]
    .into_iter()
    .map(|(name, description)| TriggerAction { name: name.into(), description: description.into() })
    .collect()
}

fn arg<'a>(args: &'a [KeyValue], key: &str) -> Option<&'a str> {
    find(args, key)
}

pub(crate) fn builtin_trigger(
    rt: &mut FakeRuntime,
    action: &str,
    target: &TriggerTarget,
    args: &[KeyValue],
    known: Vec<String>,
) -> Result<String, TriggerError> {
    match action {
        "kill" => {
            let code = match arg(args, "code") {
                Some(c) => c.parse::<i32>().map_err(|_| TriggerError::InvalidArgument(format!("code must be an integer, got {c:?}")))?,
                None => 137,
            };
            let reason = arg(args, "reason").unwrap_or(if code == 0 { "Completed" } else { "Error" });
            let exit = Exit { code, reason: reason.into(), message: String::new() };
            let now = rt.now();
            process::refresh(rt, now);
            let killed: Vec<String> = rt.matching(target).into_iter().filter(|id| rt.kill(id, exit.clone())).collect();
            if killed.is_empty() {
                return Err(TriggerError::NoSuchTarget(describe_target(target)));
            }
            Ok(format!("killed {} container(s) with exit code {code}", killed.len()))
        }
        "hang" => {
            rt.faults.hang = true;
            Ok("runtime calls now hang until heal".into())
        }
        "fail-pulls" => {
            let message = arg(args, "message").unwrap_or("rpc error: code = Unknown desc = failed to pull and unpack image: simulated by labkubelet");
            rt.faults.fail_pulls = Some(message.into());
            Ok("image pulls now fail until heal".into())
        }
        "heal" => {
            rt.faults = Faults::default();
            host::release_replies();
            Ok("runtime healed".into())
        }
        _ => Err(TriggerError::UnknownAction(known)),
    }
}

fn describe_target(t: &TriggerTarget) -> String {
    let pod = match (&t.pod_namespace, &t.pod_name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        (Some(ns), None) => format!("{ns}/*"),
        (None, None) => "*".into(),
    };
    match &t.container {
        Some(c) => format!("no running container {c} in pod {pod}"),
        None => format!("no running container in pod {pod}"),
    }
}

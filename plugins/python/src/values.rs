//! What crosses between the SDK's types and Python: a container and a pod as named tuples
//! (`c.attempt`, `c.labels["app"]`, `pod.name`), and a hook's answer read back into the
//! SDK's type, with a message that names the hook when the answer is of the wrong kind.

use labkubelet_guest::*;
use monty_types::MontyObject;
use std::time::Duration;

fn string(s: &str) -> MontyObject {
    MontyObject::String(s.to_string())
}

fn strings(items: &[String]) -> MontyObject {
    MontyObject::List(items.iter().map(|s| string(s)).collect())
}

fn dict(pairs: &[KeyValue]) -> MontyObject {
    MontyObject::Dict(pairs.iter().map(|kv| (string(&kv.key), string(&kv.value))).collect::<Vec<_>>().into())
}

fn int(n: impl TryInto<i64>) -> MontyObject {
    n.try_into().map_or(MontyObject::None, MontyObject::Int)
}

fn named(type_name: &str, fields: Vec<(&str, MontyObject)>) -> MontyObject {
    let (names, values): (Vec<_>, Vec<_>) = fields.into_iter().map(|(n, v)| (n.to_string(), v)).unzip();
    MontyObject::NamedTuple { type_name: type_name.into(), field_names: names, values }
}

/// Host-clock nanoseconds as the seconds a Python scenario counts in.
pub fn seconds_since_epoch(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// A container in its pod, as a hook sees it; times in seconds.
pub fn container(c: &ContainerCtx) -> MontyObject {
    let running_for = c.started_at.map_or(0.0, |at| seconds_since_epoch(host::now().saturating_sub(at)));
    let kind = match c.kind {
        ContainerKind::Regular => "regular",
        ContainerKind::Init => "init",
        ContainerKind::Sidecar => "sidecar",
    };
    let restart_policy = match c.restart_policy {
        RestartPolicy::Always => "Always",
        RestartPolicy::OnFailure => "OnFailure",
        RestartPolicy::Never => "Never",
    };
    named(
        "Container",
        vec![
            ("id", string(&c.id)),
            ("name", string(&c.name)),
            ("image", string(&c.image)),
            ("command", strings(&c.command)),
            ("args", strings(&c.args)),
            ("env", dict(&c.env)),
            ("attempt", int(c.attempt)),
            ("kind", string(kind)),
            ("restart_policy", string(restart_policy)),
            ("pod_name", string(&c.pod_name)),
            ("pod_namespace", string(&c.pod_namespace)),
            ("pod_uid", string(&c.pod_uid)),
            ("labels", dict(&c.pod_labels)),
            ("annotations", dict(&c.pod_annotations)),
            ("started_at", c.started_at.map_or(MontyObject::None, |at| MontyObject::Float(seconds_since_epoch(at)))),
            ("running_for", MontyObject::Float(running_for)),
            ("memory_limit", c.memory_limit.map_or(MontyObject::None, int)),
        ],
    )
}

/// A pod as a hook sees it.
pub fn pod(p: Option<&PodSandboxConfig>) -> MontyObject {
    let Some(p) = p else { return MontyObject::None };
    named(
        "Pod",
        vec![
            ("name", string(&p.metadata.name)),
            ("namespace", string(&p.metadata.namespace)),
            ("uid", string(&p.metadata.uid)),
            ("attempt", int(p.metadata.attempt)),
            ("labels", dict(&p.labels)),
            ("annotations", dict(&p.annotations)),
            ("ip", p.pod_ip.as_deref().map_or(MontyObject::None, string)),
        ],
    )
}

/// The runtime call in progress, for `before_call`.
pub fn call(c: &Call) -> MontyObject {
    named(
        "Call",
        vec![
            ("method", string(c.method.name())),
            ("pod", pod(c.pod)),
            ("container", c.container.as_ref().map_or(MontyObject::None, container)),
            ("image", c.image.map_or(MontyObject::None, string)),
        ],
    )
}

pub fn probe_kind(kind: ProbeKind) -> MontyObject {
    string(match kind {
        ProbeKind::Liveness => "liveness",
        ProbeKind::Readiness => "readiness",
        ProbeKind::Startup => "startup",
    })
}

/// A hook's answer of the wrong kind: what it returned and what it may return.
fn wrong(hook: &str, value: &MontyObject, expected: &str) -> String {
    format!("{hook} returned {}; expected {expected}", value.py_repr())
}

/// The tag and fields of one of the prelude's answers (`exits(...)`, `fail(...)`).
fn tagged(value: &MontyObject) -> Option<(&str, &[MontyObject])> {
    match value {
        MontyObject::Tuple(items) => match items.split_first() {
            Some((MontyObject::String(tag), rest)) => Some((tag.as_str(), rest)),
            _ => None,
        },
        _ => None,
    }
}

fn seconds(value: &MontyObject) -> Option<Duration> {
    match value {
        MontyObject::Int(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        MontyObject::Float(f) if f.is_finite() && *f >= 0.0 => Some(Duration::from_secs_f64(f.min(1e9))),
        _ => None,
    }
}

fn text(value: &MontyObject) -> Option<String> {
    match value {
        MontyObject::String(s) => Some(s.clone()),
        MontyObject::None => Some(String::new()),
        _ => None,
    }
}

/// `fail(message, code)` as the runtime error it stands for.
fn failure(fields: &[MontyObject]) -> Option<RuntimeError> {
    let [MontyObject::String(message), MontyObject::String(code)] = fields else { return None };
    let code = match code.as_str() {
        "failed" => ErrorCode::Failed,
        "not-found" => ErrorCode::NotFound,
        "invalid-argument" => ErrorCode::InvalidArgument,
        "unavailable" => ErrorCode::Unavailable,
        _ => return None,
    };
    Some(RuntimeError { code, message: message.clone() })
}

/// `None` or `fail(...)`: whether a pull, a sandbox or a create works.
pub fn outcome(hook: &str, value: &MontyObject) -> Result<Result<(), RuntimeError>, String> {
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(Ok(())),
        (_, Some(("fail", fields))) => {
            failure(fields).map(Err).ok_or_else(|| wrong(hook, value, "fail(message, code) with code one of failed, not-found, invalid-argument, unavailable"))
        }
        _ => Err(wrong(hook, value, "None or fail(...)")),
    }
}

fn exit(fields: &[MontyObject]) -> Option<(Duration, Exit)> {
    let [after, MontyObject::Int(code), reason, message] = fields else { return None };
    let code = i32::try_from(*code).ok()?;
    let mut exit = if code == 0 { Exit::completed() } else { Exit::error(code) };
    if let MontyObject::String(reason) = reason {
        exit.reason = reason.clone();
    }
    exit.message = text(message)?;
    Some((seconds(after)?, exit))
}

/// `on_start`'s answer: how long the container lives.
pub fn lifetime(value: &MontyObject) -> Result<Result<Lifetime, RuntimeError>, String> {
    const EXPECTED: &str = "None, exits(after, code), oom_killed(after), runs_forever() or fail(message)";
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(Ok(Lifetime::Command)),
        (_, Some(("forever", []))) => Ok(Ok(Lifetime::Forever)),
        (_, Some(("exits", fields))) => exit(fields).map(|(after, e)| Ok(Lifetime::exits_after(after, e))).ok_or_else(|| wrong("on_start", value, EXPECTED)),
        (_, Some(("fail", _))) => outcome("on_start", value).map(|r| r.map(|()| Lifetime::Command)),
        _ => Err(wrong("on_start", value, EXPECTED)),
    }
}

/// `on_stop`'s answer.
pub fn stop(value: &MontyObject) -> Result<Stop, String> {
    const EXPECTED: &str = "None, exits(code=...) or ignores_sigterm()";
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(Stop::AsItsProcess),
        (_, Some(("ignores-sigterm", []))) => Ok(Stop::IgnoresSigterm),
        (_, Some(("exits", fields))) => exit(fields).map(|(_, e)| Stop::Exits(e)).ok_or_else(|| wrong("on_stop", value, EXPECTED)),
        _ => Err(wrong("on_stop", value, EXPECTED)),
    }
}

/// `before_call`'s answer.
pub fn reply(value: &MontyObject) -> Result<Reply, String> {
    const EXPECTED: &str = "None, delay(seconds) or hang()";
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(Reply::Now),
        (_, Some(("hang", []))) => Ok(Reply::Hang),
        (_, Some(("delay", [after]))) => seconds(after).map(Reply::Delay).ok_or_else(|| wrong("before_call", value, EXPECTED)),
        _ => Err(wrong("before_call", value, EXPECTED)),
    }
}

/// `probe`'s answer: `None` leaves it to the container, `True` passes, `False` or a message
/// fails.
pub fn probe(value: &MontyObject) -> Result<Option<ProbeResult>, String> {
    let result = |outcome, output: &str| Some(ProbeResult { outcome, output: output.to_string() });
    match value {
        MontyObject::None => Ok(None),
        MontyObject::Bool(true) => Ok(result(ProbeOutcome::Success, "")),
        MontyObject::Bool(false) => Ok(result(ProbeOutcome::Failure, "probe failed")),
        MontyObject::String(output) => Ok(result(ProbeOutcome::Failure, output)),
        _ => Err(wrong("probe", value, "None, True, False or the failure's output as a string")),
    }
}

/// `start_logs`' answer: the lines.
pub fn lines(value: &MontyObject) -> Result<Vec<String>, String> {
    let expected = || wrong("start_logs", value, "a list of strings");
    match value {
        MontyObject::None => Ok(Vec::new()),
        MontyObject::List(items) => items.iter().map(|i| if let MontyObject::String(s) = i { Ok(s.clone()) } else { Err(expected()) }).collect(),
        _ => Err(expected()),
    }
}

/// `usage`'s answer.
pub fn usage(value: &MontyObject) -> Result<Usage, String> {
    const EXPECTED: &str = "None or uses(cpu_millicores, memory_bytes, disk_bytes)";
    let figure = |v: &MontyObject| match v {
        MontyObject::None => Some(None),
        MontyObject::Int(n) => u64::try_from(*n).ok().map(Some),
        _ => None,
    };
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(Usage::default()),
        (_, Some(("usage", [cpu, memory, disk]))) => {
            let read =
                || Some(Usage { cpu_nano_cores: figure(cpu)?.map(|m| m.saturating_mul(1_000_000)), memory_bytes: figure(memory)?, disk_bytes: figure(disk)? });
            read().ok_or_else(|| wrong("usage", value, EXPECTED))
        }
        _ => Err(wrong("usage", value, EXPECTED)),
    }
}

/// A setting the file set (`NAME = "flaky"`), as a string.
pub fn setting(name: &str, value: &MontyObject) -> Result<String, String> {
    match value {
        MontyObject::String(s) => Ok(s.clone()),
        other => Err(format!("{name} is {}; it must be a string", other.py_repr())),
    }
}

/// `conditions`' answer: the runtime conditions, ready where the scenario says nothing.
pub fn conditions(value: &MontyObject) -> Result<Vec<RuntimeCondition>, String> {
    let expected = || wrong("conditions", value, "None or a list of condition(type, ok, reason, message)");
    let mut all = ready_conditions();
    let MontyObject::List(items) = value else {
        return if matches!(value, MontyObject::None) { Ok(all) } else { Err(expected()) };
    };
    for item in items {
        let Some(("condition", [MontyObject::String(kind), MontyObject::Bool(ok), reason, message])) = tagged(item) else { return Err(expected()) };
        let (reason, message) = (text(reason).ok_or_else(expected)?, text(message).ok_or_else(expected)?);
        let condition = RuntimeCondition { condition_type: kind.clone(), status: *ok, reason, message };
        match all.iter_mut().find(|c| c.condition_type == *kind) {
            Some(c) => *c = condition,
            None => all.push(condition),
        }
    }
    Ok(all)
}

/// `on_exec`'s answer: `None` leaves the command to the container's shell.
pub fn exec_result(value: &MontyObject) -> Result<Option<ExecResult>, String> {
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(None),
        (_, Some(("exec", [MontyObject::Int(code), stdout, stderr]))) => {
            let read = || Some(ExecResult { exit_code: i32::try_from(*code).ok()?, stdout: text(stdout)?.into_bytes(), stderr: text(stderr)?.into_bytes() });
            read().map(Some).ok_or_else(|| wrong("on_exec", value, "None or exec_result(exit_code, stdout, stderr)"))
        }
        _ => Err(wrong("on_exec", value, "None or exec_result(exit_code, stdout, stderr)")),
    }
}

/// `trigger`'s answer: `None` leaves the action to the built-in ones, a string is what the
/// action did, `fail(message)` refuses it.
pub fn trigger(value: &MontyObject) -> Result<Option<Result<String, TriggerError>>, String> {
    match (value, tagged(value)) {
        (MontyObject::None, _) => Ok(None),
        (MontyObject::String(done), _) => Ok(Some(Ok(done.clone()))),
        (_, Some(("fail", [MontyObject::String(message), _]))) => Ok(Some(Err(TriggerError::InvalidArgument(message.clone())))),
        _ => Err(wrong("trigger", value, "None, what the action did as a string, or fail(message)")),
    }
}

/// The `ACTIONS` setting: lab actions by name, with their descriptions.
pub fn actions(value: &MontyObject) -> Result<Vec<TriggerAction>, String> {
    let expected = || format!("ACTIONS is {}; it must be a dict of action names to descriptions", value.py_repr());
    let MontyObject::Dict(pairs) = value else { return Err(expected()) };
    pairs
        .iter()
        .map(|pair| match pair {
            (MontyObject::String(name), MontyObject::String(description)) => Ok(TriggerAction { name: name.clone(), description: description.clone() }),
            _ => Err(expected()),
        })
        .collect()
}

/// What a hook asked for besides its answer, as the prelude records it.
pub enum Effect {
    Kill { id: String, exit: Exit },
    Node(NodeAction),
}

pub fn effect(value: &MontyObject) -> Result<Effect, String> {
    let node = |name: &str| match name {
        "partition" => Some(NodeAction::Partition),
        "heal" => Some(NodeAction::Heal),
        "kubelet-restart" => Some(NodeAction::KubeletRestart),
        "reboot" => Some(NodeAction::Reboot),
        "runtime-down" => Some(NodeAction::RuntimeDown),
        "network-down" => Some(NodeAction::NetworkDown),
        "memory-pressure" => Some(NodeAction::MemoryPressure),
        "disk-pressure" => Some(NodeAction::DiskPressure),
        "pid-pressure" => Some(NodeAction::PidPressure),
        _ => None,
    };
    match tagged(value) {
        Some(("node", [MontyObject::String(action)])) => node(action).map(Effect::Node).ok_or_else(|| format!("node_action({action:?}) is not a node action")),
        Some(("kill", [MontyObject::String(id), MontyObject::Int(code), MontyObject::String(reason), message])) => {
            let code = i32::try_from(*code).map_err(|_| format!("kill: exit code {code} is out of range"))?;
            let message = text(message).ok_or("kill: the message must be a string")?;
            Ok(Effect::Kill { id: id.clone(), exit: Exit { code, reason: reason.clone(), message } })
        }
        _ => Err(format!("kill or node_action was given {}", value.py_repr())),
    }
}

//! A declarative plugin: its behaviour comes from rules in its configuration file
//! (`scripted.yaml` or `scripted.json` next to the component), so a lab changes what the
//! runtime does by editing a file, with no compiler. Editing the file hot-reloads it.
//!
//! ```yaml
//! selector: "lab=scripted"          # optional; pods can also use the annotation
//! rules:
//!   - match: { labels: { app: db }, image: "postgres*" }
//!     exit: { afterSeconds: 30, code: 137, reason: OOMKilled }
//!   - match: { pod: "web-*" }
//!     failPull: "manifest unknown"
//!   - match: { pod: "net-*" }
//!     failSandbox: "failed to setup network for sandbox"
//!     probes: { readiness: { flapSeconds: 10 } }
//!   - match: { labels: { app: slow }, everyNthStart: 3 }
//!     exit: { afterSeconds: 10, code: 2 }   # every third start exits 2 after 10 s
//!   - match: { labels: { app: slow } }
//!     calls: [pull-image]           # a call rule: its pulls take 15 s
//!     delaySeconds: 15
//!   - calls: [list]                 # hang (or delay) runtime calls, here PLEG's lists
//!     afterSeconds: 60
//!     forSeconds: 240
//! ```
//!
//! A call rule with a `match` applies to the calls about a matching pod (or container or
//! image); one without applies to every call it names, the runtime-wide ones too.
//!
//! For each decision the first rule that matches and says something about it wins.

use glob::Pattern;
use labkubelet_guest::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const NANOS: i64 = 1_000_000_000;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    #[serde(default, rename = "match")]
    selector: Match,
    fail_pull: Option<String>,
    fail_sandbox: Option<String>,
    fail_create: Option<String>,
    fail_start: Option<String>,
    exit: Option<ExitRule>,
    #[serde(default)]
    ignore_sigterm: bool,
    #[serde(default)]
    probes: Probes,
    #[serde(default)]
    calls: Vec<String>,
    delay_seconds: Option<u64>,
    after_seconds: Option<u64>,
    for_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Match {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    namespace: Option<String>,
    pod: Option<String>,
    container: Option<String>,
    image: Option<String>,
    /// Only every Nth start of a container: 3 matches its 3rd, 6th, 9th ... start.
    every_nth_start: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExitRule {
    after_seconds: u64,
    #[serde(default = "one")]
    code: i32,
    reason: Option<String>,
    #[serde(default)]
    message: String,
}

fn one() -> i32 {
    1
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Probes {
    liveness: Option<ProbeRule>,
    readiness: Option<ProbeRule>,
    startup: Option<ProbeRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProbeRule {
    /// Always fail.
    #[serde(default)]
    fail: bool,
    /// Fail once the container has run this long.
    fail_after_seconds: Option<u64>,
    /// Alternate success and failure with this period.
    flap_seconds: Option<u64>,
    /// What the Unhealthy event shows; by default what the probe's handler would say: an HTTP
    /// 500 for a network probe, nothing for an exec probe (a command that failed silently).
    output: Option<String>,
}

impl ProbeRule {
    fn output(&self, action: &ProbeAction) -> String {
        match (&self.output, action) {
            (Some(output), _) => output.clone(),
            (None, ProbeAction::Exec(_)) => String::new(),
            (None, _) => "HTTP probe failed with statuscode: 500".into(),
        }
    }
}

/// What a rule's patterns are compared with.
struct Subject<'a> {
    labels: &'a [KeyValue],
    namespace: &'a str,
    pod: &'a str,
    container: Option<&'a str>,
    image: Option<&'a str>,
    /// How many times the container was started before.
    attempt: Option<u32>,
}

impl<'a> Subject<'a> {
    fn of_pod(pod: &'a PodSandboxConfig) -> Self {
        Subject { labels: &pod.labels, namespace: &pod.metadata.namespace, pod: &pod.metadata.name, container: None, image: None, attempt: None }
    }

    fn of_container(c: &'a ContainerCtx) -> Self {
        Subject {
            labels: &c.pod_labels,
            namespace: &c.pod_namespace,
            pod: &c.pod_name,
            container: Some(&c.name),
            image: Some(&c.image),
            attempt: Some(c.attempt),
        }
    }

    /// What a runtime call concerns; `None` for the runtime-wide calls (lists, version).
    fn of_call(call: &'a Call) -> Option<Self> {
        match (&call.container, call.pod) {
            (Some(c), _) => Some(Subject::of_container(c)),
            (None, Some(pod)) => Some(Subject { image: call.image, ..Subject::of_pod(pod) }),
            (None, None) => None,
        }
    }
}

fn glob_matches(pattern: &Option<String>, value: Option<&str>) -> bool {
    match (pattern, value) {
        (None, _) => true,
        (Some(p), Some(v)) => Pattern::new(p).is_ok_and(|p| p.matches(v)),
        (Some(_), None) => false,
    }
}

impl Match {
    fn matches(&self, s: &Subject) -> bool {
        self.labels.iter().all(|(k, v)| s.labels.iter().any(|kv| &kv.key == k && &kv.value == v))
            && glob_matches(&self.namespace, Some(s.namespace))
            && glob_matches(&self.pod, Some(s.pod))
            && glob_matches(&self.container, s.container)
            && glob_matches(&self.image, s.image)
            && self.every_nth_start.is_none_or(|n| s.attempt.is_some_and(|a| (a + 1) % n == 0))
    }

    /// Matches whatever it is compared with.
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && [&self.namespace, &self.pod, &self.container, &self.image].iter().all(|p| p.is_none()) && self.every_nth_start.is_none()
    }

    fn validate(&self) -> Result<(), String> {
        for p in [&self.namespace, &self.pod, &self.container, &self.image].into_iter().flatten() {
            Pattern::new(p).map_err(|e| format!("match: {p:?} is not a glob pattern: {e}"))?;
        }
        if self.every_nth_start == Some(0) {
            return Err("match.everyNthStart: 0 matches no start; use 1 for every start, 3 for every third".into());
        }
        Ok(())
    }
}

/// What a call rule's `calls` may name: a call of the contract, `list` (the calls PLEG makes
/// every second) or `all`.
fn call_named(name: &str, method: Method) -> bool {
    name == "all" || name == method.name() || (name == "list" && method.is_list())
}

fn known_call(name: &str) -> bool {
    name == "all" || name == "list" || Method::ALL.iter().any(|m| m.name() == name)
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// When the plugin first answered a call (host-clock ns): call rules count from here.
    started: Option<i64>,
}

#[derive(Default)]
struct Scripted {
    rules: Vec<Rule>,
    state: State,
}

fn fail(message: &str) -> RuntimeError {
    RuntimeError { code: ErrorCode::Failed, message: message.into() }
}

impl Scripted {
    fn container_rules<'a>(&'a self, c: &'a ContainerCtx) -> impl Iterator<Item = &'a Rule> + 'a {
        let subject = Subject::of_container(c);
        let matched: Vec<&Rule> = self.rules.iter().filter(|r| r.calls.is_empty() && r.selector.matches(&subject)).collect();
        matched.into_iter()
    }
}

impl Scenario for Scripted {
    fn info(&self) -> Info {
        Info::new("scripted", env!("CARGO_PKG_VERSION")).describe("Behaviour from declarative rules in scripted.yaml: no compiler needed.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        let config: Config = file.parse()?;
        for (i, rule) in config.rules.iter().enumerate() {
            rule.selector.validate().map_err(|e| ConfigError::new(format!("rules[{i}].{e}")))?;
            if let Some(bad) = rule.calls.iter().find(|c| !known_call(c)) {
                let known: Vec<&str> = ["all", "list"].into_iter().chain(Method::ALL.iter().map(|m| m.name())).collect();
                return Err(format!("rules[{i}].calls: unknown call {bad:?}; known: {}", known.join(", ")).into());
            }
        }
        self.rules = config.rules;
        Ok(())
    }

    fn before_call(&mut self, call: &Call, rt: &FakeRuntime) -> Reply {
        let now = rt.now();
        let started = *self.state.started.get_or_insert(now);
        let subject = Subject::of_call(call);
        for rule in self.rules.iter().filter(|r| !r.calls.is_empty()) {
            let applies = rule.calls.iter().any(|c| call_named(c, call.method))
                && (rule.selector.is_empty() || subject.as_ref().is_some_and(|s| rule.selector.matches(s)));
            let from = started + rule.after_seconds.unwrap_or(0) as i64 * NANOS;
            let until = rule.for_seconds.map(|f| from + f as i64 * NANOS);
            if !applies || now < from || until.is_some_and(|u| now >= u) {
                continue;
            }
            return match (rule.delay_seconds, until) {
                (Some(d), _) => Reply::Delay(Duration::from_secs(d)),
                (None, Some(u)) => Reply::Delay(Duration::from_nanos((u - now).unsigned_abs())),
                (None, None) => Reply::Hang,
            };
        }
        Reply::Now
    }

    fn on_run_sandbox(&mut self, config: &PodSandboxConfig) -> Result<(), RuntimeError> {
        let subject = Subject::of_pod(config);
        let rule = self.rules.iter().find(|r| r.calls.is_empty() && r.fail_sandbox.is_some() && r.selector.matches(&subject));
        match rule.and_then(|r| r.fail_sandbox.as_deref()) {
            Some(message) => Err(fail(message)),
            None => Ok(()),
        }
    }

    fn on_pull(&mut self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        let subject = Subject {
            labels: pod.map(|p| p.labels.as_slice()).unwrap_or(&[]),
            namespace: pod.map(|p| p.metadata.namespace.as_str()).unwrap_or(""),
            pod: pod.map(|p| p.metadata.name.as_str()).unwrap_or(""),
            container: None,
            image: Some(image),
            attempt: None,
        };
        let rule = self.rules.iter().find(|r| r.calls.is_empty() && r.fail_pull.is_some() && r.selector.matches(&subject));
        match rule.and_then(|r| r.fail_pull.as_deref()) {
            Some(message) => Err(RuntimeError { code: ErrorCode::NotFound, message: message.into() }),
            None => Ok(()),
        }
    }

    fn on_create(&mut self, c: &ContainerCtx) -> Result<(), RuntimeError> {
        match self.container_rules(c).find_map(|r| r.fail_create.as_deref()) {
            Some(m) => Err(fail(m)),
            None => Ok(()),
        }
    }

    fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        if let Some(m) = self.container_rules(c).find_map(|r| r.fail_start.as_deref()) {
            return Err(fail(m));
        }
        Ok(match self.container_rules(c).find_map(|r| r.exit.as_ref()) {
            Some(e) => {
                let reason = e.reason.clone().unwrap_or_else(|| if e.code == 0 { "Completed".into() } else { "Error".into() });
                Lifetime::exits_after(secs(e.after_seconds), Exit { code: e.code, reason, message: e.message.clone() })
            }
            None => c.default_lifetime(),
        })
    }

    fn on_stop(&mut self, c: &ContainerCtx) -> Stop {
        if self.container_rules(c).any(|r| r.ignore_sigterm) { Stop::IgnoresSigterm } else { Stop::AsItsProcess }
    }

    fn probe(&mut self, c: &ContainerCtx, kind: ProbeKind, action: &ProbeAction) -> Option<ProbeResult> {
        let up = ProbeResult { outcome: ProbeOutcome::Success, output: String::new() };
        let rule = self.container_rules(c).find_map(|r| match kind {
            ProbeKind::Liveness => r.probes.liveness.as_ref(),
            ProbeKind::Readiness => r.probes.readiness.as_ref(),
            ProbeKind::Startup => r.probes.startup.as_ref(),
        });
        let rule = rule?;
        let ran = (host::now() - c.started_at.unwrap_or(0)).max(0) / NANOS;
        let failing =
            rule.fail || rule.fail_after_seconds.is_some_and(|s| ran >= s as i64) || rule.flap_seconds.is_some_and(|s| s > 0 && (ran / s as i64) % 2 == 1);
        Some(if failing { ProbeResult { outcome: ProbeOutcome::Failure, output: rule.output(action) } } else { up })
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
        if !state.is_null() {
            self.state = serde_json::from_value(state).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

export_scenario!(Scripted);

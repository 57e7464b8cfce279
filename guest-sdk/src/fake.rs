//! The fake container runtime: all the CRI bookkeeping a plugin needs (ids, sandbox and
//! container state machines, timestamps, images, logs, state export), asking a
//! [`Scenario`] only for the decisions that make a lab scenario.

use crate::bindings::exports::labkubelet::runtime::runtime::Guest;
use crate::bindings::labkubelet::runtime::types::{Container, ContainerStatus, Image, PluginInfo, PodSandbox, PodSandboxState, PodSandboxStatus, VersionInfo};
use crate::scenario::{ContainerCtx, Exit, Lifetime, Method, Reply, Scenario, ScenarioExport, Stop, find};
use crate::{
    ContainerConfig, ContainerState, ErrorCode, ExecResult, KeyValue, LogLevel, LogLine, LogStream, PodSandboxConfig, ProbeAction, ProbeKind, ProbeResult,
    RuntimeCondition, RuntimeError, TriggerAction, TriggerError, TriggerTarget, host,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Bumped when the exported state changes shape; an import of another format is refused.
const STATE_FORMAT: u32 = 1;

/// A pod sandbox the runtime holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub ready: bool,
    pub created_at: i64,
    pub ip: String,
}

/// A container the runtime holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image_ref: String,
    /// When and how the container will exit by itself.
    pub planned_exit: Option<(i64, Exit)>,
    pub logs: Vec<LogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    id: String,
    name: String,
    digest_ref: String,
    size: u64,
}

/// Faults any plugin built on the fake runtime can be told to show by a lab trigger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Faults {
    hang: bool,
    fail_pulls: Option<String>,
}

/// The runtime's bookkeeping. Scenario triggers get it to act on containers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FakeRuntime {
    sandboxes: BTreeMap<String, SandboxRecord>,
    containers: BTreeMap<String, ContainerRecord>,
    images: BTreeMap<String, ImageRecord>,
    next_ip: u32,
    faults: Faults,
    /// No planned exit comes before this: calls skip the scan of all containers until then.
    #[serde(default)]
    next_exit: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct ExportedState {
    format: u32,
    runtime: FakeRuntime,
    scenario: serde_json::Value,
}

impl FakeRuntime {
    /// Host-clock time now.
    pub fn now(&self) -> i64 {
        host::now()
    }

    pub fn sandboxes(&self) -> impl Iterator<Item = &SandboxRecord> {
        self.sandboxes.values()
    }

    pub fn containers(&self) -> impl Iterator<Item = &ContainerRecord> {
        self.containers.values()
    }

    /// The ids of containers whose pod and name match a trigger target.
    pub fn matching(&self, target: &TriggerTarget) -> Vec<String> {
        self.containers
            .values()
            .filter(|c| {
                let pod = self.sandboxes.get(&c.sandbox_id).map(|s| &s.config.metadata);
                let ns_ok = target.pod_namespace.as_ref().is_none_or(|ns| pod.is_some_and(|p| &p.namespace == ns));
                let name_ok = target.pod_name.as_ref().is_none_or(|n| pod.is_some_and(|p| &p.name == n));
                let ctr_ok = target.container.as_ref().is_none_or(|n| &c.config.metadata.name == n);
                ns_ok && name_ok && ctr_ok
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// The scenario's view of a container.
    pub fn ctx(&self, id: &str) -> Option<ContainerCtx> {
        let c = self.containers.get(id)?;
        let pod = self.sandboxes.get(&c.sandbox_id);
        let meta = pod.map(|s| s.config.metadata.clone());
        Some(ContainerCtx {
            id: c.id.clone(),
            name: c.config.metadata.name.clone(),
            image: c.config.image.clone(),
            attempt: c.config.metadata.attempt,
            pod_name: meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            pod_namespace: meta.as_ref().map(|m| m.namespace.clone()).unwrap_or_default(),
            pod_uid: meta.map(|m| m.uid).unwrap_or_default(),
            pod_labels: pod.map(|s| s.config.labels.clone()).unwrap_or_default(),
            pod_annotations: pod.map(|s| s.config.annotations.clone()).unwrap_or_default(),
            started_at: (c.started_at != 0).then_some(c.started_at),
        })
    }

    /// Ends a running container now, as if its process died.
    pub fn kill(&mut self, id: &str, exit: Exit) -> bool {
        let now = self.now();
        match self.containers.get_mut(id) {
            Some(c) if c.state == ContainerState::Running => {
                finish(c, now, exit);
                true
            }
            _ => false,
        }
    }

    /// Applies the exits whose time has come.
    fn refresh(&mut self, now: i64) {
        if self.next_exit.is_none_or(|t| now < t) {
            return;
        }
        let mut next = None::<i64>;
        for c in self.containers.values_mut() {
            if c.state != ContainerState::Running {
                continue;
            }
            if let Some((at, exit)) = c.planned_exit.clone() {
                if at <= now {
                    finish(c, at, exit);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        self.next_exit = next;
    }

    fn new_id(&self) -> String {
        (0..4).map(|_| format!("{:016x}", host::random_u64())).collect()
    }

    fn container(&self, id: &str) -> Result<&ContainerRecord, RuntimeError> {
        self.containers.get(id).ok_or_else(|| not_found("container", id))
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut ContainerRecord, RuntimeError> {
        self.containers.get_mut(id).ok_or_else(|| not_found("container", id))
    }
}

fn finish(c: &mut ContainerRecord, at: i64, exit: Exit) {
    c.state = ContainerState::Exited;
    c.finished_at = at;
    c.planned_exit = None;
    c.logs.push(LogLine { time: at, stream: LogStream::Stderr, text: format!("{} exited with code {} ({})", c.config.metadata.name, exit.code, exit.reason) });
    c.exit_code = exit.code;
    c.reason = exit.reason;
    c.message = exit.message;
}

fn not_found(kind: &str, id: &str) -> RuntimeError {
    RuntimeError { code: ErrorCode::NotFound, message: format!("{kind} \"{id}\" not found") }
}

/// Image names as a registry resolves them: `nginx` is `docker.io/library/nginx:latest`.
fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or(name);
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = match (has_registry, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

/// A stable sha256-shaped digest of an image name, so the same image has the same id on every node.
fn digest_of(name: &str) -> String {
    (0u8..4)
        .map(|salt| {
            let mut h = DefaultHasher::new();
            (salt, name).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn repo_of(normalized: &str) -> &str {
    let without_digest = normalized.split('@').next().unwrap_or(normalized);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

struct Plugin {
    scenario: Box<dyn Scenario>,
    rt: FakeRuntime,
    /// `selector` from the plugin's configuration: lets an operator retarget any plugin.
    selector: Option<String>,
}

thread_local! {
    static PLUGIN: RefCell<Option<Plugin>> = const { RefCell::new(None) };
}

fn with<T: ScenarioExport, R>(f: impl FnOnce(&mut Plugin) -> R) -> R {
    PLUGIN.with(|cell| {
        let mut slot = cell.borrow_mut();
        let plugin = slot.get_or_insert_with(|| {
            let mut scenario = T::build();
            let (config, selector) = split_selector(host::config());
            if let Err(e) = scenario.configure(&config) {
                let message = format!("invalid plugin configuration: {e}");
                host::log(LogLevel::Error, &message);
                panic!("{message}");
            }
            Plugin { scenario, rt: FakeRuntime::default(), selector }
        });
        f(plugin)
    })
}

/// Takes the `selector` key, which every plugin understands, out of a JSON object
/// configuration; the scenario gets the rest.
fn split_selector(config: String) -> (String, Option<String>) {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(&config) else {
        return (config, None);
    };
    let selector = match map.remove("selector") {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let rest = if map.is_empty() { String::new() } else { serde_json::Value::Object(map).to_string() };
    (rest, selector)
}

/// Runs a CRI call: applies due exits, the built-in faults and the scenario's reply policy.
fn call<T: ScenarioExport, R>(method: Method, f: impl FnOnce(&mut Plugin) -> R) -> R {
    with::<T, _>(|p| {
        let now = host::now();
        p.rt.refresh(now);
        if p.rt.faults.hang {
            host::hang_reply();
        } else {
            match p.scenario.before_call(method, &p.rt) {
                Reply::Now => {}
                Reply::Delay(d) => host::delay_reply(d),
                Reply::Hang => host::hang_reply(),
            }
        }
        f(p)
    })
}

fn builtin_actions() -> Vec<TriggerAction> {
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

fn builtin_trigger(rt: &mut FakeRuntime, action: &str, target: &TriggerTarget, args: &[KeyValue], known: Vec<String>) -> Result<String, TriggerError> {
    match action {
        "kill" => {
            let code = match arg(args, "code") {
                Some(c) => c.parse::<i32>().map_err(|_| TriggerError::InvalidArgument(format!("code must be an integer, got {c:?}")))?,
                None => 137,
            };
            let reason = arg(args, "reason").unwrap_or(if code == 0 { "Completed" } else { "Error" });
            let exit = Exit { code, reason: reason.into(), message: String::new() };
            let now = rt.now();
            rt.refresh(now);
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

impl<T: ScenarioExport> Guest for T {
    fn info() -> PluginInfo {
        with::<T, _>(|p| {
            let info = p.scenario.info();
            let mut actions = info.actions;
            actions.extend(builtin_actions());
            PluginInfo { name: info.name, version: info.version, description: info.description, selector: p.selector.clone().unwrap_or(info.selector), actions }
        })
    }

    fn version() -> VersionInfo {
        with::<T, _>(|p| VersionInfo { runtime_name: "labkubelet".into(), runtime_version: p.scenario.info().version, runtime_api_version: "v1".into() })
    }

    fn status() -> Vec<RuntimeCondition> {
        call::<T, _>(Method::Status, |p| p.scenario.conditions(&p.rt))
    }

    fn run_pod_sandbox(config: PodSandboxConfig) -> Result<String, RuntimeError> {
        call::<T, _>(Method::RunPodSandbox, |p| {
            p.scenario.on_run_sandbox(&config)?;
            let id = p.rt.new_id();
            p.rt.next_ip += 1;
            let n = p.rt.next_ip;
            let ip = format!("10.88.{}.{}", (n / 250) % 256, n % 250 + 2);
            let created_at = host::now();
            p.rt.sandboxes.insert(id.clone(), SandboxRecord { id: id.clone(), config, ready: true, created_at, ip });
            Ok(id)
        })
    }

    fn stop_pod_sandbox(id: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::StopPodSandbox, |p| {
            let now = host::now();
            let sandbox = p.rt.sandboxes.get_mut(&id).ok_or_else(|| not_found("pod sandbox", &id))?;
            sandbox.ready = false;
            for c in p.rt.containers.values_mut().filter(|c| c.sandbox_id == id) {
                if c.state == ContainerState::Running {
                    finish(c, now, Exit::error(137));
                }
            }
            Ok(())
        })
    }

    fn remove_pod_sandbox(id: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::RemovePodSandbox, |p| {
            p.rt.containers.retain(|_, c| c.sandbox_id != id);
            // Removing what is already gone succeeds, as in the CRI.
            p.rt.sandboxes.remove(&id);
            Ok(())
        })
    }

    fn inspect_pod_sandbox(id: String) -> Result<PodSandboxStatus, RuntimeError> {
        call::<T, _>(Method::InspectPodSandbox, |p| {
            let s = p.rt.sandboxes.get(&id).ok_or_else(|| not_found("pod sandbox", &id))?;
            Ok(PodSandboxStatus {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready { PodSandboxState::Ready } else { PodSandboxState::NotReady },
                created_at: s.created_at,
                ip: s.ip.clone(),
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
            })
        })
    }

    fn list_pod_sandboxes() -> Result<Vec<PodSandbox>, RuntimeError> {
        call::<T, _>(Method::ListPodSandboxes, |p| {
            Ok(p.rt
                .sandboxes
                .values()
                .map(|s| PodSandbox {
                    id: s.id.clone(),
                    metadata: s.config.metadata.clone(),
                    state: if s.ready { PodSandboxState::Ready } else { PodSandboxState::NotReady },
                    created_at: s.created_at,
                    labels: s.config.labels.clone(),
                    annotations: s.config.annotations.clone(),
                })
                .collect())
        })
    }

    fn create_container(pod_sandbox_id: String, config: ContainerConfig) -> Result<String, RuntimeError> {
        call::<T, _>(Method::CreateContainer, |p| {
            let sandbox = p.rt.sandboxes.get(&pod_sandbox_id).ok_or_else(|| not_found("pod sandbox", &pod_sandbox_id))?;
            if !sandbox.ready {
                return Err(RuntimeError { code: ErrorCode::Failed, message: format!("pod sandbox {pod_sandbox_id} is not ready") });
            }
            let name = normalize_image(&config.image);
            let image =
                p.rt.images
                    .get(&name)
                    .ok_or_else(|| RuntimeError { code: ErrorCode::NotFound, message: format!("image \"{}\" not present on the node", config.image) })?;
            let image_ref = image.digest_ref.clone();
            let id = p.rt.new_id();
            let record = ContainerRecord {
                id: id.clone(),
                sandbox_id: pod_sandbox_id,
                config,
                state: ContainerState::Created,
                created_at: host::now(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                image_ref,
                planned_exit: None,
                logs: Vec::new(),
            };
            p.rt.containers.insert(id.clone(), record);
            let ctx = p.rt.ctx(&id).ok_or_else(|| not_found("container", &id))?;
            if let Err(e) = p.scenario.on_create(&ctx) {
                p.rt.containers.remove(&id);
                return Err(e);
            }
            Ok(id)
        })
    }

    fn start_container(id: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::StartContainer, |p| {
            let c = p.rt.container(&id)?;
            if c.state != ContainerState::Created {
                return Err(RuntimeError { code: ErrorCode::Failed, message: format!("container {id} is not in created state") });
            }
            let now = host::now();
            let mut ctx = p.rt.ctx(&id).ok_or_else(|| not_found("container", &id))?;
            ctx.started_at = Some(now);
            let lifetime = p.scenario.on_start(&ctx)?;
            let lines = p.scenario.start_logs(&ctx);
            let c = p.rt.container_mut(&id)?;
            c.state = ContainerState::Running;
            c.started_at = now;
            c.logs.extend(lines.into_iter().map(|text| LogLine { time: now, stream: LogStream::Stdout, text }));
            if let Lifetime::ExitsAfter(after, exit) = lifetime {
                let nanos = i64::try_from(after.as_nanos()).unwrap_or(i64::MAX);
                let at = now.saturating_add(nanos);
                c.planned_exit = Some((at, exit));
                p.rt.next_exit = Some(p.rt.next_exit.map_or(at, |n| n.min(at)));
            }
            Ok(())
        })
    }

    fn stop_container(id: String, timeout_seconds: i64) -> Result<(), RuntimeError> {
        call::<T, _>(Method::StopContainer, |p| {
            let ctx = p.rt.ctx(&id).ok_or_else(|| not_found("container", &id))?;
            if p.rt.container(&id)?.state != ContainerState::Running {
                return Ok(());
            }
            let now = host::now();
            let (at, exit) = match p.scenario.on_stop(&ctx) {
                Stop::Exits(exit) => (now, exit),
                Stop::IgnoresSigterm => {
                    let grace = timeout_seconds.max(0);
                    host::delay_reply(std::time::Duration::from_secs(grace.unsigned_abs()));
                    (now.saturating_add(grace.saturating_mul(NANOS_PER_SEC)), Exit::error(137))
                }
            };
            finish(p.rt.container_mut(&id)?, at, exit);
            Ok(())
        })
    }

    fn remove_container(id: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::RemoveContainer, |p| {
            p.rt.containers.remove(&id);
            Ok(())
        })
    }

    fn inspect_container(id: String) -> Result<ContainerStatus, RuntimeError> {
        call::<T, _>(Method::InspectContainer, |p| {
            let c = p.rt.container(&id)?;
            Ok(ContainerStatus {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                state: c.state,
                created_at: c.created_at,
                started_at: c.started_at,
                finished_at: c.finished_at,
                exit_code: c.exit_code,
                image: c.config.image.clone(),
                image_ref: c.image_ref.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
        })
    }

    fn list_containers() -> Result<Vec<Container>, RuntimeError> {
        call::<T, _>(Method::ListContainers, |p| {
            Ok(p.rt
                .containers
                .values()
                .map(|c| Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: c.config.metadata.clone(),
                    image: c.config.image.clone(),
                    image_ref: c.image_ref.clone(),
                    state: c.state,
                    created_at: c.created_at,
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                })
                .collect())
        })
    }

    fn pull_image(image: String, pod: Option<PodSandboxConfig>) -> Result<String, RuntimeError> {
        call::<T, _>(Method::PullImage, |p| {
            if let Some(message) = &p.rt.faults.fail_pulls {
                return Err(RuntimeError { code: ErrorCode::Failed, message: message.clone() });
            }
            p.scenario.on_pull(&image, pod.as_ref())?;
            let name = normalize_image(&image);
            let digest = digest_of(repo_of(&name));
            let id = format!("sha256:{}", digest_of(&name));
            let digest_ref = format!("{}@sha256:{digest}", repo_of(&name));
            let size = 10_000_000 + (host::random_u64() % 90_000_000);
            p.rt.images.entry(name.clone()).or_insert(ImageRecord { id: id.clone(), name, digest_ref, size });
            Ok(id)
        })
    }

    fn inspect_image(image: String) -> Result<Option<Image>, RuntimeError> {
        call::<T, _>(Method::InspectImage, |p| Ok(p.rt.images.get(&normalize_image(&image)).map(to_image)))
    }

    fn list_images() -> Result<Vec<Image>, RuntimeError> {
        call::<T, _>(Method::ListImages, |p| Ok(p.rt.images.values().map(to_image).collect()))
    }

    fn remove_image(image: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::RemoveImage, |p| {
            p.rt.images.remove(&normalize_image(&image));
            Ok(())
        })
    }

    fn container_logs(id: String, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError> {
        call::<T, _>(Method::ContainerLogs, |p| {
            let c = p.rt.container(&id)?;
            let lines: Vec<LogLine> = c.logs.iter().filter(|l| since.is_none_or(|s| l.time >= s)).cloned().collect();
            let skip = tail.map_or(0, |t| lines.len().saturating_sub(t as usize));
            Ok(lines.into_iter().skip(skip).collect())
        })
    }

    fn exec_sync(id: String, cmd: Vec<String>, _timeout_seconds: i64) -> Result<ExecResult, RuntimeError> {
        call::<T, _>(Method::ExecSync, |p| running_ctx(&p.rt, &id).map(|ctx| p.scenario.exec(&ctx, &cmd)))
    }

    fn probe(id: String, kind: ProbeKind, action: ProbeAction) -> Result<ProbeResult, RuntimeError> {
        call::<T, _>(Method::Probe, |p| running_ctx(&p.rt, &id).map(|ctx| p.scenario.probe(&ctx, kind, &action)))
    }

    fn trigger(action: String, target: TriggerTarget, args: Vec<KeyValue>) -> Result<String, TriggerError> {
        with::<T, _>(|p| {
            let now = host::now();
            p.rt.refresh(now);
            if let Some(result) = p.scenario.trigger(&mut p.rt, &action, &target, &args) {
                return result;
            }
            let known: Vec<String> = p.scenario.info().actions.into_iter().chain(builtin_actions()).map(|a| a.name).collect();
            builtin_trigger(&mut p.rt, &action, &target, &args, known)
        })
    }

    fn export_state() -> Vec<u8> {
        with::<T, _>(|p| {
            let state = ExportedState { format: STATE_FORMAT, runtime: std::mem::take(&mut p.rt), scenario: p.scenario.save() };
            let bytes = serde_json::to_vec(&state).unwrap_or_default();
            p.rt = state.runtime;
            bytes
        })
    }

    fn import_state(state: Vec<u8>) -> Result<(), String> {
        with::<T, _>(|p| {
            if state.is_empty() {
                return Ok(());
            }
            let imported: ExportedState = serde_json::from_slice(&state).map_err(|e| format!("state is not a fake-runtime state: {e}"))?;
            if imported.format != STATE_FORMAT {
                return Err(format!("state format {} cannot be imported by this plugin (format {STATE_FORMAT})", imported.format));
            }
            p.scenario.restore(imported.scenario)?;
            p.rt = imported.runtime;
            Ok(())
        })
    }
}

fn running_ctx(rt: &FakeRuntime, id: &str) -> Result<ContainerCtx, RuntimeError> {
    let c = rt.container(id)?;
    if c.state != ContainerState::Running {
        return Err(RuntimeError { code: ErrorCode::Failed, message: format!("container {id} is not running") });
    }
    rt.ctx(id).ok_or_else(|| not_found("container", id))
}

fn to_image(i: &ImageRecord) -> Image {
    Image { id: i.id.clone(), repo_tags: vec![i.name.clone()], repo_digests: vec![i.digest_ref.clone()], size: i.size }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_resolve_like_a_registry() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(normalize_image("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(normalize_image("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repo_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repo_of("docker.io/library/nginx:1.25"), "docker.io/library/nginx");
    }
}

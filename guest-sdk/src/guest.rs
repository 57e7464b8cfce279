//! The plugin's exports: the CRI calls of the WIT contract served by the [`FakeRuntime`],
//! asking the exported [`Scenario`] for its decisions and the calls' hold policy.

use crate::bindings::exports::labkubelet::runtime::runtime::Guest;
use crate::bindings::labkubelet::runtime::lab::{ConfigError as WitConfigError, PluginConfig, PluginInfo};
use crate::bindings::labkubelet::runtime::types::{
    AuthConfig, Container, ContainerStats, ContainerStatus, Image, PodSandbox, PodSandboxState, PodSandboxStatus, SessionOpened, SessionOutput, VersionInfo,
};
use crate::config::{CommonConfig, ConfigError, ConfigFile};
use crate::container::{ContainerCtx, Exit, Stop};
use crate::process;
use crate::runtime::{ContainerRecord, FakeRuntime, ImageRecord, SandboxRecord, digest_of, finish, normalize_image, not_found, repo_of};
use crate::scenario::{Call, Method, Reply, Scenario, ScenarioExport};
use crate::triggers::{builtin_actions, builtin_trigger};
use crate::{
    ContainerConfig, ContainerFile, ContainerState, ErrorCode, ExecResult, HttpRequest, HttpResponse, KeyValue, LogLevel, LogLine, LogStream, PodSandboxConfig,
    ProbeAction, ProbeKind, ProbeResult, RuntimeCondition, RuntimeError, TriggerError, TriggerTarget, host,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Bumped when the exported state changes shape; an import of another format is refused.
const STATE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct ExportedState {
    format: u32,
    runtime: FakeRuntime,
    scenario: serde_json::Value,
}

struct Plugin {
    scenario: Box<dyn Scenario>,
    rt: FakeRuntime,
    common: CommonConfig,
    sessions: process::Sessions,
}

impl Plugin {
    /// The scenario with its configuration, or the scenario's refusal of it.
    fn configured<T: ScenarioExport>(config: &ConfigFile) -> Result<Plugin, ConfigError> {
        let common = config.common()?;
        let mut scenario = T::build();
        scenario.configure(config)?;
        let mut rt = FakeRuntime::default();
        rt.completion = common.completion();
        Ok(Plugin { scenario, rt, common, sessions: process::Sessions::default() })
    }
}

thread_local! {
    static PLUGIN: RefCell<Option<Plugin>> = const { RefCell::new(None) };
}

/// Sends a panic's message, file and line to the host before the instance traps: with
/// `panic = "abort"` it would otherwise go to a stderr nobody reads, and the pod would show
/// only a wasm backtrace.
fn report_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| host::log(LogLevel::Error, &panic_text(info))));
    });
}

/// A panic as the host shows it: `panicked at src/lib.rs:42:17: index out of bounds …`.
fn panic_text(info: &std::panic::PanicHookInfo) -> String {
    let payload = info.payload();
    let message = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("Box<dyn Any>");
    let at = info.location().map_or_else(String::new, |l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
    format!("panicked{at}: {message}")
}

fn with<T: ScenarioExport, R>(f: impl FnOnce(&mut Plugin) -> R) -> R {
    report_panics();
    PLUGIN.with(|cell| {
        let mut slot = cell.borrow_mut();
        // The host configures every instance first; one it did not starts unconfigured.
        let plugin = slot.get_or_insert_with(|| match Plugin::configured::<T>(&ConfigFile::default()) {
            Ok(plugin) => plugin,
            Err(e) => {
                let message = format!("the plugin refuses to run without a configuration: {e}");
                host::log(LogLevel::Error, &message);
                panic!("{message}");
            }
        });
        plugin.rt.share_in();
        let result = f(plugin);
        plugin.rt.share_out();
        result
    })
}

/// What a call's arguments say it is about; [`call`] turns it into the scenario's [`Call`].
enum Concerns<'a> {
    Runtime,
    Pod(&'a PodSandboxConfig),
    Sandbox(&'a str),
    NewContainer { sandbox: &'a str, config: &'a ContainerConfig },
    Container(&'a str),
    Image { image: &'a str, pod: Option<&'a PodSandboxConfig> },
}

impl Concerns<'_> {
    fn resolve<'a>(&'a self, method: Method, rt: &'a FakeRuntime) -> Call<'a> {
        let sandbox = |id: &str| rt.sandboxes.get(id).map(|s| &s.config);
        let mut call = Call::new(method);
        match *self {
            Concerns::Runtime => {}
            Concerns::Pod(config) => call.pod = Some(config),
            Concerns::Sandbox(id) => call.pod = sandbox(id),
            Concerns::NewContainer { sandbox: id, config } => {
                call.pod = sandbox(id);
                call.container = Some(rt.new_ctx(id, config));
            }
            Concerns::Container(id) => {
                call.pod = rt.containers.get(id).and_then(|c| sandbox(&c.sandbox_id));
                call.container = rt.ctx(id);
            }
            Concerns::Image { image, pod } => {
                call.pod = pod;
                call.image = Some(image);
            }
        }
        call
    }
}

/// Runs a CRI call: applies due exits, the built-in faults and the scenario's reply policy.
fn call<T: ScenarioExport, R>(method: Method, concerns: Concerns, f: impl FnOnce(&mut Plugin) -> R) -> R {
    with::<T, _>(|p| {
        let now = host::now();
        process::refresh(&mut p.rt, now);
        if p.rt.faults.hang {
            host::hang_reply();
        } else {
            match p.scenario.before_call(&concerns.resolve(method, &p.rt), &p.rt) {
                Reply::Now => {}
                Reply::Delay(d) => host::delay_reply(d),
                Reply::Hang => host::hang_reply(),
            }
        }
        f(p)
    })
}

impl<T: ScenarioExport> Guest for T {
    fn configure(config: PluginConfig) -> Result<(), WitConfigError> {
        report_panics();
        let plugin = Plugin::configured::<T>(&config.into()).map_err(WitConfigError::from)?;
        PLUGIN.with(|cell| *cell.borrow_mut() = Some(plugin));
        Ok(())
    }

    fn info() -> PluginInfo {
        with::<T, _>(|p| {
            let info = p.scenario.info();
            let mut actions = info.actions;
            actions.extend(builtin_actions());
            PluginInfo {
                name: info.name,
                version: info.version,
                description: info.description,
                selector: p.common.selector.clone().unwrap_or(info.selector),
                actions,
            }
        })
    }

    fn version() -> VersionInfo {
        with::<T, _>(|p| VersionInfo { runtime_name: "labkubelet".into(), runtime_version: p.scenario.info().version, runtime_api_version: "v1".into() })
    }

    fn status() -> Vec<RuntimeCondition> {
        call::<T, _>(Method::Status, Concerns::Runtime, |p| p.scenario.conditions(&p.rt))
    }

    fn run_pod_sandbox(config: PodSandboxConfig) -> Result<String, RuntimeError> {
        call::<T, _>(Method::RunPodSandbox, Concerns::Pod(&config), |p| {
            p.scenario.on_run_sandbox(&config)?;
            let id = p.rt.new_id();
            let ip = p.rt.new_ip(&config);
            let created_at = host::now();
            p.rt.sandboxes.insert(id.clone(), SandboxRecord { id: id.clone(), config: config.clone(), ready: true, created_at, ip });
            Ok(id)
        })
    }

    fn stop_pod_sandbox(id: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::StopPodSandbox, Concerns::Sandbox(&id), |p| {
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
        call::<T, _>(Method::RemovePodSandbox, Concerns::Sandbox(&id), |p| {
            p.rt.containers.retain(|_, c| c.sandbox_id != id);
            // Removing what is already gone succeeds, as in the CRI.
            p.rt.sandboxes.remove(&id);
            Ok(())
        })
    }

    fn inspect_pod_sandbox(id: String) -> Result<PodSandboxStatus, RuntimeError> {
        call::<T, _>(Method::InspectPodSandbox, Concerns::Sandbox(&id), |p| {
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
        call::<T, _>(Method::ListPodSandboxes, Concerns::Runtime, |p| {
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
        call::<T, _>(Method::CreateContainer, Concerns::NewContainer { sandbox: &pod_sandbox_id, config: &config }, |p| {
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
                sandbox_id: pod_sandbox_id.clone(),
                config: config.clone(),
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
                process: None,
                fs: Default::default(),
                follows_process: false,
                volumes_seen: Default::default(),
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
        call::<T, _>(Method::StartContainer, Concerns::Container(&id), |p| {
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
            process::start(&mut p.rt, &id, now, lifetime);
            let c = p.rt.container(&id)?;
            let next = c.planned_exit.as_ref().map(|(at, _)| *at).into_iter().chain(process::wakes_at(c)).min();
            if let Some(at) = next {
                p.rt.look_again_at(at);
            }
            Ok(())
        })
    }

    fn stop_container(id: String, timeout_seconds: i64) -> Result<(), RuntimeError> {
        call::<T, _>(Method::StopContainer, Concerns::Container(&id), |p| {
            let ctx = p.rt.ctx(&id).ok_or_else(|| not_found("container", &id))?;
            if p.rt.container(&id)?.state != ContainerState::Running {
                return Ok(());
            }
            let now = host::now();
            let stop = match p.scenario.on_stop(&ctx) {
                Stop::AsItsProcess => process::on_sigterm(p.rt.container(&id)?),
                decided => decided,
            };
            let (at, exit) = match stop {
                Stop::AsItsProcess => (now, Exit::completed()),
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
        call::<T, _>(Method::RemoveContainer, Concerns::Container(&id), |p| {
            p.rt.containers.remove(&id);
            Ok(())
        })
    }

    fn update_container_files(id: String, files: Vec<ContainerFile>) -> Result<(), RuntimeError> {
        call::<T, _>(Method::UpdateContainerFiles, Concerns::Container(&id), |p| {
            process::update_files(p.rt.container_mut(&id)?, &files);
            Ok(())
        })
    }

    fn inspect_container(id: String) -> Result<ContainerStatus, RuntimeError> {
        call::<T, _>(Method::InspectContainer, Concerns::Container(&id), |p| {
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
        call::<T, _>(Method::ListContainers, Concerns::Runtime, |p| {
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

    fn list_container_stats() -> Result<Vec<ContainerStats>, RuntimeError> {
        call::<T, _>(Method::ListContainerStats, Concerns::Runtime, |p| {
            let running: Vec<ContainerCtx> = p.rt.containers.values().filter(|c| c.state == ContainerState::Running).filter_map(|c| p.rt.ctx(&c.id)).collect();
            Ok(running
                .into_iter()
                .map(|c| {
                    let usage = p.scenario.usage(&c);
                    ContainerStats {
                        id: c.id,
                        cpu_usage_nano_cores: usage.cpu_nano_cores,
                        memory_working_set_bytes: usage.memory_bytes,
                        writable_layer_bytes: usage.disk_bytes,
                    }
                })
                .collect())
        })
    }

    fn pull_image(image: String, auth: Option<AuthConfig>, pod: Option<PodSandboxConfig>) -> Result<String, RuntimeError> {
        call::<T, _>(Method::PullImage, Concerns::Image { image: &image, pod: pod.as_ref() }, |p| {
            if let Some(message) = &p.rt.faults.fail_pulls {
                return Err(RuntimeError { code: ErrorCode::Failed, message: message.clone() });
            }
            p.scenario.on_pull(&image, pod.as_ref())?;
            if let Some(refused) = crate::registry::refusal(&image, auth.as_ref()) {
                return Err(refused);
            }
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
        call::<T, _>(Method::InspectImage, Concerns::Image { image: &image, pod: None }, |p| Ok(p.rt.images.get(&normalize_image(&image)).map(to_image)))
    }

    fn list_images() -> Result<Vec<Image>, RuntimeError> {
        call::<T, _>(Method::ListImages, Concerns::Runtime, |p| Ok(p.rt.images.values().map(to_image).collect()))
    }

    fn remove_image(image: String) -> Result<(), RuntimeError> {
        call::<T, _>(Method::RemoveImage, Concerns::Image { image: &image, pod: None }, |p| {
            p.rt.images.remove(&normalize_image(&image));
            Ok(())
        })
    }

    fn container_logs(id: String, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError> {
        call::<T, _>(Method::ContainerLogs, Concerns::Container(&id), |p| {
            let c = p.rt.container(&id)?;
            // A command that slept inside a pipeline wrote at the time it ended: not yet shown.
            let now = host::now();
            let lines: Vec<LogLine> = c.logs.iter().filter(|l| l.time <= now && since.is_none_or(|s| l.time >= s)).cloned().collect();
            let skip = tail.map_or(0, |t| lines.len().saturating_sub(t as usize));
            Ok(lines.into_iter().skip(skip).collect())
        })
    }

    fn exec_sync(id: String, cmd: Vec<String>, stdin: Vec<u8>, timeout_seconds: i64) -> Result<ExecResult, RuntimeError> {
        call::<T, _>(Method::ExecSync, Concerns::Container(&id), |p| {
            let ctx = running_ctx(&p.rt, &id)?;
            if let Some(result) = p.scenario.exec(&ctx, &cmd) {
                return Ok(result);
            }
            let timeout = if timeout_seconds > 0 { timeout_seconds.saturating_mul(NANOS_PER_SEC) } else { i64::MAX };
            Ok(process::exec_result(process::exec(&mut p.rt, &id, &cmd, &stdin, host::now(), timeout)?))
        })
    }

    fn exec_session_open(id: String, cmd: Vec<String>) -> Result<SessionOpened, RuntimeError> {
        call::<T, _>(Method::ExecSync, Concerns::Container(&id), |p| {
            running_ctx(&p.rt, &id)?;
            let c = p.rt.container(&id)?;
            let (session, prompt) = p.sessions.open(c, &cmd).map_err(|message| RuntimeError { code: ErrorCode::Failed, message })?;
            Ok(SessionOpened { session, prompt })
        })
    }

    fn exec_session_line(id: String, session: u64, line: String) -> Result<SessionOutput, RuntimeError> {
        call::<T, _>(Method::ExecSync, Concerns::Container(&id), |p| {
            running_ctx(&p.rt, &id)?;
            let now = host::now();
            let (output, exited, prompt) =
                p.sessions.line(p.rt.container_mut(&id)?, session, &line, now).ok_or_else(|| not_found("exec session", &session.to_string()))?;
            // A line typed into an attach may sleep: the process is looked at again when it wakes.
            p.rt.look_again_at(now);
            Ok(SessionOutput { output, exited, prompt })
        })
    }

    fn exec_session_close(id: String, session: u64) {
        with::<T, _>(|p| {
            let now = host::now();
            p.sessions.close(p.rt.containers.get_mut(&id), session, now);
            p.rt.look_again_at(now);
        });
    }

    fn serve_http(pod_sandbox_id: String, port: u16, request: HttpRequest) -> Result<HttpResponse, RuntimeError> {
        call::<T, _>(Method::ServeHttp, Concerns::Sandbox(&pod_sandbox_id), |p| {
            crate::server::serve(&mut p.rt, &pod_sandbox_id, port, &request, host::now(), None)
        })
    }

    fn probe(id: String, kind: ProbeKind, action: ProbeAction) -> Result<ProbeResult, RuntimeError> {
        call::<T, _>(Method::Probe, Concerns::Container(&id), |p| {
            let ctx = running_ctx(&p.rt, &id)?;
            match p.scenario.probe(&ctx, kind, &action) {
                Some(result) => Ok(result),
                // An exec probe's command is an exec: the scenario's exec hook answers it first.
                None => match &action {
                    ProbeAction::Exec(exec) => match p.scenario.exec(&ctx, &exec.command) {
                        Some(ran) => Ok(process::probe_result(ran)),
                        None => {
                            let timeout = exec.timeout_seconds.max(1).saturating_mul(NANOS_PER_SEC);
                            process::probe(&mut p.rt, &id, &exec.command, host::now(), timeout)
                        }
                    },
                    _ => Ok(crate::server::probe(&mut p.rt, &id, &action, host::now())),
                },
            }
        })
    }

    fn trigger(action: String, target: TriggerTarget, args: Vec<KeyValue>) -> Result<String, TriggerError> {
        with::<T, _>(|p| {
            let now = host::now();
            process::refresh(&mut p.rt, now);
            if let Some(result) = p.scenario.trigger(&mut p.rt, &action, &target, &args) {
                return result;
            }
            let known: Vec<String> = p.scenario.info().actions.into_iter().chain(builtin_actions()).map(|a| a.name).collect();
            builtin_trigger(&mut p.rt, &action, &target, &args, known)
        })
    }

    fn reboot() {
        with::<T, _>(|p| {
            let now = host::now();
            process::refresh(&mut p.rt, now);
            for c in p.rt.containers.values_mut().filter(|c| c.state == ContainerState::Running) {
                finish(c, now, Exit { code: 255, reason: "Unknown".into(), message: String::new() });
            }
            for s in p.rt.sandboxes.values_mut() {
                s.ready = false;
            }
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
            p.rt.completion = p.common.completion();
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
    use std::sync::Mutex;

    #[test]
    fn a_panic_is_told_with_its_message_file_and_line() {
        static TOLD: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| TOLD.lock().unwrap_or_else(|p| p.into_inner()).push(super::panic_text(info))));
        let line = line!() + 1;
        let _ = std::panic::catch_unwind(|| panic!("index {} out of bounds", 3));
        let _ = std::panic::catch_unwind(|| std::panic::panic_any(7_u8));
        std::panic::set_hook(before);
        // Other tests' panics meanwhile are told too: only this file's count.
        let told: Vec<String> = TOLD.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|t| t.contains(file!())).cloned().collect();
        assert_eq!(told[0], format!("panicked at {}:{line}:45: index 3 out of bounds", file!()));
        assert!(told[1].ends_with(": Box<dyn Any>"), "{}", told[1]);
    }
}

//! The policy side of a plugin: the hooks a [`Scenario`] overrides, and the small types
//! they answer with. Every hook defaults to what a healthy runtime does.

use crate::config::{ConfigError, ConfigFile};
use crate::container::{ContainerCtx, Lifetime, Stop, Usage};
use crate::runtime::FakeRuntime;
use crate::{
    ExecResult, KeyValue, PodSandboxConfig, ProbeAction, ProbeKind, ProbeResult, RuntimeCondition, RuntimeError, TriggerAction, TriggerError, TriggerTarget,
};
use std::time::Duration;

/// Who a plugin is and which pods it serves.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    /// A Kubernetes label selector; empty serves pods only by the
    /// `labkubelet.io/scenario: <name>` annotation.
    pub selector: String,
    /// Lab actions beyond the built-in ones (`kill`, `hang`, `fail-pulls`, `heal`).
    pub actions: Vec<TriggerAction>,
}

impl Info {
    pub fn new(name: &str, version: &str) -> Self {
        Info { name: name.into(), version: version.into(), ..Default::default() }
    }

    /// Serves the pods matching this label selector (`app=db`, `tier in (a,b)`, `!canary`).
    pub fn serves(mut self, selector: &str) -> Self {
        self.selector = selector.into();
        self
    }

    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }

    /// Offers a lab action, handled in [`Scenario::trigger`].
    pub fn action(mut self, name: &str, description: &str) -> Self {
        self.actions.push(TriggerAction { name: name.into(), description: description.into() });
        self
    }
}

/// The runtime call in progress, for [`Scenario::before_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Version,
    Status,
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    InspectPodSandbox,
    ListPodSandboxes,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    InspectContainer,
    UpdateContainerFiles,
    ListContainers,
    ListContainerStats,
    PullImage,
    InspectImage,
    ListImages,
    RemoveImage,
    ContainerLogs,
    /// `exec-sync`, and the lines of interactive sessions.
    ExecSync,
    ServeHttp,
    Probe,
}

impl Method {
    /// Every call of the contract.
    pub const ALL: [Method; 23] = [
        Method::Version,
        Method::Status,
        Method::RunPodSandbox,
        Method::StopPodSandbox,
        Method::RemovePodSandbox,
        Method::InspectPodSandbox,
        Method::ListPodSandboxes,
        Method::CreateContainer,
        Method::StartContainer,
        Method::StopContainer,
        Method::RemoveContainer,
        Method::InspectContainer,
        Method::UpdateContainerFiles,
        Method::ListContainers,
        Method::ListContainerStats,
        Method::PullImage,
        Method::InspectImage,
        Method::ListImages,
        Method::RemoveImage,
        Method::ContainerLogs,
        Method::ExecSync,
        Method::ServeHttp,
        Method::Probe,
    ];

    /// The calls PLEG makes every second.
    pub fn is_list(self) -> bool {
        matches!(self, Method::ListPodSandboxes | Method::ListContainers | Method::ListImages)
    }

    /// The call's name in the WIT contract: `pull-image`, `start-container`, ...
    pub fn name(self) -> &'static str {
        match self {
            Method::Version => "version",
            Method::Status => "status",
            Method::RunPodSandbox => "run-pod-sandbox",
            Method::StopPodSandbox => "stop-pod-sandbox",
            Method::RemovePodSandbox => "remove-pod-sandbox",
            Method::InspectPodSandbox => "inspect-pod-sandbox",
            Method::ListPodSandboxes => "list-pod-sandboxes",
            Method::CreateContainer => "create-container",
            Method::StartContainer => "start-container",
            Method::StopContainer => "stop-container",
            Method::RemoveContainer => "remove-container",
            Method::InspectContainer => "inspect-container",
            Method::UpdateContainerFiles => "update-container-files",
            Method::ListContainers => "list-containers",
            Method::ListContainerStats => "list-container-stats",
            Method::PullImage => "pull-image",
            Method::InspectImage => "inspect-image",
            Method::ListImages => "list-images",
            Method::RemoveImage => "remove-image",
            Method::ContainerLogs => "container-logs",
            Method::ExecSync => "exec-sync",
            Method::ServeHttp => "serve-http",
            Method::Probe => "probe",
        }
    }
}

/// The runtime call in progress and what it concerns, for [`Scenario::before_call`].
///
/// ```
/// use labkubelet_guest::*;
/// # fn reply(call: &Call) -> Reply {
/// // Pulls for pods labelled app=slow take 15 s.
/// if call.method == Method::PullImage && call.pod_label("app") == Some("slow") {
///     return Reply::Delay(secs(15));
/// }
/// Reply::Now
/// # }
/// assert_eq!(reply(&Call::new(Method::ListContainers)), Reply::Now);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call<'a> {
    pub method: Method,
    /// The pod the call is for: the sandbox being run or named, the pod of the container
    /// named, the pod a pull is for. `None` for the runtime-wide calls (lists, version).
    pub pod: Option<&'a PodSandboxConfig>,
    /// The container the call is for: the one named, or the one being created (its `id` is
    /// empty then).
    pub container: Option<ContainerCtx>,
    /// The image being pulled, inspected or removed.
    pub image: Option<&'a str>,
}

impl Call<'_> {
    /// A call that concerns no pod, container or image.
    pub fn new(method: Method) -> Self {
        Call { method, pod: None, container: None, image: None }
    }

    /// A label of the call's pod.
    pub fn pod_label(&self, key: &str) -> Option<&str> {
        self.pod.and_then(|p| crate::container::find(&p.labels, key))
    }
}

/// How the runtime answers a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// As usual.
    Now,
    /// After this much host-clock time (a slow runtime).
    Delay(Duration),
    /// Not until a `heal` (a hung runtime).
    Hang,
}

/// The conditions of a healthy runtime: RuntimeReady and NetworkReady true.
pub fn ready_conditions() -> Vec<RuntimeCondition> {
    ["RuntimeReady", "NetworkReady"]
        .into_iter()
        .map(|t| RuntimeCondition { condition_type: t.into(), status: true, reason: String::new(), message: String::new() })
        .collect()
}

/// A scenario's decisions. Override only what the scenario changes.
pub trait Scenario: 'static {
    /// Name, version, selector and extra actions.
    fn info(&self) -> Info;

    /// Takes the plugin's configuration file, once, before any other hook: read it with
    /// [`ConfigFile::parse`]. An error makes the host refuse the plugin, naming the file and the
    /// line. The keys every plugin understands (`selector`, `initContainerSeconds`,
    /// `runToCompletionSeconds`) are the SDK's: [`ConfigFile::parse`] skips them.
    fn configure(&mut self, _config: &ConfigFile) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The runtime conditions the node's Ready condition is computed from.
    fn conditions(&mut self, _rt: &FakeRuntime) -> Vec<RuntimeCondition> {
        ready_conditions()
    }

    /// Called before every runtime call, with the pod and container it concerns: answer
    /// now, later ([`Reply::Delay`]: a slow pull, a slow start), or never ([`Reply::Hang`]).
    fn before_call(&mut self, _call: &Call, _rt: &FakeRuntime) -> Reply {
        Reply::Now
    }

    /// Decides whether a pull works; `pod` is the pod that needs the image, when known.
    fn on_pull(&mut self, _image: &str, _pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn on_run_sandbox(&mut self, _config: &PodSandboxConfig) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn on_create(&mut self, _c: &ContainerCtx) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Decides how long a started container lives; by default
    /// [`ContainerCtx::default_lifetime`]: what its command does.
    fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
        Ok(c.default_lifetime())
    }

    /// Log lines a container writes when it starts, before its command's own output.
    fn start_logs(&mut self, _c: &ContainerCtx) -> Vec<String> {
        Vec::new()
    }

    /// What a container does when the kubelet stops it; by default what its process does.
    fn on_stop(&mut self, _c: &ContainerCtx) -> Stop {
        Stop::AsItsProcess
    }

    /// What a running container uses of the node, asked every 10 s by the eviction manager
    /// and at each read of the node's stats (`kubectl top`, metrics-server); by default the
    /// host models it.
    fn usage(&mut self, _c: &ContainerCtx) -> Usage {
        Usage::default()
    }

    /// Answers a liveness, readiness or startup probe; `None` leaves it to the container (an
    /// exec probe runs its command in the container's shell; HTTP and TCP reach what the pod serves).
    fn probe(&mut self, _c: &ContainerCtx, _kind: ProbeKind, _action: &ProbeAction) -> Option<ProbeResult> {
        None
    }

    /// Runs a command, as `kubectl exec` does; `None` leaves it to the container's shell.
    fn exec(&mut self, _c: &ContainerCtx, _cmd: &[String]) -> Option<ExecResult> {
        None
    }

    /// Handles a lab action; `None` leaves it to the built-in actions.
    fn trigger(&mut self, _rt: &mut FakeRuntime, _action: &str, _target: &TriggerTarget, _args: &[KeyValue]) -> Option<Result<String, TriggerError>> {
        None
    }

    /// The scenario's own state, carried across reloads and agent restarts.
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn restore(&mut self, _state: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// Implemented by [`export_scenario!`](crate::export_scenario): builds the plugin's scenario.
pub trait ScenarioExport {
    fn build() -> Box<dyn Scenario>;
}
